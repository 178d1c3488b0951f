"""The root CLI stays light: `lab --help` must not import torch or transformers."""

import subprocess
import sys
from pathlib import Path


def test_help_does_not_import_torch():
    code = ("import sys\nfrom lab_tools.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('torch', 'transformers', 'vllm') if m in sys.modules]\n"
            "assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "taxonomy" in out.stdout and "generate" in out.stdout


def test_unknown_command_exits_2():
    out = subprocess.run([sys.executable, "-m", "lab_tools", "no-such-command"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "Traceback" not in out.stderr


def test_config_collects_all_errors(tmp_path):
    import pytest

    from lab_tools.config import load_config
    from lab_tools.errors import ConfigError

    (tmp_path / "lab.yaml").write_text("generate:\n  samples: many\n  nope: 1\nbogus: 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, environ={})
    assert len(err.value.errors) == 3
    msg = str(err.value)
    assert "samples" in msg and "nope" in msg and "bogus" in msg


def test_config_precedence(tmp_path):
    from lab_tools.config import load_config

    (tmp_path / "lab.yaml").write_text("generate:\n  samples: 3\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("generate:\n  samples: 5\n  workers: 2\n")
    cfg = load_config(tmp_path, extra, environ={"LAB_GENERATE__SAMPLES": "7"})
    assert cfg.generate.samples == 7 and cfg.generate.workers == 2
    cfg.override("generate.samples", 9)
    cfg.override("generate.workers", None)
    assert cfg.generate.samples == 9 and cfg.generate.workers == 2


def test_subcommand_exit_code_is_kept(monkeypatch):
    """A subcommand that ends with ctx.exit(3) must make `lab` exit 3 (standalone_mode=False)."""
    import click
    import pytest

    from lab_tools import cli as cli_mod

    @click.command()
    @click.pass_context
    def fails(ctx):
        ctx.exit(3)

    monkeypatch.setitem(cli_mod.COMMANDS, "fails", ("tests.test_cli_root", "fails", ""))
    monkeypatch.setattr(cli_mod.LazyGroup, "get_command",
                        lambda self, ctx, name: fails if name == "fails" else None)
    with pytest.raises(SystemExit) as exc:
        cli_mod.main(["fails"])
    assert exc.value.code == 3


def _commands():
    """Every command of the `lab` tree as ``("lab sub cmd", command)``, groups included."""
    import click

    from lab_tools.cli import cli

    out, todo = [], [("lab", cli)]
    while todo:
        path, cmd = todo.pop()
        out.append((path, cmd))
        if isinstance(cmd, click.Group):
            ctx = click.Context(cmd, info_name=path.split()[-1])
            todo += [(f"{path} {name}", cmd.get_command(ctx, name)) for name in cmd.list_commands(ctx)]
    return out


def test_every_option_and_argument_is_documented():
    """`lab X --help` explains every option (flags included; hidden ones such as deprecated
    aliases excepted) and names every argument in the command's own help."""
    import click

    commands = _commands()
    assert {"lab build", "lab generate", "lab train", "lab evaluate", "lab taxonomy diff"} <= {p for p, _ in commands}
    missing = [f"{path} {'/'.join(p.opts)}" for path, cmd in commands for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden and not (p.help or "").strip()]
    unnamed = [f"{path} {p.human_readable_name}" for path, cmd in commands for p in cmd.params
               if isinstance(p, click.Argument) and p.human_readable_name not in (cmd.help or "")]
    assert not missing, f"options without help: {missing}"
    assert not unnamed, f"arguments the command's help does not name: {unnamed}"


def test_taxonomy_diff_help_names_only_its_own_options():
    out = subprocess.run([sys.executable, "-m", "lab_tools", "taxonomy", "diff", "--help"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "--base" in out.stdout and "--changed-only" not in out.stdout


def test_quiet_everywhere_and_default_outputs_under_runs():
    """One quiet flag (--quiet) and one output scheme (runs/<stage>) for every long command;
    generate's old --no-progress still parses but is hidden."""
    import click

    commands = dict(_commands())
    defaults = {}
    for name in ("build", "generate", "train", "evaluate"):
        opts = {o: p for p in commands[f"lab {name}"].params if isinstance(p, click.Option) for o in p.opts}
        assert "--quiet" in opts and opts["--quiet"].is_flag and not opts["--quiet"].hidden, name
        defaults[name] = str(opts["--out"].default)
    assert defaults == {"build": "runs/main", "generate": "runs/generate", "train": "runs/train",
                        "evaluate": "runs/eval"}
    legacy = [p for p in commands["lab generate"].params if "--no-progress" in getattr(p, "opts", [])]
    assert len(legacy) == 1 and legacy[0].hidden


def test_generate_accepts_quiet_and_the_deprecated_no_progress(tmp_path, run_lab, cache_dir):
    leaf = tmp_path / "taxonomy" / "compositional_skills" / "writing" / "haiku"
    leaf.mkdir(parents=True)
    import yaml

    (leaf / "qna.yaml").write_text(yaml.safe_dump({
        "version": 3, "created_by": "tester", "task_description": "Write a haiku about a topic.",
        "seed_examples": [{"question": f"Write a haiku about {t}.", "answer": f"A haiku about {t}\nfive seven five"}
                          for t in ("rain", "snow", "the sea", "autumn leaves", "a cat")]}))
    for flag, out in (("--quiet", "q"), ("--no-progress", "np")):
        code, cap = run_lab(["generate", str(tmp_path / "taxonomy"), "--teacher", "scripted:", "--samples", "2",
                             "--out", str(tmp_path / out), flag])
        assert code == 0, cap.err
        assert "progress:" not in cap.err and (tmp_path / out / "st.jsonl").is_file()
        assert ("deprecated" in cap.err) == (flag == "--no-progress")


def test_unwritable_out_is_a_clean_error(tmp_path):
    """`lab generate --out` where nothing can be written: the path and the reason, exit 1, no
    traceback (a file stands where the output folder's parent should be)."""
    import subprocess
    import sys

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    proc = subprocess.run([sys.executable, "-m", "lab_tools", "generate", "taxonomy", "--teacher", "scripted",
                           "--out", str(out), "--quiet"], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert str(blocker) in proc.stderr and "Traceback" not in proc.stderr

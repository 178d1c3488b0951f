"""The root CLI stays light: `lab --help` must not import torch or transformers."""

import subprocess
import sys


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

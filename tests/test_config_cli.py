"""`lab config init` and `lab config show`: the commented lab.yaml loads back to the defaults, and
every setting's source is named: default, lab.yaml, --config, environment, flag."""

from __future__ import annotations

import json

import yaml

from lab_tools.config import Config, load_config
from lab_tools.config_show import commented_yaml, field_doc, iter_settings


def _repo(tmp_path):
    """A folder that is the top of a git work tree (the lab.yaml search stops there)."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "taxonomy").mkdir()
    return tmp_path


def _show(run_lab, *args) -> dict:
    code, out = run_lab(["config", "show", *args, "--json"])
    assert code == 0, out.err
    return json.loads(out.out)["settings"]


def test_show_names_each_source_in_precedence_order(tmp_path, run_lab, monkeypatch):
    repo = _repo(tmp_path)
    (repo / "lab.yaml").write_text("generate:\n  samples: 5\n  workers: 2\ntrain:\n  preset: from-lab-yaml\n")
    extra = tmp_path / "extra.yaml"
    extra.write_text("# comment\ngenerate:\n  workers: 3\nbot:\n  samples: 4\n")
    monkeypatch.setenv("LAB_GENERATE__BATCH_SIZE", "7")
    monkeypatch.setenv("LAB_BOT__SAMPLES", "6")  # over --config
    monkeypatch.setenv("LAB_TRAIN__STUDENT", "env-student")
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))  # not a setting
    s = _show(run_lab, str(repo / "taxonomy"), "--config", str(extra), "--student", "flag-student",
              "--set", "feedback.enabled=true", "--set", "generate.filters.oversample=2")
    lab_yaml = str(repo / "lab.yaml")

    def got(key):
        return s[key]["value"], s[key]["source"], s[key]["where"]

    assert got("generate.samples") == (5, "lab.yaml", f"{lab_yaml}:2")
    assert got("train.preset") == ("from-lab-yaml", "lab.yaml", f"{lab_yaml}:5")
    assert got("generate.workers") == (3, "--config", f"{extra}:3")
    assert got("generate.batch_size") == (7, "environment", "$LAB_GENERATE__BATCH_SIZE")
    assert got("bot.samples") == (6, "environment", "$LAB_BOT__SAMPLES")
    assert got("train.student") == ("flag-student", "flag", "--student")  # over the environment
    assert got("feedback.enabled") == (True, "flag", "--set feedback.enabled")
    assert got("generate.filters.oversample") == (2.0, "flag", "--set generate.filters.oversample")
    assert got("generate.judge") == (None, "default", "")
    assert got("cache_dir") == (None, "default", "")
    assert s["generate.samples"]["default"] == Config().generate.samples
    # every setting is listed, in declaration order
    assert list(s) == [k for k, *_ in iter_settings()]


def test_show_text_and_changed_only(tmp_path, run_lab, monkeypatch):
    repo = _repo(tmp_path)
    (repo / "lab.yaml").write_text("generate:\n  samples: 5\n")
    monkeypatch.setenv("LAB_GENERATE__WORKERS", "3")
    code, out = run_lab(["config", "show", str(repo / "taxonomy"), "--changed", "--samples", "9"])
    assert code == 0, out.err
    lines = [ln for ln in out.out.splitlines() if not ln.startswith("#")]
    assert [ln.split()[0] for ln in lines] == ["generate.samples", "generate.workers"]
    assert lines[0].split()[1:] == ["9", "[flag", "--samples]"]
    assert lines[1].split()[1:] == ["3", "[environment", "$LAB_GENERATE__WORKERS]"]
    assert f"# lab.yaml: {repo / 'lab.yaml'}" in out.out


def test_show_bad_flag_is_a_clean_error(tmp_path, run_lab):
    repo = _repo(tmp_path)
    code, out = run_lab(["config", "show", str(repo / "taxonomy"), "--set", "generate.smaples=3"])
    assert code == 1 and "Traceback" not in out.err
    assert "--set generate.smaples: generate.smaples: unknown key 'smaples'; did you mean 'samples'?" in out.err
    code, out = run_lab(["config", "show", str(repo / "taxonomy"), "--set", "generate.samples"])
    assert code == 1 and "--set generate.samples: expected SECTION.KEY=VALUE" in out.err
    code, out = run_lab(["config", "show", str(repo / "taxonomy"), "--samples", "0"])
    assert code == 1 and "--samples: generate.samples: must be >= 1, got 0" in out.err


def test_init_writes_every_setting_commented_and_loads_back_to_the_defaults(tmp_path, run_lab):
    repo = _repo(tmp_path)
    code, out = run_lab(["config", "init", str(repo)])
    assert code == 0, out.err
    path = repo / "lab.yaml"
    assert out.out.strip() == f"wrote {path}"
    text = path.read_text()
    assert text == commented_yaml()
    assert load_config(repo / "taxonomy", environ={}) == Config()
    # every leaf setting is written out, each under a comment line
    data = yaml.safe_load(text)
    lines = text.splitlines()
    for key, cls, name, value in iter_settings():
        node = data
        for part in key.split("."):
            node = node[part]
        assert node == value, key
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            assert lines[i - 1].lstrip().startswith("#"), line
    # the comment of a field is the sentence of its section's docstring that defines it
    assert "  # `report_to`: experiment tracker of the training phases" in text
    assert "[one of tensorboard, trackio, wandb, none]" in text
    assert "  # `samples`: samples per leaf in a preview [>= 1 and <= 100000]\n  samples: 2\n" in text


def test_init_refuses_to_overwrite_without_force(tmp_path, run_lab):
    path = tmp_path / "lab.yaml"
    path.write_text("generate:\n  samples: 3\n")
    code, out = run_lab(["config", "init", str(path)])
    assert code == 1 and f"{path}: exists; pass --force to overwrite it" in out.err
    assert path.read_text() == "generate:\n  samples: 3\n"
    code, out = run_lab(["config", "init", str(path), "--force"])
    assert code == 0 and path.read_text() == commented_yaml()


def test_every_field_has_a_description_of_its_own():
    """No comment of `lab config init` falls back to "not described yet": each field is named in
    its section's docstring (add it there when adding a field)."""
    missing = [key for key, cls, name, _ in iter_settings() if "not described yet" in field_doc(cls, name)]
    assert not missing


def test_a_comment_is_the_sentence_that_names_its_field():
    """Interval notation in a docstring (``(0, 1]``) does not swallow the sentences after it: a
    field defined later in the section gets its own sentence, not the interval's."""
    from lab_tools.config import GenerateConfig

    for name in ("max_prompt_tokens", "engine", "engine_threads", "teacher_license"):
        assert f"`{name}`" in field_doc(GenerateConfig, name), name
    assert field_doc(GenerateConfig, "teacher_license").startswith("`teacher_license`: ")

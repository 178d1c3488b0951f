"""Where settings come from and how their errors are named: ``LAB_SECTION__KEY`` variables only
(other ``LAB_*`` variables are not settings), ``lab.yaml`` / ``--config`` errors with file and
line, did-you-mean for misspelled keys, no NaN or infinity in any float setting."""

from __future__ import annotations

import dataclasses
import math
import shutil
import typing
from pathlib import Path

import pytest

from lab_tools.config import Config, load_config
from lab_tools.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]

# variables of the project's scripts, CI and tests that are not settings (no "__")
NOT_SETTINGS = {"LAB_USER": "bob", "LAB_CACHE_DIR": "/tmp/lab-cache", "LAB_TORCH": "2.13.0",
                "LAB_EXTRAS": "dev", "LAB_LATEST": "1", "LAB_PROGRESS_INTERVAL": "3",
                "LAB_CHROMIUM": "/usr/bin/chromium", "LAB_PREVIEW_RUNNER": "self-hosted",
                "LAB_ACCELERATE_ARGS": "--num_machines 2", "LAB_GENERATE": "4", "LAB_": "x"}


def _errors(**kw) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(**kw)
    return err.value.errors


def test_lab_variables_without_a_double_underscore_are_not_settings():
    assert load_config(environ=NOT_SETTINGS) == Config()


def test_section_key_variables_set_settings_nested_further_with_more_underscores():
    cfg = load_config(environ={**NOT_SETTINGS, "LAB_GENERATE__SAMPLES": "4",
                               "LAB_GENERATE__FILTERS__ENABLED": "false", "LAB_FEEDBACK__RM_EPOCHS": "3",
                               "LAB_LICENSES__ALLOWLIST": "[MIT]"})
    assert cfg.generate.samples == 4 and cfg.generate.filters.enabled is False
    assert cfg.feedback.rm_epochs == 3.0 and cfg.licenses.allowlist == ["MIT"]


def test_misspelled_section_or_key_names_the_variable_and_suggests_the_right_one():
    errors = _errors(environ={"LAB_GENERTE__SAMPLES": "3", "LAB_GENERATE__SMAPLES": "3",
                              "LAB_GENERATE__FILTERS__ENABLD": "true"})
    assert len(errors) == 3
    assert errors[0].startswith("$LAB_GENERATE__FILTERS__ENABLD (generate.filters.enabld): unknown key "
                                "'enabld'; did you mean 'enabled' ($LAB_GENERATE__FILTERS__ENABLED)?")
    assert errors[1].startswith("$LAB_GENERATE__SMAPLES (generate.smaples): unknown key 'smaples'; "
                                "did you mean 'samples' ($LAB_GENERATE__SAMPLES)?")
    assert errors[2].startswith("$LAB_GENERTE__SAMPLES (generte.samples): unknown key 'generte'; "
                                "did you mean 'generate' ($LAB_GENERATE__SAMPLES)?")


def test_malformed_settings_variables_are_errors():
    errors = _errors(environ={"LAB_GENERATE__": "3", "LAB_GENERATE__SAMPLES__MAX": "3",
                              "LAB_CACHE_DIR__X": "1"})
    assert errors == [
        "$LAB_CACHE_DIR__X (cache_dir.x): 'cache_dir' is a setting, not a section",
        "$LAB_GENERATE__: expected LAB_SECTION__KEY (upper case, '__' between levels)",
        "$LAB_GENERATE__SAMPLES__MAX (generate.samples.max): 'samples' is a setting, not a section"]


def test_cli_ignores_other_lab_variables_and_reports_misspelled_settings(tmp_path, monkeypatch, run_lab):
    leaf = "compositional_skills/writing/freeform/poetry/haiku"
    shutil.copytree(REPO / "taxonomy" / leaf, tmp_path / "taxonomy" / leaf)
    (tmp_path / ".git").mkdir()  # lab.yaml is looked up to the work tree top, not above
    monkeypatch.chdir(tmp_path)
    for name, value in NOT_SETTINGS.items():
        monkeypatch.setenv(name, value)
    code, out = run_lab(["taxonomy", "licenses", "taxonomy"])
    assert code == 0, out.err
    monkeypatch.setenv("LAB_GENRATE__SAMPLES", "4")
    code, out = run_lab(["taxonomy", "licenses", "taxonomy"])
    assert code == 1 and "Traceback" not in out.err
    assert "$LAB_GENRATE__SAMPLES" in out.err and "did you mean 'generate'" in out.err


LAB_YAML = """\
# comment
generate:
  smaples: 3
  batch_size: 0
  filters:
    enabled: maybe
bot:
  samples: 2
feedbak:
  enabled: true
"""


def test_lab_yaml_errors_name_the_file_and_the_line_of_the_key(tmp_path):
    (tmp_path / "lab.yaml").write_text(LAB_YAML)
    f = tmp_path / "lab.yaml"
    errors = _errors(root=tmp_path, environ={})
    assert len(errors) == 4
    assert errors[0].startswith(f"{f}:3: generate.smaples: unknown key 'smaples'; did you mean 'samples'? (known: ")
    assert errors[1] == f"{f}:4: generate.batch_size: must be >= 1, got 0"
    assert errors[2] == f"{f}:6: generate.filters.enabled: expected bool, got 'maybe'"
    assert errors[3].startswith(f"{f}:9: feedbak: unknown key 'feedbak'; did you mean 'feedback'?")


def test_config_file_errors_name_that_file_and_line(tmp_path):
    extra = tmp_path / "extra.yaml"
    extra.write_text("generate:\n  workers: 2\n  temperature: 9\n")
    assert _errors(root=tmp_path, config_file=extra, environ={}) == [
        f"{extra}:3: generate.temperature: must be <= 2, got 9"]


@pytest.mark.parametrize("text,line,what", [
    ("generate:\n  samples: 3\n   workers: 2\n", 3, "invalid YAML"),
    ("generate:\n  samples: [1, 2\n", 3, "invalid YAML"),
    ("- generate\n", 1, "top level must be a mapping"),
    ("generate:\n  samples: 3\n  workers: 2\n  samples: 4\n", 4,
     "generate.samples: duplicate key (first at line 2)"),
])
def test_unusable_files_name_the_line(tmp_path, text, line, what):
    (tmp_path / "lab.yaml").write_text(text)
    (error,) = _errors(root=tmp_path, environ={})
    assert error.startswith(f"{tmp_path / 'lab.yaml'}:{line}: {what}"), error


def test_an_empty_lab_yaml_is_the_defaults(tmp_path):
    (tmp_path / "lab.yaml").write_text("# nothing set\n")
    assert load_config(tmp_path, environ={}) == Config()


def _float_settings(cls=Config, path=()):
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls)[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _float_settings(tp, (*path, f.name))
        elif tp in (float, float | None, list[float]):
            yield ".".join((*path, f.name)), tp


FLOAT_SETTINGS = list(_float_settings())


def test_there_are_float_settings_to_check():
    assert "feedback.rm_score_threshold" in dict(FLOAT_SETTINGS)  # Range(): any *finite* number
    assert "generate.filters.max_top_ngram_frac" in dict(FLOAT_SETTINGS)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("dotted,tp", FLOAT_SETTINGS, ids=[d for d, _ in FLOAT_SETTINGS])
def test_no_float_setting_accepts_nan_or_infinity_from_a_flag(dotted, tp, bad):
    cfg = Config()
    value = [bad] if tp == list[float] else bad
    with pytest.raises(ConfigError, match=rf"^{dotted}: must be a finite number, got {bad!r} "):
        cfg.override(dotted, value)
    assert cfg == Config()


def test_no_float_setting_accepts_nan_or_infinity_from_a_file_or_a_variable(tmp_path):
    (tmp_path / "lab.yaml").write_text(
        "generate:\n  temperature: .nan\n  filters:\n    max_top_ngram_frac: [0.3, .inf, 0.3]\n"
        "feedback:\n  rm_score_threshold: -.inf\n")
    f = tmp_path / "lab.yaml"
    errors = _errors(root=tmp_path, environ={"LAB_FEEDBACK__SP_THRESHOLD": ".NaN",
                                             "LAB_DOCUMENTS__FETCH_TIMEOUT": ".inf"})
    assert errors == [
        f"{f}:2: generate.temperature: must be a finite number, got nan (.nan and .inf are not allowed)",
        f"{f}:4: generate.filters.max_top_ngram_frac: must be a finite number, got inf "
        "(.nan and .inf are not allowed)",
        f"{f}:6: feedback.rm_score_threshold: must be a finite number, got -inf (.nan and .inf are not allowed)",
        "$LAB_DOCUMENTS__FETCH_TIMEOUT (documents.fetch_timeout): must be a finite number, got inf "
        "(.nan and .inf are not allowed)",
        "$LAB_FEEDBACK__SP_THRESHOLD (feedback.sp_threshold): must be a finite number, got nan "
        "(.nan and .inf are not allowed)"]


def test_cross_field_errors_say_where_the_values_were_set(tmp_path):
    (tmp_path / "lab.yaml").write_text("generate:\n  chunk_tokens: 32\n")
    (error,) = _errors(root=tmp_path, environ={"LAB_GENERATE__CHUNK_OVERLAP": "32"})
    assert error == ("generate.chunk_overlap: must be < generate.chunk_tokens (32), got 32 "
                     f"(generate.chunk_overlap: $LAB_GENERATE__CHUNK_OVERLAP; "
                     f"generate.chunk_tokens: {tmp_path / 'lab.yaml'}:2)")

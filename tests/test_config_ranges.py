"""Every numeric setting has a range, checked when the config is read, all problems at once
(lab_tools.config RANGES tables; lab.yaml and training presets)."""

from __future__ import annotations

import dataclasses
import types
import typing

import pytest
import yaml

from lab_tools.config import Config, load_config
from lab_tools.config_rules import Range, range_of
from lab_tools.errors import ConfigError
from lab_tools.train.config import Preset, preset_from_dict


def _numeric(tp) -> bool:
    """int, float, a list of them, or an optional one."""
    if tp in (int, float):
        return True
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return bool(args) and args[0] in (int, float)
    if origin in (typing.Union, types.UnionType):
        return any(_numeric(a) for a in args if a is not type(None))
    return False


def _sections(cls, seen=None):
    seen = seen if seen is not None else set()
    if cls in seen:
        return
    seen.add(cls)
    yield cls
    for name, tp in typing.get_type_hints(cls).items():
        if dataclasses.is_dataclass(tp):
            yield from _sections(tp, seen)


@pytest.mark.parametrize("cls", [*_sections(Config), *_sections(Preset)], ids=lambda c: c.__name__)
def test_every_numeric_field_has_a_range_and_its_default_is_inside(cls):
    hints = typing.get_type_hints(cls)
    numeric = {n for n, tp in hints.items() if _numeric(tp)}
    ranges = getattr(cls, "RANGES", {})
    assert numeric - set(ranges) == set(), f"{cls.__name__}: numeric fields without a range"
    assert set(ranges) - set(hints) == set(), f"{cls.__name__}: ranges of no field"
    default = cls()
    for name, rng in ranges.items():
        assert isinstance(rng, Range)
        assert rng.problem(getattr(default, name)) is None, (cls.__name__, name)


def _integer(tp) -> bool:
    """int, a list of ints, or an optional one."""
    return tp is int or int in typing.get_args(tp)


@pytest.mark.parametrize("cls", [*_sections(Config)], ids=lambda c: c.__name__)
def test_every_integer_field_has_an_upper_bound(cls):
    """Counts, sizes, token limits and seeds are bounded above too (a typo of a few zeros is an
    error, not an hour-long run or an overflow)."""
    unbounded = {n for n, tp in typing.get_type_hints(cls).items() if _integer(tp)
                 and (range_of(cls, n) is None or (range_of(cls, n).le is None and range_of(cls, n).lt is None))}
    assert unbounded == set(), f"{cls.__name__}: integer fields without an upper bound"


def test_lab_yaml_reports_every_problem_at_once_with_file_line_and_field(tmp_path):
    (tmp_path / "lab.yaml").write_text(yaml.safe_dump({
        "generate": {"batch_size": 0, "workers": -1, "temperature": 3.5, "dedup_threshold": 1.5,
                     "samples": 4, "max_request_error_fraction": -0.1, "max_new_tokens": 10**7},
        "bot": {"samples": 0}}, sort_keys=False))
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path, environ={"LAB_GENERATE__QA_TOKENS": "0"})
    msgs = err.value.errors
    where = str(tmp_path / "lab.yaml")
    assert f"{where}:2: generate.batch_size: must be >= 1, got 0" in msgs
    assert f"{where}:3: generate.workers: must be >= 1, got -1" in msgs
    assert f"{where}:4: generate.temperature: must be <= 2, got 3.5" in msgs
    assert f"{where}:5: generate.dedup_threshold: must be <= 1, got 1.5" in msgs
    assert f"{where}:7: generate.max_request_error_fraction: must be >= 0, got -0.1" in msgs
    assert f"{where}:8: generate.max_new_tokens: must be <= 1000000, got 10000000" in msgs
    assert f"{where}:10: bot.samples: must be >= 1, got 0" in msgs
    assert "$LAB_GENERATE__QA_TOKENS (generate.qa_tokens): must be >= 1, got 0" in msgs
    assert len(msgs) == 8  # samples: 4 is fine


def test_chunk_overlap_must_be_below_the_chunk_size():
    with pytest.raises(ConfigError, match="generate.chunk_overlap: must be < generate.chunk_tokens"):
        load_config(environ={"LAB_GENERATE__CHUNK_TOKENS": "32", "LAB_GENERATE__CHUNK_OVERLAP": "32"})


def test_flags_are_range_checked_too():
    cfg = Config()
    with pytest.raises(ConfigError, match="generate.workers: must be >= 1, got 0"):
        cfg.override("generate.workers", 0)
    assert cfg.generate.workers == Config().generate.workers  # a refused value is not applied


def test_preset_reports_every_problem_at_once():
    with pytest.raises(ConfigError) as err:
        preset_from_dict({"kt1": {"learning_rate": 0, "epochs": 0}, "st": {"replay_fraction": 11},
                          "selection": {"batch_size": 0, "max_new_tokens": -5}, "adam_beta2": 1.0,
                          "lora": {"dropout": 1.0}, "max_grad_norm": -1}, file="p.yaml")
    assert set(err.value.errors) == {
        "p.yaml: kt1.learning_rate: must be > 0, got 0", "p.yaml: kt1.epochs: must be >= 1, got 0",
        "p.yaml: st.replay_fraction: must be <= 10, got 11",
        "p.yaml: selection.batch_size: must be >= 1, got 0",
        "p.yaml: selection.max_new_tokens: must be >= 1, got -5",
        "p.yaml: adam_beta2: must be < 1, got 1.0", "p.yaml: lora.dropout: must be < 1, got 1.0",
        "p.yaml: max_grad_norm: must be >= 0, got -1"}


def test_lists_are_checked_element_by_element():
    assert Range(ge=0, le=1).problem([0.2, 0.5]) is None
    assert Range(ge=0, le=1).problem([0.2, 1.5]) == "must be <= 1, got 1.5"


def test_the_message_names_the_bound_that_is_broken():
    rng = Range(ge=1, le=100_000)
    assert str(rng) == ">= 1 and <= 100000"
    assert rng.problem(0) == "must be >= 1, got 0"
    assert rng.problem(10**6) == "must be <= 100000, got 1000000"
    assert Range(gt=0, lt=0.5).problem(0.5) == "must be < 0.5, got 0.5"


def test_nan_and_infinity_are_outside_every_range():
    assert Range().problem(float("nan")) == "must be a finite number, got nan (.nan and .inf are not allowed)"
    assert Range(ge=0).problem([1.0, float("inf")]).startswith("must be a finite number, got inf")
    assert Range(le=0).problem(float("-inf")).startswith("must be a finite number, got -inf")

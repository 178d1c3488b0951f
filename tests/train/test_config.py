"""Presets: typed, unknown keys refused, every error reported at once, shipped presets valid."""

from __future__ import annotations

import pytest

from lab_tools.errors import ConfigError, LabError
from lab_tools.train.config import PHASES, load_preset, preset_from_dict


def test_unknown_keys_and_bad_types_all_reported_together():
    with pytest.raises(ConfigError) as exc:
        preset_from_dict({"max_seq_len": "long", "bogus": 1,
                          "kt1": {"learning_rate": -1.0, "warmup": 3},
                          "selection": {"max_prompts": 2.5}}, file="p.yaml")
    errors = exc.value.errors
    assert any("max_seq_len" in e and "expected int" in e for e in errors)
    assert any("bogus" in e and "unknown key" in e for e in errors)
    assert any("kt1.warmup" in e and "unknown key" in e for e in errors)
    assert any("kt1.learning_rate" in e and "> 0" in e for e in errors)
    assert any("selection.max_prompts" in e for e in errors)
    assert all(e.startswith("p.yaml: ") for e in errors)


def test_micro_batch_must_hold_one_sample():
    with pytest.raises(ConfigError, match="micro_batch_tokens"):
        preset_from_dict({"max_seq_len": 512, "micro_batch_tokens": 256})


# The LAB presets against table 2: tests/train/test_presets_paper.py


def test_tiny_cpu_is_small():
    p = load_preset("tiny-cpu")
    assert p.max_seq_len <= 512 and p.selection.max_new_tokens <= 64
    assert all(p.phase(ph).epochs <= 2 and p.phase(ph).effective_batch_size <= 16 for ph in PHASES)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(LabError, match="tiny-cpu"):
        load_preset("no-such-preset")

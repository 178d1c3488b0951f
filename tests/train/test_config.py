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


@pytest.mark.parametrize("name,context", [("merlinite-7b", 2048), ("labradorite-13b", 4096)])
def test_lab_presets_carry_table_2_values(name, context):
    p = load_preset(name)
    assert p.max_seq_len == context
    for ph in PHASES:
        assert p.phase(ph).effective_batch_size == 3840
        assert p.phase(ph).learning_rate == pytest.approx(2e-5)
    assert p.kt1.replay_fraction == 0 and p.kt2.replay_fraction > 0 and p.st.replay_fraction > 0


def test_tiny_cpu_is_small():
    p = load_preset("tiny-cpu")
    assert p.max_seq_len <= 512 and p.selection.max_new_tokens <= 64
    assert all(p.phase(ph).epochs <= 2 and p.phase(ph).effective_batch_size <= 16 for ph in PHASES)


def test_unknown_preset_names_the_known_ones():
    with pytest.raises(LabError, match="tiny-cpu"):
        load_preset("no-such-preset")

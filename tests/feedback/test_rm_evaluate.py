"""RM evaluation without training: the Static HHH file, the longer-answer baseline, per-leaf and
per-type accuracies on hand-made pairs."""

from __future__ import annotations

import json

import pytest

from lab_tools.errors import LabError
from lab_tools.feedback import evaluate as ev


def _pair(leaf, chosen, rejected):
    return {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}], "metadata": {"leaf": leaf}}


def test_static_hhh_file_and_longer_wins_baseline():
    path = ev.hhh_default_path()  # shipped with the package: no ../shared needed
    assert path.parent.name == "evaldata" and path.parent.parent.name == "lab_tools"
    pairs = ev.load_hhh(path)
    assert len(pairs) == 221
    counts = {t: sum(p["type"] == t for p in pairs) for t in ("honest", "helpful", "harmless", "other")}
    assert counts == {"honest": 61, "helpful": 59, "harmless": 58, "other": 43}
    wins = sum(ev.longer_wins(p) for p in pairs)
    assert wins == 139 and round(100 * wins / len(pairs), 1) == 62.9  # the published 62.9%
    assert all(p["prompt"][0]["role"] == "user" and p["prompt"][-1]["role"] == "user" for p in pairs)


def test_parse_dialogue_multi_turn():
    msgs = ev.parse_dialogue("\n\nHuman: hi\n\nAssistant: hello\n\nHuman: why?\n\nAssistant: because.")
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant"]
    assert msgs[-1]["content"] == "because."
    with pytest.raises(ValueError):
        ev.parse_dialogue("Assistant: no human turn")


def test_bad_hhh_file_is_a_clean_error(tmp_path):
    bad = tmp_path / "hhh.json"
    bad.write_text(json.dumps([{"chosen": "no turns", "rejected": "x"}]))
    with pytest.raises(LabError, match="not a Static HHH pair"):
        ev.load_hhh(bad)


def test_summary_per_leaf_with_known_margins():
    pairs = [_pair("a", "long answer", "short"), _pair("a", "s", "longer"), _pair("b", "x", "yy")]
    out = ev._summary(pairs, [1.0, -0.5, 0.0], lambda p: p["metadata"]["leaf"], "per_leaf")
    assert out["n"] == 3 and out["accuracy"] == pytest.approx(1 / 3)  # a tie (0.0) is wrong
    assert out["length_baseline"] == pytest.approx(1 / 3)
    keys = ("n", "accuracy", "length_baseline")
    assert {k: out["per_leaf"]["a"][k] for k in keys} == {"n": 2, "accuracy": 0.5, "length_baseline": 0.5}
    assert {k: out["per_leaf"]["b"][k] for k in keys} == {"n": 1, "accuracy": 0.0, "length_baseline": 0.0}
    # every accuracy carries its Wilson 95% interval: 1 of 3 -> [0.0615, 0.7923]
    assert out["interval"] == pytest.approx([0.061492, 0.792341], abs=1e-5)
    assert out["per_leaf"]["b"]["interval"][0] == 0.0 and out["per_leaf"]["b"]["length_baseline_interval"][0] == 0.0


def test_rewards_do_not_depend_on_batching(tiny_model):
    model, tok = ev.load_rm(tiny_model)
    convs = [[{"role": "user", "content": "q" * k}, {"role": "assistant", "content": "a" * (3 * k)}] for k in range(1, 6)]
    one = ev.rewards(model, tok, convs, batch_size=1)
    many = ev.rewards(model, tok, convs, batch_size=5)  # right padding: read at the last real token
    assert one == pytest.approx(many, abs=1e-4)


def test_evenly_spaced_subset_keeps_every_type_and_order():
    items = [("honest", i) for i in range(6)] + [("helpful", i) for i in range(6)] + [("other", i) for i in range(4)]
    sub = ev.evenly_spaced(items, 8)
    assert len(sub) == 8 and sub == sorted(sub, key=items.index)  # file order kept
    assert {t for t, _ in sub} == {"honest", "helpful", "other"}
    assert ev.evenly_spaced(items, 0) == items and ev.evenly_spaced(items, 99) == items


def test_rm_evaluation_scores_only_hhh_pairs_of_the_subset(tiny_model, tmp_path, monkeypatch):
    """``hhh_pairs`` bounds the Static HHH pairs the reward model scores (the build's cap)."""
    pairs = [_pair("x", f"chosen answer {i}", f"bad {i}") for i in range(10)]
    for i, p in enumerate(pairs):
        p["type"] = ("honest", "helpful")[i % 2]
    monkeypatch.setattr(ev, "load_hhh", lambda path: pairs)
    scored = []
    real = ev.score_pairs
    monkeypatch.setattr(ev, "score_pairs", lambda m, t, ps, **k: scored.append(len(ps)) or real(m, t, ps, **k))
    out = ev.evaluate_rm(tiny_model, [], hhh_path=tmp_path / "hhh.json", hhh_pairs=4)
    assert out["static_hhh"]["n"] == 4 and scored == [4]
    assert set(out["static_hhh"]["per_type"]) == {"honest", "helpful"}

"""`lab build` with feedback enabled (scripted teacher, tiny student): the comparison,
reward-model, self-play, preference and alignment stages run, the release and its model card
record them, a rebuild skips them."""

from __future__ import annotations

import json

from click.testing import CliRunner

from lab_tools.build import STATE_FILE
from lab_tools.cli import cli
from lab_tools.jsonl import read_jsonl
from tests.e2e.build_fixture import make_build_repo

FEEDBACK = """feedback:
  enabled: true
  prompts_per_leaf: 3
  min_chars: 20
  rm_max_length: 512
  rm_epochs: 1.0
  rm_heldout_leaves: 0.34
  self_play: true
  sp_prompts_per_leaf: 2
  sp_candidates: 2
  sp_threshold: -1000000000.0
  hhh_pairs: 8
"""


def _build(root, out):
    res = CliRunner().invoke(cli, ["build", str(root), "--out", str(out), "--quiet"], catch_exceptions=False)
    state = json.loads((out / STATE_FILE).read_text())
    return res, {k: v["status"] for k, v in state["last_build"]["stages"].items()}


def test_build_runs_comparisons_and_reward_model(tmp_path, repo_root, tiny_model, cache_dir):
    root = make_build_repo(tmp_path, repo_root, tiny_model)
    lab_yaml = root.parent / "lab.yaml"
    lab_yaml.write_text(lab_yaml.read_text() + FEEDBACK)
    out = tmp_path / "run"
    res, st = _build(root, out)
    assert res.exit_code == 0, res.output
    assert list(st) == ["validate", "licenses", "generate", "comparisons", "reward_model", "self_play", "train",
                        "pref", "evaluate", "alignment", "release"]
    assert set(st.values()) == {"ran"}, st

    rows = read_jsonl(out / "data" / "comparisons.jsonl")
    assert rows
    info = json.loads((out / "release" / "release.json").read_text())
    fb = info["feedback"]
    per_leaf = {}
    for r in rows:
        per_leaf[r["metadata"]["leaf"]] = per_leaf.get(r["metadata"]["leaf"], 0) + 1
    assert {k: v for k, v in fb["comparisons"]["per_leaf"].items() if v} == per_leaf
    rm = fb["reward_model"]
    assert rm["heldout"]["n"] == sum(per_leaf.get(lf, 0) for lf in rm["training"]["heldout_leaves"])
    card = (out / "release" / "README.md").read_text()
    assert "## Synthetic comparisons (ALMoST)" in card and "## Reward model" in card
    assert "longer answer wins" in card
    for pair, n in fb["comparisons"]["per_config_pair"].items():
        assert f"| {pair} | {n} |" in card
    assert (out / "rm" / "config.json").is_file() and "rm_eval.json" in info["files"]
    # RM-guided self-play trained in ST; the preference phase ran after ST; alignment evaluated
    selfplay = read_jsonl(out / "data" / "selfplay.jsonl")
    manifest = json.loads((out / "train" / "manifest.json").read_text())
    assert selfplay and manifest["phases"]["st"]["samples"]["selfplay"] == len(selfplay)
    pref = manifest["phases"]["pref"]
    assert pref["method"] == "dpo" and pref["steps"] > 0 and manifest["selected"] == pref["selected"]
    assert fb["self_play"]["kept"] == len(selfplay) and fb["preference"]["kept"] == pref["kept"]
    assert "alignment.json" in info["files"]
    # the judge is scripted (no next-token A/B judge) and only the tiny student is local: no capable
    # judge was used, the reward model's win rate (with n and interval) is reported instead
    wr = fb["alignment"]["win_rate"]
    assert wr["judge"] is None and wr["no_capable_judge"] and wr["reward_model"]["n"] > 0
    assert len(wr["reward_model"]["interval"]) == 2
    assert pref["decision"]["metric"] == "win rate vs ST (reward model)" and pref["judges"]
    assert "No capable judge was used" in card
    from lab_tools.feedback.evaluate import hhh_default_path

    assert hhh_default_path().is_file()  # shipped in the package: a clone without ../shared has it
    assert set(fb["alignment"]["static_hhh"]) == {"base", "st", "pref"}
    assert all(v["n"] == 8 for v in fb["alignment"]["static_hhh"].values())
    assert "## RM-guided self-play" in card and "## Preference phase" in card and "## Alignment" in card

    res, st = _build(root, out)  # nothing changed: every stage skipped, the new ones too
    assert res.exit_code == 0, res.output
    assert set(st.values()) == {"skipped"}, st

"""`lab generate --self-play` end to end: scripted teacher, a tiny random reward model."""

from __future__ import annotations

import json

from lab_tools.tiny import make_tiny_reward_model



def test_generate_self_play_writes_multi_turn_st_demonstrations(taxonomy, fake_documents, tmp_path,
                                                               run_lab, tiny_model):
    cfg = tmp_path / "extra.yaml"
    cfg.write_text(f"cache_dir: {tmp_path / 'cache'}\ngenerate:\n  samples: 2\nfeedback:\n"
                   "  sp_turns: 2\n  sp_candidates: 2\n  sp_prompts_per_leaf: 2\n  min_chars: 10\n"
                   "  sp_threshold: -1000000000.0\n")
    out = tmp_path / "out"
    base = ["generate", str(taxonomy), "--teacher", "scripted:", "--config", str(cfg), "--out", str(out),
            "--quiet"]
    code, io = run_lab(base + ["--self-play"])
    assert code == 1 and "--reward-model" in io.err and "Traceback" not in io.err
    rm = make_tiny_reward_model(tiny_model, tmp_path / "rm")
    code, io = run_lab(base + ["--self-play", "--reward-model", str(rm)])
    assert code == 0, io.err
    rows = [json.loads(line) for line in (out / "selfplay.jsonl").read_text().splitlines()]
    st_leaves = {json.loads(line)["metadata"]["leaf"] for line in (out / "st.jsonl").read_text().splitlines()}
    assert rows and {r["metadata"]["leaf"] for r in rows} <= st_leaves
    for r in rows:
        roles = [m["role"] for m in r["messages"]]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and len(roles) == 4
        assert r["metadata"]["source"] == "rmsp" and len(r["metadata"]["turn_rewards"]) == 2
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["self_play"]["kept"] == len(rows) and card["self_play"]["mean_turns"] == 2
    code, io = run_lab(base + ["--self-play", "--reward-model", str(rm)])
    assert code == 0 and (out / "selfplay.jsonl").read_text().count("\n") == len(rows)
    assert all(r["cached"] for r in json.loads((out / "dataset_card.json").read_text())["self_play"]["leaves"])

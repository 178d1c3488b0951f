"""`lab generate` on the command line (scripted teacher)."""

from __future__ import annotations

import json



def test_generate_writes_datasets_and_summary(taxonomy, fake_documents, tmp_path, run_lab):
    cfg = tmp_path / "extra.yaml"
    cfg.write_text(f"cache_dir: {tmp_path / 'cache'}\ngenerate:\n  samples: 2\n  teacher: transformers:embedded\n")
    out = tmp_path / "out"
    code, io = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--config", str(cfg),
                     "--out", str(out), "--no-progress", "--samples", "3"])
    assert code == 0, io.err
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["teacher"] == "scripted" and card["settings"]["samples"] == 3  # flag beats --config
    assert sum(card["phases"].values()) > 0
    assert "generated" in io.out and "samples by phase" in io.out
    # only the given leaf is generated; the rest come from the cache
    code, io = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--config", str(cfg), "--out",
                     str(out), "--no-progress", "--samples", "3", "--leaves",
                     "compositional_skills/writing/poetry/haiku"])
    assert code == 0 and "ERROR" not in io.out


def test_bad_teacher_and_unknown_leaf_exit_1(taxonomy, tmp_path, run_lab):
    code, io = run_lab(["generate", str(taxonomy), "--teacher", "gpt:4", "--out", str(tmp_path / "o")])
    assert code == 1 and "unknown teacher" in io.err and "Traceback" not in io.err
    code, io = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--leaves", "knowledge/none",
                      "--out", str(tmp_path / "o")])
    assert code == 1 and "no leaf" in io.err

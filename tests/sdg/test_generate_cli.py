"""`lab generate` on the command line (scripted teacher)."""

from __future__ import annotations

import json

from lab_tools.cli import main


def _run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr()


def test_generate_writes_datasets_and_summary(taxonomy, fake_documents, tmp_path, capsys):
    cfg = tmp_path / "extra.yaml"
    cfg.write_text(f"cache_dir: {tmp_path / 'cache'}\ngenerate:\n  samples: 2\n  teacher: transformers:embedded\n")
    out = tmp_path / "out"
    code, io = _run(["generate", str(taxonomy), "--teacher", "scripted:", "--config", str(cfg),
                     "--out", str(out), "--no-progress", "--samples", "3"], capsys)
    assert code == 0, io.err
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["teacher"] == "scripted" and card["settings"]["samples"] == 3  # flag beats --config
    assert sum(card["phases"].values()) > 0
    assert "generated" in io.out and "samples by phase" in io.out
    # only the given leaf is generated; the rest come from the cache
    code, io = _run(["generate", str(taxonomy), "--teacher", "scripted:", "--config", str(cfg), "--out",
                     str(out), "--no-progress", "--samples", "3", "--leaves",
                     "compositional_skills/writing/poetry/haiku"], capsys)
    assert code == 0 and "ERROR" not in io.out


def test_bad_teacher_and_unknown_leaf_exit_1(taxonomy, tmp_path, capsys):
    code, io = _run(["generate", str(taxonomy), "--teacher", "gpt:4", "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "unknown teacher" in io.err and "Traceback" not in io.err
    code, io = _run(["generate", str(taxonomy), "--teacher", "scripted:", "--leaves", "knowledge/none",
                     "--out", str(tmp_path / "o")], capsys)
    assert code == 1 and "no leaf" in io.err

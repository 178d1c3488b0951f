"""`lab generate` on the command line (scripted teacher)."""

from __future__ import annotations

import json



def test_generate_writes_datasets_and_summary(taxonomy, fake_documents, tmp_path, run_lab):
    cfg = tmp_path / "extra.yaml"
    cfg.write_text(f"cache_dir: {tmp_path / 'cache'}\ngenerate:\n  samples: 2\n  teacher: transformers:embedded\n")
    out = tmp_path / "out"
    code, io = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--config", str(cfg),
                     "--out", str(out), "--quiet", "--samples", "3"])
    assert code == 0, io.err
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["teacher"] == "scripted" and card["settings"]["samples"] == 3  # flag beats --config
    assert sum(card["phases"].values()) > 0
    assert "generated" in io.out and "samples by phase" in io.out
    # only the given leaf is generated; the rest come from the cache
    code, io = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--config", str(cfg), "--out",
                     str(out), "--quiet", "--samples", "3", "--leaves",
                     "compositional_skills/writing/poetry/haiku"])
    assert code == 0 and "ERROR" not in io.out


def test_bad_teacher_and_unknown_leaf_exit_1(taxonomy, tmp_path, run_lab):
    code, io = run_lab(["generate", str(taxonomy), "--teacher", "gpt:4", "--out", str(tmp_path / "o")])
    assert code == 1 and "unknown teacher" in io.err and "Traceback" not in io.err
    code, io = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--leaves", "knowledge/none",
                      "--out", str(tmp_path / "o")])
    assert code == 1 and "no leaf" in io.err


def _summary(out: str) -> str:
    """The outcome line of `lab generate` (the one that holds the sample counts)."""
    lines = [line for line in out.splitlines() if "samples by phase" in line]
    assert len(lines) == 1, out
    return lines[0]


def test_exit_status_and_summary_do_not_depend_on_the_cache(taxonomy, tmp_path, run_lab, monkeypatch):
    """Three knowledge leaves fail (their documents cannot be fetched), the skill leaves are fine:
    the first run and the rerun (skills now cached) give the same exit status and summary line.
    A run whose requested leaves all fail exits 1 whether or not other leaves are cached."""
    from sdg_taxonomy import KNOWLEDGE, write_leaf

    from lab_tools.errors import LabError
    from lab_tools.taxonomy import documents

    for name in ("moons", "rings"):
        write_leaf(taxonomy, f"knowledge/science/{name}", KNOWLEDGE)

    def refuse(leaf, **settings):
        raise LabError("cannot fetch the document repository", file=str(leaf.qna_path))

    monkeypatch.setattr(documents, "resolve_documents", refuse)
    cfg = tmp_path / "extra.yaml"
    cfg.write_text(f"cache_dir: {tmp_path / 'cache'}\ngenerate:\n  samples: 2\n")
    args = ["generate", str(taxonomy), "--teacher", "scripted:", "--config", str(cfg), "--quiet"]

    first_code, first = run_lab([*args, "--out", str(tmp_path / "o1")])
    again_code, again = run_lab([*args, "--out", str(tmp_path / "o2")])
    assert "Traceback" not in first.err + again.err
    assert first_code == again_code == 0, (first.err, again.err)
    assert _summary(first.out) == _summary(again.out)
    assert "6 leaves: 3 ok, 3 failed" in _summary(again.out)
    assert "3 leaves from the cache" in again.out  # the cache shows apart from the outcome

    knowledge = ["--leaves", "knowledge/science/planets", "--leaves", "knowledge/science/moons",
                 "--leaves", "knowledge/science/rings"]
    alone_code, alone = run_lab([*args, *knowledge, "--out", str(tmp_path / "o3")])
    assert alone_code == 1 and "every requested leaf failed" in alone.err, alone.err
    (tmp_path / "cache").rename(tmp_path / "old-cache")  # nothing cached: the same outcome
    empty_code, empty = run_lab([*args, *knowledge, "--out", str(tmp_path / "o4")])
    assert empty_code == 1 and "every requested leaf failed" in empty.err, empty.err

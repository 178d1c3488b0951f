"""Measure the rule-based filters (lab_tools/sdg/filters.py) on human-written seed answers.

Seed answers of the InstructLab corpus (../shared/corpus/instructlab-taxonomy) and of this
repository's taxonomy are good outputs written by people: the filters' default thresholds
(``generate.filters``) must keep (almost) all of them. For each measure this prints the
distribution over seed answers (median, 99th percentile, worst) next to the default threshold
and how many seed answers that threshold alone would reject; then how many the full filter chain
rejects, with each rejected seed. It also measures how similar two different seed questions of one
leaf are, which bounds ``filters.seed_threshold`` from below (a generated instruction as close to
a seed as two different seeds are to each other is not a copy).

    .venv/bin/python bench/filter_thresholds.py [--corpus DIR] [--markdown]

Runs in seconds on one core (no model).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab_tools.config_sections import FiltersConfig  # noqa: E402
from lab_tools.errors import LabError  # noqa: E402
from lab_tools.sdg import filters, quality  # noqa: E402
from lab_tools.taxonomy.leaf import iter_leaf_paths, load_leaf  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "instructlab-taxonomy" / "cases"


def load_all(corpus: Path) -> list:
    """Every loadable leaf of the corpus cases and of this repository's taxonomy."""
    roots = [c for c in sorted(corpus.iterdir()) if c.is_dir()] if corpus.is_dir() else []
    leaves = []
    for root in roots + [REPO / "taxonomy"]:
        for p in iter_leaf_paths(root):
            try:
                leaves.append(load_leaf(root, p))
            except LabError:
                continue
    return leaves


def seed_samples(leaf) -> list[dict]:
    """``{"leaf", "question", "answer", "context", "grounded", "extraction", "knowledge"}`` per seed pair."""
    out = []
    for s in leaf.seed_examples:
        pairs = s.qna if leaf.kind == "knowledge" else [(s.question, s.answer)]
        for q, a in pairs:
            if q and a:
                out.append({"leaf": leaf.path, "question": q, "answer": a, "context": s.context,
                            "grounded": leaf.grounded, "knowledge": leaf.kind == "knowledge",
                            "extraction": "extract" in leaf.path})
    return out


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` (nearest rank)."""
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else 0.0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    args = ap.parse_args(argv)
    cfg = FiltersConfig()
    leaves = load_all(args.corpus)
    samples = [x for leaf in leaves for x in seed_samples(leaf)]
    print(f"{len(leaves)} leaves, {len(samples)} seed question/answer pairs")
    print()
    rows = []  # (measure, values, threshold, direction)
    rep = [filters.gopher_repetition(x["answer"]) for x in samples]
    limits = {"dup_line_frac": cfg.max_dup_line_frac, "dup_line_char_frac": cfg.max_dup_line_char_frac,
              "dup_sentence_frac": cfg.max_dup_sentence_frac,
              **{f"top_{n}_gram": lim for n, lim in zip((2, 3, 4), cfg.max_top_ngram_frac)},
              **{f"dup_{n}_gram": lim for n, lim in zip(range(5, 11), cfg.max_dup_ngram_frac)}}
    long_ = [len(filters.words(x["answer"])) >= cfg.repetition_min_words for x in samples]
    print(f"{sum(long_)} seed answers have at least repetition_min_words={cfg.repetition_min_words} words "
          "(Gopher's line and n-gram rules apply to those only)")
    for name, lim in limits.items():
        picked = [r[name] for r, ok in zip(rep, long_) if ok or name == "dup_sentence_frac"]
        rows.append((name + ("" if name == "dup_sentence_frac" else " (long answers)"), picked, lim, "max"))
    rows.append(("trigram_repeat (12+ words)", [quality.trigram_repeat_rate(x["answer"], numbers=True) for x in samples
                                                if len(filters.words(x["answer"])) >= 12],
                 cfg.max_trigram_repeat, "max"))
    rows.append(("compression_ratio", [filters.compression_ratio(x["answer"]) for x in samples],
                 cfg.min_compression_ratio, "min"))
    rows.append(("question_similarity", [quality.similarity(x["answer"], x["question"]) for x in samples],
                 cfg.max_question_similarity, "max_incl"))
    for label, pick, lim in (("context_overlap (grounded skills)", lambda x: x["grounded"], cfg.min_context_overlap),
                             ("context_overlap (knowledge)", lambda x: x["knowledge"], cfg.min_knowledge_overlap)):
        vals = [filters.context_overlap(x["answer"], f"{x['context']}\n{x['question']}") for x in samples
                if pick(x) and x["context"] and len(filters.content_words(x["answer"])) >= cfg.overlap_min_words]
        rows.append((label, vals, lim, "min"))
    ext = [x for x in samples if x["extraction"]]
    rows.append(("extraction shared content words",
                 [len(filters.content_words(x["answer"]) & filters.content_words(x["context"] or x["question"]))
                  for x in ext], cfg.extraction_min_shared, "min"))
    print("| measure | n | median | p1 | p99 | worst | default | seeds it rejects |")
    print("|---|---|---|---|---|---|---|---|")
    for name, vals, lim, how in rows:
        worst = min(vals) if how == "min" else max(vals)
        bad = sum(1 for v in vals if (v < lim if how == "min" else v >= lim if how == "max_incl" else v > lim))
        print(f"| {name} | {len(vals)} | {statistics.median(vals):.3f} | {pct(vals, 0.01):.3f} "
              f"| {pct(vals, 0.99):.3f} | {worst:.3f} | {lim} | {bad} |")
    print()
    for name, fn in (("leakage", filters.leakage), ("refusal", filters.refusal)):
        hits = [(x, fn(x["answer"])) for x in samples if fn(x["answer"])]
        print(f"{name}: {len(hits)} seed answers match" + "".join(
            f"\n  - {x['leaf']}: {m!r} in {x['answer'][:80]!r}" for x, m in hits[:10]))
    print()
    verdicts = [(x, filters.check(x["question"], x["answer"], cfg, context=x["context"],
                                  grounded=x["grounded"], extraction=x["extraction"],
                                  knowledge=x["knowledge"])) for x in samples]
    rejected = [(x, v) for x, v in verdicts if v.reason]
    print(f"full filter chain with the defaults: keeps {len(samples) - len(rejected)} of {len(samples)} "
          f"seed answers ({100 * (1 - len(rejected) / len(samples)):.1f}%)")
    for x, v in rejected:
        print(f"  - {x['leaf']}: {v.reason} ({v.detail}): {' '.join(x['answer'].split())[:100]!r}")
    scores = [filters.rule_score(v.margins) for _, v in verdicts if not v.reason]
    print(f"rule score of kept seed answers: median {statistics.median(scores):.3f}, p5 {pct(scores, 0.05):.3f}")
    print()
    sims, exact = [], 0
    for leaf in leaves:
        qs = [x["question"] for x in seed_samples(leaf)]
        for i in range(len(qs)):
            for j in range(i + 1, len(qs)):
                if quality.normalize(qs[i]) == quality.normalize(qs[j]):
                    exact += 1  # the same question under another context (knowledge, grounded)
                    continue
                sims.append(quality.similarity(qs[i], qs[j]))
    over = sum(1 for s in sims if s >= cfg.seed_threshold)
    print(f"two different seed questions of one leaf ({len(sims)} pairs; {exact} identical pairs left out): "
          f"similarity median {statistics.median(sims):.3f}, p95 {pct(sims, 0.95):.3f}, p99 {pct(sims, 0.99):.3f}; "
          f"{over} pairs ({100 * over / len(sims):.1f}%) at or above seed_threshold {cfg.seed_threshold}")
    short = sum(1 for x in samples if len(quality.normalize(x["question"]).split()) < 4)
    print(f"seed questions under 4 words (a one-word change stays under 0.75 similarity; the "
          f"one-word-edit rule catches them): {short} of {len(samples)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

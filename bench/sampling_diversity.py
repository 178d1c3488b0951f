"""LAB figure 2, measured: taxonomy-driven vs Self-Instruct-style sampling of instructions.

The same teacher with the same request budget generates instructions two ways:

- ``taxonomy``: each request shows one leaf's seed examples (LAB 3.2.1, what ``lab generate``
  does: the request is built by ``lab_tools.sdg.skills``' instruction-generation stage), the
  budget spread evenly over the leaves;
- ``self-instruct``: each request shows seed examples drawn at random across all leaves (Wang et
  al. 2022, arXiv 2212.10560: one pool of seed tasks), with the same prompt and the same number of
  examples, the task line naming no leaf.

Every reply is parsed with the pipeline's own parser (``quality.parse_questions``) and filtered as
the pipeline filters instructions (no loop, no copy of a seed, no near-duplicate of an instruction
already accepted in the same way). Each accepted instruction is attributed to the leaf of its
nearest seed example by ROUGE-L (``lab_tools.sdg.quality.similarity``, rapidfuzz LCS), in both ways
alike. Printed per way: leaves with at least ``k`` attributed instructions (LAB's claim: the
taxonomy covers every leaf, random sampling from one pool leaves some out), distinct-1/2 of the
accepted instructions, their mean pairwise ROUGE-L similarity, and accepted instructions per request.

Leaves: the non-grounded skill leaves of this repository's taxonomy plus ``--corpus-leaves``
non-grounded compositional leaves of the InstructLab corpus (../shared/corpus). Budgets
(requests per way): ``tiny`` (4 leaves, 4 requests: a smoke run; 8 min on 2 cores shared with
other jobs, load ~10, embedded teacher), ``small`` (the default: every leaf, one request of 5
instructions each), ``full`` (4 per leaf), or a number. With an in-process teacher, run it with
``OMP_NUM_THREADS=1`` on a busy machine (two spinning OpenMP threads waste CPU under contention).

    .venv/bin/python bench/sampling_diversity.py                       # embedded teacher, small budget
    .venv/bin/python bench/sampling_diversity.py --budget tiny         # smoke run
    .venv/bin/python bench/sampling_diversity.py --teacher openai:http://127.0.0.1:8000/v1#model --budget full
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab_tools.config import Config  # noqa: E402
from lab_tools.errors import LabError  # noqa: E402
from lab_tools.sdg import quality, skills  # noqa: E402
from lab_tools.sdg.backends import ChatRequest, make_teacher  # noqa: E402
from lab_tools.sdg.phases import distinct_n  # noqa: E402
from lab_tools.sdg.stages import LeafContext, new_state  # noqa: E402
from lab_tools.sdg.templates import fewshot, load_prompts  # noqa: E402
from lab_tools.taxonomy.leaf import iter_leaf_paths, load_leaf  # noqa: E402

CORPUS = REPO.parent / "shared" / "corpus" / "instructlab-taxonomy" / "cases"
GENERIC_TASK = "any task a user might ask an assistant to do"
BUDGETS = {"tiny": None, "small": 1, "full": 4}  # requests per leaf (tiny: 4 leaves, 4 requests)


def pick_leaves(corpus_leaves: int, seed: int) -> list:
    """This repository's non-grounded skill leaves with 3+ seed questions, plus ``corpus_leaves``
    such leaves of the corpus (compositional skills, distinct paths, chosen with ``seed``)."""
    def usable(leaf) -> bool:
        return leaf.kind != "knowledge" and not leaf.grounded and sum(1 for s in leaf.seed_examples if s.question) >= 3

    own = [lf for p in iter_leaf_paths(REPO / "taxonomy") for lf in [load_leaf(REPO / "taxonomy", p)] if usable(lf)]
    pool, seen = [], {lf.path for lf in own}
    for case in sorted(CORPUS.iterdir()) if CORPUS.is_dir() else []:
        for p in iter_leaf_paths(case):
            try:
                lf = load_leaf(case, p)
            except LabError:
                continue
            if usable(lf) and lf.kind == "compositional_skills" and lf.path not in seen:
                seen.add(lf.path)
                pool.append(lf)
    random.Random(seed).shuffle(pool)
    return own + pool[:corpus_leaves]


def taxonomy_requests(leaves: list, per_leaf: int, cfg) -> list[tuple[str, ChatRequest]]:
    """``per_leaf`` instruction-generation requests per leaf, built by the pipeline's own stage."""
    out = []
    g = cfg.generate
    g.samples = max(1, -(-per_leaf * g.questions_per_request // g.question_factor))
    for leaf in leaves:
        reqs = skills._build_questions(LeafContext(leaf, g, count_tokens=len), new_state())[:per_leaf]
        out += [(leaf.path, r) for r in reqs]
    return out


def self_instruct_requests(leaves: list, n: int, cfg, seed: int) -> list[tuple[str, ChatRequest]]:
    """``n`` requests, each showing ``max_examples`` seed questions drawn at random from the pool of
    every leaf's seeds, with the same prompt as :func:`taxonomy_requests` and a generic task."""
    spec, g = load_prompts()["skills"]["question"], cfg.generate
    pool = [s.question for leaf in leaves for s in leaf.seed_examples if s.question]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        shown = rng.sample(pool, min(g.max_examples, len(pool)))
        example = (spec["user"].format(task=GENERIC_TASK, n=len(shown)),
                   "\n".join(f"{k + 1}. {' '.join(q.split())}" for k, q in enumerate(shown)))
        msgs = fewshot(spec["system"], [example], spec["user"].format(task=GENERIC_TASK, n=g.questions_per_request))
        out.append(("*", ChatRequest(msgs, max_tokens=min(g.question_tokens * g.questions_per_request, g.max_new_tokens),
                                     temperature=g.temperature, seed=seed * 100003 + i, tag="skill_question")))
    return out


def accept(replies: list[str], seeds: list[str], cfg, truncated: list[bool]) -> list[str]:
    """The instructions the pipeline would keep from ``replies``: parsed, no loop, no copy of a
    seed (``filters.seed_threshold``), no near-duplicate of one accepted before (``dedup_threshold``)."""
    g, kept = cfg.generate, []
    for text, cut in zip(replies, truncated):
        qs, _ = quality.parse_questions(text, truncated=cut)
        for q in qs:
            if quality.repetitive(q) or quality.seed_copy(q, seeds, g.filters.seed_threshold):
                continue
            if quality.near_duplicate(q, kept, g.dedup_threshold) is None:
                kept.append(q)
    return kept


def measure(name: str, accepted: list[str], requests: int, seeds: list[tuple[str, str]], leaves: list,
            k: int, seconds: float) -> dict:
    """The figures of one way (see the module doc); ``seeds``: ``(leaf path, seed question)``."""
    counts = {leaf.path: 0 for leaf in leaves}
    for q in accepted:
        leaf, _ = max(seeds, key=lambda s: quality.similarity(q, s[1]))
        counts[leaf] += 1
    pairs = list(itertools.combinations(accepted, 2))
    random.Random(0).shuffle(pairs)
    pairs = pairs[:2000]
    return {"way": name, "requests": requests, "accepted": len(accepted),
            "per_request": len(accepted) / max(1, requests),
            "covered": sum(1 for v in counts.values() if v >= k), "leaves": len(leaves),
            "distinct_1": distinct_n(accepted, 1), "distinct_2": distinct_n(accepted, 2),
            "pairwise_sim": sum(quality.similarity(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0,
            "seconds": seconds, "counts": counts}


def run_way(teacher, reqs) -> tuple[list[str], list[bool], float]:
    """Send ``reqs`` in one call: ``(replies, cut at the token bound, seconds)``."""
    t = time.monotonic()
    comps = teacher.generate([r for _, r in reqs])
    replies = [c.text if not c.error else "" for c in comps]
    cut = [c.completion_tokens >= r.max_tokens for (_, r), c in zip(reqs, comps)]
    return replies, cut, time.monotonic() - t


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", default="transformers:embedded", help="teacher spec (as lab generate --teacher)")
    ap.add_argument("--budget", default="small", help="tiny | small | full | requests per leaf (a number)")
    ap.add_argument("--corpus-leaves", type=int, default=6, help="corpus leaves added to this repo's")
    ap.add_argument("--k", type=int, default=2, help="a leaf is covered with at least k attributed instructions")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="also write the result as markdown here")
    args = ap.parse_args(argv)
    cfg = Config()
    leaves = pick_leaves(args.corpus_leaves, args.seed)
    if args.budget == "tiny":
        leaves, per_leaf = leaves[:4], 1
    else:
        per_leaf = BUDGETS.get(args.budget) or int(args.budget)
    tax = taxonomy_requests(leaves, per_leaf, cfg)
    rnd = self_instruct_requests(leaves, len(tax), cfg, args.seed)
    seeds = [(leaf.path, s.question) for leaf in leaves for s in leaf.seed_examples if s.question]
    teacher = make_teacher(args.teacher, cfg.cache_dir, workers=cfg.generate.workers, batch_size=cfg.generate.batch_size)
    print(f"teacher {teacher.name}; {len(leaves)} leaves, {len(seeds)} seed questions; "
          f"{len(tax)} requests per way ({cfg.generate.questions_per_request} instructions asked per request)",
          flush=True)
    results = []
    for name, reqs in (("taxonomy", tax), ("self-instruct", rnd)):
        replies, cut, secs = run_way(teacher, reqs)
        kept = accept(replies, [q for _, q in seeds], cfg, cut)
        results.append(measure(name, kept, len(reqs), seeds, leaves, args.k, secs))
        print(f"  {name}: {secs:.0f} s", flush=True)
    lines = ["| way | requests | accepted | accepted / request | leaves with >= "
             f"{args.k} attributed | distinct-1 | distinct-2 | mean pairwise ROUGE-L | seconds |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['way']} | {r['requests']} | {r['accepted']} | {r['per_request']:.2f} | "
                     f"{r['covered']} / {r['leaves']} | {r['distinct_1']:.3f} | {r['distinct_2']:.3f} | "
                     f"{r['pairwise_sim']:.3f} | {r['seconds']:.0f} |")
    lines += ["", "attributed instructions per leaf (taxonomy / self-instruct):"]
    lines += [f"- `{p}`: {results[0]['counts'][p]} / {results[1]['counts'][p]}" for p in results[0]["counts"]]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"teacher `{teacher.name}`, budget {args.budget}, k={args.k}\n\n{text}\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Throughput of the synthetic-comparison stage (lab_tools/feedback/comparisons.py) on CPU.

Runs SDG (embedded teacher, this repository's lab.yaml settings; cached in the user cache) on a
few leaves of the taxonomy for the prompts, then the comparison stage with the CPU preset
(leaf 3-shot + system > HHH 1-shot > raw 0-shot) on a fresh comparison cache, and prints:
pairs per minute, responses per minute, generated tokens per second, and the share of the stage's
wall time spent inside the teacher's ``generate`` vs our own code (prompt building, pairing,
filters, checkpoints, output files). Model loading is timed apart (once per build).

    .venv/bin/python bench/comparisons_throughput.py --leaves 3 --prompts 4 --max-new-tokens 64
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--taxonomy", default=str(REPO / "taxonomy"))
    ap.add_argument("--leaves", type=int, default=3, help="first N skills leaves (sorted)")
    ap.add_argument("--prompts", type=int, default=4, help="feedback.prompts_per_leaf")
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--json", default=None, help="also write the numbers to this file")
    args = ap.parse_args()

    from lab_tools.progress import quiet_libraries
    from lab_tools.config import load_config
    from lab_tools.feedback.comparisons import generate_comparisons
    from lab_tools.sdg.backends import make_teacher
    from lab_tools.sdg.pipeline import generate_dataset
    from lab_tools.taxonomy.leaf import iter_leaf_paths

    quiet_libraries()
    cfg = load_config(args.taxonomy)
    cfg.feedback.enabled = True
    cfg.feedback.configurations, cfg.feedback.rubric, cfg.feedback.preset = [], [], "cpu"
    cfg.feedback.prompts_per_leaf, cfg.feedback.max_new_tokens = args.prompts, args.max_new_tokens
    leaves = [p for p in iter_leaf_paths(args.taxonomy) if not p.startswith("knowledge")][:args.leaves]
    t = time.monotonic()
    teacher = make_teacher(cfg.generate.teacher, cfg.cache_path, batch_size=cfg.feedback.batch_size)
    load_s = time.monotonic() - t
    with tempfile.TemporaryDirectory(prefix="bench-cmp-") as tmp:
        data = Path(tmp) / "data"
        t = time.monotonic()
        generate_dataset(args.taxonomy, leaves, data, cfg, teacher=teacher, judge=teacher, progress=False)
        sdg_s = time.monotonic() - t
        cfg.cache_dir = str(Path(tmp) / "cache")  # a fresh comparison cache: nothing reused
        rep = generate_comparisons(args.taxonomy, data, cfg, leaf_paths=leaves,
                                   backends={cfg.generate.teacher: teacher}, progress=False, require_pairs=False)
        rows = [json.loads(x) for x in (data / "comparisons.jsonl").read_text().splitlines() if x.strip()]
    responses = sum(s["prompts"] for s in rep.leaves) * len(rep.card["configurations"])
    ours = rep.seconds - rep.generation_seconds
    out = {"leaves": len(leaves), "prompts": sum(s["prompts"] for s in rep.leaves), "responses": responses,
           "pairs": rep.pairs, "dropped": rep.card["dropped"], "per_config_pair": rep.card["per_config_pair"],
           "trimmed": rep.card["trimmed"], "stage_seconds": round(rep.seconds, 1),
           "generation_seconds": round(rep.generation_seconds, 1), "own_code_seconds": round(ours, 2),
           "generation_share": round(rep.generation_seconds / rep.seconds, 4) if rep.seconds else None,
           "pairs_per_minute": round(60 * rep.pairs / rep.seconds, 2) if rep.seconds else None,
           "responses_per_minute": round(60 * responses / rep.seconds, 1) if rep.seconds else None,
           "model_load_seconds": round(load_s, 1), "sdg_seconds": round(sdg_s, 1),
           "max_new_tokens": args.max_new_tokens, "rubric": rep.card["rubric"],
           "example": rows[0] if rows else None}
    print(json.dumps({k: v for k, v in out.items() if k != "example"}, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()

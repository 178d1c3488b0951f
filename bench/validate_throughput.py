"""Validation throughput: `lab taxonomy validate` vs the `instructlab-schema` package, same corpus, same run.

Work per leaf, both sides: read the qna.yaml, parse it, pick the schema for its kind and declared
version, validate, and lint version-2+ files with yamllint (InstructLab's rule and configuration).
- ours: :func:`lab_tools.taxonomy.validate.validate_tree` on each case root (also finds the files,
  checks placement, duplicate keys/questions, word limits);
- peer: ``instructlab.schema.taxonomy.TaxonomyParser(schema_version=0).parse(path)``, the validator
  InstructLab's own CLI uses (PyYAML load, JSON Schema via referencing, yamllint as a subprocess;
  its per-error `yq` subprocess for line numbers is switched off, to the peer's advantage).

Prints leaves/second for each (median of --repeat runs, interleaved) and the ratio (goal >= 10x),
plus the verdict agreement of each with the corpus manifest.

    .venv/bin/python bench/validate_throughput.py [--corpus DIR] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_CORPUS = REPO.parent / "shared" / "corpus" / "instructlab-taxonomy"


def run_ours(cases: list[tuple[Path, Path]]) -> dict[str, bool]:
    from lab_tools.taxonomy.validate import has_errors, validate_tree

    return {str(f): not has_errors(validate_tree(root)) for root, f in cases}


def run_peer(cases: list[tuple[Path, Path]]) -> dict[str, bool]:
    from instructlab.schema.taxonomy import TaxonomyParser, TaxonomyReadingException

    parser = TaxonomyParser(schema_version=0, message_format="logging")
    # Its error line numbers come from one `yq` subprocess per schema error; switch that off so
    # the peer is measured at its fastest (and no stray `yq` on PATH is needed).
    parser.yq_available = False
    out = {}
    for _, f in cases:
        try:
            out[str(f)] = parser.parse(f).errors == 0
        except TaxonomyReadingException:
            out[str(f)] = False
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    manifest = json.loads((args.corpus / "manifest.json").read_text())
    cases = [(args.corpus / "cases" / r["case"], args.corpus / "cases" / r["case"] / r["path"]) for r in manifest]
    expected = {str(f): r["valid"] for (_, f), r in zip(cases, manifest)}
    # the peer shells out to `yamllint`: make the venv's copy findable, as in an activated venv
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    logging.getLogger("instructlab.schema").setLevel(logging.CRITICAL)

    times: dict[str, list[float]] = {"lab-tools": [], "instructlab-schema": []}
    verdicts = {}
    for _ in range(args.repeat):
        for name, fn in (("lab-tools", run_ours), ("instructlab-schema", run_peer)):
            t0 = time.perf_counter()
            verdicts[name] = fn(cases)
            times[name].append(time.perf_counter() - t0)

    n = len(cases)
    rates = {k: n / statistics.median(v) for k, v in times.items()}
    for name in times:
        agree = sum(verdicts[name][f] == v for f, v in expected.items())
        print(f"{name:>20}: {rates[name]:8.1f} leaves/s  (median of {args.repeat} runs over {n} leaves; "
              f"agrees with manifest on {agree}/{n} = {100 * agree / n:.1f}%)")
    ratio = rates["lab-tools"] / rates["instructlab-schema"]
    print(f"{'ratio':>20}: {ratio:8.1f}x  (goal >= 10x)")


if __name__ == "__main__":
    main()

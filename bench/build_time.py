"""The main job's wall time and stage table: runs `make build` (install from the lock if needed,
then `lab build taxonomy --preset tiny-cpu --out runs/main`) and writes what it took.

Reads `runs/main/build_state.json` afterwards (each stage's seconds and one-line summary, as the
build table prints them) and the peak resident memory of the build's processes
(`getrusage(RUSAGE_CHILDREN).ru_maxrss`: the largest single process, not the sum). Writes
`bench/results/build-cpu.md`; README's build table is copied from that file.

This is a report, not a speed comparison: no peer runs the same job. A run counts only on a
quiet machine (nothing else heavy running); the file records the load average before and after.

Usage: python bench/build_time.py [--out runs/main] [--clean]   (--clean: remove OUT first, so
every stage runs; the SDG and feedback caches under ~/.cache/lab-tools are kept unless
LAB_CACHE_DIR points elsewhere)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/main")
    ap.add_argument("--clean", action="store_true")
    ap.add_argument("--result", default=str(REPO / "bench" / "results" / "build-cpu.md"))
    args = ap.parse_args()
    out = REPO / args.out
    if args.clean:
        shutil.rmtree(out, ignore_errors=True)
    load_before = os.getloadavg()
    t0 = time.monotonic()
    proc = subprocess.run(["make", "build"], cwd=REPO)
    wall = time.monotonic() - t0
    load_after = os.getloadavg()
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 ** 2  # KiB -> GiB
    state = json.loads((out / "build_state.json").read_text()) if (out / "build_state.json").is_file() else {}
    stages = state.get("stages", {})
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True).stdout.strip()
    lines = [
        "# `make build` on this machine",
        "",
        f"`python bench/build_time.py{' --clean' if args.clean else ''}` at commit {commit}, "
        f"{time.strftime('%Y-%m-%d %H:%M')} ({os.cpu_count()} cores); exit status {proc.returncode}; "
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}.",
        "",
        f"Wall time of `make build`: **{wall:.0f} s** ({wall / 60:.1f} min); peak RSS of one process "
        f"{peak_gb:.1f} GiB.",
        "",
        "| stage | status | seconds | result |",
        "|---|---|---:|---|",
    ]
    for name, st in stages.items():
        summary = str(st.get("summary", st.get("error", ""))).replace("|", "/").replace("\n", " ")
        lines.append(f"| {name} | {st.get('status', '')} | {st.get('seconds', '')} | {summary} |")
    Path(args.result).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    raise SystemExit(proc.returncode)


if __name__ == "__main__":
    main()

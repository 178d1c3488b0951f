"""Fresh-install time of the lock: pip vs uv installing requirements/lock.txt into a new venv.

The lock (requirements/lock.txt, sha256 per file) is installed the way scripts/install.sh does
(`pip install --require-hashes --no-deps -r requirements/lock.txt`) and the way uv would
(`uv pip install --require-hashes --no-deps -r ...`), each into a new virtual environment with
an empty download cache (PIP_NO_CACHE_DIR / uv --no-cache), alternating, REPEATS times each.
torch is not part of the lock (install.sh installs the CPU build first) and is left out of both.
Prints the median seconds of each and the ratio pip/uv, and writes bench/results/install.md.

Usage: python bench/install_time.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements" / "lock.txt"


def one(tool: str, work: Path) -> float:
    venv = work / f"venv-{tool}"
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    env = dict(os.environ, PIP_NO_CACHE_DIR="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    if tool == "pip":
        cmd = [str(py), "-m", "pip", "install", "-q", "--require-hashes", "--no-deps", "-r", str(LOCK)]
    else:
        cmd = [shutil.which("uv") or "uv", "pip", "install", "-q", "--no-cache", "--python", str(py),
               "--require-hashes", "--no-deps", "-r", str(LOCK)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env)
    dt = time.perf_counter() - t0
    shutil.rmtree(venv, ignore_errors=True)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if shutil.which("uv") is None:
        raise SystemExit("uv is not installed (pip install uv)")
    times: dict[str, list[float]] = {"pip": [], "uv": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            for tool in ("pip", "uv"):
                dt = one(tool, Path(tmp))
                times[tool].append(dt)
                print(f"repeat {i + 1}/{args.repeats} {tool}: {dt:.1f} s", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    n = sum(1 for line in LOCK.read_text().splitlines() if "==" in line and not line.startswith("#"))
    load = os.getloadavg()[0]
    lines = [
        "# Fresh install of the lock: pip vs uv",
        "",
        f"`python bench/install_time.py --repeats {args.repeats}` on {time.strftime('%Y-%m-%d %H:%M')} "
        f"({os.cpu_count()} cores; load average at the end {load:.2f}); {n} pinned packages of "
        "`requirements/lock.txt`, `--require-hashes --no-deps`, new venv and empty cache each time, "
        "torch excluded (installed first from the CPU wheel by both ways).",
        "",
        "| installer | median s | runs (s) |",
        "|---|---:|---|",
        *[f"| {k} | {med[k]:.1f} | {', '.join(f'{x:.1f}' for x in v)} |" for k, v in times.items()],
        "",
        f"pip / uv: **{med['pip'] / med['uv']:.2f}x**",
    ]
    out = REPO / "bench" / "results" / "install.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""How long a reviewer waits for the bot: `lab bot preview --pr 0 --dry-run` on a pull request that
changes one skill leaf, at this repository's settings (`lab.yaml`: the embedded teacher,
`bot.samples`), timed end to end (process start, validation, license check, generation, the
comment). Issue 26's goal: within 60 s on 2 cores.

Each repeat clones this repository's taxonomy into a temporary git repository, edits the leaf's
`task_description` and its first seed question with the repeat's number and a timestamp (a new
leaf hash and new prompts, so the SDG cache never answers) and commits it, then runs the preview against the parent commit. The model caches under
``~/.cache/lab-tools`` (or ``$LAB_CACHE_DIR``) stay warm, as on a self-hosted runner.

``--code DIR`` runs another checkout's ``lab_tools`` (e.g. a ``git worktree`` of an older commit)
with this virtual environment: before and after in one run. Writes a markdown table (median, min,
max of the repeats; n) to ``--result``. A figure counts only from a quiet machine; the file records
the load average before and after.

Usage: python bench/preview_time.py [--code DIR ...] [--repeats 5] [--leaf PATH] [--result FILE]
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
LEAF = "compositional_skills/writing/freeform/stories/fables/qna.yaml"


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def pr_checkout(tmp: Path, leaf: str, repeat: int) -> tuple[Path, str]:
    """A git repository holding this repository's taxonomy and lab.yaml (base commit) plus one
    commit that edits ``leaf``; returns (repository, base sha)."""
    repo = tmp / "pr"
    shutil.copytree(REPO / "taxonomy", repo / "taxonomy")
    shutil.copy(REPO / "lab.yaml", repo / "lab.yaml")
    _git(repo, "init", "-q")
    _git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "add", "-A")
    _git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qm", "base")
    base = _git(repo, "rev-parse", "HEAD")
    path = repo / "taxonomy" / leaf
    text = path.read_text()
    marker = "task_description: |\n"
    if marker not in text:
        raise SystemExit(f"{path}: no block task_description to edit")
    text = text.replace(marker, marker + f"  Preview timing run {repeat}.\n", 1)
    # and the first seed question, which the teacher's prompts quote: no prompt of this repeat was
    # ever seen by the SDG cache (per-request entries), whichever code ran before
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines[:-1]):
        if line.strip() == "- question: |":
            lines[i + 1] = lines[i + 1].rstrip("\n") + f" (timing run {repeat}, {time.time_ns()})\n"
            break
    else:
        raise SystemExit(f"{path}: no block seed question to edit")
    path.write_text("".join(lines))
    _git(repo, "-c", "user.name=bench", "-c", "user.email=bench@example.com", "commit", "-qam", "edit leaf")
    return repo, base


def one_preview(code: Path, leaf: str, repeat: int) -> float:
    """Seconds of one `lab bot preview --pr 0 --dry-run` run with ``code``'s lab_tools."""
    with tempfile.TemporaryDirectory(prefix="lab-preview-bench-") as tmp:
        repo, base = pr_checkout(Path(tmp), leaf, repeat)
        env = dict(os.environ, PYTHONPATH=str(code), LAB_PROGRESS_INTERVAL="30")
        cmd = [sys.executable, "-m", "lab_tools", "bot", "preview", "--pr", "0", "--dry-run",
               "--taxonomy", "taxonomy", "--base", base, "--config", "lab.yaml"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
            raise SystemExit(f"preview failed with {code} (exit {proc.returncode})")
        summary = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("lab bot:")]
        if not summary:  # the preview must have run: an empty diff or a no-op must not time as a fast one
            raise SystemExit(f"no 'lab bot:' summary line from {code}: the preview did not run")
        print(f"  {code.name or code}: repeat {repeat}: {seconds:.1f} s  {summary[-1][:160]}", flush=True)
        return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--code", action="append", default=[], help="checkout whose lab_tools runs (repeatable)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--leaf", default=LEAF)
    ap.add_argument("--result", default=str(REPO / "bench" / "results" / "preview-cpu.md"))
    args = ap.parse_args()
    codes = [Path(c).resolve() for c in args.code] or [REPO]
    load_before = os.getloadavg()
    rows = []
    for code in codes:
        commit = _git(code, "rev-parse", "--short", "HEAD")
        dirty = " (+ uncommitted changes)" if _git(code, "status", "--porcelain", "--", "lab_tools") else ""
        one_preview(code, args.leaf, 0)  # warm-up: model caches, page cache (not timed)
        times = [one_preview(code, args.leaf, r) for r in range(1, args.repeats + 1)]
        rows.append((f"{commit}{dirty}", times))
    load_after = os.getloadavg()
    lines = ["# Bot preview time (one changed skill leaf, `lab bot preview --pr 0 --dry-run`)", "",
             f"Command: `python bench/preview_time.py {' '.join(sys.argv[1:])}`; leaf `{args.leaf}`; "
             f"{os.cpu_count()} cores; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}.",
             "", "| code | n | median s | min s | max s |", "|---|---:|---:|---:|---:|"]
    for name, times in rows:
        lines.append(f"| {name} | {len(times)} | {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} |")
    if len(rows) == 2:
        ratio = statistics.median(rows[0][1]) / statistics.median(rows[1][1])
        lines += ["", f"Ratio (first / second, medians): {ratio:.2f}x"]
    Path(args.result).parent.mkdir(parents=True, exist_ok=True)
    Path(args.result).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

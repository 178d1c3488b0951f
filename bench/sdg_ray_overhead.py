"""SDG engine overhead: leaves/minute of `lab generate --engine ray` vs the local engine, same run.

Both engines run the same skills leaves (copies of the test taxonomy's skills under distinct
names) with the scripted teacher, each into its own empty cache, on this machine: the Ray engine
on a local cluster of ``--cpus`` CPUs (one leaf task per CPU at a time, each worker with its own
teacher), the local engine in this process. Two teacher settings:

- no delay: the teacher answers instantly, so the figure is the engines' own cost (Ray: task
  submission, pickling the leaf, worker start-up and result transfer);
- ``--delay`` seconds per request: a teacher with latency, where Ray's workers overlap requests.

The cluster start (``ray.init``) is timed apart and not in leaves/minute: the engine is meant for
a running cluster. Run: ``.venv/bin/python bench/sdg_ray_overhead.py [--leaves 8] [--cpus 2]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def write_taxonomy(root: Path, n: int) -> None:
    """``n`` skills leaves: the test taxonomy's skills, copied under distinct paths."""
    sys.path.insert(0, str(REPO / "tests" / "sdg"))
    from sdg_taxonomy import LEAVES, write_leaf

    skills = [(p, d) for p, d in LEAVES.items() if not p.startswith("knowledge")]
    for i in range(n):
        path, data = skills[i % len(skills)]
        write_leaf(root, f"{path}_{i}", dict(data, task_description=f"{data['task_description']} ({i})"))


def run(engine: str, root: Path, work: Path, teacher: str, samples: int) -> float:
    """Seconds for one `generate_dataset` over every leaf of ``root`` with an empty cache."""
    from lab_tools.config import Config
    from lab_tools.sdg.pipeline import generate_dataset

    cfg = Config(cache_dir=str(work / f"cache-{engine}-{time.monotonic_ns()}"))
    cfg.generate.teacher, cfg.generate.samples = teacher, samples
    t = time.perf_counter()
    rep = generate_dataset(root, None, work / f"out-{engine}", cfg, progress=False, engine=engine)
    dt = time.perf_counter() - t
    assert all(s.error is None and not s.cached for s in rep.leaves), [s.error for s in rep.leaves]
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--leaves", type=int, default=8)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray cluster")
    ap.add_argument("--samples", type=int, default=4, help="samples per leaf")
    ap.add_argument("--delay", type=float, default=0.02, help="teacher latency, seconds per request")
    args = ap.parse_args()
    import ray

    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        root = work / "taxonomy"
        write_taxonomy(root, args.leaves)
        script = work / "delay.json"
        script.write_text(json.dumps({"delay": args.delay}))
        t = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False)
        start = time.perf_counter() - t
        run("ray", root, work, "scripted:", args.samples)  # warm-up: starts the worker processes
        run("local", root, work, "scripted:", args.samples)  # warm-up: the same imports and caches
        rows = []
        for label, teacher in (("no delay", "scripted:"), (f"{args.delay * 1000:.0f} ms/request", f"scripted:{script}")):
            local = run("local", root, work, teacher, args.samples)
            on_ray = run("ray", root, work, teacher, args.samples)
            rows.append((label, local, on_ray))
        ray.shutdown()
    print(f"{args.leaves} skills leaves, {args.samples} samples each, scripted teacher; "
          f"Ray: local cluster of {args.cpus} CPUs (started in {start:.1f} s, not counted)")
    print(f"{'teacher':<18}{'local leaves/min':>18}{'ray leaves/min':>16}{'ray/local':>11}")
    for label, local, on_ray in rows:
        lpm, rpm = args.leaves * 60 / local, args.leaves * 60 / on_ray
        print(f"{label:<18}{lpm:>18.1f}{rpm:>16.1f}{rpm / lpm:>10.2f}x")


if __name__ == "__main__":
    main()

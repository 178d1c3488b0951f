"""The Ray SDG engine on a local 2-CPU Ray cluster: same phase files as the local engine for the
same seed, and a worker killed mid-leaf is retried without a lost or duplicated sample."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from lab_tools.config import Config  # noqa: E402
from lab_tools.sdg.pipeline import generate_dataset  # noqa: E402
from lab_tools.sdg.ray_engine import pool_specs  # noqa: E402

FILES = ("kt1.jsonl", "kt2.jsonl", "st.jsonl", "rejected.jsonl")


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster with 2 CPUs for the module (its start costs seconds)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _cfg(cache: Path, teacher: str, **generate) -> Config:
    c = Config(cache_dir=str(cache))
    c.generate.teacher = teacher
    c.generate.samples = 3
    c.generate.chunk_tokens = 40
    c.generate.chunk_overlap = 8
    c.generate.kt_split_tokens = 30
    for k, v in generate.items():
        setattr(c.generate, k, v)
    return c


def _files(out: Path) -> dict:
    return {name: (out / name).read_text() for name in FILES}


def _both(taxonomy, tmp_path, teacher: str, **generate):
    local = generate_dataset(taxonomy, None, tmp_path / "local", _cfg(tmp_path / "c1", teacher, **generate),
                             progress=False)
    on_ray = generate_dataset(taxonomy, None, tmp_path / "ray", _cfg(tmp_path / "c2", teacher, **generate),
                              progress=False, engine="ray")
    return local, on_ray


def test_scripted_teacher_ray_equals_local(cluster, taxonomy, fake_documents, tmp_path):
    local, on_ray = _both(taxonomy, tmp_path, "scripted:")
    assert sum(local.phases.values()) > 0 and local.phases == on_ray.phases
    assert all(s.error is None and not s.cached for s in on_ray.leaves)
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    # the Ray workers wrote the same content-addressed shards (same keys) into their cache
    shards = lambda c: sorted(p.relative_to(c).as_posix() for p in c.rglob("shard.json"))  # noqa: E731
    assert shards(tmp_path / "c2" / "sdg") == shards(tmp_path / "c1" / "sdg") != []
    # a second run (e.g. after the driver was killed) reuses them all
    again = generate_dataset(taxonomy, None, tmp_path / "ray2", _cfg(tmp_path / "c2", "scripted:"),
                             progress=False, engine="ray")
    assert all(s.cached for s in again.leaves) and _files(tmp_path / "ray2") == _files(tmp_path / "ray")


def test_tiny_transformers_teacher_ray_equals_local(cluster, taxonomy, fake_documents, tiny_model,
                                                    tmp_path):
    # batch_size 1: the transformers backend seeds sampling per batch (from the seeds of the
    # requests in it), so equal texts need equal batches; the local engine batches across
    # leaves, the Ray engine within one leaf. With one request per batch both are the same.
    # engine "transformers": that per-batch seeding is the reference backend's (generate.engine
    # "auto" picks CTranslate2 on a CPU, which seeds once per call, over every batch in it).
    local, on_ray = _both(taxonomy, tmp_path, f"transformers:{tiny_model}", batch_size=1,
                          max_new_tokens=24, samples=2, engine="transformers")
    assert [s.leaf for s in on_ray.leaves] == [s.leaf for s in local.leaves]
    assert all(s.error is None for s in on_ray.leaves)
    assert sum(s.generated for s in on_ray.leaves) > 0
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")


def _kill_one_leaf_worker(cache: Path, killed: list, stop: threading.Event) -> None:
    """Wait until some leaf has a stage checkpoint but no shard (mid-leaf), then SIGKILL the Ray
    worker process running a leaf task (its process title is ``ray::lab_sdg_leaf``)."""
    import psutil

    while not stop.is_set():
        mid = [d for d in cache.rglob("stage-0.json") if not (d.parent / "shard.json").exists()]
        if mid:
            for p in psutil.process_iter(["cmdline"]):
                if any("lab_sdg_leaf" in part for part in (p.info["cmdline"] or [])):
                    p.kill()
                    killed.append(p.pid)
                    return
        time.sleep(0.01)


def test_worker_killed_mid_leaf_is_retried_without_lost_or_duplicated_samples(
        cluster, taxonomy, fake_documents, tmp_path):
    script = tmp_path / "slow.json"
    script.write_text(json.dumps({"delay": 0.05}))  # each leaf takes about a second
    generate_dataset(taxonomy, None, tmp_path / "local", _cfg(tmp_path / "c1", f"scripted:{script}"),
                     progress=False)
    killed, stop = [], threading.Event()
    killer = threading.Thread(target=_kill_one_leaf_worker, args=(tmp_path / "c2", killed, stop))
    killer.start()
    try:
        rep = generate_dataset(taxonomy, None, tmp_path / "ray", _cfg(tmp_path / "c2", f"scripted:{script}"),
                               progress=False, engine="ray")
    finally:
        stop.set()
        killer.join()
    assert len(killed) == 1  # a worker really died mid-leaf
    assert all(s.error is None for s in rep.leaves)  # ... and its leaf was retried
    assert _files(tmp_path / "ray") == _files(tmp_path / "local")
    ids = [json.loads(line)["metadata"]["id"] for name in ("kt1.jsonl", "kt2.jsonl", "st.jsonl")
           for line in (tmp_path / "ray" / name).read_text().splitlines()]
    assert ids and len(ids) == len(set(ids))


def test_endpoint_pool_spec_splits_into_one_spec_per_endpoint():
    assert pool_specs("openai:http://a:8000/v1,http://b:8000/v1#m") == \
        ["openai:http://a:8000/v1#m", "openai:http://b:8000/v1#m"]
    assert pool_specs("openai:http://a:8000/v1#m") == ["openai:http://a:8000/v1#m"]
    assert pool_specs("transformers:embedded") == ["transformers:embedded"]


def test_cli_engine_ray_runs_and_address_needs_it(run_lab, cluster, taxonomy, fake_documents,
                                                  tmp_path, monkeypatch):
    cfg = tmp_path / "lab.yaml"
    cfg.write_text(f"cache_dir: {tmp_path / 'cache'}\ngenerate:\n  samples: 2\n")
    code, cap = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--out", str(tmp_path / "o"),
                         "--config", str(cfg), "--quiet", "--address", "auto"])
    assert code != 0 and "--engine ray" in cap.err
    code, cap = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--out", str(tmp_path / "o"),
                         "--config", str(cfg), "--quiet", "--engine", "ray"])
    assert code == 0, cap.err
    assert (tmp_path / "o" / "st.jsonl").read_text()

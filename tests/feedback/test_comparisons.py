"""The comparison stage of `lab generate` with the scripted teacher: TRL format and provenance,
drops with reasons, kill -9 and resume, `--leaves changed`, loud failures."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from lab_tools.jsonl import read_jsonl
from tests.sdg.sdg_taxonomy import LEAVES, write_leaf

REPO = Path(__file__).resolve().parents[2]
SKILLS = [p for p in LEAVES if not p.startswith("knowledge")]
CONFIGS = [{"name": "leaf-2shot", "model": "teacher", "demonstrations": "leaf", "shots": 2, "system": "Be helpful."},
           {"name": "hhh-1shot", "model": "teacher", "demonstrations": "hhh", "shots": 1},
           {"name": "raw-0shot", "model": "teacher", "demonstrations": "none", "format": "raw"}]


def _setup(tmp_path: Path, script: dict, name: str = "run") -> tuple[Path, list[str]]:
    root = tmp_path / "taxonomy"
    if not root.exists():
        for p in SKILLS:
            write_leaf(root, p, LEAVES[p])
    (tmp_path / f"{name}.json").write_text(json.dumps(script))
    conf = {"cache_dir": str(tmp_path / f"{name}-cache"), "generate": {"samples": 4},
            "feedback": {"enabled": True, "configurations": CONFIGS, "prompts_per_leaf": 4, "min_chars": 20,
                         "batch_size": 2}}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(conf))
    args = ["generate", str(root), "--teacher", f"scripted:{tmp_path / f'{name}.json'}", "--out",
            str(tmp_path / f"{name}-out"), "--config", str(tmp_path / f"{name}.yaml"), "--quiet"]
    return root, args


def _rows(out: Path) -> list[str]:
    return [json.dumps(r, sort_keys=True) for r in read_jsonl(out / "comparisons.jsonl")]


# raw 0-shot prompts (they hold "Human:") get an empty reply half of the time: invalid, never "rejected"
SCRIPT = {"feedback": [{"match": "Human:", "reply": ["", "__default__"]}]}


def test_comparisons_in_trl_format_with_provenance(tmp_path, run_lab):
    from trl.data_utils import is_conversational

    root, args = _setup(tmp_path, SCRIPT)
    code, cap = run_lab(args)
    assert code == 0, cap.err + cap.out
    out = tmp_path / "run-out"
    rows = read_jsonl(out / "comparisons.jsonl")
    assert rows
    ranks = {c["name"]: i for i, c in enumerate(CONFIGS)}
    generated = {s["messages"][0]["content"] for p in ("kt1", "kt2", "st") for s in read_jsonl(out / f"{p}.jsonl")}
    seeds = {e["question"] for p in SKILLS for e in LEAVES[p]["seed_examples"]}
    for r in rows:
        assert is_conversational(r)
        assert [m["role"] for m in r["prompt"]] == ["user"]
        assert [m["role"] for m in r["chosen"]] == [m["role"] for m in r["rejected"]] == ["assistant"]
        md = r["metadata"]
        assert md["leaf"] in SKILLS and len(md["leaf_hash"]) == 64
        assert md["ranks"]["chosen"] < md["ranks"]["rejected"]
        assert ranks[md["chosen_config"]] == md["ranks"]["chosen"]
        assert r["chosen"][0]["content"].strip() and r["rejected"][0]["content"].strip()
        assert r["prompt"][0]["content"] in generated and r["prompt"][0]["content"] not in seeds
        assert md["filters"]["length_rule"] == "pass"
    ids = [r["metadata"]["id"] for r in rows]
    assert len(ids) == len(set(ids))
    dropped = read_jsonl(out / "comparisons_rejected.jsonl")
    empties = [d for d in dropped if d.get("reason") == "empty"]
    assert empties and all(d["config"] == "raw-0shot" for d in empties)
    # an invalid response is never "rejected": no kept pair holds an empty raw reply
    assert not [r for r in rows if r["metadata"]["rejected_config"] == "raw-0shot" and not r["rejected"][0]["content"]]
    card = json.loads((out / "dataset_card.json").read_text())["feedback"]
    assert card["pairs"] == len(rows) == sum(card["per_leaf"].values()) == sum(card["per_config_pair"].values())
    assert card["dropped"]["empty"] == len(empties)
    assert "## Synthetic comparisons" in (out / "README.md").read_text()
    assert "synthetic comparisons" in cap.out


def _wait_for(pattern: str, where: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not list(where.rglob(pattern)) and time.monotonic() < deadline:
        time.sleep(0.01)


def test_kill_9_mid_stage_then_resume(tmp_path):
    import shutil

    env = dict(os.environ, PYTHONPATH=str(REPO))
    _, args = _setup(tmp_path, dict(SCRIPT, delay=0.02))
    cmd = [sys.executable, "-m", "lab_tools", *args]
    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=180)
    out, cache = tmp_path / "run-out", tmp_path / "run-cache" / "feedback"
    reference = _rows(out)
    assert reference
    # again from the same SDG data (cached), without the comparisons: killed mid-stage, then resumed
    shutil.rmtree(cache)
    (out / "comparisons.jsonl").unlink()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for("stage-0.json", cache)  # the first leaf has the first configuration's responses
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    assert list(cache.rglob("stage-0.json")) and not list(cache.rglob("shard.json"))  # killed mid-stage
    assert not (out / "comparisons.jsonl").exists()

    subprocess.run(cmd, env=env, check=True, capture_output=True, timeout=180)
    resumed = _rows(out)
    assert len(resumed) == len(set(resumed))  # no duplicate pair
    assert sorted(resumed) == sorted(reference)  # none lost, none different


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.org", *args], cwd=cwd, check=True,
                   capture_output=True)


def test_leaves_changed_regenerates_only_changed_leaves(tmp_path, run_lab):
    root, args = _setup(tmp_path, SCRIPT)
    _git(tmp_path, "init", "-q", "-b", "main")
    _git(tmp_path, "add", "taxonomy")
    _git(tmp_path, "commit", "-q", "-m", "taxonomy")
    code, cap = run_lab(args)
    assert code == 0, cap.err
    out = tmp_path / "run-out"
    before = {r["metadata"]["leaf"]: [] for r in read_jsonl(out / "comparisons.jsonl")}
    for r in read_jsonl(out / "comparisons.jsonl"):
        before[r["metadata"]["leaf"]].append(json.dumps(r, sort_keys=True))
    shards = set((tmp_path / "run-cache" / "feedback").rglob("shard.json"))

    changed = SKILLS[0]
    data = dict(LEAVES[changed], task_description="Write a haiku about the weather.")
    write_leaf(root, changed, data)
    code, cap = run_lab([*args, "--leaves", "changed", "--base", "main"])
    assert code == 0, cap.err
    card = json.loads((out / "dataset_card.json").read_text())["feedback"]
    cached = {leaf["leaf"]: leaf["cached"] for leaf in card["leaves"]}
    assert cached[changed] is False and all(v for p, v in cached.items() if p != changed)
    new_shards = set((tmp_path / "run-cache" / "feedback").rglob("shard.json")) - shards
    assert len(new_shards) == 1  # one leaf regenerated
    after: dict[str, list[str]] = {}
    for r in read_jsonl(out / "comparisons.jsonl"):
        after.setdefault(r["metadata"]["leaf"], []).append(json.dumps(r, sort_keys=True))
    unchanged = [p for p in before if p != changed]
    assert unchanged and changed in after
    for p in unchanged:
        assert after[p] == before[p]  # unchanged leaves: the very same pairs, from the cache


@pytest.mark.parametrize("script,message", [
    ({"feedback": [{"reply": "__error__"}]}, "teacher failed"),
    ({"feedback": [{"reply": ""}]}, "no pair survived"),
])
def test_stage_fails_loudly(tmp_path, run_lab, script, message):
    _, args = _setup(tmp_path, script)
    code, cap = run_lab(args)
    assert code != 0
    assert message in cap.err + cap.out
    assert "Traceback" not in cap.err
    if message == "teacher failed":
        assert not list((tmp_path / "run-cache" / "feedback").rglob("shard.json"))  # never cached as done

"""The held-out MC items as a local lm-evaluation-harness task: `lab evaluate --lm-eval lab_heldout`
runs lm-eval (offline, in a child process) on the task `lab evaluate` wrote, and its ``acc`` equals
our ``acc_sum`` on the same items, item for item, with the same standard error; a task whose data
are not on this machine is a clean error naming it."""

from __future__ import annotations

import json

import pytest
import yaml

pytest.importorskip("lm_eval", reason="lm-evaluation-harness (the lm-eval extra) is not installed")

LEAVES = ("knowledge/a", "knowledge/b", "knowledge/c")
ANSWERS = ["Honey bees live in colonies with one queen.", "Drones are male bees.",
           "Workers forage for nectar and pollen over several kilometres every day.",
           "The queen lays eggs.", "Bees communicate with a waggle dance that points to food.",
           "Wax comes from glands under the abdomen of young workers."]


def _data(tmp_path):
    """``heldout_mc.jsonl`` with 8 items per leaf (4 choices of different lengths each)."""
    rows = []
    for li, leaf in enumerate(LEAVES):
        for k in range(8):
            choices = [ANSWERS[(li + k + j) % len(ANSWERS)] for j in range(4)]
            rows.append({"leaf": leaf, "question": f"Question {li}-{k}: what do bees do?", "choices": choices,
                         "answer": (k + li) % 4})
    d = tmp_path / "data"
    d.mkdir()
    (d / "heldout_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d


def test_lm_eval_on_the_local_task_equals_our_score(tmp_path, tiny_model, run_lab, monkeypatch):
    monkeypatch.setenv("LAB_GENERATE__ENGINE", "transformers")  # float32 PyTorch, as lm-eval's hf model
    out = tmp_path / "eval"
    code, cap = run_lab(["evaluate", "--model", str(tiny_model), "--data", str(_data(tmp_path)), "--out", str(out),
                         "--judge", "none", "--lm-eval", "lab_heldout", "--quiet"])
    assert code == 0, cap.err
    ev = json.loads((out / "eval.json").read_text())
    ours = ev["trained"]["knowledge"]["acc_sum"]
    task = ev["lm_eval_task"]
    assert task["n"] == ours["n"] == ev["trained"]["knowledge"]["n"] and task["engine"] == "transformers"

    # the task files: YAML + JSONL of exactly the items scored (the test part)
    config = yaml.safe_load((out / "lm_eval" / "lab_heldout.yaml").read_text())
    assert config["task"] == "lab_heldout" and config["output_type"] == "multiple_choice"
    docs = [json.loads(line) for line in (out / "lm_eval" / "lab_heldout.jsonl").read_text().splitlines()]
    assert [(d["question"], d["answer"]) for d in docs] == [(i["question"], i["answer"])
                                                            for i in ev["trained"]["knowledge"]["items"]]

    harness = ev["lm_eval"]["models"]["trained"]
    acc = harness["results"]["lab_heldout"]["metrics"]["acc"]
    assert harness["results"]["lab_heldout"]["n"] == ours["n"]
    assert acc["value"] == pytest.approx(ours["accuracy"])
    assert acc["stderr"] == pytest.approx(ours["stderr"])
    assert acc["interval"] == ours["interval"]
    # item for item, not only in total
    raw = json.loads((out / "lm_eval" / "results" / "trained.json").read_text())
    per_doc = {s["doc_id"]: bool(s["acc"]) for s in raw["samples"]["lab_heldout"]}
    assert [per_doc[d["id"]] for d in docs] == ours["correct"]
    assert "--include_path" in harness["command"] and "--apply_chat_template" in harness["command"]
    assert f"lm-eval trained lab_heldout acc {acc['value']:.4g}" in cap.out


def test_a_task_without_local_data_is_a_clean_error(tmp_path, tiny_model, run_lab, monkeypatch):
    monkeypatch.setenv("LAB_GENERATE__ENGINE", "transformers")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache: arc_easy's data are absent
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf" / "datasets"))
    code, cap = run_lab(["evaluate", "--model", str(tiny_model), "--data", str(_data(tmp_path)), "--out",
                         str(tmp_path / "eval"), "--judge", "none", "--lm-eval", "lab_heldout,arc_easy", "--quiet"])
    assert code == 1 and "Traceback" not in cap.err
    assert "--lm-eval: arc_easy: its data are not on this machine" in cap.err

"""The evaluation flow with the tiny random model and the scripted judge."""

import json

import pytest
from click.testing import CliRunner

from lab_tools.eval import evaluate as ev
from lab_tools.eval.evalset import EvalSet, load_eval_set
from lab_tools.eval.evaluate import evaluate
from lab_tools.markdown import code
from lab_tools.sdg.backends import make_teacher


@pytest.fixture(scope="module")
def evalset(repo_root):
    es = load_eval_set(taxonomy=repo_root / "taxonomy", max_mc=12, max_prompts=4)
    # one multi-turn prompt (MT-Bench style): the second turn refers to the first answer
    es.prompts.append({"leaf": "compositional_skills/multi", "kind": "compositional_skills",
                       "messages": [{"role": "user", "content": "Write a haiku about rain."},
                                    {"role": "user", "content": "Now make it sadder."}],
                       "reference": ""})
    return es


def test_same_model_is_unchanged_everywhere(tiny_model, evalset, judge_spec, tmp_path):
    judge = make_teacher(judge_spec)
    res = evaluate(tiny_model, evalset, tmp_path / "eval", base_model=tiny_model, judge=judge,
                   max_new_tokens=8, progress=False)
    rows = res.report["rows"]
    know_leaves = {i["leaf"] for i in evalset.mc}
    skill_leaves = {p["leaf"] for p in evalset.prompts}
    assert {r["leaf"] for r in rows if r["metric"] == "mc_accuracy"} == know_leaves
    # identical weights and a deterministic judge: no leaf improved or regressed (a change needs
    # its 95% interval to exclude 0; the leaves' few items are mostly too small to decide)
    assert {r["verdict"] for r in rows if r["trained"] is not None} <= {"no measurable change",
                                                                         "too small to decide", "n/a"}
    assert all(r["delta"] in (0.0, None) for r in rows)
    assert res.report["totals"]["knowledge"]["verdict"] in ("no measurable change", "too small to decide")
    assert {r["verdict"] for r in rows if r["trained"] is None} <= {"n/a"}
    k = res.trained["knowledge"]
    assert k["n"] == len(evalset.mc) == sum(v["n"] for v in k["per_leaf"].values())
    assert 0.0 <= k["accuracy"] <= 1.0
    j = res.trained["judge"]
    assert j["n"] + j["unparsed"] == len(evalset.prompts)
    assert {i["score"] for i in j["items"]} <= {4.0, 7.0, None}
    # every prompted leaf has a row, rated or not
    assert set(j["per_leaf"]) == skill_leaves and all(i["explanation"] for i in j["items"])
    assert sum(v["n"] + v["unparsed"] for v in j["per_leaf"].values()) == len(evalset.prompts)
    assert {r["leaf"] for r in rows if r["metric"] == "judge"} == skill_leaves
    multi = next(i for i in j["items"] if i["leaf"] == "compositional_skills/multi")
    assert multi["turns"] == 2 and multi["prompt"] == "Now make it sadder."
    saved = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert saved["report"] == res.report
    md = (tmp_path / "eval" / "branch_report.md").read_text()
    assert all(code(leaf) in md for leaf in know_leaves)


def test_a_judge_that_is_the_model_under_test_is_not_used(tiny_model, evalset, tmp_path):
    judge = make_teacher(f"transformers:{tiny_model}")
    res = evaluate(tiny_model, EvalSet(mc=evalset.mc[:2], prompts=evalset.prompts[:1]), tmp_path,
                   judge=judge, max_new_tokens=4, progress=False)
    assert "is the trained model" in res.report["judge_refused"] and res.trained["judge"] is None
    assert "Judge not used" in (tmp_path / "branch_report.md").read_text()


def test_scores_are_cached_per_model_and_items(tiny_model, evalset, tmp_path, monkeypatch):
    first = evaluate(tiny_model, evalset, tmp_path, base_model=tiny_model, progress=False)
    calls = []
    monkeypatch.setattr(ev, "score_model", lambda *a, **k: calls.append(a) or first.trained)
    evaluate(tiny_model, evalset, tmp_path, base_model=tiny_model, progress=False)
    assert calls == []  # both cached
    fewer = EvalSet(mc=evalset.mc[:3])
    evaluate(tiny_model, fewer, tmp_path, base_model=tiny_model, progress=False)
    assert len(calls) == 2  # other items: both scored again


def test_cli_with_mmlu_file_and_no_judge(tiny_model, repo_root, tmp_path):
    from lab_tools.cli import cli

    mmlu = tmp_path / "dev.csv"
    mmlu.write_text("What is 2+2?,3,4,5,6,B\nWhich is a color?,red,run,rain,rust,A\n", encoding="utf-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["evaluate", "--model", str(tiny_model), "--taxonomy", str(repo_root / "taxonomy"),
                                   "--mmlu", str(mmlu), "--judge", "none", "--max-mc", "6", "--quiet",
                                   "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "eval.json").read_text())
    assert data["trained"]["mmlu"]["n"] == 2 and data["trained"]["judge"] is None
    assert data["base"] is None and "mmlu:dev.csv" in (out / "branch_report.md").read_text()


def test_cli_bad_mmlu_file_is_a_clean_error(tiny_model, tmp_path):
    from lab_tools.cli import main

    bad = tmp_path / "bad.csv"
    bad.write_text("Q?,a,b,c,d,Z\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--model", str(tiny_model), "--taxonomy", str(tmp_path), "--mmlu", str(bad),
              "--judge", "none", "--out", str(tmp_path / "o")])
    assert exc.value.code == 1

"""Branch report: verdicts per leaf from the paired interval, and the markdown (lab_tools.eval.report)."""

from lab_tools.eval.report import branch_report, format_total, render_markdown
from lab_tools.markdown import code


def _scores(know: dict, judge: dict | None = None, ref: dict | None = None) -> dict:
    """One model's scores as score_model writes them; ``know``: {leaf: [right?]}, ``judge``:
    {leaf: [rating | None]}, ``ref``: {leaf: [nats/token]}."""
    out = {}
    items = [{"leaf": leaf, "question": f"q{i}", "answer": 0, "pred": 0, "correct": bool(c)}
             for leaf, cs in know.items() for i, c in enumerate(cs)]
    if items:
        out["knowledge"] = {"accuracy": sum(i["correct"] for i in items) / len(items), "n": len(items),
                            "per_leaf": {leaf: {"accuracy": sum(cs) / len(cs), "n": len(cs)} for leaf, cs in know.items()},
                            "items": items}
    if judge:
        its = [{"leaf": leaf, "score": r} for leaf, rs in judge.items() for r in rs]
        valid = [i["score"] for i in its if i["score"] is not None]
        out["judge"] = {"mean": sum(valid) / len(valid) if valid else None, "n": len(valid),
                        "unparsed": len(its) - len(valid), "items": its,
                        "per_leaf": {leaf: {"mean": (sum(r for r in rs if r is not None) / max(1, sum(r is not None for r in rs)))
                                            if any(r is not None for r in rs) else None,
                                            "n": sum(r is not None for r in rs), "unparsed": sum(r is None for r in rs),
                                            "kind": "compositional_skills"} for leaf, rs in judge.items()}}
    if ref:
        its = [{"leaf": leaf, "value": v} for leaf, vs in ref.items() for v in vs]
        out["reference"] = {"mean": sum(i["value"] for i in its) / len(its), "n": len(its), "items": its,
                            "per_leaf": {leaf: {"mean": sum(vs) / len(vs), "n": len(vs), "kind": "compositional_skills"}
                                         for leaf, vs in ref.items()}}
    return out


def test_verdicts_follow_the_interval_not_the_point_estimate():
    base = _scores({"knowledge/up": [0] * 60, "knowledge/down": [1] * 60, "knowledge/noise": [1, 0] * 30,
                    "knowledge/tiny": [0, 0, 0, 0]})
    trained = _scores({"knowledge/up": [1] * 50 + [0] * 10, "knowledge/down": [0] * 50 + [1] * 10,
                       "knowledge/noise": [1, 1] + [1, 0] * 29,  # +1 item of 60: within the interval
                       "knowledge/tiny": [1, 1, 1, 1]})  # all 4 flipped, but 4 items cannot decide
    rep = branch_report(base, trained)
    verdict = {r["leaf"]: r["verdict"] for r in rep["rows"]}
    assert verdict == {"knowledge/up": "improved", "knowledge/down": "regressed",
                       "knowledge/noise": "no measurable change", "knowledge/tiny": "too small to decide"}
    assert rep["counts"] == {"improved": 1, "regressed": 1, "no measurable change": 1, "too small to decide": 1,
                             "n/a": 0}
    up = next(r for r in rep["rows"] if r["leaf"] == "knowledge/up")
    assert abs(up["delta"] - 50 / 60) < 1e-6 and up["low"] > 0 and up["n"] == 60
    total = rep["totals"]["knowledge"]
    assert total["n"] == 184 and total["delta"]["interval"] and total["verdict"] in (
        "improved", "regressed", "no measurable change", "too small to decide")
    md = render_markdown(rep)
    for leaf in verdict:
        assert code(leaf) in md  # escaped: the report goes into the model card
    assert "+83.3% [" in md and "Improved 1, regressed 1, no measurable change 1, too small to decide 1" in md
    assert "knowledge (n 184)" in md


def test_without_base_every_row_is_not_compared():
    rep = branch_report(None, _scores({"knowledge/a": [1, 1]}))
    assert [r["verdict"] for r in rep["rows"]] == ["n/a"]
    assert rep["rows"][0]["base"] is None and rep["totals"]["knowledge"]["base"] is None


def test_a_judge_that_cannot_rate_most_answers_is_reported_unable_and_not_compared():
    base = _scores({}, judge={"s/x": [None, None, 5.0] * 4})
    trained = _scores({}, judge={"s/x": [None, None, 9.0] * 4})
    rep = branch_report(base, trained)
    assert [(r["leaf"], r["verdict"], r["unrated"]) for r in rep["rows"]] == [("s/x", "n/a", 8)]
    assert "unable to judge" in rep["judge_unable"]
    assert "4 (+8 unrated)" in render_markdown(rep) and "unable to judge" in render_markdown(rep)


def test_reference_loglik_rows_compare_skills_without_a_judge():
    base = _scores({}, ref={"s/a": [-2.0] * 10, "s/b": [-2.0] * 10, "s/c": [-2.0, -2.1] * 5})
    trained = _scores({}, ref={"s/a": [-1.5] * 10, "s/b": [-2.5] * 10, "s/c": [-2.1, -2.0] * 5})
    verdict = {r["leaf"]: r["verdict"] for r in branch_report(base, trained)["rows"]}
    assert verdict == {"s/a": "improved", "s/b": "regressed", "s/c": "no measurable change"}
    md = render_markdown(branch_report(base, trained))
    assert "reference log-lik (nats/token)" in md and "+0.500" in md
    assert format_total("reference", -1.25) == "-1.250" and format_total("knowledge", 0.5) == "50.0%"

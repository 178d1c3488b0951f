"""Branch report: verdicts per leaf and the markdown table (lab_tools.eval.report)."""

from lab_tools.eval.report import TOLERANCE, branch_report, render_markdown


def _scores(know: dict, judge: dict, mmlu: dict | None = None) -> dict:
    return {
        "knowledge": {"accuracy": sum(a for a, _ in know.values()) / max(len(know), 1), "n": 0,
                      "per_leaf": {k: {"accuracy": a, "n": n} for k, (a, n) in know.items()}},
        "judge": {"mean": sum(m for m, _ in judge.values()) / max(len(judge), 1), "n": 0,
                  "per_leaf": {k: {"mean": m, "n": n, "kind": "compositional_skills"} for k, (m, n) in judge.items()}},
        "mmlu": {"accuracy": 0.5, "n": 4, "per_source": {k: {"accuracy": a, "n": n} for k, (a, n) in (mmlu or {}).items()}}
        if mmlu else None,
    }


def test_verdicts_follow_metric_tolerance():
    base = _scores({"knowledge/a": (0.5, 4), "knowledge/b": (0.75, 4)},
                   {"compositional_skills/x": (5.0, 3), "compositional_skills/y": (6.0, 3)},
                   {"dev.csv": (0.25, 4)})
    trained = _scores({"knowledge/a": (0.75, 4), "knowledge/b": (0.5, 4)},
                      {"compositional_skills/x": (5.0 + TOLERANCE["judge"] / 2, 3),
                       "compositional_skills/y": (3.0, 3), "compositional_skills/new": (7.0, 2)},
                      {"dev.csv": (0.25, 4)})
    rep = branch_report(base, trained)
    verdict = {r["leaf"]: r["verdict"] for r in rep["rows"]}
    assert verdict == {"knowledge/a": "improved", "knowledge/b": "regressed",
                       "compositional_skills/x": "unchanged", "compositional_skills/y": "regressed",
                       "compositional_skills/new": "n/a", "mmlu:dev.csv": "unchanged"}
    assert rep["counts"] == {"improved": 1, "regressed": 2, "unchanged": 2, "n/a": 1}
    row = next(r for r in rep["rows"] if r["leaf"] == "knowledge/a")
    assert abs(row["delta"] - 0.25) < 1e-9 and row["metric"] == "mc_accuracy" and row["n"] == 4
    md = render_markdown(rep)
    for leaf in verdict:
        assert f"`{leaf}`" in md
    assert "+25.0%" in md and "Improved 1, regressed 2, unchanged 2" in md


def test_without_base_every_row_is_not_compared():
    rep = branch_report(None, _scores({"knowledge/a": (1.0, 2)}, {}))
    assert [r["verdict"] for r in rep["rows"]] == ["n/a"]
    assert rep["rows"][0]["base"] is None and rep["totals"]["knowledge"]["base"] is None


def test_unrated_leaf_is_listed_not_compared():
    scores = {"judge": {"mean": None, "n": 0, "per_leaf": {
        "compositional_skills/x": {"mean": None, "n": 0, "unparsed": 2, "kind": "compositional_skills"}}}}
    rep = branch_report(scores, scores)
    assert [(r["leaf"], r["verdict"], r["unrated"]) for r in rep["rows"]] == [("compositional_skills/x", "n/a", 2)]
    assert "0 (+2 unrated)" in render_markdown(rep)


def test_reference_loglik_rows_compare_skills_without_a_judge():
    from lab_tools.eval.report import format_total

    def scores(values: dict) -> dict:
        return {"reference": {"mean": sum(values.values()) / len(values), "n": len(values),
                              "per_leaf": {k: {"mean": v, "n": 1, "kind": "compositional_skills"}
                                           for k, v in values.items()}},
                "judge": {"mean": None, "n": 0, "per_leaf": {}}}

    tol = TOLERANCE["ref_logprob"]
    rep = branch_report(scores({"s/a": -2.0, "s/b": -2.0, "s/c": -2.0}),
                        scores({"s/a": -1.5, "s/b": -2.0 - 2 * tol, "s/c": -2.0 + tol / 2}))
    verdict = {r["leaf"]: r["verdict"] for r in rep["rows"] if r["metric"] == "ref_logprob"}
    assert verdict == {"s/a": "improved", "s/b": "regressed", "s/c": "unchanged"}
    md = render_markdown(rep)
    assert "reference log-lik (nats/token)" in md and "+0.500" in md
    assert format_total("reference", -1.25) == "-1.250" and format_total("knowledge", 0.5) == "50.0%"

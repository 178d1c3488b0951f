"""Branch report: base model vs trained model, per leaf (LAB 3.3 evaluation).

Each leaf is scored by the metric its kind calls for: knowledge leaves by multiple-choice
accuracy on their held-out seed questions (MMLU style, 0..1), skills leaves by the judge's mean
1-10 rating of the answers to their held-out seed prompts (MT-Bench single-answer grading).
A user-supplied MMLU-format file is reported as one extra row per source file.

A leaf is *improved* / *regressed* when the trained score differs from the base score by more
than the metric's tolerance, else *unchanged*. Tolerances (:data:`TOLERANCE`): any change of at
least one item for accuracy (the items are few, every item counts); half a point for the judge
(MT-Bench ratings of the same answer vary by about that much between runs of a small judge).

Skills leaves also get a judge-free row, ``ref_logprob``: the mean log-probability per token
(nats) of the held-out seed answers given their questions. It compares base and trained models
even when the judge is too small to grade; its tolerance is 0.02 nats/token (a 2% change in
per-token likelihood).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# metric -> smallest |trained - base| that counts as a change
TOLERANCE = {"mc_accuracy": 1e-9, "judge": 0.5, "ref_logprob": 0.02}


@dataclass
class LeafRow:
    """One row of the branch report.

    ``leaf``: leaf path (or ``mmlu:<file>``); ``metric``: ``mc_accuracy`` (0..1) or ``judge``
    (1..10); ``n``: number of items; ``base``/``trained``: scores (``base`` None when no base
    model was evaluated; a judge score is also None when no rating could be parsed);
    ``delta``: trained - base or None; ``verdict``: ``improved``, ``regressed``, ``unchanged`` or
    ``n/a``; ``unrated``: judge answers whose rating could not be parsed (trained model).
    """
    leaf: str
    kind: str
    metric: str
    n: int
    base: float | None
    trained: float | None
    delta: float | None
    verdict: str
    unrated: int = 0


def _verdict(metric: str, base: float | None, trained: float | None) -> tuple[float | None, str]:
    if base is None or trained is None:
        return None, "n/a"
    delta = trained - base
    tol = TOLERANCE[metric]
    if delta > tol:
        return delta, "improved"
    if delta < -tol:
        return delta, "regressed"
    return delta, "unchanged"


def _leaf_scores(scores: dict | None) -> dict[tuple[str, str], dict]:
    """Flatten one model's score dict (see :func:`lab_tools.eval.evaluate.score_model`) into
    ``{(leaf, metric): {"score", "n", "kind"}}``."""
    out: dict[tuple[str, str], dict] = {}
    if not scores:
        return out
    for leaf, row in (scores.get("knowledge") or {}).get("per_leaf", {}).items():
        out[(leaf, "mc_accuracy")] = {"score": row["accuracy"], "n": row["n"], "kind": "knowledge"}
    for name, row in (scores.get("mmlu") or {}).get("per_source", {}).items():
        out[(f"mmlu:{name}", "mc_accuracy")] = {"score": row["accuracy"], "n": row["n"], "kind": "mmlu"}
    for leaf, row in (scores.get("reference") or {}).get("per_leaf", {}).items():
        out[(leaf, "ref_logprob")] = {"score": row["mean"], "n": row["n"], "kind": row.get("kind", "skill")}
    for leaf, row in (scores.get("judge") or {}).get("per_leaf", {}).items():
        out[(leaf, "judge")] = {"score": row["mean"], "n": row["n"], "kind": row.get("kind", "skill"),
                                "unrated": row.get("unparsed", 0)}
    return out


def branch_report(base: dict | None, trained: dict) -> dict:
    """Compare two models' scores leaf by leaf.

    Args:
        base: the base model's scores (as returned by ``score_model``) or None.
        trained: the trained model's scores.

    Returns:
        ``{"rows": [LeafRow as dict], "counts": {"improved", "regressed", "unchanged", "n/a"},
        "totals": {"<metric>": {"base", "trained"}}, "tolerance": TOLERANCE}``; rows sorted by
        leaf then metric.
    """
    b, t = _leaf_scores(base), _leaf_scores(trained)
    rows = []
    for key in sorted(set(b) | set(t)):
        leaf, metric = key
        bs, ts = b.get(key), t.get(key)
        delta, verdict = _verdict(metric, bs and bs["score"], ts and ts["score"])
        ref = ts or bs
        rows.append(LeafRow(leaf=leaf, kind=ref["kind"], metric=metric, n=ref["n"],
                            base=bs["score"] if bs else None, trained=ts["score"] if ts else None,
                            delta=delta, verdict=verdict, unrated=ref.get("unrated", 0)))
    counts = {v: sum(r.verdict == v for r in rows) for v in ("improved", "regressed", "unchanged", "n/a")}
    totals = {}
    for name, key, field in (("knowledge", "knowledge", "accuracy"), ("mmlu", "mmlu", "accuracy"),
                             ("reference", "reference", "mean"), ("judge", "judge", "mean")):
        tv = (trained.get(key) or {}).get(field) if trained else None
        bv = (base.get(key) or {}).get(field) if base else None
        if tv is not None or bv is not None:
            totals[name] = {"base": bv, "trained": tv}
    return {"rows": [asdict(r) for r in rows], "counts": counts, "totals": totals,
            "tolerance": dict(TOLERANCE)}


METRIC_LABELS = {"mc_accuracy": "accuracy", "judge": "judge (1-10)",
                 "ref_logprob": "reference log-lik (nats/token)"}


def _fmt(metric: str, value: float | None, signed: bool = False) -> str:
    if value is None:
        return "–"
    if metric == "mc_accuracy":
        return f"{value * 100:+.1f}%" if signed else f"{value * 100:.1f}%"
    if metric == "ref_logprob":
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def format_total(name: str, value: float | None) -> str:
    """A report total (``report["totals"][name]["base"|"trained"]``) as text: accuracies in %,
    the judge's mean rating and the reference log-likelihood as numbers, None as "–"."""
    return _fmt({"judge": "judge", "reference": "ref_logprob"}.get(name, "mc_accuracy"), value)


def render_markdown(report: dict, *, base_name: str = "base", trained_name: str = "trained") -> str:
    """The branch report as a markdown table (GitHub flavoured), with totals and verdict counts."""
    lines = [f"| leaf | metric | items | {base_name} | {trained_name} | Δ | verdict |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in report["rows"]:
        metric = METRIC_LABELS[r["metric"]]
        items = f"{r['n']} (+{r['unrated']} unrated)" if r.get("unrated") else str(r["n"])
        lines.append(f"| `{r['leaf']}` | {metric} | {items} | {_fmt(r['metric'], r['base'])} | "
                     f"{_fmt(r['metric'], r['trained'])} | {_fmt(r['metric'], r['delta'], True)} | "
                     f"{r['verdict']} |")
    c = report["counts"]
    out = "\n".join(lines) + "\n\n"
    out += (f"Improved {c['improved']}, regressed {c['regressed']}, unchanged {c['unchanged']}"
            + (f", not compared {c['n/a']}" if c["n/a"] else "") + ".\n")
    for name, tot in report.get("totals", {}).items():
        out += (f"- {name}: {base_name} {format_total(name, tot['base'])}, "
                f"{trained_name} {format_total(name, tot['trained'])}\n")
    return out

"""Branch report: base model vs trained model, per leaf (LAB 3.3 evaluation).

Each leaf is scored by the metric its kind calls for: knowledge leaves by multiple-choice
accuracy on their held-out seed questions (MMLU style, 0..1), skills leaves by the judge's mean
1-10 rating of the answers to their held-out seed prompts (MT-Bench single-answer grading).
A user-supplied MMLU-format file is reported as one extra row per source file. Skills leaves
also get a judge-free row, ``ref_logprob``: the mean log-probability per token (nats) of the
held-out seed answers given their questions, which compares the models even without a judge.

Verdicts rest on the paired difference of per-item scores (trained minus base, same items) and
its 95% bootstrap interval (:func:`lab_tools.eval.decisions.compare`): *improved* / *regressed*
only when the whole interval lies above / below 0, else *no measurable change*; *too small to
decide* with fewer than 5 items scored by both, or, for an accuracy, when either model's Wilson
interval is wider than +-15 points (unless the change is a measurable regression, which is
always reported). A judge that could not rate more than half of the trained
model's answers is reported as unable to judge and its rows are not compared. Totals carry n and
their intervals too.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lab_tools.eval.decisions import compare, GAIN, LOSS, SAME, TOO_SMALL
from lab_tools.markdown import code

PROPORTION = {"mc_accuracy": True, "judge": False, "ref_logprob": False}
VERDICTS = {GAIN: "improved", LOSS: "regressed", SAME: "no measurable change", TOO_SMALL: "too small to decide"}
COUNTED = ("improved", "regressed", "no measurable change", "too small to decide", "n/a")


@dataclass
class LeafRow:
    """One row of the branch report.

    ``leaf``: leaf path (or ``mmlu:<file>``); ``metric``: ``mc_accuracy`` (0..1), ``judge``
    (1..10) or ``ref_logprob`` (nats/token); ``n``: number of items; ``base``/``trained``:
    scores (``base`` None when no base model was evaluated; a judge score is also None when no
    rating could be parsed); ``delta``: mean per-item difference trained - base on the items both
    were scored on, or None; ``low``/``high``: its 95% interval (None when undefined);
    ``verdict``: ``improved``, ``regressed``, ``no measurable change``, ``too small to decide`` or
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
    low: float | None = None
    high: float | None = None


def _leaf_scores(scores: dict | None) -> dict[tuple[str, str], dict]:
    """Flatten one model's score dict (see :func:`lab_tools.eval.model_scores.score_model`) into
    ``{(leaf, metric): {"score", "n", "kind", "items": [per-item score] | None}}``."""
    out: dict[tuple[str, str], dict] = {}
    if not scores:
        return out
    per_item: dict[tuple[str, str], list] = {}
    for it in (scores.get("knowledge") or {}).get("items") or []:
        per_item.setdefault((it["leaf"], "mc_accuracy"), []).append(1.0 if it["correct"] else 0.0)
    for it in (scores.get("mmlu") or {}).get("items") or []:
        per_item.setdefault((f"mmlu:{it['source']}", "mc_accuracy"), []).append(1.0 if it["correct"] else 0.0)
    for it in (scores.get("reference") or {}).get("items") or []:
        per_item.setdefault((it["leaf"], "ref_logprob"), []).append(it["value"])
    for it in (scores.get("judge") or {}).get("items") or []:
        per_item.setdefault((it["leaf"], "judge"), []).append(it["score"])
    for leaf, row in (scores.get("knowledge") or {}).get("per_leaf", {}).items():
        out[(leaf, "mc_accuracy")] = {"score": row["accuracy"], "n": row["n"], "kind": "knowledge"}
    for name, row in (scores.get("mmlu") or {}).get("per_source", {}).items():
        out[(f"mmlu:{name}", "mc_accuracy")] = {"score": row["accuracy"], "n": row["n"], "kind": "mmlu"}
    for leaf, row in (scores.get("reference") or {}).get("per_leaf", {}).items():
        out[(leaf, "ref_logprob")] = {"score": row["mean"], "n": row["n"], "kind": row.get("kind", "skill")}
    for leaf, row in (scores.get("judge") or {}).get("per_leaf", {}).items():
        out[(leaf, "judge")] = {"score": row["mean"], "n": row["n"], "kind": row.get("kind", "skill"),
                                "unrated": row.get("unparsed", 0)}
    for key, row in out.items():
        row["items"] = per_item.get(key)
    return out


def _compare(metric: str, base: list | None, trained: list | None) -> tuple[dict | None, str]:
    """``(gain dict | None, verdict)`` of trained vs base per-item scores (module doc)."""
    if base is None or trained is None or len(base) != len(trained):
        return None, "n/a"
    cmp = compare(base, trained, is_proportion=PROPORTION[metric])
    return cmp["gain"], VERDICTS[cmp["verdict"]]


def judge_unable(scores: dict | None) -> str | None:
    """Why the judge of ``scores`` (one model's) cannot rate: more than half its answers unrated."""
    j = (scores or {}).get("judge") or {}
    total = (j.get("n") or 0) + (j.get("unparsed") or 0)
    if total and j.get("unparsed", 0) > total / 2:
        return (f"the judge could not rate {j['unparsed']} of {total} answers (more than half): "
                "unable to judge, its rows are not compared")
    return None


_TOTALS = (("knowledge", "knowledge", "accuracy", "mc_accuracy"), ("mmlu", "mmlu", "accuracy", "mc_accuracy"),
           ("reference", "reference", "mean", "ref_logprob"), ("judge", "judge", "mean", "judge"))


def _total_items(scores: dict | None, key: str) -> list | None:
    items = ((scores or {}).get(key) or {}).get("items")
    if items is None:
        return None
    field = {"knowledge": "correct", "mmlu": "correct", "reference": "value", "judge": "score"}[key]
    return [(float(it[field]) if it[field] is not None else None) for it in items]


def branch_report(base: dict | None, trained: dict) -> dict:
    """Compare two models' scores leaf by leaf (verdicts: module doc).

    Args:
        base: the base model's scores (as returned by ``score_model``) or None.
        trained: the trained model's scores.

    Returns:
        ``{"rows": [LeafRow as dict], "counts": {verdict: rows}, "totals": {"<metric>": {"base",
        "trained", "n", "base_interval", "trained_interval", "delta", "verdict"}},
        "judge_unable": str | None}``; rows sorted by leaf then metric.
    """
    b, t = _leaf_scores(base), _leaf_scores(trained)
    unable = judge_unable(trained) or judge_unable(base)
    rows = []
    for key in sorted(set(b) | set(t)):
        leaf, metric = key
        bs, ts = b.get(key), t.get(key)
        gain, verdict = (None, "n/a") if (bs is None or ts is None or bs["score"] is None or ts["score"] is None
                                          or (metric == "judge" and unable)) else \
            _compare(metric, bs["items"], ts["items"])
        ref = ts or bs
        interval = (gain or {}).get("interval") or [None, None]
        rows.append(LeafRow(leaf=leaf, kind=ref["kind"], metric=metric, n=ref["n"],
                            base=bs["score"] if bs else None, trained=ts["score"] if ts else None,
                            delta=(gain or {}).get("value"), verdict=verdict, unrated=ref.get("unrated", 0),
                            low=interval[0], high=interval[1]))
    counts = {v: sum(r.verdict == v for r in rows) for v in COUNTED}
    totals = {}
    for name, key, field, metric in _TOTALS:
        tv = (trained.get(key) or {}).get(field) if trained else None
        bv = (base.get(key) or {}).get(field) if base else None
        if tv is None and bv is None:
            continue
        gain, verdict = (None, "n/a") if (tv is None or bv is None or (name == "judge" and unable)) else \
            _compare(metric, _total_items(base, key), _total_items(trained, key))
        totals[name] = {"base": bv, "trained": tv, "n": ((trained or {}).get(key) or {}).get("n"),
                        "base_interval": ((base or {}).get(key) or {}).get("interval"),
                        "trained_interval": ((trained or {}).get(key) or {}).get("interval"),
                        "delta": gain, "verdict": verdict}
    return {"rows": [asdict(r) for r in rows], "counts": counts, "totals": totals, "judge_unable": unable}


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


def _interval(metric: str, lo, hi, signed: bool = False) -> str:
    return "" if lo is None or hi is None else f" [{_fmt(metric, lo, signed)} to {_fmt(metric, hi, signed)}]"


def format_total_with_interval(name: str, tot: dict, side: str) -> str:
    """``report["totals"][name]``'s ``side`` (``base``/``trained``) with its 95% interval."""
    metric = {"judge": "judge", "reference": "ref_logprob"}.get(name, "mc_accuracy")
    lo, hi = tot.get(f"{side}_interval") or (None, None)
    return format_total(name, tot.get(side)) + _interval(metric, lo, hi)


def format_change(name: str, tot: dict) -> str:
    """A total's change trained - base with its 95% interval and verdict, e.g.
    ``+5.0% [-2.5% to +12.5%]: no measurable change``."""
    metric = {"judge": "judge", "reference": "ref_logprob"}.get(name, "mc_accuracy")
    d = tot.get("delta") or {}
    lo, hi = d.get("interval") or (None, None)
    return f"{_fmt(metric, d.get('value'), True)}{_interval(metric, lo, hi, True)}: {tot.get('verdict', 'n/a')}"


def render_markdown(report: dict, *, base_name: str = "base", trained_name: str = "trained") -> str:
    """The branch report as a markdown table (GitHub flavoured), with totals and verdict counts;
    Δ is the mean per-item change with its 95% interval. Leaf paths are escaped
    (:func:`lab_tools.markdown.code`): the report goes into the model card."""
    lines = [f"| leaf | metric | items | {base_name} | {trained_name} | Δ [95% interval] | verdict |",
             "|---|---|---:|---:|---:|---|---|"]
    for r in report["rows"]:
        metric = METRIC_LABELS[r["metric"]]
        items = f"{r['n']} (+{r['unrated']} unrated)" if r.get("unrated") else str(r["n"])
        lines.append(f"| {code(r['leaf'])} | {metric} | {items} | {_fmt(r['metric'], r['base'])} | "
                     f"{_fmt(r['metric'], r['trained'])} | {_fmt(r['metric'], r['delta'], True)}"
                     f"{_interval(r['metric'], r.get('low'), r.get('high'), True)} | {r['verdict']} |")
    c = report["counts"]
    out = "\n".join(lines) + "\n\n"
    out += (f"Improved {c['improved']}, regressed {c['regressed']}, no measurable change "
            f"{c['no measurable change']}, too small to decide {c['too small to decide']}"
            + (f", not compared {c['n/a']}" if c["n/a"] else "") + ". A verdict needs the 95% interval of "
            "the change to lie above or below 0; accuracies whose interval is wider than +-15 points are "
            "too small to decide.\n")
    if report.get("judge_unable"):
        out += f"\nJudge: {report['judge_unable']}.\n"
    if report.get("judge_refused"):
        out += f"\nJudge not used: {report['judge_refused']}.\n"
    for name, tot in report.get("totals", {}).items():
        out += (f"- {name} (n {tot.get('n', '–')}): {base_name} {format_total_with_interval(name, tot, 'base')}, "
                f"{trained_name} {format_total_with_interval(name, tot, 'trained')}; "
                f"change {format_change(name, tot)}\n")
    return out

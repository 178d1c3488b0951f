"""Phase datasets (LAB table 1) and the dataset card.

- ``kt1.jsonl``: knowledge, responses shorter than ``kt_split_tokens`` teacher tokens;
- ``kt2.jsonl``: knowledge with longer responses, plus foundational skills;
- ``st.jsonl``: compositional skills.

The dataset card also carries a quality report per leaf (:func:`leaf_quality`): kept and rejected
samples by reason, distinct-2 of the kept answers, their mean repetition and length, the scorer
that ranked them, and a few kept and rejected examples, so that a reviewer sees what the filters
did; the bot's preview comment shows the same one-line summary (:func:`quality_line`).
"""

from __future__ import annotations

import re
from pathlib import Path

from lab_tools.atomic import write_jsonl_atomic
from lab_tools.errors import plural
from lab_tools.jsonl import read_jsonl
from lab_tools.markdown import code, inline
from lab_tools.sdg import datacard
from lab_tools.sdg.filters import REWARD_REJECTION
from lab_tools.sdg.quality import trigram_repeat_rate

PHASES = ("kt1", "kt2", "st")


def phase_of(kind: str, response_tokens: int, kt_split_tokens: int) -> str:
    """The phase of a sample of leaf ``kind`` whose response has ``response_tokens`` tokens."""
    if kind == "knowledge":
        return "kt1" if response_tokens < kt_split_tokens else "kt2"
    if kind == "foundational_skills":
        return "kt2"
    return "st"


def write_phase_datasets(shards: list[dict], out_dir: Path, kt_split_tokens: int) -> dict[str, Path]:
    """Write ``kt1/kt2/st.jsonl`` and ``rejected.jsonl`` from finished shards (in leaf order);
    sets each sample's ``metadata.phase`` and writes its metadata in the shared schema of
    :func:`lab_tools.sdg.datacard.sample_metadata` (one ``DatasetDict``). Returns the paths by name."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[dict]] = {p: [] for p in PHASES}
    rejected = []
    for shard in shards:
        for s in shard["samples"]:
            md = s["metadata"]
            md["phase"] = phase_of(md["kind"], md.get("response_tokens", 0), kt_split_tokens)
            rows[md["phase"]].append({**s, "metadata": datacard.sample_metadata(md)})
        rejected += [{"leaf": shard["leaf"], **r} for r in shard["rejected"]]
    paths = {p: out_dir / f"{p}.jsonl" for p in PHASES}
    for p in PHASES:
        write_jsonl_atomic(paths[p], rows[p])
    paths["rejected"] = out_dir / "rejected.jsonl"
    write_jsonl_atomic(paths["rejected"], rejected)
    return paths


def write_dataset_card(card: dict, out_dir: Path) -> tuple[Path, Path]:
    """``dataset_card.json`` (``card`` plus ``quality``: :func:`leaf_quality` per leaf, and
    ``scorers``: which scorers ranked the kept samples, both read from the phase files and
    ``rejected.jsonl`` in ``out_dir``) and ``README.md``, the Hub dataset card
    (:func:`lab_tools.sdg.datacard.write_dataset_card`: front matter, then one table row per
    leaf; failed teacher/judge requests shown apart from quality rejections, as failed/sent by
    stage; then the quality report with examples; leaf paths and model text escaped)."""
    card["quality"] = _quality_of(out_dir, [leaf["leaf"] for leaf in card["leaves"]])
    card["scorers"] = sorted({q["scorer"] for q in card["quality"].values() if q["scorer"] != "none"})
    card["reward_rejected"] = sum(q["rejected"].get(REWARD_REJECTION, 0) for q in card["quality"].values())
    lines = ["# Dataset card", "",
             f"Teacher: `{card['teacher']}` · judge: `{card['judge']}` · prompts: `{card['prompt_version']}`", "",
             *([] if card["settings"].get("model_judges", True) else
               ["**Model judges were off** (`generate.model_judges: false`): no instruction, pair, "
                "faithfulness or self-contained evaluation by a model; only rule-based filters ran.", ""]),
             f"Scorer (ranks the kept samples; the best `generate.samples` per leaf are kept): "
             f"{', '.join(f'`{x}`' for x in card['scorers']) or 'none'} ({SCORERS})", "",
             *([f"Pair evaluation by reward rejected {plural(card['reward_rejected'], 'sample')} below "
                "`feedback.rm_score_threshold` (see rejected.jsonl).", ""] if card["reward_rejected"] else []),
             "| phase | samples |", "|---|---|"]
    lines += [f"| {p} | {card['phases'][p]} |" for p in PHASES]
    lines += ["", "| leaf | kind | generated | kept | rejected (by stage) | malformed "
              "| request errors (failed/sent) | cached |", "|---|---|---|---|---|---|---|---|"]
    for leaf in card["leaves"]:
        rej = ", ".join(f"{k}: {v}" for k, v in sorted(leaf["rejected"].items())) or "0"
        mal = sum(leaf["malformed"].values())
        sent = leaf.get("requests_by_stage") or {}
        err = ", ".join(f"{k}: {n}/{sent.get(k, 0)}" for k, n in sorted((leaf.get("errors") or {}).items())
                        if n) or "0"
        lines.append(f"| {code(leaf['leaf'])} | {leaf['kind']} | {leaf['generated']} | {leaf['kept']} "
                     f"| {rej} | {mal} | {err} | {'yes' if leaf['cached'] else 'FAILED' if leaf.get('error') else 'no'} |")
    lines += _quality_md(card["quality"])
    return datacard.write_dataset_card(out_dir, card, "\n".join(lines) + "\n")


SCORERS = ("judge: the model judge's pair score; reward: the reward-model scorer; "
           "rules: the rule-based filters' margins, lab_tools.sdg.filters.rule_score")


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016, arXiv 1510.03055): distinct word n-grams over all word n-grams
    of ``texts`` (lower-cased ``\\w+`` words), 0..1; 0.0 when there is none."""
    grams = [tuple(ws[i:i + n]) for t in texts for ws in [re.findall(r"\w+", t.lower())]
             for i in range(len(ws) - n + 1)]
    return round(len(set(grams)) / len(grams), 4) if grams else 0.0


def _turn(sample: dict, role: str) -> str:
    return next((m.get("content", "") for m in sample.get("messages", []) if m.get("role") == role), "")


def _clip(text, limit: int = 240) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= limit else text[:limit] + " …"


def _reason(rec: dict) -> str:
    """The grouping key of a rejected record: its reason (teacher errors, whose messages vary, as one)."""
    return "teacher error" if rec.get("teacher_error") or str(rec.get("reason", "")).startswith("teacher error") \
        else str(rec.get("reason", "?"))


def leaf_quality(samples: list[dict], rejected: list[dict]) -> dict:
    """The quality report of one leaf from its kept ``samples`` (phase-file rows) and its
    ``rejected`` records (``rejected.jsonl`` rows): ``{"kept", "rejected": {reason: n}
    (most frequent first), "distinct_2"`` (:func:`distinct_n` of the answers), ``"mean_repetition"``
    (mean repeated-trigram fraction of the answers, :func:`lab_tools.sdg.quality.trigram_repeat_rate`),
    ``"mean_answer_words"``, ``"scorer"`` (which ranked the samples; ``none`` without samples),
    ``"kept_examples"`` (the 3 best by score: ``{question, answer, score}``), ``"rejected_examples"`` (2: ``{reason,
    detail, question, answer}``, answers the rule filters rejected first)}``."""
    answers = [_turn(s, "assistant") for s in samples]
    counts: dict[str, int] = {}
    for r in rejected:
        counts[_reason(r)] = counts.get(_reason(r), 0) + 1
    shown = sorted(rejected, key=lambda r: (r.get("stage") != "filters", not (r.get("answer") or r.get("raw"))))
    scorers = sorted({str(s.get("metadata", {}).get("scorer") or "none") for s in samples})
    best = sorted(samples, key=lambda s: -float(s.get("metadata", {}).get("score") or 0))
    return {"kept": len(samples), "rejected": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
            "distinct_2": distinct_n(answers, 2),
            "mean_repetition": round(sum(trigram_repeat_rate(a, numbers=True) for a in answers) / len(answers), 4)
            if answers else 0.0,
            "mean_answer_words": round(sum(len(a.split()) for a in answers) / len(answers), 1) if answers else 0.0,
            "scorer": "+".join(scorers) if scorers else "none",
            "kept_examples": [{"question": _clip(_turn(s, "user")), "answer": _clip(_turn(s, "assistant")),
                               "score": s.get("metadata", {}).get("score")} for s in best[:3]],
            "rejected_examples": [{"reason": _reason(r), "detail": r.get("detail", ""),
                                   "question": _clip(r.get("question")), "answer": _clip(r.get("answer") or r.get("raw"))}
                                  for r in shown[:2]]}


def quality_line(q: dict, esc=str) -> str:
    """One line summarizing :func:`leaf_quality` ``q`` (the card's and the bot's per-leaf line);
    ``esc`` escapes each piece of text that came from a model or a contributor (reasons)."""
    rej = ", ".join(f"{esc(k)} {int(v)}" for k, v in q["rejected"].items()) or "none"
    return (f"kept {int(q['kept'])} · rejected: {rej} · distinct-2 {float(q['distinct_2']):.2f} · mean repetition "
            f"{float(q['mean_repetition']):.2f} · mean answer {float(q['mean_answer_words']):.0f} words · "
            f"scorer {esc(q['scorer'])}")


def _quality_of(out_dir: Path, leaves: list[str]) -> dict[str, dict]:
    samples: dict[str, list] = {p: [] for p in leaves}
    rejected: dict[str, list] = {p: [] for p in leaves}
    for p in PHASES:
        for s in read_jsonl(out_dir / f"{p}.jsonl"):
            samples.setdefault(s["metadata"]["leaf"], []).append(s)
    for r in read_jsonl(out_dir / "rejected.jsonl"):
        rejected.setdefault(r["leaf"], []).append(r)
    return {p: leaf_quality(samples.get(p, []), rejected.get(p, [])) for p in leaves}


def _quality_md(quality: dict[str, dict]) -> list[str]:
    lines = ["", "## Quality report", "",
             "Per leaf: kept samples, rejections by reason, distinct-2 of the kept answers, their mean "
             "repeated-trigram fraction and mean length, the scorer; then three kept and two rejected examples.", ""]
    for leaf, q in quality.items():
        lines += [f"### {code(leaf)}", "", quality_line(q, inline), ""]
        lines += [f"- kept (score {x['score']}): Q {code(x['question'], 1000)} A {code(x['answer'], 1000)}"
                  for x in q["kept_examples"]]
        lines += [f"- rejected ({inline(x['reason'])}{'; ' + inline(x['detail']) if x['detail'] else ''}): "
                  f"Q {code(x['question'], 1000)} A {code(x['answer'], 1000)}" for x in q["rejected_examples"]]
        lines.append("")
    return lines

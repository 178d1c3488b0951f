"""The evaluation flow behind `lab evaluate` and the build's evaluate stage.

Scores one model (and optionally its base model) on:

- **knowledge**: multiple-choice log-likelihood accuracy (MMLU style) on items held out from the
  knowledge leaves' seed examples (:mod:`lab_tools.eval.heldout`), per leaf;
- **mmlu**: the same metric on user-supplied MMLU-format files (CSV ``question,A,B,C,D,answer``
  like MMLU's dev/test files, or JSONL), per file;
- **judge**: the judge's 1-10 single-answer rating (MT-Bench style, explanation kept) of the
  model's answers to held-out skill prompts, per leaf; prompts with several user turns are
  answered turn by turn with the model's own earlier answers in the history (MT-Bench multi-turn),
  and the judge grades the last answer in that context.

The metric code lives in :mod:`lab_tools.eval.scoring` (shared with checkpoint selection); this
module only selects items, batches them, caches per-model scores and writes the report files.
Held-out items are the *test* part of each leaf (:mod:`lab_tools.eval.sets`), never the ones
checkpoint selection used; they are capped (deterministically, round-robin over leaves with a
fixed seed, so every leaf keeps items) so that a CPU run stays within minutes. Every total and
per-leaf figure carries n and a 95% interval (:mod:`lab_tools.eval.stats`).
"""

from __future__ import annotations

import csv
import gc
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.atomic import write_text_atomic
from lab_tools.errors import LabError, plural
from lab_tools.jsonl import iter_jsonl

LETTERS = "ABCDEFGHIJ"
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")


SCORES_VERSION = "3"  # bump when score_model's output changes (invalidates cached scores)


@dataclass
class EvalSet:
    """What a model is evaluated on. ``mc``: held-out knowledge items ``{"leaf", "question",
    "choices", "answer"}``; ``mmlu``: user items ``{"source", "question", "choices", "answer"}``;
    ``prompts``: judge prompts ``{"leaf", "kind", "messages", "reference"}``."""
    mc: list[dict] = field(default_factory=list)
    mmlu: list[dict] = field(default_factory=list)
    prompts: list[dict] = field(default_factory=list)

    def digest(self) -> str:
        """sha256 hex of the items (stable JSON): part of the score cache key and build fingerprint."""
        blob = json.dumps([self.mc, self.mmlu, self.prompts], sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def __len__(self) -> int:
        return len(self.mc) + len(self.mmlu) + len(self.prompts)


# ----------------------------------------------------------------------------- loading items

def _answer_index(raw, n: int, path: Path, line: int) -> int:
    if isinstance(raw, bool):
        raise LabError("answer must be a letter or an index", file=str(path), line=line, field="answer")
    if isinstance(raw, int) and 0 <= raw < n:
        return raw
    text = str(raw).strip().upper()
    if len(text) == 1 and text in LETTERS[:n]:
        return LETTERS.index(text)
    if text.isdigit() and 0 <= int(text) < n:
        return int(text)
    raise LabError(f"answer {raw!r} is not one of {', '.join(LETTERS[:n])} (or 0..{n - 1})",
                   file=str(path), line=line, field="answer")


def load_mmlu_file(path: str | Path) -> list[dict]:
    """Read an MMLU-format file into items ``{"source", "question", "choices", "answer"}``.

    Formats: ``.csv`` rows ``question,A,B,C,D,answer`` (MMLU's dev/test files: no header; a
    header row ``question,A,B,C,D,answer`` is skipped), answer a letter; ``.jsonl`` lines
    ``{"question", "choices": [...], "answer": index|letter}`` or with keys ``A``..``D``.

    Raises:
        LabError: naming the file, line and field of the first malformed row; an empty file.
    """
    p = Path(path)
    if not p.is_file():
        raise LabError("MMLU file not found", file=str(p))
    items: list[dict] = []
    source = p.name
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"cannot read: {exc}", file=str(p)) from exc
    if p.suffix.lower() in (".jsonl", ".json"):
        for n, row in iter_jsonl(p):
            if not isinstance(row, dict) or not isinstance(row.get("question"), str):
                raise LabError("expected an object with a string 'question'", file=str(p), line=n,
                               field="question")
            choices = row.get("choices")
            if choices is None:
                choices = [row[k] for k in LETTERS if k in row]
            if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
                raise LabError("need at least 2 string choices", file=str(p), line=n, field="choices")
            items.append({"source": source, "question": row["question"], "choices": choices,
                          "answer": _answer_index(row.get("answer"), len(choices), p, n)})
    else:
        for n, row in enumerate(csv.reader(text.splitlines()), 1):
            if not row or not any(c.strip() for c in row):
                continue
            if n == 1 and [c.strip().lower() for c in row[:1] + row[-1:]] == ["question", "answer"]:
                continue
            if len(row) < 4:
                raise LabError(f"expected question,A,B,C,D,answer; got {plural(len(row), 'column')}",
                               file=str(p), line=n)
            choices = row[1:-1]
            items.append({"source": source, "question": row[0], "choices": choices,
                          "answer": _answer_index(row[-1], len(choices), p, n)})
    if not items:
        raise LabError("no questions in MMLU file", file=str(p))
    return items


def load_eval_set(*, taxonomy: str | Path | None = None, data_dir: str | Path | None = None,
                  mmlu_files: list[str | Path] = (), max_mc: int | None = 120,
                  max_prompts: int | None = 16, part: str | None = "test") -> EvalSet:
    """Collect evaluation items.

    Held-out items come from ``data_dir``'s ``heldout_mc.jsonl``/``heldout_prompts.jsonl``
    (written by ``lab generate``) when present, else are built from the taxonomy at ``taxonomy``.
    ``part``: which part of the held-out items (:mod:`lab_tools.eval.sets`): ``test`` (released
    figures; never the items a checkpoint was selected on), ``selection``, or None (all). Items are
    drawn round-robin over leaves (MMLU items over files) with a fixed seed; ``max_mc`` caps
    held-out and MMLU items each, ``max_prompts`` the judge prompts (None: no cap).

    Raises:
        LabError: a bad MMLU file, a malformed held-out row or a leaf that cannot be loaded.
    """
    mc: list[dict] = []
    prompts: list[dict] = []
    found = False
    if data_dir is not None:
        d = Path(data_dir)
        if (d / "heldout_mc.jsonl").is_file() or (d / "heldout_prompts.jsonl").is_file():
            from lab_tools.eval.heldout import read_mc_items, read_prompts

            mc, prompts, found = read_mc_items(d / "heldout_mc.jsonl"), read_prompts(d / "heldout_prompts.jsonl"), True
    if not found and taxonomy is not None:
        from lab_tools.eval.heldout import knowledge_mc_items, skill_prompts
        from lab_tools.taxonomy.leaf import iter_leaves

        leaves = iter_leaves(taxonomy)
        mc, prompts = knowledge_mc_items(leaves), skill_prompts(leaves)
    mmlu: list[dict] = []
    for f in mmlu_files:
        mmlu += load_mmlu_file(f)
    from lab_tools.eval.sets import draw, round_robin

    pick = (lambda rows, cap: round_robin(rows, cap)) if part is None else (lambda rows, cap: draw(rows, part, cap))
    return EvalSet(mc=pick(mc, max_mc), mmlu=round_robin(mmlu, max_mc, key="source"),
                   prompts=pick(prompts, max_prompts))


# ----------------------------------------------------------------------------- scoring

def model_digest(spec: str | Path, cache_dir: str | Path | None = None) -> str:
    """sha256 hex over a model directory's weight, config and tokenizer files (names + bytes).

    Raises:
        LabError: not a local model directory (see :func:`lab_tools.models.resolve_model`).
    """
    from lab_tools.models import resolve_model

    path = resolve_model(spec, cache_dir)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES):
            h.update(f.name.encode() + b"\0")
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def _is_correct(x) -> bool:
    """scoring.mc_accuracy's per-item entries: a bool/number, or a dict with ``correct``."""
    if isinstance(x, dict):
        return bool(x.get("correct"))
    return bool(x)


def _judge_entry(x) -> tuple[float | None, str]:
    """scoring.judge_scores's per-item entries: a number, or a dict with ``rating``/``explanation``."""
    if isinstance(x, dict):
        s = x.get("rating", x.get("score"))
        return (float(s) if s is not None else None), str(x.get("explanation", ""))
    return (float(x) if x is not None else None), ""


def _batches(items: list, size: int):
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _mc_scores(model, tok, items: list[dict], group: str, tick) -> dict | None:
    from lab_tools.eval.scoring import mc_accuracy

    if not items:
        return None
    correct: list[bool] = []
    preds: list[int | None] = []
    for chunk in _batches(items, 16):
        _, per_item = mc_accuracy(model, tok, chunk)
        correct += [_is_correct(x) for x in per_item]
        preds += [x.get("pred") if isinstance(x, dict) else None for x in per_item]
        tick(len(chunk))
    per: dict[str, dict] = {}
    for it, ok in zip(items, correct):
        row = per.setdefault(it[group], {"correct": 0, "n": 0})
        row["correct"] += ok
        row["n"] += 1
    from lab_tools.eval.stats import wilson

    per_out = {k: {"accuracy": v["correct"] / v["n"], "n": v["n"],
                   "interval": wilson(v["correct"], v["n"]).to_dict()["interval"]} for k, v in sorted(per.items())}
    key = "per_leaf" if group == "leaf" else "per_source"
    total = wilson(sum(correct), len(correct))
    return {"accuracy": sum(correct) / len(correct), "n": len(correct), "interval": total.to_dict()["interval"],
            "too_small": total.too_small, key: per_out,
            "items": [{group: it[group], "question": it["question"], "answer": it["answer"], "pred": p,
                       "correct": ok} for it, p, ok in zip(items, preds, correct)]}


def _reference_scores(model, tok, prompts: list[dict], tick) -> dict | None:
    """Held-out reference log-likelihood per skills leaf (see scoring.reference_logprob), with
    bootstrap 95% intervals; ``items`` keeps every prompt's value (None without a reference) for
    the branch report's paired comparison."""
    from lab_tools.eval.scoring import reference_logprob
    from lab_tools.eval.stats import bootstrap_mean

    if not prompts:
        return None
    values = reference_logprob(model, tok, prompts)
    tick(len(prompts))
    per: dict[str, list] = {}
    for p, v in zip(prompts, values):
        if v is not None:
            per.setdefault(p["leaf"], [p.get("kind", ""), []])[1].append(v)
    valid = [v for v in values if v is not None]
    if not valid:
        return None
    return {"mean": sum(valid) / len(valid), "n": len(valid), "interval": bootstrap_mean(valid).to_dict()["interval"],
            "per_leaf": {k: {"mean": sum(v) / len(v), "n": len(v), "kind": kind,
                             "interval": bootstrap_mean(v).to_dict()["interval"]}
                         for k, (kind, v) in sorted(per.items())},
            "items": [{"leaf": p["leaf"], "value": v} for p, v in zip(prompts, values)]}


def _answer_all(model, tok, prompts: list[dict], max_new_tokens: int, tick) -> list[list[dict]]:
    """Answer every prompt turn by turn; returns each prompt's conversation ending with the answer."""
    from lab_tools.eval.scoring import answer_prompts

    user_turns = [[m for m in p["messages"] if m.get("role") == "user"] for p in prompts]
    system = [[m for m in p["messages"] if m.get("role") == "system"][:1] for p in prompts]
    convs = [list(s) for s in system]
    for turn in range(max((len(u) for u in user_turns), default=0)):
        idx = [i for i, u in enumerate(user_turns) if len(u) > turn]
        for i in idx:
            convs[i].append(user_turns[i][turn])
        for chunk in _batches(idx, 8):
            answers = answer_prompts(model, tok, [{"messages": convs[i]} for i in chunk], max_new_tokens)
            for i, a in zip(chunk, answers):
                convs[i].append({"role": "assistant", "content": a})
            tick(len(chunk))
    return convs


def _judge(judge, prompts: list[dict], convs: list[list[dict]], tick, max_tokens: int) -> dict | None:
    from lab_tools.eval.scoring import judge_scores

    if not prompts or judge is None:
        return None
    graded = [dict(p, messages=c[:-1]) for p, c in zip(prompts, convs)]
    answers = [c[-1]["content"] for c in convs]
    entries = []
    for chunk in _batches(list(range(len(graded))), 8):
        _, per_item = judge_scores(judge, [graded[i] for i in chunk], [answers[i] for i in chunk],
                                   max_tokens=max_tokens)
        entries += [_judge_entry(x) for x in per_item]
        tick(len(chunk))
    items, per = [], {}
    for p, conv, (score, expl) in zip(prompts, convs, entries):
        items.append({"leaf": p["leaf"], "kind": p.get("kind", ""), "turns": sum(m["role"] == "user" for m in conv),
                      "prompt": conv[-2]["content"], "answer": conv[-1]["content"],
                      "score": score, "explanation": expl})
        # every prompted leaf gets a row, even when no rating could be parsed (mean None)
        row = per.setdefault(p["leaf"], {"sum": 0.0, "n": 0, "unparsed": 0, "kind": p.get("kind", "")})
        if score is None:
            row["unparsed"] += 1
        else:
            row["sum"] += score
            row["n"] += 1
    from lab_tools.eval.stats import bootstrap_mean

    valid = [s for s, _ in entries if s is not None]
    return {"mean": sum(valid) / len(valid) if valid else None, "n": len(valid),
            "interval": bootstrap_mean(valid).to_dict()["interval"],
            "unparsed": len(entries) - len(valid), "judge": getattr(judge, "name", str(judge)),
            "per_leaf": {k: {"mean": v["sum"] / v["n"] if v["n"] else None, "n": v["n"],
                             "unparsed": v["unparsed"], "kind": v["kind"]} for k, v in sorted(per.items())},
            "items": items}


def score_model(spec: str | Path, evalset: EvalSet, judge=None, *, max_new_tokens: int = 64,
                judge_max_tokens: int = 48, progress: bool = True, label: str = "model",
                cache_dir: str | Path | None = None) -> dict:
    """Score one model on ``evalset``.

    Args:
        spec: a local model directory or ``embedded``.
        judge: a :class:`lab_tools.sdg.backends.Teacher` used as judge, or None (no judge score).
        max_new_tokens: bound on each answer to a judge prompt.
        judge_max_tokens: bound on the judge's explanation + rating (MT-Bench asks for a short one).

    Returns:
        ``{"model", "knowledge": {"accuracy", "n", "interval", "too_small", "per_leaf", "items"} | None,
        "mmlu": {"accuracy", "n", "interval", "too_small", "per_source", "items"} | None,
        "reference": {"mean", "n", "interval", "per_leaf", "items"} | None (held-out reference
        answers' mean log-probability per token, nats), "judge": {"mean", "n", "interval",
        "unparsed", "judge", "per_leaf", "items"} | None, "seconds"}``. Accuracies are fractions
        0..1, judge means 1..10; ``interval``: 95% (Wilson for accuracies, bootstrap for means).
    """
    from lab_tools.models import load_model
    from lab_tools.progress import Progress

    start = time.monotonic()
    n_judge = len(evalset.prompts) if judge is not None else 0
    n_turns = sum(sum(m.get("role") == "user" for m in p["messages"]) for p in evalset.prompts) if judge else 0
    with Progress(progress, stage="evaluate", transient=True) as bar:  # bars, or lines in CI logs
        bar.add(label, len(evalset.mc) + len(evalset.mmlu) + len(evalset.prompts) + n_turns + n_judge)

        def tick(n: int) -> None:
            bar.advance(label, n)

        model, tok = load_model(spec, cache_dir=cache_dir)
        try:
            knowledge = _mc_scores(model, tok, evalset.mc, "leaf", tick)
            mmlu = _mc_scores(model, tok, evalset.mmlu, "source", tick)
            reference = _reference_scores(model, tok, evalset.prompts, tick)
            convs = _answer_all(model, tok, evalset.prompts, max_new_tokens, tick) if judge is not None else []
        finally:
            del model
            gc.collect()
        judged = _judge(judge, evalset.prompts, convs, tick, judge_max_tokens)
    return {"model": str(spec), "knowledge": knowledge, "mmlu": mmlu, "reference": reference,
            "judge": judged, "seconds": round(time.monotonic() - start, 2)}


# ----------------------------------------------------------------------------- the flow

@dataclass
class EvalResult:
    """What :func:`evaluate` produced: both models' scores, the branch report and file paths."""
    trained: dict
    base: dict | None
    report: dict
    out_dir: Path
    files: list[Path]


def _write(path: Path, text: str) -> Path:
    return write_text_atomic(path, text)


def _cached_scores(out: Path, role: str, key: str, compute) -> dict:
    """Per-model scores are cached under ``out/scores_<role>.json`` keyed by model + items + judge,
    so a rebuild whose base model and items did not change does not score the base model again."""
    path = out / f"scores_{role}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if cached.get("key") == key:
                return cached["scores"]
        except (OSError, ValueError):
            pass
    scores = compute()
    _write(path, json.dumps({"key": key, "scores": scores}, indent=1, ensure_ascii=False))
    return scores


def evaluate(model: str | Path, evalset: EvalSet, out_dir: str | Path, *, base_model: str | Path | None = None,
             judge=None, max_new_tokens: int = 64, judge_max_tokens: int = 48, progress: bool = True,
             cache_dir: str | Path | None = None) -> EvalResult:
    """Score ``model`` (and ``base_model``) and write into ``out_dir``: ``eval.json`` (both models'
    scores with every judge explanation, and the report), ``branch_report.json`` and
    ``branch_report.md`` (see :mod:`lab_tools.eval.report`). A judge that is ``model`` or
    ``base_model`` (:func:`lab_tools.eval.judges.refusal`) is not used; the report says why
    (``judge_refused``).

    Raises:
        LabError: a model directory that does not exist, or nothing to evaluate.
    """
    from lab_tools.eval.judges import judge_model_dir, refusal
    from lab_tools.eval.report import branch_report, render_markdown
    from lab_tools.models import resolve_model

    if not len(evalset):
        raise LabError("nothing to evaluate: no held-out items (the taxonomy has no seed examples?) "
                       "and no --mmlu file")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    refused = None
    if judge is not None:
        refused = refusal(judge_model_dir(judge, cache_dir), {
            "trained": str(resolve_model(model, cache_dir)),
            "base": str(resolve_model(base_model, cache_dir)) if base_model is not None else None})
        judge = None if refused else judge
    items_key = (SCORES_VERSION + "\0" + evalset.digest() + "\0" + (getattr(judge, "name", "") if judge else "")
                 + f"\0{max_new_tokens}\0{judge_max_tokens}")

    def run(spec, role):
        key = hashlib.sha256((model_digest(spec, cache_dir) + "\0" + items_key).encode()).hexdigest()
        return _cached_scores(out, role, key, lambda: score_model(
            spec, evalset, judge, max_new_tokens=max_new_tokens, judge_max_tokens=judge_max_tokens,
            progress=progress, label=role,
            cache_dir=cache_dir))

    base = run(base_model, "base") if base_model is not None else None
    trained = run(model, "trained")
    report = branch_report(base, trained)
    if refused:
        report["judge_refused"] = refused
    files = [
        _write(out / "eval.json", json.dumps({"trained": trained, "base": base, "report": report},
                                             indent=1, ensure_ascii=False)),
        _write(out / "branch_report.json", json.dumps(report, indent=1, ensure_ascii=False)),
        _write(out / "branch_report.md", "# Branch report: base vs trained\n\n" + render_markdown(report)),
    ]
    return EvalResult(trained=trained, base=base, report=report, out_dir=out, files=files)

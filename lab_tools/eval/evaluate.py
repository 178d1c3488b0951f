"""The evaluation flow behind `lab evaluate` and the build's evaluate stage (:func:`evaluate`):
score the trained model and its base (:func:`lab_tools.eval.model_scores.score_model`, each
model's scores cached under ``OUT/scores_<role>.json`` keyed by model, engine, items and judge),
compare them per leaf (:mod:`lab_tools.eval.report`), write the held-out MC items as an lm-eval
task and run any lm-evaluation-harness tasks asked for, and write ``eval.json`` and the branch
report. What is scored: :mod:`lab_tools.eval.model_scores`; on which items:
:mod:`lab_tools.eval.evalset`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from lab_tools.atomic import write_text_atomic
from lab_tools.engines.load import scoring_tag
from lab_tools.errors import LabError
from lab_tools.eval.evalset import EvalSet
from lab_tools.eval.judges import judge_model_dir, refusal
from lab_tools.eval.lm_eval_run import run_harness
from lab_tools.eval.lm_eval_task import FOLDER, TASK, write_task
from lab_tools.eval.model_scores import SCORES_VERSION, score_model
from lab_tools.eval.report import branch_report, render_markdown
from lab_tools.models import model_digest, resolve_model
from lab_tools.weights import combined, file_digests


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
             cache_dir: str | Path | None = None, engine: str = "auto", compute_type: str = "int8",
             lm_eval_tasks: tuple[str, ...] = ()) -> EvalResult:
    """Score ``model`` (and ``base_model``, on ``engine`` as :func:`score_model`; the engine is
    part of the score cache key) and write into ``out_dir``: ``eval.json`` (both models'
    scores with every judge explanation, the report, and ``weights``: ``{"files": {model file:
    sha256}, "combined"}`` of ``model`` as evaluated, :mod:`lab_tools.weights`), ``branch_report.json`` and
    ``branch_report.md`` (see :mod:`lab_tools.eval.report`). A judge that is ``model`` or
    ``base_model`` (:func:`lab_tools.eval.judges.refusal`) is not used; the report says why
    (``judge_refused``). The held-out MC items are also written as the lm-eval task
    ``out_dir/lm_eval/lab_heldout`` (:mod:`lab_tools.eval.lm_eval_task`; ``eval.json``
    ``lm_eval_task``: ``{"dir", "task", "n", "engine"}``); ``lm_eval_tasks``: lm-evaluation-harness tasks
    run on ``model`` (and ``base_model``) offline, results in ``eval.json`` ``lm_eval``
    (:func:`lab_tools.eval.lm_eval_run.run_harness`).

    Raises:
        LabError: a model directory that does not exist, nothing to evaluate, or an lm-eval task
        that is unknown or whose data are not on this machine.
    """
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
        key = hashlib.sha256((model_digest(spec, cache_dir) + scoring_tag(spec, engine, compute_type) + "\0"
                              + items_key).encode()).hexdigest()
        return _cached_scores(out, role, key, lambda: score_model(
            spec, evalset, judge, max_new_tokens=max_new_tokens, judge_max_tokens=judge_max_tokens,
            progress=progress, label=role,
            cache_dir=cache_dir, engine=engine, compute_type=compute_type))

    # the evaluated model's file digests, taken before it is scored: lab release verifies that
    # it publishes these bytes (lab_tools.weights, lab_tools.release.binding)
    digests = file_digests(resolve_model(model, cache_dir))
    base = run(base_model, "base") if base_model is not None else None
    trained = run(model, "trained")
    report = branch_report(base, trained)
    if refused:
        report["judge_refused"] = refused
    task_dir = write_task(evalset.mc, out)
    # acc_sum equals lm-eval's acc when both score in float32 with transformers (the reference
    # engine); "engine" says what scored ours (ctranslate2 int8 moves log-likelihoods slightly)
    task = ({"dir": str(task_dir), "task": TASK, "n": len(evalset.mc),
             "engine": scoring_tag(model, engine, compute_type).lstrip("+") or "transformers"}
            if task_dir else None)
    harness = None
    if lm_eval_tasks:
        models = {"trained": resolve_model(model, cache_dir)}
        if base_model is not None:
            models["base"] = resolve_model(base_model, cache_dir)
        harness = run_harness(models, list(lm_eval_tasks), task_dir, out / FOLDER / "results")
    files = [
        _write(out / "eval.json", json.dumps({"trained": trained, "base": base, "report": report,
                                              "weights": {"files": digests, "combined": combined(digests)},
                                              "lm_eval_task": task, "lm_eval": harness},
                                             indent=1, ensure_ascii=False)),
        _write(out / "branch_report.json", json.dumps(report, indent=1, ensure_ascii=False)),
        _write(out / "branch_report.md", "# Branch report: base vs trained\n\n" + render_markdown(report)),
    ]
    return EvalResult(trained=trained, base=base, report=report, out_dir=out, files=files)

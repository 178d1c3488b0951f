"""`lab evaluate --lm-eval TASKS`: lm-evaluation-harness tasks on local models, offline.

Each model is evaluated in a child process (``python -m lab_tools.eval.lm_eval_run``) with
``HF_HUB_OFFLINE=1``, ``HF_DATASETS_OFFLINE=1`` and ``TRANSFORMERS_OFFLINE=1`` set before
anything is imported, so no task can reach the network: a task runs only when its data are on
this machine (the Hugging Face datasets cache, or a local task such as ``lab_heldout``,
:mod:`lab_tools.eval.lm_eval_task`). The child runs lm-eval's own ``simple_evaluate`` with the
``hf`` model, the model's chat template (``apply_chat_template``, as our scorer) and zero-shot,
i.e. what ``lm_eval --model hf --model_args pretrained=DIR --include_path DIR --tasks TASKS
--apply_chat_template`` runs; every task is built first, so an unknown task or missing data is
a clean error naming the task before the model is loaded.

What ``eval.json`` records under ``lm_eval`` (see :func:`run_harness`)::

    {"harness": "lm-eval 0.4.13", "apply_chat_template": true, "offline": true,
     "tasks": ["lab_heldout", ...], "task_dir": ".../lm_eval" | null,
     "models": {"trained" | "base": {"model": DIR, "command": "lm_eval ...",
        "results": {TASK: {"n": N, "version": V, "metrics": {METRIC: {"value": x, "stderr": s,
                    "interval": [lo, hi], "interval_method": "wilson" | "normal"}}}}}}}

``METRIC`` is lm-eval's metric name (``acc``, ``acc_norm``, ...; ``name,filter`` for a filter
other than ``none``); ``stderr`` is lm-eval's; ``interval`` is 95%: Wilson for the proportion
metrics (``acc``, ``acc_norm``, ``acc_bytes``, ``exact_match``), else value ± 1.96 stderr.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.eval.lm_eval_task import TASK
from lab_tools.eval.stats import wilson

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
PROPORTIONS = ("acc", "acc_norm", "acc_bytes", "exact_match")
TASK_ERROR = 3  # the child's exit code for a task it could not build


def command(model_dir: str | Path, tasks: list[str], task_dir: str | Path | None) -> str:
    """The ``lm_eval`` command line that reproduces one model's run (for the record)."""
    include = f" --include_path {task_dir}" if task_dir else ""
    return (f"lm_eval --model hf --model_args pretrained={model_dir}{include} --tasks {','.join(tasks)} "
            "--apply_chat_template")


def _metrics(entry: dict, n: int | None) -> dict:
    """lm-eval's ``{"acc,none": x, "acc_stderr,none": s, ...}`` as ``{"acc": {"value", "stderr",
    "interval", "interval_method"}}``."""
    out = {}
    for key, value in entry.items():
        name, _, filt = key.partition(",")
        if not filt or "_stderr" in name or not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        stderr = entry.get(f"{name}_stderr,{filt}")
        stderr = stderr if isinstance(stderr, (int, float)) else None
        label = name if filt == "none" else f"{name},{filt}"
        if name in PROPORTIONS and n and 0 <= value <= 1:
            interval, method = wilson(round(value * n), n).to_dict()["interval"], "wilson"
        elif stderr is not None:
            interval, method = [value - 1.96 * stderr, value + 1.96 * stderr], "normal"
        else:
            interval, method = None, None
        out[label] = {"value": value, "stderr": stderr, "interval": interval, "interval_method": method}
    return out


def shape_results(raw: dict) -> dict:
    """The child's raw lm-eval output (``results``, ``n-samples``, ``versions``) as
    ``{TASK: {"n", "version", "metrics"}}`` (:func:`_metrics`)."""
    out = {}
    for task, entry in (raw.get("results") or {}).items():
        counts = (raw.get("n-samples") or {}).get(task) or {}
        n = counts.get("effective") or entry.get("sample_len")
        out[task] = {"n": n, "version": (raw.get("versions") or {}).get(task), "metrics": _metrics(entry, n)}
    return out


def run_harness(models: dict[str, str | Path], tasks: list[str], task_dir: Path | None, work: str | Path, *,
                batch_size: int = 8, timeout: float | None = None) -> dict:
    """Run lm-eval ``tasks`` on each of ``models`` (``{role: model dir}``) offline and return the
    ``eval.json`` ``lm_eval`` record (module doc); the children's raw outputs stay in ``work``.
    ``task_dir``: the folder of the local :data:`TASK` (``--include_path``), or None.

    Raises:
        LabError: lm-eval is not installed; :data:`TASK` asked for without held-out items; a task
        that is unknown or whose data are not on this machine (naming it); lm-eval failing or
        running past ``timeout`` seconds.
    """
    if importlib.util.find_spec("lm_eval") is None:
        raise LabError("lm-evaluation-harness is not installed: `pip install lm-eval==0.4.13` (the "
                       "project's lm-eval extra)", field="--lm-eval")
    tasks = [t.strip() for t in tasks if t.strip()]
    if not tasks:
        raise LabError("name at least one task", field="--lm-eval")
    if TASK in tasks and task_dir is None:
        raise LabError(f"{TASK}: there are no held-out multiple-choice items to write the task from",
                       field="--lm-eval")
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **OFFLINE_ENV}
    record = {"harness": f"lm-eval {_version()}", "apply_chat_template": True, "offline": True, "tasks": tasks,
              "task_dir": str(task_dir) if task_dir else None, "models": {}}
    for role, model_dir in models.items():
        out = work / f"{role}.json"
        out.unlink(missing_ok=True)
        args = [sys.executable, "-m", "lab_tools.eval.lm_eval_run", "--model", str(model_dir),
                "--tasks", ",".join(tasks), "--out", str(out), "--batch-size", str(batch_size)]
        if task_dir:
            args += ["--include-path", str(task_dir)]
        try:
            proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"lm-eval ran past {timeout} s on {model_dir}", field="--lm-eval") from exc
        result = json.loads(out.read_text(encoding="utf-8")) if out.is_file() else {}
        if proc.returncode == TASK_ERROR and result.get("error"):
            err = result["error"]
            raise LabError(f"{err['task']}: {err['message']}", field="--lm-eval")
        if proc.returncode != 0 or "results" not in result:
            tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
            raise LabError(f"lm-eval failed on {model_dir} (exit {proc.returncode}):\n{tail}", field="--lm-eval")
        record["models"][role] = {"model": str(model_dir), "command": command(model_dir, tasks, task_dir),
                                  "results": shape_results(result)}
    return record


def render_lines(record: dict | None) -> list[str]:
    """One line per model, task and metric of a :func:`run_harness` record:
    ``lm-eval trained lab_heldout acc 0.2 (stderr 0.107, 95% [0.07, 0.45], n=15)``."""
    lines = []
    for role, m in ((record or {}).get("models") or {}).items():
        for task, r in m["results"].items():
            for name, v in r["metrics"].items():
                iv = v.get("interval")
                extra = [f"stderr {v['stderr']:.4g}" if v.get("stderr") is not None else None,
                         f"95% [{iv[0]:.4g}, {iv[1]:.4g}]" if iv else None, f"n={r['n']}"]
                lines.append(f"lm-eval {role} {task} {name} {v['value']:.4g} ({', '.join(e for e in extra if e)})")
    return lines


def _version() -> str | None:
    from importlib import metadata

    try:
        return metadata.version("lm-eval")
    except metadata.PackageNotFoundError:
        return None


def _missing_data_hint(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    lowered = text.lower()
    if any(w in lowered for w in ("offline", "connection", "couldn't reach", "not find", "doesn't exist",
                                  "no such file", "cannot find")):
        return (f"its data are not on this machine (lab evaluate runs lm-eval offline; put the dataset "
                f"in the Hugging Face datasets cache first): {text.splitlines()[0]}")
    return text.splitlines()[0] if text else type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """The child process: build every task (an error names the task, exit :data:`TASK_ERROR`),
    then ``lm_eval.simple_evaluate`` and write its results, n-samples, versions and per-document
    proportion metrics (``samples``: ``{task: [{"doc_id", "acc", ...}]}``) as JSON."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m lab_tools.eval.lm_eval_run")
    ap.add_argument("--model", required=True)
    ap.add_argument("--tasks", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--include-path", default=None)
    ap.add_argument("--batch-size", type=int, default=8)
    a = ap.parse_args(argv)
    import lm_eval
    import torch
    from lm_eval.tasks import TaskManager, get_task_dict

    tasks = a.tasks.split(",")
    out = Path(a.out)
    manager = TaskManager(include_path=a.include_path, include_defaults=any(t != TASK for t in tasks))
    built = {}
    for name in tasks:
        try:
            if name not in manager.all_tasks:
                raise LookupError(f"unknown task (not in lm-eval {_version()} nor the local task folder)")
            built.update(get_task_dict([name], manager))
        except Exception as exc:  # noqa: BLE001  (reported to the parent as the task's error)
            out.write_text(json.dumps({"error": {"task": name, "message": _missing_data_hint(exc)}}))
            return TASK_ERROR
    res = lm_eval.simple_evaluate(
        model="hf", model_args={"pretrained": a.model}, tasks=list(built), task_manager=manager,
        apply_chat_template=True, batch_size=a.batch_size, num_fewshot=None,
        device="cuda" if torch.cuda.is_available() else "cpu", log_samples=True)
    samples = {task: [{"doc_id": x["doc_id"], **{m: x[m] for m in PROPORTIONS if m in x}} for x in rows]
               for task, rows in (res.get("samples") or {}).items()}
    out.write_text(json.dumps({**{k: res.get(k) for k in ("results", "n-samples", "versions")},
                               "samples": samples}, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

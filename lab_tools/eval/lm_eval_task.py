"""The held-out multiple-choice items as a local lm-evaluation-harness task (lm-eval 0.4.x).

``lab evaluate`` writes, beside its ``eval.json``, ``lm_eval/lab_heldout.yaml`` and
``lm_eval/lab_heldout.jsonl``: the same test-part items its knowledge score used (rows
``{"id", "leaf", "question", "choices", "answer"}``), as an ``output_type: multiple_choice`` task
(``doc_to_text: question``, ``doc_to_choice: choices``, ``doc_to_target: answer``, zero-shot),
metrics ``acc`` and ``acc_norm`` (mean, with lm-eval's standard error). Run it with::

    lm_eval --model hf --model_args pretrained=MODEL_DIR --include_path RUN/eval/lm_eval \\
        --tasks lab_heldout --apply_chat_template

``--apply_chat_template`` renders the question as the user turn of the model's chat template, as
our scorer does (:func:`lab_tools.eval.scoring.mc_accuracy`); lm-eval then scores each choice by
its summed log-likelihood after the template's generation prompt. Its ``acc`` (argmax of the
summed log-likelihood) equals our ``acc_sum`` (:func:`acc_sum`, in ``eval.json``)
item for item: lm-eval moves the template's trailing newline into each continuation
(``LM._encode_pair``), which adds the same log-probability to every choice of an item and so
never changes the argmax. Our *knowledge score* normalizes by the choice's token count (mean
log-probability per token: the distractors are whole answers of very different lengths); no
stock lm-eval metric computes that (``acc_norm`` divides by characters, and the moved newline's
log-probability does not cancel under any normalization), so ``acc_sum`` is the figure both sides
share.

The data file is named by absolute path in the YAML (``dataset_path: json``, ``data_files``), as
lm-eval reads local JSON; moving the folder needs ``lab evaluate`` again (or that path edited).
"""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from lab_tools.atomic import write_jsonl_atomic, write_text_atomic
from lab_tools.eval.stats import wilson

TASK = "lab_heldout"
FOLDER = "lm_eval"


def mean_stderr(values: list[float]) -> float | None:
    """Standard error of the mean as lm-eval reports it (``lm_eval.api.metrics.mean_stderr``:
    sample standard deviation, n - 1, over sqrt(n)); None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    mu = sum(values) / n
    return math.sqrt(sum((v - mu) ** 2 for v in values) / (n - 1)) / math.sqrt(n)


def acc_sum(per_item: list) -> dict | None:
    """lm-eval's ``acc`` computed from our scorer's per-item entries
    (:func:`lab_tools.eval.scoring.mc_accuracy`: ``scores`` mean log-probability and ``tokens``
    per choice): an item is right when the choice with the highest *summed* log-likelihood is
    the answer. Returns ``{"accuracy", "n", "stderr" (lm-eval's), "interval" (Wilson 95%),
    "correct": [bool per item]}``, or None without items or when the entries carry no token
    counts."""
    ok = []
    for x in per_item:
        if not isinstance(x, dict) or not x.get("tokens") or len(x["tokens"]) != len(x.get("scores") or []):
            return None
        sums = [m * n for m, n in zip(x["scores"], x["tokens"])]
        ok.append(max(range(len(sums)), key=lambda c: sums[c]) == x["answer"])
    if not ok:
        return None
    return {"accuracy": sum(ok) / len(ok), "n": len(ok), "stderr": mean_stderr([float(v) for v in ok]),
            "interval": wilson(sum(ok), len(ok)).to_dict()["interval"], "correct": ok}


def task_rows(items: list[dict]) -> list[dict]:
    """The task's documents: ``{"id" (0-based position), "leaf", "question", "choices", "answer"}``
    per held-out MC item (``answer`` the index of the right choice), in the given order."""
    return [{"id": i, "leaf": it.get("leaf"), "question": it["question"], "choices": list(it["choices"]),
             "answer": int(it["answer"])} for i, it in enumerate(items)]


def task_config(data_file: Path) -> dict:
    """The lm-eval task config (YAML mapping) of :data:`TASK` reading ``data_file``."""
    return {
        "task": TASK,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(Path(data_file).resolve())}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "question",
        "doc_to_choice": "choices",
        "doc_to_target": "answer",
        "num_fewshot": 0,
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True},
                        {"metric": "acc_norm", "aggregation": "mean", "higher_is_better": True}],
        "metadata": {"version": 1.0, "source": "lab-tools held-out seed examples (test part)"},
    }


HEADER = """\
# lab-tools held-out knowledge items as an lm-evaluation-harness task (written by `lab evaluate`).
# lm_eval --model hf --model_args pretrained=MODEL_DIR --include_path THIS_FOLDER \\
#   --tasks lab_heldout --apply_chat_template
# acc equals `lab evaluate`'s acc_sum on the same items (see lab_tools/eval/lm_eval_task.py).
"""


def write_task(items: list[dict], out_dir: str | Path) -> Path | None:
    """Write ``out_dir/lm_eval/lab_heldout.{yaml,jsonl}`` for the MC ``items`` (atomically);
    returns the task folder, or None when there are no items (nothing is written, an old task
    folder is left as it is)."""
    if not items:
        return None
    folder = Path(out_dir) / FOLDER
    data = write_jsonl_atomic(folder / f"{TASK}.jsonl", task_rows(items))
    write_text_atomic(folder / f"{TASK}.yaml",
                      HEADER + yaml.safe_dump(task_config(Path(data)), sort_keys=False, allow_unicode=True))
    return folder

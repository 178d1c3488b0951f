"""The reward model: ``lab train --phase rm`` (ALMoST, arXiv 2305.13735, section 3.1 "Reward
Modeling"), trained with TRL's ``RewardTrainer`` (pairwise ``-log sigmoid(r_chosen - r_rejected)``
loss; no trainer of our own) on ``comparisons.jsonl``.

- Base: the student base (``train.student``) or ``feedback.rm_base``, as a one-label
  sequence-classification model (TRL adds the score head).
- Held-out comparisons are split **by leaf** (:func:`split_by_leaf`): the held-out accuracy
  measures leaves the RM never saw.
- Optional ALMoST post-validation ("as-is RM" filtering, paper section 3.1), cross-fitted
  (:mod:`lab_tools.feedback.postval`): the training leaves are dealt into
  ``feedback.rm_post_validation_folds`` folds, an RM trained on the other folds scores each
  fold's pairs, pairs it does not rank right are dropped, and the final RM trains on the rest;
  the manifest records each fold's leaves, pairs scored and dropped.
- Settings chosen explicitly, not TRL's defaults (:func:`reward_config`): on a CUDA GPU with
  bf16, bf16 mixed precision (``bf16=True``; float32 master weights for full fine-tuning, a
  bfloat16 frozen base under LoRA); on CPU float32 and ``bf16=False``, ``use_cpu``. Gradient
  checkpointing per ``feedback.rm_gradient_checkpointing`` (``activation_checkpointing``, the
  name transformers 5 gives ``gradient_checkpointing``; both are set). Cosine schedule with 3%
  warm-up and weight decay 0.1 (ALMoST's RM recipe), ``center_rewards_coefficient=0.01``.
- LoRA (``feedback.rm_lora_r`` > 0, :func:`rm_peft_config`): TRL ``RewardTrainer(peft_config=...)``
  wraps the model with peft (``task_type`` SEQ_CLS, adapters on every linear layer, the new
  score head trained in full through ``modules_to_save``); the saved RM has the adapters merged
  (peft ``merge_and_unload``), so it loads like any sequence-classification model. What a 7B/13B
  RM needs on one GPU: 2 bytes per frozen weight instead of 16 per trained one.
- Length limit: TRL drops every pair whose chosen or rejected sequence (prompt + response,
  chat template applied) is longer than ``feedback.rm_max_length`` tokens, silently. The
  manifest's ``train_pairs`` is what TRL kept, and ``length_dropped`` names every pair it
  dropped (read back from the trainer's own filtered dataset, so the figures are TRL's).

Output: a Hugging Face sequence-classification directory (``AutoModelForSequenceClassification``,
usable as TRL ``reward_funcs``), with ``rm_manifest.json`` (split, settings, parameters, length
drops, losses, accuracies). The losses also go to the tracker of ``train.report_to``
(:mod:`lab_tools.train.tracking`): TensorBoard beside the RM folder, ``OUT/tensorboard/rm``
(``rm-fold1``... for the post-validation fits).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from pathlib import Path

from lab_tools.atomic import atomic_dir, write_json_atomic
from lab_tools.errors import LabError
from lab_tools.feedback.evaluate import evaluate_rm, hhh_default_path, load_rm
from lab_tools.feedback.postval import cross_fit
from lab_tools.feedback.report import rm_markdown
from lab_tools.jsonl import read_jsonl
from lab_tools.models import resolve_model
from lab_tools.runpaths import record, resolve
from lab_tools.train.tracking import check_tracker, trainer_tracking


def split_by_leaf(rows: list[dict], fraction: float, seed: int = 0) -> tuple[list[dict], list[dict], list[str]]:
    """``(train, heldout, heldout_leaves)``: the comparisons of ``round(fraction * leaves)`` leaves
    (at least one when ``fraction > 0`` and there are two or more leaves; never all of them) are
    held out, chosen by sha256 of ``seed:leaf`` so the split is stable when leaves are added."""
    leaves = sorted({r["metadata"]["leaf"] for r in rows})
    n = min(len(leaves) - 1, max(1, round(fraction * len(leaves)))) if fraction > 0 and len(leaves) > 1 else 0
    ranked = sorted(leaves, key=lambda lf: hashlib.sha256(f"{seed}:{lf}".encode()).hexdigest())
    held = set(ranked[:n])
    return ([r for r in rows if r["metadata"]["leaf"] not in held],
            [r for r in rows if r["metadata"]["leaf"] in held], sorted(held))


def _dataset(rows: list[dict]):
    """The TRL dataset of ``rows``, with a ``row`` column (the row's index) that survives TRL's
    tokenizing and length filter, so the kept rows can be read back (the trainer's
    ``remove_unused_columns`` drops it before batches are built)."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"], "row": i}
                              for i, r in enumerate(rows)])


def _bf16() -> bool:
    """bf16 mixed precision: a CUDA GPU that supports it."""
    import torch

    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


def rm_peft_config(fb):
    """peft ``LoraConfig`` for the RM (``feedback.rm_lora_r`` > 0), else None: ``task_type``
    SEQ_CLS, rank ``rm_lora_r``, ``lora_alpha`` ``rm_lora_alpha``, adapters on every linear layer
    (``target_modules="all-linear"``, which leaves the output head out), the score head trained
    in full (``modules_to_save=["score"]``, TRL's advice for a causal-LM base:
    ``RewardTrainer`` docstring, ``peft_config``)."""
    if fb.rm_lora_r <= 0:
        return None
    from peft import LoraConfig

    return LoraConfig(task_type="SEQ_CLS", r=fb.rm_lora_r, lora_alpha=fb.rm_lora_alpha, lora_dropout=0.0,
                      target_modules="all-linear", modules_to_save=["score"])


def reward_config(fb, output_dir: str | Path, *, progress: bool = False, report_args: dict | None = None):
    """TRL ``RewardConfig`` from the ``feedback`` settings ``fb`` (every precision, memory and
    schedule choice set here, see the module doc; the weights' dtype is chosen by :func:`_fit`).
    ``report_args``: the tracker arguments of :func:`lab_tools.train.tracking.trainer_tracking`
    (None: ``report_to="none"``)."""
    import torch
    from trl import RewardConfig

    checkpointing = bool(fb.rm_gradient_checkpointing)
    return RewardConfig(
        output_dir=str(output_dir), num_train_epochs=fb.rm_epochs, learning_rate=fb.rm_learning_rate,
        per_device_train_batch_size=fb.rm_batch_size, gradient_accumulation_steps=1, max_length=fb.rm_max_length,
        lr_scheduler_type="cosine", warmup_steps=0.03, weight_decay=0.1, center_rewards_coefficient=0.01,
        bf16=_bf16(), fp16=False, tf32=False, activation_checkpointing=checkpointing,
        gradient_checkpointing=checkpointing, use_cpu=not torch.cuda.is_available(),
        seed=fb.rm_seed, data_seed=fb.rm_seed,
        eval_strategy="no", save_strategy="no", logging_steps=1, **(report_args or {"report_to": "none"}),
        disable_tqdm=not progress,
        dataloader_num_workers=0)


def _fit(base: Path, rows: list[dict], fb, work: Path, progress: bool, tracking: tuple[dict, list] | None = None):
    """Train one RM from ``base`` on ``rows``; returns ``(trainer, losses, dropped)``,
    ``dropped`` being the indices of the rows TRL left out for ``rm_max_length``. ``tracking``:
    ``(report_to arguments, callbacks)`` of :func:`lab_tools.train.tracking.trainer_tracking`.

    Raises:
        LabError: no row fits ``rm_max_length``; training diverged or logged no loss."""
    import torch
    from trl import RewardTrainer

    from transformers import set_seed

    set_seed(fb.rm_seed)  # the new score head's initial weights
    peft = rm_peft_config(fb)
    # full fine-tuning keeps float32 master weights (bf16 only in the autocast compute); under
    # LoRA the base is frozen, so on a bf16 GPU it is held in bfloat16 (2 bytes per weight)
    model, tok = load_rm(base, dtype=torch.bfloat16 if peft is not None and _bf16() else torch.float32)
    report_args, callbacks = tracking or (None, [])
    trainer = RewardTrainer(model=model, args=reward_config(fb, work, progress=progress, report_args=report_args),
                            callbacks=callbacks, processing_class=tok,
                            train_dataset=_dataset(rows), peft_config=peft)
    kept = set(trainer.train_dataset["row"])
    dropped = [i for i in range(len(rows)) if i not in kept]
    if not kept:
        raise LabError(f"no comparison fits in feedback.rm_max_length={fb.rm_max_length} tokens: nothing to train on")
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    if not losses or not all(math.isfinite(x) for x in losses):
        raise LabError(f"reward-model training diverged or logged no loss (losses: {losses[:5]})")
    return trainer, losses, dropped


def _length_dropped(rows: list[dict], dropped: list[int], fb) -> dict:
    """The manifest's record of the pairs TRL dropped for ``rm_max_length``: the limit, their
    count and each one's leaf and id (``metadata.id``)."""
    return {"max_length": fb.rm_max_length, "count": len(dropped),
            "pairs": [{"leaf": rows[i]["metadata"].get("leaf"), "id": rows[i]["metadata"].get("id")}
                      for i in dropped]}


def _parameters(model) -> dict:
    """``{"trainable", "total"}`` parameter counts of ``model`` (a peft model counts its adapters
    and saved modules as trainable, the frozen base in the total)."""
    params = list(model.parameters())
    return {"trainable": sum(p.numel() for p in params if p.requires_grad), "total": sum(p.numel() for p in params)}


def _save(trainer, out: Path) -> None:
    """Save the trained RM into ``out``: a LoRA model with its adapters merged into the base
    (peft ``merge_and_unload``; the trained score head replaces the original), so the directory
    is a plain sequence-classification model; else TRL's ``save_model``."""
    from accelerate.utils import is_peft_model

    model = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(model):
        model.merge_and_unload().save_pretrained(str(out), safe_serialization=True)
    else:
        trainer.save_model(str(out))


def _accuracy(trainer, rows: list[dict], fb) -> tuple[float | None, list[float]]:
    from lab_tools.feedback.evaluate import score_pairs

    if not rows:
        return None, []
    trainer.model.eval()
    margins = score_pairs(trainer.model, trainer.processing_class, rows, max_length=fb.rm_max_length,
                          batch_size=fb.rm_score_batch_size)
    return sum(m > 0 for m in margins) / len(margins), margins


def train_reward_model(comparisons: str | Path, out_dir: str | Path, cfg, *, progress: bool = True) -> dict:
    """Train the RM on ``comparisons`` (``comparisons.jsonl``) with ``cfg.feedback`` and save it
    into ``out_dir`` (replaced atomically). Returns the manifest (also ``out_dir/rm_manifest.json``):
    ``base``, ``train_pairs`` (the pairs TRL trained on), ``length_dropped`` (``max_length``,
    ``count``, ``pairs``: those TRL dropped for ``rm_max_length``), ``train_leaves``,
    ``heldout_leaves``, ``heldout_pairs``, ``settings``, ``parameters`` (``trainable``/``total``,
    ``lora_r``), ``losses``, ``train_accuracy``, ``heldout_accuracy``, ``post_validation`` (or
    None), ``seconds``.

    Raises:
        LabError: no comparisons (the stage before made none), no training pair, a bad base model,
        or training that diverged.
    """
    t0 = time.monotonic()
    fb = cfg.feedback
    check_tracker(cfg.train.report_to)
    # the tracker's run folder is the RM's parent (OUT of `lab build`): OUT/tensorboard/rm
    run_dir, name = Path(out_dir).absolute().parent, Path(out_dir).name
    fits = []  # one tracked run per fit: rm-fold1.. (post-validation), then rm

    def tracking(suffix: str = ""):
        fits.append(suffix)
        return trainer_tracking(cfg.train.report_to, run_dir, f"{name}{suffix}")
    path = Path(comparisons)
    if not path.is_file():
        raise LabError("no comparisons: run `lab generate` with feedback.enabled first", file=str(path))
    rows = read_jsonl(path)
    if not rows:
        raise LabError("comparisons file is empty: a reward model trained on nothing would be meaningless",
                       file=str(path))
    train, heldout, held_leaves = split_by_leaf(rows, fb.rm_heldout_leaves, fb.rm_seed)
    if not train:
        raise LabError("no training comparisons after the held-out split", file=str(path))
    base_spec = fb.rm_base or cfg.train.student
    base = resolve_model(base_spec, cfg.cache_path)
    work = Path(out_dir).with_name(Path(out_dir).name + ".work")
    post = None
    if fb.rm_post_validation:  # cross-fitted: each pair is scored by an RM that did not train on it
        def fit_score(fold_train, fold_scored):
            fold = tracking(f"-fold{len(fits) + 1}")
            return _accuracy(_fit(base, fold_train, fb, work, progress, fold)[0], fold_scored, fb)[1]
        train, post = cross_fit(train, fb.rm_post_validation_folds, fit_score, seed=fb.rm_seed, heldout=heldout)
    trainer, losses, dropped = _fit(base, train, fb, work, progress, tracking())
    train_acc, _ = _accuracy(trainer, train, fb)
    held_acc, _ = _accuracy(trainer, heldout, fb)
    gone = set(dropped)
    trained = [r for i, r in enumerate(train) if i not in gone]
    # the comparisons relative to the RM folder when in the same run (lab_tools.runpaths: a run can move)
    manifest = {"base": base_spec, "base_path": str(base), "comparisons": record(path, out_dir),
                "train_pairs": len(trained), "length_dropped": _length_dropped(train, dropped, fb),
                "train_leaves": sorted({r["metadata"]["leaf"] for r in trained}),
                "heldout_leaves": held_leaves, "heldout_pairs": len(heldout),
                "settings": {k: getattr(fb, k) for k in vars(fb) if k.startswith("rm_")},
                "parameters": {**_parameters(trainer.model), "lora_r": fb.rm_lora_r},
                "trl": _version("trl"), "losses": losses, "train_accuracy": train_acc, "heldout_accuracy": held_acc,
                "post_validation": post, "seconds": round(time.monotonic() - t0, 2)}
    with atomic_dir(out_dir) as tmp:
        _save(trainer, tmp)
        trainer.processing_class.save_pretrained(str(tmp))
        write_json_atomic(tmp / "rm_manifest.json", manifest, indent=1, newline=True)
        write_json_atomic(tmp / "heldout_leaves.json", held_leaves, newline=True)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    return manifest


def _version(pkg: str) -> str | None:
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:
        return None


def evaluate_saved(rm_dir: str | Path, comparisons: str | Path, *, hhh_path: str | Path | None = None,
                   hhh_pairs: int = 0) -> dict:
    """:func:`lab_tools.feedback.evaluate.evaluate_rm` of a saved RM on the comparisons of its
    own held-out leaves (``heldout_leaves.json``; Static HHH: ``hhh_pairs`` evenly spaced pairs,
    0 = all), plus its training facts; written to
    ``rm_dir/rm_eval.json``. Returns that dict."""
    rm_dir = Path(rm_dir)
    try:
        manifest = json.loads((rm_dir / "rm_manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabError(f"not a reward model made by `lab train --phase rm`: {exc}", file=str(rm_dir)) from exc
    held = set(manifest.get("heldout_leaves") or [])
    rows = [r for r in read_jsonl(comparisons) if r["metadata"]["leaf"] in held]
    result = evaluate_rm(rm_dir, rows, hhh_path=hhh_path, max_length=manifest["settings"]["rm_max_length"],
                         hhh_pairs=hhh_pairs, batch_size=manifest["settings"].get("rm_score_batch_size", 8))
    result["training"] = {k: manifest.get(k) for k in ("base", "train_pairs", "length_dropped", "train_leaves",
                                                        "heldout_leaves", "train_accuracy", "post_validation",
                                                        "seconds")}
    write_json_atomic(rm_dir / "rm_eval.json", result, indent=1, newline=True)
    return result


def train_cli(data_dir: str | Path, out_dir: str | Path, cfg, *, progress: bool = True) -> dict:
    """``lab train --phase rm``: train on ``data_dir/comparisons.jsonl`` into ``out_dir``, then
    evaluate on the held-out leaves' comparisons; prints both and returns the evaluation."""
    import click

    manifest = train_reward_model(Path(data_dir) / "comparisons.jsonl", out_dir, cfg, progress=progress)
    result = evaluate_saved(out_dir, Path(data_dir) / "comparisons.jsonl")
    held = result["heldout"]
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    long = manifest["length_dropped"]["count"]
    click.echo(f"reward model: {out_dir} (from {manifest['base']}, {manifest['train_pairs']} training pairs"
               + (f"; {long} dropped as longer than feedback.rm_max_length={manifest['length_dropped']['max_length']}"
                  " tokens" if long else "") + ")")
    click.echo(f"held-out comparisons ({held['n']}, leaves {', '.join(manifest['heldout_leaves']) or '–'}): "
               f"RM {pct(held['accuracy'])}, longer answer wins {pct(held['length_baseline'])}")
    if manifest["post_validation"]:
        pv = manifest["post_validation"]
        click.echo(f"post-validation: dropped {pv['dropped']} of {pv['pairs_before']} ({len(pv['folds'])}-fold "
                   f"cross-fitted); held-out accuracy fold RMs {pct(pv['first_heldout_accuracy'])}, "
                   f"final {pct(held['accuracy'])}")
    return result


def evaluate_cli(rm_dir, data_dir, hhh_file, out_dir) -> dict:
    """``lab evaluate --reward-model``: :func:`evaluate_saved` on ``data_dir/comparisons.jsonl``
    (default: the comparisons the RM was trained from) and Static HHH (``hhh_file``, default the
    file shipped with the package); copies ``rm_eval.json`` into ``out_dir`` and prints the
    reward-model section."""
    import shutil

    import click

    manifest = json.loads((Path(rm_dir) / "rm_manifest.json").read_text(encoding="utf-8")) \
        if (Path(rm_dir) / "rm_manifest.json").is_file() else {}
    comparisons = Path(data_dir) / "comparisons.jsonl" if data_dir else \
        resolve(manifest.get("comparisons") or "comparisons.jsonl", rm_dir)
    if not comparisons.is_file():
        raise LabError("no comparisons to evaluate the reward model on: pass --data DIR (with comparisons.jsonl)",
                       file=str(comparisons))
    hhh = Path(hhh_file) if hhh_file else hhh_default_path()
    if not hhh.is_file():  # before any model is loaded
        raise LabError("Static HHH file not found (--hhh)", file=str(hhh))
    result = evaluate_saved(rm_dir, comparisons, hhh_path=hhh)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    shutil.copy2(Path(rm_dir) / "rm_eval.json", Path(out_dir) / "rm_eval.json")
    click.echo(rm_markdown(result))
    return result

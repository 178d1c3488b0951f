"""The preference phase after ST (ALMoST, arXiv 2305.13735: RL from synthetic feedback).

``pref.method`` (preset section ``pref``, :class:`lab_tools.train.config.PrefConfig`):

- ``dpo`` (default): TRL ``DPOTrainer`` on the synthetic comparisons (``comparisons.jsonl``,
  TRL's conversational explicit-prompt format), the reference being a frozen copy of the ST model
  (with the preset's LoRA: the ST model itself with its adapters disabled, no copy;
  :mod:`lab_tools.train.scale`); no reward model at train time.
- ``dpo_onpolicy``: the same DPO on the ST policy's own samples, best vs worst by the reward
  model per comparison prompt (:mod:`lab_tools.train.onpolicy`; ALMoST's RLSF tunes on the policy's
  samples).
- ``rloo`` / ``grpo``: TRL ``RLOOTrainer`` / ``GRPOTrainer`` on the comparisons' prompts with the
  reward model (a sequence-classification dir from ``lab train --phase rm``) as ``reward_funcs``
  and a KL term to the ST model (``beta``). TRL no longer ships PPO, which ALMoST used; RLOO with
  a KL penalty is its closest stable stand-in. No hand-written trainer or RL loop.

The phase starts from the ST-selected checkpoint of a training run (``manifest.json``), saves
``pref.checkpoints`` candidates evenly over its steps (TRL checkpoints, so a killed run resumes
with ``resume_from_checkpoint``), and decides on the *selection* part of the held-out items
(:mod:`lab_tools.eval.sets`) by the **win rate against the ST checkpoint** of a judge that may
judge: a capable judge (written A/B verdicts) or the position-debiased pairwise judge
(next-token probability of A/B, both orders: :mod:`lab_tools.eval.preference`), never the base,
ST or a candidate, never one unable on a calibration set (:mod:`lab_tools.eval.judges`).
Without such a judge the reward model's win rate decides, with held-out reference
log-likelihood as a guard (without a reward model, reference log-likelihood alone), and the
record says no capable judge was used. Every figure has n and a 95% interval; a later candidate
replaces an earlier one, and pref replaces ST, only with a measurable gain
(:mod:`lab_tools.eval.decisions`); a tie keeps the incumbent. A measurable regression of the
knowledge score (MC accuracy), or a knowledge set too small to tell, keeps ST; the manifest says
which. The selection: :mod:`lab_tools.train.pref_select`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

from lab_tools.engines.load import REFERENCE_SCORER, Scorer, scorer_of
from lab_tools.errors import LabError, plural
from lab_tools.eval.stats import format_estimate
from lab_tools.jsonl import iter_jsonl
from lab_tools.progress import Progress
from lab_tools.runpaths import portable, record, resolve
from lab_tools.train import scale
from lab_tools.train.checkpoints import save_dtype
from lab_tools.train.config import load_preset
from lab_tools.train.loop import write_json
from lab_tools.train.onpolicy import build_pairs, policy_reward_shift
from lab_tools.train.phases import stage_console
from lab_tools.train.pref_select import capable_judge_for, pairwise_judge_dir, rm_verdicts_fn, select_pref
from lab_tools.train.scale import merge_checkpoints
from lab_tools.train.tracking import check_tracker, trainer_tracking
from lab_tools.weights import file_digests

METHODS = ("dpo", "dpo_onpolicy", "rloo", "grpo")  # lab_tools.train.config.PREF_METHODS


def read_comparisons(path: Path, limit: int = 0, seed: int = 0) -> list[dict]:
    """Rows ``{"prompt", "chosen", "rejected"}`` (message lists) of ``comparisons.jsonl``, metadata
    dropped; ``limit`` > 0 keeps a seeded random subset of that size.

    Raises:
        LabError: a line is not an object with the three message lists (file, line, field named).
    """
    import random

    rows = []
    for line, row in (iter_jsonl(path) if Path(path).is_file() else []):
        for key in ("prompt", "chosen", "rejected"):
            value = row.get(key) if isinstance(row, dict) else None
            if not isinstance(value, list) or not value or not all(
                    isinstance(m, dict) and isinstance(m.get("content"), str) for m in value):
                raise LabError(f"expected a non-empty list of messages in {key!r}", file=str(path),
                               line=line, field=key)
        rows.append({k: row[k] for k in ("prompt", "chosen", "rejected")})
    if limit and len(rows) > limit:
        rows = random.Random(seed).sample(rows, limit)
    return rows


def _checkpoints(trainer_dir: Path) -> list[Path]:
    found = [p for p in trainer_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()
             and ((p / "config.json").is_file() or (p / "adapter_config.json").is_file())]  # LoRA: adapter only
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def _trainer(method: str, st_dir: str, rows: list[dict], rm_dir: str | None, pc, out: Path,
             seed: int, progress: bool, preset=None, tracking: tuple[dict, list] | None = None):
    """The TRL trainer of ``method`` with explicit settings (float32 on CPU, bf16 on a CUDA GPU
    that has it) and evenly spaced checkpoints; ``tracking``: ``(report_to arguments, callbacks)``
    of :func:`lab_tools.train.tracking.trainer_tracking` (None: no tracker); from ``preset`` (:mod:`lab_tools.train.scale`):
    LoRA as ``peft_config`` (DPO's reference is then the policy with adapters disabled, no second
    copy), gradient checkpointing, the weights' dtype, and vLLM generation for RLOO/GRPO when
    vLLM and CUDA are there (else transformers ``generate``)."""
    import torch
    from datasets import Dataset
    from lab_tools.models import load_tokenizer

    on_cpu = not torch.cuda.is_available()
    tok = load_tokenizer(st_dir)
    track_args, callbacks = tracking or ({"report_to": "none"}, [])
    rl = method in ("rloo", "grpo")
    micro = pc.num_generations if rl else pc.micro_batch_size
    world = int(os.environ.get("WORLD_SIZE", "1"))  # under accelerate launch / torchrun
    accum = max(1, pc.effective_batch_size // (micro * world))
    if rl:
        steps = pc.max_steps
    else:
        steps = math.ceil(len(rows) / (micro * accum * world)) * pc.epochs
    common = dict(output_dir=str(out), per_device_train_batch_size=micro,
                  gradient_accumulation_steps=accum, learning_rate=pc.learning_rate,
                  lr_scheduler_type="constant_with_warmup", warmup_steps=pc.warmup_steps,
                  max_steps=steps, num_train_epochs=pc.epochs, logging_steps=1,
                  save_strategy="steps", save_steps=max(1, math.ceil(steps / pc.checkpoints)),
                  **track_args, seed=seed, use_cpu=on_cpu, bf16=not on_cpu and torch.cuda.is_bf16_supported(),
                  **scale.memory_args(preset), model_init_kwargs=scale.model_init_kwargs(preset),
                  disable_tqdm=not progress, dataloader_num_workers=0)
    peft = {"peft_config": scale.peft_config(preset), "callbacks": callbacks}
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(beta=pc.beta, max_length=pc.max_length, **common)
        return DPOTrainer(model=st_dir, ref_model=None, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tok, **peft), steps
    if not rm_dir:
        raise LabError(f"pref.method {method} needs a reward model: run `lab train --phase rm` first",
                       field="pref.method")
    prompts = list({json.dumps(r["prompt"], sort_keys=True): {"prompt": r["prompt"]} for r in rows}.values())
    rl_args = dict(beta=pc.beta, num_generations=pc.num_generations,
                   max_completion_length=pc.max_completion_length, mask_truncated_completions=True,
                   temperature=pc.temperature, **scale.vllm_generation_args(), **common)
    from transformers import AutoTokenizer

    rm_tok = AutoTokenizer.from_pretrained(rm_dir)
    if method == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return RLOOTrainer(model=st_dir, reward_funcs=rm_dir, args=RLOOConfig(**rl_args),
                           train_dataset=Dataset.from_list(prompts), processing_class=tok,
                           reward_processing_classes=rm_tok, **peft), steps
    from trl import GRPOConfig, GRPOTrainer

    return GRPOTrainer(model=st_dir, reward_funcs=rm_dir, args=GRPOConfig(**rl_args),
                       train_dataset=Dataset.from_list(prompts), processing_class=tok,
                       reward_processing_classes=rm_tok, **peft), steps


def train_pref(run_dir, data_dir, *, preset, judge_dir: str | None, rm_dir: str | None = None,
               progress: bool = True, rm_verdicts=None, capable_judge=None, report_to: str = "none",
               scorer: Scorer = REFERENCE_SCORER) -> dict:
    """Run the preference phase on training run ``run_dir`` (its ``manifest.json`` must record a
    selected ST model) with ``data_dir/comparisons.jsonl``; resumable (a killed run continues
    from its last TRL checkpoint; a finished one is skipped). Updates the manifest: phase
    ``pref`` (method, steps, candidates, selection and its decision record: :func:`select_pref`;
    ``onpolicy``: the on-policy pairs' record for ``dpo_onpolicy``, else None; ``policy_reward``:
    the RM's mean reward of the policy's answers before vs after, or None without a reward model,
    :func:`lab_tools.train.onpolicy.policy_reward_shift`)
    and ``selected`` when the phase is kept; ``weights`` gets each candidate's file digests as
    written (:mod:`lab_tools.weights`). Paths in the manifest and in the returned entry are
    relative to ``run_dir`` (``pref/checkpoint-2``: :mod:`lab_tools.runpaths`; resolve them with
    :func:`lab_tools.runpaths.resolve`). ``judge_dir``: the in-process pairwise judge (or
    None); ``capable_judge``: a Teacher answering A/B in words (or None); ``rm_verdicts``: see
    :func:`rm_verdicts_fn`. ``report_to``: the experiment tracker of the TRL trainer
    (``train.report_to``; TensorBoard into ``run_dir/tensorboard/pref``, :mod:`lab_tools.train.tracking`).
    ``scorer``: the engine the selection and the policy-reward check decode and score on
    (:func:`lab_tools.engines.load.scorer_of`; default transformers).

    Raises:
        LabError: no manifest or no trained ST, no comparisons, an unknown method, a method
            needing a reward model without one, or a tracker that is not installed.
    """
    preset = load_preset(preset)
    check_tracker(report_to)
    pc = preset.pref
    if pc.method not in METHODS:
        raise LabError(f"pref.method must be one of {', '.join(METHODS)}, got {pc.method!r}", field="pref.method")
    # absolute while running; the manifest records paths relative to run_dir (lab_tools.runpaths)
    run_dir, data_dir = Path(os.path.abspath(run_dir)), Path(data_dir)
    mpath = run_dir / "manifest.json"
    if not mpath.is_file():
        raise LabError("no training run here (manifest.json missing): run `lab train` first", file=str(mpath))
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    st = (manifest.get("phases") or {}).get("st") or {}
    if not st.get("steps") or not st.get("selected"):
        raise LabError("the preference phase starts from the ST-selected checkpoint, and this run "
                       "has no trained ST phase", file=str(mpath), field="phases.st")
    if (manifest["phases"].get("pref") or {}).get("selected"):
        return manifest["phases"]["pref"]
    st_dir = str(resolve(st["selected"], run_dir))
    rows = read_comparisons(data_dir / "comparisons.jsonl", pc.max_pairs, preset.seed)
    if not rows:
        raise LabError("no synthetic comparisons to tune on (comparisons.jsonl empty or missing): the "
                       "preference phase would learn nothing", file=str(data_dir / "comparisons.jsonl"))
    console = stage_console(progress)
    out = run_dir / "pref"
    console.print(f"[pref] {pc.method} from {Path(st_dir).name} on {plural(len(rows), 'comparison')}")
    t0 = time.perf_counter()
    pairs, onpolicy = rows, None
    if pc.method == "dpo_onpolicy":  # DPO on the policy's own RM-ranked samples (lab_tools.train.onpolicy)
        pairs, onpolicy = build_pairs(st_dir, rows, rm_dir, pc, out, preset.seed, say=console.print)
    trainer, steps = _trainer("dpo" if onpolicy else pc.method, st_dir, pairs, rm_dir, pc, out, preset.seed,
                              progress, preset, tracking=trainer_tracking(report_to, run_dir, "pref"))
    trainer.train(resume_from_checkpoint=bool(_checkpoints(out)) or None)
    final = out / f"checkpoint-{steps}"
    if not ((final / "config.json").is_file() or (final / "adapter_config.json").is_file()):
        trainer.save_model(str(final))
    history = [r for r in trainer.state.log_history if "loss" in r]
    del trainer
    candidates = [str(p) for p in _checkpoints(out)][-preset.selection.max_checkpoints:]
    if preset.lora.r > 0:  # adapter-only TRL checkpoints -> full model dirs (lab_tools.train.scale)
        candidates = merge_checkpoints(st_dir, candidates, out / "merged", save_dtype(preset))
    for p in _checkpoints(out):  # training is done: optimizer state is only needed to resume
        for name in ("optimizer.pt", "scheduler.pt"):
            (p / name).unlink(missing_ok=True)
    # the candidates' digests as written, before anything reads them (lab_tools.weights)
    digests = {c: file_digests(c) for c in candidates}
    t1 = time.perf_counter()
    with Progress(progress, stage="pref", transient=True) as bar:  # moves as tokens are scored
        choice = select_pref(st_dir, candidates, data_dir, judge_dir, preset.selection,
                             base=manifest.get("base_model"), rm_verdicts=rm_verdicts,
                             capable_judge=capable_judge, console=console, progress=bar, scorer=scorer)
    shift = policy_reward_shift(st_dir, choice["candidate"], rows, rm_dir, pc, preset.selection, scorer=scorer)
    entry = portable({"method": pc.method, "comparisons": len(rows), "steps": steps,
                      "onpolicy": onpolicy, "policy_reward": shift,
                      "reward_model": record(rm_dir, run_dir) if rm_dir else None, "checkpoints": candidates,
                      "log": history, **choice,
                      "seconds": {"train": round(t1 - t0, 2), "selection": round(time.perf_counter() - t1, 2)}},
                     run_dir)
    manifest["phases"]["pref"] = entry
    manifest.setdefault("weights", {}).update(portable(digests, run_dir))
    manifest["selected"] = record(choice["selected"], run_dir)
    write_json(mpath, manifest)
    console.print(f"[pref] selected {choice['selected']} ({choice['reason']})")
    shutil.rmtree(out / "runs", ignore_errors=True)
    return entry


def policy_reward_line(pr: dict) -> str:
    """``policy_reward`` (:func:`lab_tools.train.onpolicy.policy_reward_shift`) in one line."""
    return (f"mean reward-model reward of its answers on {plural(pr['n'], 'pref prompt')}: ST "
            f"{format_estimate(pr['before'])} -> pref candidate {format_estimate(pr['after'])}, change "
            f"{format_estimate(pr['change']['gain'])} ({pr['change']['verdict']})")


def pref_cli(run_dir, data_dir, cfg, *, reward_model=None, judge=None, progress=True) -> dict:
    """``lab train --phase pref``: :func:`train_pref` with the preset of ``lab.yaml``
    (``train.preset``), the judges of :func:`pairwise_judge_dir` and :func:`capable_judge_for`,
    and the reward model; prints the outcome and the figure that decided it."""
    import click

    entry = train_pref(run_dir, data_dir, preset=cfg.train.preset, judge_dir=pairwise_judge_dir(judge, cfg),
                       rm_dir=reward_model, progress=progress,
                       rm_verdicts=rm_verdicts_fn(reward_model, cfg.feedback.rm_max_length),
                       capable_judge=capable_judge_for(judge, cfg), report_to=cfg.train.report_to,
                       scorer=scorer_of(cfg))
    vs_st = (entry.get("decision") or {}).get("pref_vs_st") or {}
    click.echo(f"preference phase ({entry['method']}, {plural(entry['comparisons'], 'comparison')}, "
               f"{plural(entry['steps'], 'step')}): "
               f"kept {entry['kept']}; {vs_st.get('metric', 'no decision')}: {vs_st.get('verdict', '–')} "
               f"(change {format_estimate(vs_st.get('gain'))})")
    click.echo(f"decision: {entry['reason']}")
    if entry.get("policy_reward"):
        click.echo(f"policy moved by {entry['method']}: {policy_reward_line(entry['policy_reward'])}")
    click.echo(f"selected model: {resolve(entry['selected'], run_dir)}")
    return entry

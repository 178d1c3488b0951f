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
which.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

from lab_tools.errors import LabError, plural

METHODS = ("dpo", "dpo_onpolicy", "rloo", "grpo")  # lab_tools.train.config.PREF_METHODS


def read_comparisons(path: Path, limit: int = 0, seed: int = 0) -> list[dict]:
    """Rows ``{"prompt", "chosen", "rejected"}`` (message lists) of ``comparisons.jsonl``, metadata
    dropped; ``limit`` > 0 keeps a seeded random subset of that size.

    Raises:
        LabError: a line is not an object with the three message lists (file, line, field named).
    """
    import random

    from lab_tools.jsonl import iter_jsonl

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
             seed: int, progress: bool, preset=None):
    """The TRL trainer of ``method`` with explicit settings (float32 on CPU, bf16 on a CUDA GPU
    that has it) and evenly spaced checkpoints; from ``preset`` (:mod:`lab_tools.train.scale`):
    LoRA as ``peft_config`` (DPO's reference is then the policy with adapters disabled, no second
    copy), gradient checkpointing, the weights' dtype, and vLLM generation for RLOO/GRPO when
    vLLM and CUDA are there (else transformers ``generate``)."""
    from lab_tools.train import scale

    import torch
    from datasets import Dataset
    from lab_tools.models import load_tokenizer

    on_cpu = not torch.cuda.is_available()
    tok = load_tokenizer(st_dir)
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
                  report_to="none", seed=seed, use_cpu=on_cpu, bf16=not on_cpu and torch.cuda.is_bf16_supported(),
                  **scale.memory_args(preset), model_init_kwargs=scale.model_init_kwargs(preset),
                  disable_tqdm=not progress, dataloader_num_workers=0)
    peft = {"peft_config": scale.peft_config(preset)}
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


def _measure(model_dir: str, prompts: list[dict], items: list[dict], sel, *, answers: bool) -> dict:
    """One load of ``model_dir``: ``{"answers": [str] | None (greedy, ``sel.max_new_tokens``),
    "reference": [nats/token | None per prompt], "mc": [1.0 | 0.0 per item]}``."""
    from lab_tools.eval.scoring import answer_prompts, mc_accuracy, reference_logprob
    from lab_tools.models import load_model

    model, tok = load_model(model_dir)
    return {"answers": answer_prompts(model, tok, prompts, sel.max_new_tokens, batch_size=sel.batch_size)
            if answers and prompts else None,
            "reference": reference_logprob(model, tok, prompts, batch_size=sel.batch_size) if prompts else [],
            "mc": [float(r["correct"]) for r in mc_accuracy(model, tok, items, batch_size=sel.batch_size)[1]]
            if items else []}


def _pick_judge(capable_judge, judge_dir, prompts, models: dict, sel, say) -> tuple[str | None, object, list]:
    """``(kind, judge, statuses)``: the judge that decides (``"capable"`` a Teacher, ``"pairwise"``
    the judge's model dir, loaded again when the answers are in, so it never shares memory with
    a candidate), or ``(None, None, statuses)`` when none may (never the base, ST or a candidate;
    never one unable on the calibration set: :mod:`lab_tools.eval.judges`)."""
    from lab_tools.eval.judges import calibrate_capable, calibrate_pairwise, refusal

    statuses = []
    if capable_judge is not None:
        st = calibrate_capable(capable_judge, prompts)
        statuses.append({"kind": "capable", **st})
        if st["used"]:
            return "capable", capable_judge, statuses
    if judge_dir is None:
        statuses.append({"kind": "pairwise", "used": False,
                         "reason": "no in-process pairwise judge (the judge is a server or scripted)"})
        return None, None, statuses
    why = refusal(judge_dir, models)
    if why:
        statuses.append({"kind": "pairwise", "judge": str(judge_dir), "used": False, "reason": why})
        return None, None, statuses
    from lab_tools.models import load_model

    model, tok = load_model(judge_dir)
    st = calibrate_pairwise(model, tok, prompts, name=str(judge_dir), batch_size=sel.batch_size)
    del model
    statuses.append({"kind": "pairwise", **st})
    if st["used"]:
        return "pairwise", judge_dir, statuses
    say(f"[pref] pairwise judge not used: {st['reason']}")
    return None, None, statuses


def select_pref(st_dir: str, candidates: list[str], data_dir: Path, judge_dir: str | None, sel, *,
                base: str | None = None, rm_verdicts=None, capable_judge=None, console=None) -> dict:
    """Choose among preference-phase ``candidates`` (checkpoint dirs, in training order) and decide
    whether the chosen one replaces ST (the incumbent).

    Sets: the *selection* parts of the held-out prompts and MC items (:mod:`lab_tools.eval.sets`).
    The deciding figure, in this order of preference: win rate vs ST's answers by a judge that may
    judge (``capable_judge``, a Teacher answering A/B in words; else the next-token pairwise judge
    at ``judge_dir``), never the base, ST or a candidate and never one unable on the calibration
    set (:mod:`lab_tools.eval.judges`); without one, the reward model's win rate
    (``rm_verdicts(prompts, answers_x, answers_y) -> [1 | 0.5 | 0]``) with held-out reference
    log-likelihood as a guard; without a reward model, reference log-likelihood alone.
    Candidates: the earliest is the incumbent, a later one replaces it only with a measurable gain
    (:func:`lab_tools.eval.decisions.choose`). Pref vs ST: pref replaces ST only when its gain is
    measurable and neither the knowledge score (MC accuracy) nor, with the reward model deciding,
    reference log-likelihood regresses measurably or is too small to tell; a tie keeps ST.

    Returns ``{"selected", "candidate", "kept": "pref"|"st", "reason", "candidates": {dir:
    {"win_rate", "wins", "ties", "losses", "n", "interval", "rm_win_rate", "reference",
    "mean_length"}}, "knowledge": {"st", "pref"}, "st_mean_length", "judges": [status],
    "decision": {"metric", "candidates" (choose record), "pref_vs_st", "guards"}}``.
    """
    from lab_tools.eval.decisions import GAIN, LOSS, TOO_SMALL, choose, compare, win_rate
    from lab_tools.eval.sets import describe, selection_sets
    from lab_tools.eval.stats import bootstrap_mean, format_estimate

    say = console.print if console else (lambda *_: None)
    mc, prompts = selection_sets(data_dir, sel.max_mc_items, sel.max_prompts)
    if not prompts:
        reason = "no held-out selection prompts to decide on: the release keeps ST (the incumbent)"
        return {"selected": st_dir, "candidate": candidates[0], "kept": "st", "reason": reason, "candidates": {},
                "knowledge": {"st": None, "pref": None}, "st_mean_length": None, "judges": [],
                "decision": {"verdict": reason, "items": []}}
    models = {"base": base, "ST": st_dir, **{f"candidate {Path(c).name}": c for c in candidates}}
    kind, judge, statuses = _pick_judge(capable_judge, judge_dir, prompts, models, sel, say)
    need_answers = kind is not None or rm_verdicts is not None
    st = _measure(st_dir, prompts, mc, sel, answers=need_answers)
    got = {c: _measure(c, prompts, [], sel, answers=need_answers) for c in candidates}
    table, verdicts, rm = {}, {}, {}
    if kind == "pairwise":
        from lab_tools.models import load_model

        judge = load_model(judge)
    for c in candidates:
        row = {"reference": bootstrap_mean(got[c]["reference"]).to_dict()}
        if kind == "capable":
            from lab_tools.eval.preference import capable_judge_win_rate

            verdicts[c] = capable_judge_win_rate(judge, prompts, got[c]["answers"], st["answers"])["verdicts"]
        elif kind == "pairwise":
            from lab_tools.eval.preference import pairwise_win_rate

            verdicts[c] = pairwise_win_rate(*judge, prompts, got[c]["answers"], st["answers"],
                                            batch_size=sel.batch_size)["verdicts"]
        if c in verdicts:
            row.update(win_rate(verdicts[c]))
        if rm_verdicts is not None:
            rm[c] = rm_verdicts(prompts, got[c]["answers"], st["answers"])
            row["rm_win_rate"] = win_rate(rm[c])["win_rate"]
            row["rm"] = win_rate(rm[c])
        if got[c]["answers"] is not None:
            row["mean_length"] = sum(len(a) for a in got[c]["answers"]) / len(got[c]["answers"])
        table[c] = row
        if c in verdicts:
            say(f"[pref] {Path(c).name}: win rate vs ST {row['win_rate']:.3f} "
                f"({row['wins']}-{row['ties']}-{row['losses']}, n {row['n']})")
        else:
            say(f"[pref] {Path(c).name}: reference log-likelihood {format_estimate(row['reference'])}")
    judge = None  # an in-process judge's memory is freed before the knowledge check
    if kind is not None:
        metric, scores, st_scores, prop = "win rate vs ST (judge)", verdicts, [0.5] * len(prompts), True
        by = ("capable judge (written A/B, both orders)" if kind == "capable" else
              "pairwise judge (next-token A/B, both orders)")
        how = f"win rate vs ST on {plural(len(prompts), 'held-out selection prompt')} by the {by}"
    else:
        why = "; ".join(s["reason"] for s in statuses) or "no judge configured"
        if rm:
            metric, scores, st_scores, prop = "win rate vs ST (reward model)", rm, [0.5] * len(prompts), True
            how = (f"no capable judge was used ({why}); decided by the reward model's win rate vs ST on "
                   f"{plural(len(prompts), 'held-out selection prompt')}, held-out reference log-likelihood as a guard")
        else:
            metric, prop = "reference log-likelihood (nats/token)", False
            scores, st_scores = {c: got[c]["reference"] for c in candidates}, st["reference"]
            how = (f"no capable judge was used ({why}) and no reward model; decided by held-out reference "
                   f"log-likelihood on {plural(len(prompts), 'selection prompt')}")
    picked = choose(candidates, scores, metric=metric, is_proportion=prop, items=describe(prompts))
    best = picked["chosen"]
    vs_st = {"metric": metric, **compare(st_scores, scores[best], is_proportion=prop, fixed_a=prop)}
    guards, blocked = {}, []
    knowledge = {"st": None, "pref": None}
    if mc:
        best_mc = _measure(best, [], mc, sel, answers=False)["mc"]
        knowledge = {"st": sum(st["mc"]) / len(mc), "pref": sum(best_mc) / len(mc)}
        guards["knowledge"] = {"metric": "MC accuracy", "items": describe(mc),
                               **compare(st["mc"], best_mc, is_proportion=True)}
    if metric.endswith("(reward model)"):
        guards["reference"] = {"metric": "reference log-likelihood (nats/token)",
                               **compare(st["reference"], got[best]["reference"], is_proportion=False)}
    for name, g in guards.items():
        if g["verdict"] == LOSS:
            blocked.append(f"the preference phase regressed the {'knowledge score' if name == 'knowledge' else name} "
                           f"(change {format_estimate(g['gain'])})")
        elif g["verdict"] == TOO_SMALL:
            blocked.append(f"the {name} set is too small to tell whether pref regresses it "
                           f"(change {format_estimate(g['gain'])})")
    if vs_st["verdict"] != GAIN:
        blocked.insert(0, f"pref's gain over ST: {vs_st['verdict']} (change {format_estimate(vs_st['gain'])})")
    kept = "st" if blocked else "pref"
    reason = how + ("; " + "; ".join(blocked) + ", so the release keeps ST (the incumbent)" if blocked else
                    f"; pref's gain over ST is measurable (change {format_estimate(vs_st['gain'])})")
    st_len = (sum(len(a) for a in st["answers"]) / len(st["answers"])) if st["answers"] else None
    return {"selected": best if kept == "pref" else st_dir, "candidate": best, "kept": kept, "reason": reason,
            "candidates": table, "knowledge": knowledge, "st_mean_length": st_len, "judges": statuses,
            "decision": {"metric": metric, "candidates": picked, "pref_vs_st": vs_st, "guards": guards,
                         "chosen": "pref" if kept == "pref" else "st"}}


def train_pref(run_dir, data_dir, *, preset, judge_dir: str | None, rm_dir: str | None = None,
               progress: bool = True, rm_verdicts=None, capable_judge=None) -> dict:
    """Run the preference phase on training run ``run_dir`` (its ``manifest.json`` must record a
    selected ST model) with ``data_dir/comparisons.jsonl``; resumable (a killed run continues
    from its last TRL checkpoint; a finished one is skipped). Updates the manifest: phase
    ``pref`` (method, steps, candidates, selection and its decision record: :func:`select_pref`;
    ``onpolicy``: the on-policy pairs' record for ``dpo_onpolicy``, else None; ``policy_reward``:
    the RM's mean reward of the policy's answers before vs after, or None without a reward model,
    :func:`lab_tools.train.onpolicy.policy_reward_shift`)
    and ``selected`` when the phase is kept. ``judge_dir``: the in-process pairwise judge (or
    None); ``capable_judge``: a Teacher answering A/B in words (or None); ``rm_verdicts``: see
    :func:`rm_verdicts_fn`.

    Raises:
        LabError: no manifest or no trained ST, no comparisons, an unknown method, or a method
            needing a reward model without one.
    """
    from lab_tools.train.config import load_preset
    from lab_tools.train.loop import write_json
    from lab_tools.train.phases import _console

    preset = load_preset(preset)
    pc = preset.pref
    if pc.method not in METHODS:
        raise LabError(f"pref.method must be one of {', '.join(METHODS)}, got {pc.method!r}", field="pref.method")
    run_dir, data_dir = Path(run_dir), Path(data_dir)
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
    rows = read_comparisons(data_dir / "comparisons.jsonl", pc.max_pairs, preset.seed)
    if not rows:
        raise LabError("no synthetic comparisons to tune on (comparisons.jsonl empty or missing): the "
                       "preference phase would learn nothing", file=str(data_dir / "comparisons.jsonl"))
    console = _console(progress)
    out = run_dir / "pref"
    console.print(f"[pref] {pc.method} from {Path(st['selected']).name} on {plural(len(rows), 'comparison')}")
    t0 = time.perf_counter()
    pairs, onpolicy = rows, None
    if pc.method == "dpo_onpolicy":  # DPO on the policy's own RM-ranked samples (lab_tools.train.onpolicy)
        from lab_tools.train.onpolicy import build_pairs

        pairs, onpolicy = build_pairs(st["selected"], rows, rm_dir, pc, out, preset.seed, say=console.print)
    trainer, steps = _trainer("dpo" if onpolicy else pc.method, st["selected"], pairs, rm_dir, pc, out, preset.seed,
                              progress, preset)
    trainer.train(resume_from_checkpoint=bool(_checkpoints(out)) or None)
    final = out / f"checkpoint-{steps}"
    if not ((final / "config.json").is_file() or (final / "adapter_config.json").is_file()):
        trainer.save_model(str(final))
    history = [r for r in trainer.state.log_history if "loss" in r]
    del trainer
    candidates = [str(p) for p in _checkpoints(out)][-preset.selection.max_checkpoints:]
    if preset.lora.r > 0:  # adapter-only TRL checkpoints -> full model dirs (lab_tools.train.scale)
        from lab_tools.train.loop import _save_dtype
        from lab_tools.train.scale import merge_checkpoints

        candidates = merge_checkpoints(st["selected"], candidates, out / "merged", _save_dtype(preset))
    for p in _checkpoints(out):  # training is done: optimizer state is only needed to resume
        for name in ("optimizer.pt", "scheduler.pt"):
            (p / name).unlink(missing_ok=True)
    t1 = time.perf_counter()
    choice = select_pref(st["selected"], candidates, data_dir, judge_dir, preset.selection,
                         base=manifest.get("base_model"), rm_verdicts=rm_verdicts,
                         capable_judge=capable_judge, console=console)
    from lab_tools.train.onpolicy import policy_reward_shift

    shift = policy_reward_shift(st["selected"], choice["candidate"], rows, rm_dir, pc, preset.selection)
    entry = {"method": pc.method, "comparisons": len(rows), "steps": steps,
             "onpolicy": onpolicy, "policy_reward": shift,
             "reward_model": rm_dir, "checkpoints": candidates, "log": history,
             **choice, "seconds": {"train": round(t1 - t0, 2), "selection": round(time.perf_counter() - t1, 2)}}
    manifest["phases"]["pref"] = entry
    manifest["selected"] = choice["selected"]
    write_json(mpath, manifest)
    console.print(f"[pref] selected {choice['selected']} ({choice['reason']})")
    shutil.rmtree(out / "runs", ignore_errors=True)
    return entry


def pairwise_judge_dir(spec: str | None, cfg) -> str | None:
    """The local causal LM that judges pairs by next-token probability: the judge spec's model
    when it is in-process (``transformers:PATH|embedded``), else None (a server judge gives no
    next-token probabilities through the chat API; it judges as the capable judge instead, see
    :func:`capable_judge_for`). Never the student base by default: a judge is never the base of
    the models it compares (:mod:`lab_tools.eval.judges` refuses one that is)."""
    from lab_tools.models import resolve_model

    spec = spec or cfg.generate.judge or cfg.generate.teacher
    scheme, _, rest = str(spec).partition(":")
    return str(resolve_model(rest or "embedded", cfg.cache_path)) if scheme == "transformers" else None


def capable_judge_for(spec: str | None, cfg, backend=None):
    """The judge that answers A/B in words: a Teacher for an ``openai:``/``vllm:`` judge spec
    (``backend(spec)`` when given, e.g. the build's loaded backends), else None."""
    spec = spec or cfg.generate.judge or cfg.generate.teacher
    if str(spec).split(":", 1)[0] not in ("openai", "vllm"):
        return None
    if backend is not None:
        return backend(spec)
    from lab_tools.sdg.backends import make_teacher

    return make_teacher(spec, cfg.cache_path)


def rm_verdicts_fn(rm_dir: str | None, max_length: int = 1024):
    """``f(prompts, answers_x, answers_y) -> [1 | 0.5 | 0 per prompt]``: whether the reward model
    at ``rm_dir`` scores x above y (0.5 for equal rewards), or None without one. Summarise with
    :func:`lab_tools.eval.decisions.win_rate`. The RM is loaded on the first call, so it takes no
    GPU memory while the policy trains."""
    if not rm_dir:
        return None
    from lab_tools.feedback.evaluate import load_rm, rewards

    loaded: list = []

    def verdicts(prompts, xs, ys):
        if not loaded:
            loaded.extend(load_rm(rm_dir))
        model, tok = loaded
        convs = [[m for m in p["messages"] if m["role"] != "system"] for p in prompts]
        rx = rewards(model, tok, [c + [{"role": "assistant", "content": x}] for c, x in zip(convs, xs)],
                     max_length=max_length)
        ry = rewards(model, tok, [c + [{"role": "assistant", "content": y}] for c, y in zip(convs, ys)],
                     max_length=max_length)
        return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(rx, ry)]
    return verdicts


def policy_reward_line(pr: dict) -> str:
    """``policy_reward`` (:func:`lab_tools.train.onpolicy.policy_reward_shift`) in one line."""
    from lab_tools.eval.stats import format_estimate

    return (f"mean reward-model reward of its answers on {plural(pr['n'], 'pref prompt')}: ST "
            f"{format_estimate(pr['before'])} -> pref candidate {format_estimate(pr['after'])}, change "
            f"{format_estimate(pr['change']['gain'])} ({pr['change']['verdict']})")


def pref_cli(run_dir, data_dir, cfg, *, reward_model=None, judge=None, progress=True) -> dict:
    """``lab train --phase pref``: :func:`train_pref` with the preset of ``lab.yaml``
    (``train.preset``), the judges of :func:`pairwise_judge_dir` and :func:`capable_judge_for`,
    and the reward model; prints the outcome and the figure that decided it."""
    import click

    from lab_tools.eval.stats import format_estimate

    entry = train_pref(run_dir, data_dir, preset=cfg.train.preset, judge_dir=pairwise_judge_dir(judge, cfg),
                       rm_dir=reward_model, progress=progress,
                       rm_verdicts=rm_verdicts_fn(reward_model, cfg.feedback.rm_max_length),
                       capable_judge=capable_judge_for(judge, cfg))
    vs_st = (entry.get("decision") or {}).get("pref_vs_st") or {}
    click.echo(f"preference phase ({entry['method']}, {plural(entry['comparisons'], 'comparison')}, "
               f"{plural(entry['steps'], 'step')}): "
               f"kept {entry['kept']}; {vs_st.get('metric', 'no decision')}: {vs_st.get('verdict', '–')} "
               f"(change {format_estimate(vs_st.get('gain'))})")
    click.echo(f"decision: {entry['reason']}")
    if entry.get("policy_reward"):
        click.echo(f"policy moved by {entry['method']}: {policy_reward_line(entry['policy_reward'])}")
    click.echo(f"selected model: {entry['selected']}")
    return entry

"""The preference phase after ST (ALMoST, arXiv 2305.13735: RL from synthetic feedback).

``pref.method`` (preset section ``pref``, :class:`lab_tools.train.config.PrefConfig`):

- ``dpo`` (default): TRL ``DPOTrainer`` on the synthetic comparisons (``comparisons.jsonl``,
  TRL's conversational explicit-prompt format), the reference being a frozen copy of the ST model;
  no reward model at train time.
- ``rloo`` / ``grpo``: TRL ``RLOOTrainer`` / ``GRPOTrainer`` on the comparisons' prompts with the
  reward model (a sequence-classification dir from ``lab train --phase rm``) as ``reward_funcs``
  and a KL term to the ST model (``beta``). TRL no longer ships PPO, which ALMoST used; RLOO with
  a KL penalty is its closest stable stand-in. No hand-written trainer or RL loop.

The phase starts from the ST-selected checkpoint of a training run (``manifest.json``), saves
``pref.checkpoints`` candidates evenly over its steps (TRL checkpoints, so a killed run resumes
with ``resume_from_checkpoint``), and selects by **win rate against the ST checkpoint** on the
held-out prompts, judged by a position-debiased pairwise judge (next-token probability of A/B,
both orders: :mod:`lab_tools.eval.preference`); the reward model's win rate is reported beside
it, never used to select (it is what the policy was tuned against). LAB's rule: the earlier
candidate wins a tie. If the selected candidate's knowledge score (MC accuracy on
``heldout_mc.jsonl``) is below ST's, the run keeps ST and says so in the manifest.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from pathlib import Path

from lab_tools.errors import LabError

METHODS = ("dpo", "rloo", "grpo")


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
             and (p / "config.json").is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def _trainer(method: str, st_dir: str, rows: list[dict], rm_dir: str | None, pc, out: Path,
             seed: int, progress: bool):
    """The TRL trainer of ``method`` with explicit CPU-safe settings (float32 on CPU, no gradient
    checkpointing: TRL's defaults are bf16 and checkpointing on) and evenly spaced checkpoints."""
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
                  gradient_checkpointing=False, activation_checkpointing=False, disable_tqdm=not progress,
                  dataloader_num_workers=0)
    if method == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(beta=pc.beta, max_length=pc.max_length, **common)
        return DPOTrainer(model=st_dir, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tok), steps
    if not rm_dir:
        raise LabError(f"pref.method {method} needs a reward model: run `lab train --phase rm` first",
                       field="pref.method")
    prompts = list({json.dumps(r["prompt"], sort_keys=True): {"prompt": r["prompt"]} for r in rows}.values())
    rl_args = dict(beta=pc.beta, num_generations=pc.num_generations,
                   max_completion_length=pc.max_completion_length, mask_truncated_completions=True,
                   temperature=pc.temperature, **common)
    from transformers import AutoTokenizer

    rm_tok = AutoTokenizer.from_pretrained(rm_dir)
    if method == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return RLOOTrainer(model=st_dir, reward_funcs=rm_dir, args=RLOOConfig(**rl_args),
                           train_dataset=Dataset.from_list(prompts), processing_class=tok,
                           reward_processing_classes=rm_tok), steps
    from trl import GRPOConfig, GRPOTrainer

    return GRPOTrainer(model=st_dir, reward_funcs=rm_dir, args=GRPOConfig(**rl_args),
                       train_dataset=Dataset.from_list(prompts), processing_class=tok,
                       reward_processing_classes=rm_tok), steps


def _answers(model_dir: str, prompts: list[dict], sel) -> list[str]:
    from lab_tools.eval.scoring import answer_prompts
    from lab_tools.models import load_model

    model, tok = load_model(model_dir)
    return answer_prompts(model, tok, prompts, sel.max_new_tokens, batch_size=sel.batch_size)


def _mc(model_dir: str, items: list[dict], sel) -> float | None:
    if not items:
        return None
    from lab_tools.eval.scoring import mc_accuracy
    from lab_tools.models import load_model

    model, tok = load_model(model_dir)
    return mc_accuracy(model, tok, items, batch_size=sel.batch_size)[0]


def select_pref(st_dir: str, candidates: list[str], data_dir: Path, judge_dir: str, sel, *,
                rm_win_rate=None, console=None) -> dict:
    """Choose among preference-phase ``candidates`` (checkpoint dirs, in training order).

    Each candidate answers the held-out prompts (greedy, ``sel.max_new_tokens``); the pairwise
    judge (causal LM at ``judge_dir``) gives its win rate against ST's answers; the highest win
    rate is selected, the earlier on a tie (LAB 3.3). Then the knowledge score (MC accuracy on
    held-out items) of the selected candidate is compared with ST's: lower keeps ST.
    ``rm_win_rate``: optional ``f(prompts, answers_x, answers_y) -> float`` (the reward model's
    view, recorded only).

    Returns ``{"selected": dir, "kept": "pref"|"st", "reason", "candidates": {dir: {"win_rate",
    "rm_win_rate", "wins", "ties", "losses"}}, "knowledge": {"st", "pref"}, "mean_length": {...}}``.
    """
    from lab_tools.eval.heldout import read_mc_items, read_prompts
    from lab_tools.eval.preference import pairwise_win_rate
    from lab_tools.models import load_model

    say = console.print if console else (lambda *_: None)
    prompts = read_prompts(data_dir / "heldout_prompts.jsonl")[: sel.max_prompts]
    items = read_mc_items(data_dir / "heldout_mc.jsonl")[: sel.max_mc_items]
    if not prompts:
        best, table = candidates[-1], {}
        method = "last checkpoint (no held-out prompts to judge on)"
        st_answers = []
    else:
        st_answers = _answers(st_dir, prompts, sel)
        answers = {c: _answers(c, prompts, sel) for c in candidates}
        judge, jtok = load_model(judge_dir)
        table = {}
        for c in candidates:
            wr = pairwise_win_rate(judge, jtok, prompts, answers[c], st_answers, batch_size=sel.batch_size)
            table[c] = {k: wr[k] for k in ("win_rate", "wins", "ties", "losses", "n")}
            table[c]["mean_length"] = sum(len(a) for a in answers[c]) / len(answers[c])
            if rm_win_rate is not None:
                table[c]["rm_win_rate"] = rm_win_rate(prompts, answers[c], st_answers)
            say(f"[pref] {Path(c).name}: win rate vs ST {wr['win_rate']:.3f} "
                f"({wr['wins']}-{wr['ties']}-{wr['losses']})")
        del judge
        best = candidates[0]
        for c in candidates[1:]:  # strictly greater: a tie keeps the earlier checkpoint
            if table[c]["win_rate"] > table[best]["win_rate"]:
                best = c
        method = f"win rate vs ST on {len(prompts)} held-out prompts (pairwise judge, both orders)"
    knowledge = {"st": _mc(st_dir, items, sel), "pref": _mc(best, items, sel)}
    kept, reason = "pref", method
    if knowledge["st"] is not None and knowledge["pref"] < knowledge["st"]:
        kept = "st"
        reason = (f"{method}; the preference phase regressed the knowledge score "
                  f"({knowledge['pref']:.3f} < ST {knowledge['st']:.3f}), so the release keeps ST")
    return {"selected": best if kept == "pref" else st_dir, "candidate": best, "kept": kept,
            "reason": reason, "candidates": table, "knowledge": knowledge,
            "st_mean_length": (sum(len(a) for a in st_answers) / len(st_answers)) if st_answers else None}


def train_pref(run_dir, data_dir, *, preset, judge_dir: str, rm_dir: str | None = None,
               progress: bool = True, rm_win_rate=None) -> dict:
    """Run the preference phase on training run ``run_dir`` (its ``manifest.json`` must record a
    selected ST model) with ``data_dir/comparisons.jsonl``; resumable (a killed run continues
    from its last TRL checkpoint; a finished one is skipped). Updates the manifest: phase
    ``pref`` (method, steps, candidates, selection) and ``selected`` when the phase is kept.

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
    console.print(f"[pref] {pc.method} from {Path(st['selected']).name} on {len(rows)} comparisons")
    t0 = time.perf_counter()
    trainer, steps = _trainer(pc.method, st["selected"], rows, rm_dir, pc, out, preset.seed, progress)
    trainer.train(resume_from_checkpoint=bool(_checkpoints(out)) or None)
    final = out / f"checkpoint-{steps}"
    if not (final / "config.json").is_file():
        trainer.save_model(str(final))
    history = [r for r in trainer.state.log_history if "loss" in r]
    del trainer
    candidates = [str(p) for p in _checkpoints(out)][-preset.selection.max_checkpoints:]
    for p in _checkpoints(out):  # training is done: optimizer state is only needed to resume
        for name in ("optimizer.pt", "scheduler.pt"):
            (p / name).unlink(missing_ok=True)
    t1 = time.perf_counter()
    choice = select_pref(st["selected"], candidates, data_dir, judge_dir, preset.selection,
                         rm_win_rate=rm_win_rate, console=console)
    entry = {"method": pc.method, "comparisons": len(rows), "steps": steps,
             "reward_model": rm_dir, "checkpoints": candidates, "log": history,
             **choice, "seconds": {"train": round(t1 - t0, 2), "selection": round(time.perf_counter() - t1, 2)}}
    manifest["phases"]["pref"] = entry
    manifest["selected"] = choice["selected"]
    write_json(mpath, manifest)
    console.print(f"[pref] selected {choice['selected']} ({choice['reason']})")
    shutil.rmtree(out / "runs", ignore_errors=True)
    return entry


def pairwise_judge_dir(spec: str | None, cfg) -> str:
    """The local causal LM that judges pairs by next-token probability: the judge spec's model
    when it is in-process (``transformers:PATH|embedded``), else the student base (a server judge
    gives no next-token probabilities through the chat API)."""
    from lab_tools.models import resolve_model

    spec = spec or cfg.generate.judge or cfg.generate.teacher
    scheme, _, rest = str(spec).partition(":")
    model = (rest or "embedded") if scheme == "transformers" else cfg.train.student
    return str(resolve_model(model, cfg.cache_path))


def rm_win_rate_fn(rm_dir: str | None, max_length: int = 1024):
    """``f(prompts, answers_x, answers_y) -> win rate of x`` by the reward model at ``rm_dir``
    (ties half), or None without one."""
    if not rm_dir:
        return None
    from lab_tools.feedback.evaluate import load_rm, rewards

    model, tok = load_rm(rm_dir)

    def win_rate(prompts, xs, ys):
        convs = [[m for m in p["messages"] if m["role"] != "system"] for p in prompts]
        rx = rewards(model, tok, [c + [{"role": "assistant", "content": x}] for c, x in zip(convs, xs)],
                     max_length=max_length)
        ry = rewards(model, tok, [c + [{"role": "assistant", "content": y}] for c, y in zip(convs, ys)],
                     max_length=max_length)
        return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(rx, ry)) / len(rx) if rx else None
    return win_rate


def pref_cli(run_dir, data_dir, cfg, *, reward_model=None, judge=None, progress=True) -> dict:
    """``lab train --phase pref``: :func:`train_pref` with the preset of ``lab.yaml``
    (``train.preset``), the pairwise judge of :func:`pairwise_judge_dir` and the reward model's
    win rate beside it; prints the outcome."""
    import click

    entry = train_pref(run_dir, data_dir, preset=cfg.train.preset, judge_dir=pairwise_judge_dir(judge, cfg),
                       rm_dir=reward_model, progress=progress,
                       rm_win_rate=rm_win_rate_fn(reward_model, cfg.feedback.rm_max_length))
    best = entry["candidates"].get(entry["candidate"], {})
    click.echo(f"preference phase ({entry['method']}, {entry['comparisons']} comparisons, {entry['steps']} steps): "
               f"kept {entry['kept']}; win rate vs ST {best.get('win_rate', float('nan')):.3f} (judge)"
               + (f", {best['rm_win_rate']:.3f} (reward model)" if best.get("rm_win_rate") is not None else ""))
    click.echo(f"selected model: {entry['selected']}")
    return entry

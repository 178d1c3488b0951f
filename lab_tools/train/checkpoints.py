"""A training phase's model in and out: load it trainable in the preset's dtype (with LoRA when
configured; :func:`load_trainable`), and save a loadable Hugging Face checkpoint atomically in the
preset's save dtype, LoRA merged (:func:`save_hf_checkpoint`). Used by the phase loop
(:mod:`lab_tools.train.loop`) and the preference phase (:mod:`lab_tools.train.pref`)."""

from __future__ import annotations

from pathlib import Path

from lab_tools.atomic import atomic_dir
from lab_tools.train.config import Preset


def mixed_precision(preset: Preset) -> str:
    """Accelerate's ``mixed_precision`` for ``preset``: its own value, or for ``auto`` ``bf16``
    on CUDA and ``no`` elsewhere."""
    import torch

    if preset.mixed_precision == "auto":
        return "bf16" if torch.cuda.is_available() else "no"
    return preset.mixed_precision


def save_dtype(preset: Preset):
    """The torch dtype checkpoints of ``preset`` are saved in (``preset.save_dtype``; ``auto``:
    bfloat16 when training runs in bf16 mixed precision), or None to keep the model's own."""
    import torch

    if preset.save_dtype == "auto":
        return torch.bfloat16 if mixed_precision(preset) == "bf16" else None
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

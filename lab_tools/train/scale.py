"""What the TRL preference phase (:mod:`lab_tools.train.pref`) takes from the training preset so
that a 7B/13B policy fits: LoRA, gradient checkpointing and the weights' dtype, as the SFT loop
applies them (:func:`lab_tools.train.checkpoints.load_trainable`), and vLLM generation for RLOO/GRPO.

- LoRA (preset ``lora.r`` > 0, :class:`lab_tools.train.config.LoraConfig`): a peft
  ``LoraConfig`` (``task_type`` CAUSAL_LM, the preset's rank, alpha, dropout and target
  modules) passed to the TRL trainer as ``peft_config``. With ``ref_model=None``, DPOTrainer
  then uses the policy with its adapters disabled as the reference (TRL 1.16
  ``trl/trainer/dpo_trainer.py``: ``self.ref_model = None`` for a peft model, reference
  log-probabilities under ``use_adapter(..., adapter_name=None)``), so no second full copy of
  the model is loaded; RLOO/GRPO do the same for their KL term. TRL then saves adapter-only
  checkpoints: :func:`merge_checkpoints` merges each into a full model directory for selection
  and release (peft ``merge_and_unload``), as the SFT loop's checkpoints are.
- Gradient checkpointing: the preset's ``gradient_checkpointing`` (TRL's own default is on;
  ours follows the preset, off for ``tiny-cpu``).
- dtype: the preset's ``dtype`` (``auto`` = float32 master weights, TRL's own default when
  loading from a path), passed as ``model_init_kwargs``.
- RLOO/GRPO generation: vLLM colocated on the training GPU (``use_vllm=True``,
  ``vllm_mode="colocate"``, TRL's own ``vllm_gpu_memory_utilization`` 0.3) when vLLM is
  importable and CUDA is present; otherwise ``model.generate`` of transformers (CPU, or a GPU
  without vLLM: slower, the same samples' distribution).
"""

from __future__ import annotations

from pathlib import Path

from lab_tools.atomic import atomic_dir
from lab_tools.errors import LabError


def peft_config(preset):
    """The peft ``LoraConfig`` of ``preset.lora`` (``task_type`` CAUSAL_LM), or None when the
    preset has no LoRA (``r`` 0) or no preset is given."""
    lora = getattr(preset, "lora", None)
    if lora is None or lora.r <= 0:
        return None
    from peft import LoraConfig

    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=list(lora.target_modules), task_type="CAUSAL_LM")


def memory_args(preset) -> dict:
    """TRL/transformers training arguments for activation memory: the preset's
    ``gradient_checkpointing`` under both its names (transformers 5 ``activation_checkpointing``
    and the deprecated alias TRL reads), False without a preset."""
    on = bool(getattr(preset, "gradient_checkpointing", False))
    return {"gradient_checkpointing": on, "activation_checkpointing": on}


def model_init_kwargs(preset) -> dict:
    """``model_init_kwargs`` for a TRL trainer loading the policy from a path: the preset's
    ``dtype`` (``auto``: float32, TRL's default) as a string TRL accepts."""
    dtype = getattr(preset, "dtype", "auto")
    return {"dtype": "float32" if dtype in ("auto", None) else dtype}


def vllm_generation_args() -> dict:
    """RLOO/GRPO config arguments for generation: ``use_vllm=True, vllm_mode="colocate"`` when
    vLLM is importable and CUDA is present, else ``{}`` (TRL generates with transformers'
    ``model.generate``)."""
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("vllm") is not None:
        return {"use_vllm": True, "vllm_mode": "colocate"}
    return {}


def is_adapter_checkpoint(path: Path) -> bool:
    """A TRL checkpoint of a peft model: adapter files, no full model config."""
    return (Path(path) / "adapter_config.json").is_file() and not (Path(path) / "config.json").is_file()


def merge_checkpoints(base_dir: str | Path, checkpoints: list[str], out_root: Path, dtype=None) -> list[str]:
    """Each adapter checkpoint of ``checkpoints`` merged into the base model at ``base_dir`` and
    saved as a full model directory ``out_root/<checkpoint name>`` (safetensors, config,
    tokenizer; written atomically, reused when already there), in ``dtype`` when given (else
    the base's). Checkpoints that are already full models are returned as they are. Returns
    the directories in the same order.

    Raises:
        LabError: an adapter that does not load onto the base (named)."""
    out = []
    for ckpt in map(Path, checkpoints):
        if not is_adapter_checkpoint(ckpt):
            out.append(str(ckpt))
            continue
        target = Path(out_root) / ckpt.name
        if not (target / "config.json").is_file():
            from peft import PeftModel
            from transformers import AutoModelForCausalLM, AutoTokenizer

            try:
                base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype or "auto")
                merged = PeftModel.from_pretrained(base, str(ckpt)).merge_and_unload()
            except (OSError, ValueError, RuntimeError) as exc:
                raise LabError(f"cannot merge the LoRA checkpoint into {base_dir}: {exc}", file=str(ckpt)) from exc
            if dtype is not None:
                merged = merged.to(dtype)
            with atomic_dir(target) as tmp:
                merged.save_pretrained(tmp, safe_serialization=True)
                AutoTokenizer.from_pretrained(ckpt if (ckpt / "tokenizer_config.json").is_file() else base_dir) \
                    .save_pretrained(tmp)
            del base, merged
        out.append(str(target))
    return out

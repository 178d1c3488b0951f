"""The preference phase at 7B/13B scale, checked on a tiny random model on CPU: the training
preset's LoRA reaches the TRL trainers (few trainable parameters; DPO and RLOO take the policy
with its adapters disabled as the reference, so no second copy is loaded), gradient
checkpointing comes from the preset, adapter checkpoints are merged into loadable candidates,
and RLOO/GRPO generate with colocated vLLM only when vLLM and CUDA are both there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab_tools.tiny import make_tiny_reward_model
from lab_tools.train import pref, scale
from lab_tools.train.config import preset_from_dict
from tests.train.test_pref import _planted, _raw, _run

LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}


def _preset(lora: dict | None = None, checkpointing: bool = False, **pref_kw):
    raw = _raw(**pref_kw)
    if lora:
        raw["lora"] = lora
    raw["gradient_checkpointing"] = checkpointing
    return preset_from_dict(raw)


def _rows():
    from tests.train.test_pref import PAIRS

    return [{"prompt": [{"role": "user", "content": q}], "chosen": [{"role": "assistant", "content": c}],
             "rejected": [{"role": "assistant", "content": r}]} for q, c, r in PAIRS * 2]


def _counts(model) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@pytest.mark.parametrize("method", ["dpo", "rloo"])
def test_lora_preset_reaches_the_trainer_and_no_reference_copy_is_made(tmp_path, tiny_model, method):
    from accelerate.utils import is_peft_model

    rm = str(make_tiny_reward_model(tiny_model, tmp_path / "rm")) if method == "rloo" else None
    preset = _preset(LORA, checkpointing=True, method=method, num_generations=2, max_completion_length=8)
    trainer, _ = pref._trainer(method, str(tiny_model), _rows(), rm, preset.pref, tmp_path / "out", 1, False,
                               preset)
    assert is_peft_model(trainer.model)
    assert trainer.ref_model is None  # the reference is the policy with its adapters disabled
    trainable, total = _counts(trainer.model)
    assert 0 < trainable < total / 10, (trainable, total)
    assert trainer.args.gradient_checkpointing and trainer.args.activation_checkpointing
    assert not trainer.args.bf16  # no CUDA here: float32


def test_without_lora_the_whole_model_trains_and_checkpointing_follows_the_preset(tmp_path, tiny_model):
    from accelerate.utils import is_peft_model

    preset = _preset(None, checkpointing=False)
    trainer, _ = pref._trainer("dpo", str(tiny_model), _rows(), None, preset.pref, tmp_path / "out", 1, False,
                               preset)
    assert not is_peft_model(trainer.model)
    trainable, total = _counts(trainer.model)
    assert trainable == total
    assert not trainer.args.gradient_checkpointing


def test_pref_phase_with_lora_merges_its_candidates(tmp_path, tiny_model, monkeypatch):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    run, data = _run(tmp_path, tiny_model)
    _planted(monkeypatch, lambda d, i: True)  # selection itself is tested in test_pref.py
    entry = pref.train_pref(run, data, preset=_preset(LORA, epochs=1), judge_dir=None, progress=False)
    assert entry["steps"] == 3 and len(entry["checkpoints"]) == 2
    assert any(scale.is_adapter_checkpoint(p) for p in (run / "pref").glob("checkpoint-*"))
    st = load_file(str(Path(tiny_model) / "model.safetensors"))
    for c in entry["checkpoints"]:  # recorded relative to the run folder (issue 27)
        c = run / c
        assert c.parent == run / "pref" / "merged" and not (c / "adapter_config.json").exists()
        AutoModelForCausalLM.from_pretrained(c)  # a plain model directory
        merged = load_file(str(c / "model.safetensors"))
        q = "model.layers.0.self_attn.q_proj.weight"
        assert not torch.allclose(merged[q], st[q]), "the adapters were not merged in"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["phases"]["pref"]["checkpoints"] == entry["checkpoints"]


def test_rl_generation_uses_colocated_vllm_only_with_cuda_and_vllm(monkeypatch):
    import importlib.util

    import torch

    real = importlib.util.find_spec
    for cuda, vllm, expected in ((False, False, {}), (True, False, {}), (False, True, {}),
                                 (True, True, {"use_vllm": True, "vllm_mode": "colocate"})):
        monkeypatch.setattr(torch.cuda, "is_available", lambda c=cuda: c)
        monkeypatch.setattr(importlib.util, "find_spec",
                            lambda name, *a, v=vllm: (object() if v else None) if name == "vllm" else real(name, *a))
        assert scale.vllm_generation_args() == expected, (cuda, vllm)


def test_scale_helpers_follow_the_preset():
    preset = _preset(LORA, checkpointing=True)
    cfg = scale.peft_config(preset)
    assert cfg.r == 4 and cfg.lora_alpha == 8 and set(cfg.target_modules) == set(LORA["target_modules"])
    assert scale.peft_config(_preset(None)) is None and scale.peft_config(None) is None
    assert scale.memory_args(preset) == {"gradient_checkpointing": True, "activation_checkpointing": True}
    assert scale.model_init_kwargs(preset) == {"dtype": "float32"}

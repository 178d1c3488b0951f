"""The loop's invariants: LR warm-up then constant, and accumulation-independent updates."""

from __future__ import annotations

import pytest

from lab_tools.train.data import tokenize_sample
from lab_tools.train.loop import accumulate, lr_factor, step_batches


def test_lr_warms_up_linearly_then_stays_constant():
    f = [lr_factor(s, 3) for s in range(8)]
    assert f[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert f[3:] == [1.0] * 5
    assert [lr_factor(s, 0) for s in range(3)] == [1.0, 1.0, 1.0]


def test_step_batches_cover_each_sample_once_per_epoch():
    steps = step_batches(10, 4, seed=1, epoch=0)
    assert [len(s) for s in steps] == [4, 4, 2]
    assert sorted(i for s in steps for i in s) == list(range(10))
    assert steps == step_batches(10, 4, seed=1, epoch=0)
    assert steps != step_batches(10, 4, seed=1, epoch=1)


def _one_update(model_dir, samples, groups):
    import torch
    from accelerate import Accelerator
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    acc = Accelerator(mixed_precision="no")
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.train()
    # plain SGD: the update is the (clipped) gradient itself; Adam's g/sqrt(v) would amplify
    # float noise of near-zero gradients into sign flips and hide what is being compared
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    model, opt = acc.prepare(model, opt)
    accumulate(acc, model, groups, sum(s.n_loss for s in samples))
    acc.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return {k: v.detach().clone() for k, v in acc.unwrap_model(model).state_dict().items()}


def test_8x1_and_1x8_accumulation_give_the_same_update(tiny_model):
    import torch
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    # samples of different lengths, so per-micro-batch averaging would NOT be equivalent
    samples = [tokenize_sample(tok, [{"role": "user", "content": f"Question {i}?"},
                                     {"role": "assistant", "content": "Paris is the capital. " * (1 + i % 3)}])
               for i in range(8)]
    one_batch = _one_update(tiny_model, samples, [samples])             # 8 samples x 1 step
    eight_steps = _one_update(tiny_model, samples, [[s] for s in samples])  # 1 sample x 8 steps
    start = {k: v for k, v in __import__("transformers").AutoModelForCausalLM
             .from_pretrained(tiny_model).state_dict().items()}
    moved = 0
    for k in one_batch:
        torch.testing.assert_close(one_batch[k], eight_steps[k], atol=1e-6, rtol=1e-4)
        moved += int(not torch.equal(one_batch[k], start[k]))
    assert moved > 0  # the update is not trivially empty


def test_lora_phase_saves_a_merged_plain_checkpoint(tiny_model, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lab_tools.train.config import preset_from_dict
    from lab_tools.train.loop import train_phase

    preset = preset_from_dict({"max_seq_len": 96, "micro_batch_tokens": 192, "dtype": "float32",
                               "mixed_precision": "no", "lora": {"r": 4, "alpha": 8},
                               "kt1": {"learning_rate": 1e-2, "effective_batch_size": 2}})
    tok = AutoTokenizer.from_pretrained(tiny_model)
    samples = [tokenize_sample(tok, [{"role": "user", "content": "Question?"},
                                     {"role": "assistant", "content": "Paris is the capital."}])] * 4
    run = train_phase(tiny_model, samples, "kt1", preset.kt1, preset, tmp_path / "kt1", progress=False)
    ckpt = run.checkpoints[-1]
    weights = load_file(f"{ckpt}/model.safetensors")
    assert not any("lora" in k for k in weights)  # merged: loads like any model (vLLM too)
    base = load_file(f"{tiny_model}/model.safetensors")
    q = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(weights[q], base[q])  # the adapter was trained and merged
    mlp = "model.layers.0.mlp.up_proj.weight"
    assert torch.equal(weights[mlp], base[mlp])  # non-target modules untouched
    AutoModelForCausalLM.from_pretrained(ckpt)


def test_bf16_mixed_precision_path_and_bf16_checkpoints(tiny_model, tmp_path):
    """The GPU code path (bf16 autocast through Accelerate, bf16 checkpoints), run on CPU."""
    import math

    import torch
    from accelerate.state import AcceleratorState
    from safetensors.torch import load_file
    from transformers import AutoTokenizer

    from lab_tools.train.config import preset_from_dict
    from lab_tools.train.loop import train_phase

    preset = preset_from_dict({"max_seq_len": 96, "micro_batch_tokens": 192, "mixed_precision": "bf16",
                               "kt1": {"learning_rate": 1e-3, "effective_batch_size": 2}})
    tok = AutoTokenizer.from_pretrained(tiny_model)
    samples = [tokenize_sample(tok, [{"role": "user", "content": "Question?"},
                                     {"role": "assistant", "content": "Paris is the capital."}])] * 4
    AcceleratorState._reset_state(True)
    try:
        run = train_phase(tiny_model, samples, "kt1", preset.kt1, preset, tmp_path / "kt1", progress=False)
    finally:
        AcceleratorState._reset_state(True)
    assert all(math.isfinite(r["loss"]) for r in run.rows)
    weights = load_file(f"{run.checkpoints[-1]}/model.safetensors")
    assert {v.dtype for v in weights.values()} == {torch.bfloat16}

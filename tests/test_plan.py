"""`--plan`: the memory arithmetic against a hand computation, the LAB presets' stages against an
80 GiB GPU, and `lab train --plan --json` (valid JSON, no weights loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab_tools.config import load_config
from lab_tools.plan import make_plan
from lab_tools.train.plan import GiB, TrainJob, generate_parts, read_shape, train_parts, vllm_plan

TINY = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
        "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
        "tie_word_embeddings": False}


@pytest.fixture()
def tiny_config(tmp_path) -> Path:
    """A directory with a tiny Llama config.json and a weights file that is not one: anything
    that tried to read weights would fail."""
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(TINY))
    (d / "model.safetensors").write_bytes(b"not weights")
    return d


def test_shape_of_a_tiny_config_by_hand(tiny_config):
    s = read_shape(tiny_config)
    # embeddings 256*64; per layer q 64*64, k and v 64*32 (2 KV heads x head_dim 16), o 64*64,
    # gate/up/down 3 * 64*128, two norms 2*64; final norm 64; LM head 256*64 (untied)
    layer = 4096 + 2048 + 2048 + 4096 + 3 * 8192 + 128
    assert layer == 36992
    assert s.params == 16384 + 2 * layer + 64 + 16384 == 106816
    assert s.unit_params == layer  # > the root unit: 106816 - 2 * 36992 = 32832
    assert (s.hidden, s.layers, s.heads, s.kv_heads, s.head_dim, s.intermediate, s.vocab) == \
        (64, 2, 4, 2, 16, 128, 256)
    assert s.kv_bytes_per_token(2) == 2 * 2 * 2 * 16 * 2 == 256
    assert s.lora_params(8, ["q_proj", "v_proj"]) == 8 * 2 * ((64 + 64) + (64 + 32)) == 3584


def test_train_arithmetic_by_hand(tiny_config):
    s, P = read_shape(tiny_config), 106816
    # one GPU, float32 weights, bf16 autocast, no checkpointing, 32 packed tokens
    job = TrainJob(s, weight_bytes=4, compute_bytes=2, trainable=P, tokens=32, logit_tokens=32, mask_bytes=32 * 32)
    per_layer = 2 * (4 + 4) * 64 + 2 * (6 * 64 + 4 * 128)  # norms (float32 residual) + attention/MLP in bf16
    assert per_layer == 2816
    assert train_parts(job) == {
        "weights": 4 * P, "gradients": 4 * P, "optimizer": 8 * P,  # AdamW: 2 states, float32
        "autocast_weight_copies": 2 * P,
        "activations": 32 * 2 * per_layer,
        "logits": 32 * 256 * (2 + 4 + 4),
        "attention_mask": 1024,
    }
    # FSDP over 2 GPUs with gradient checkpointing: states halved, bf16 residual stream, three
    # bf16 units, layer inputs + one layer recomputed
    sharded = train_parts(TrainJob(s, 4, 2, P, fsdp=2, checkpointing=True, tokens=32, logit_tokens=32))
    per_layer_bf16 = 2 * (4 + 2) * 64 + 2 * (6 * 64 + 4 * 128)
    assert sharded == {"weights": 2 * P, "gradients": 2 * P, "optimizer": 4 * P,
                       "fsdp_unsharded_units": 3 * 36992 * 2,
                       "activations": 32 * (2 * 2 * 64 + per_layer_bf16), "logits": 32 * 256 * 10}
    # LoRA: gradients and AdamW states only for the adapters; a DPO reference is a frozen copy
    lora = train_parts(TrainJob(s, 4, 4, 3584, frozen=P))
    assert (lora["weights"], lora["gradients"], lora["optimizer"], lora["reference_model"]) == \
        (4 * P, 4 * 3584, 8 * 3584, 4 * P)


def test_generation_arithmetic_by_hand(tiny_config):
    s, P = read_shape(tiny_config), 106816
    g = generate_parts(s, batch=3, prompt_tokens=10, new_tokens=6)
    assert g == {"weights": 2 * P, "kv_cache": 3 * 16 * 256, "prefill_activations": 3 * 10 * 2 * (4 * 64 + 3 * 128)}
    v = vllm_plan(s, tp=2, gpu_bytes=10 * GiB, seq_tokens=100)
    assert v.weights == P  # bf16 over 2 GPUs
    assert v.reserved == int(0.9 * 10 * GiB) and v.kv_pool == v.reserved - P - 4 * GiB
    assert v.min_kv == 128 * 512  # 256 B per token split over 2 ranks, max_model_len 512
    assert v.sequences == 256 and v.fits


GPU_LAB_YAML = """\
generate:
  teacher: openai:http://127.0.0.1:8000/v1#mixtral   # served by vLLM on its own GPUs
feedback:
  enabled: true
  preset: gpu
  self_play: true
"""


@pytest.mark.parametrize("preset,gpus", [("merlinite-7b", 8), ("labradorite-13b", 16)])
def test_lab_presets_fit_80_gib_per_gpu(preset, gpus, tmp_path):
    (tmp_path / "lab.yaml").write_text(GPU_LAB_YAML)
    cfg = load_config(tmp_path)
    cfg.override("train.preset", preset)
    plan = make_plan("build", cfg, gpu_memory=80)
    stages = {s["stage"]: s for s in plan["stages"]}
    assert list(stages) == ["generate", "comparisons", "reward_model", "self_play", "kt1", "kt2", "st", "pref"]
    for s in plan["stages"]:
        assert s["fits"] and s["peak_bytes"] <= 80 * GiB, (s["stage"], s["peak_gib"], s["notes"])
    assert plan["fits"] and plan["gpus"] == {"training_node": gpus, "teacher_server": 2}
    for phase in ("kt1", "kt2", "st", "pref", "reward_model"):
        assert stages[phase]["gpus"] == gpus  # FSDP over the preset's plan.fsdp_gpus
    # full fine-tuning of the student does not fit one 80 GiB GPU: the plan says so
    assert stages["kt1"]["min_gpus"] > 1 and stages["reward_model"]["min_gpus"] > 1
    assert stages["generate"]["models"][0]["params"] > 46e9  # Mixtral-8x7B, tensor parallel 2
    assert "context 2048" in stages["kt1"]["notes"][0] and "context 4096" in stages["st"]["notes"][0]


def test_a_stage_that_does_not_fit_says_how_many_gpus(tmp_path):
    (tmp_path / "lab.yaml").write_text(GPU_LAB_YAML)
    cfg = load_config(tmp_path)
    cfg.override("train.preset", "merlinite-7b")
    plan = make_plan("train", cfg, gpu_memory=24)
    assert not plan["fits"]
    assert all(not s["fits"] and s["min_gpus"] and s["min_gpus"] > 8 for s in plan["stages"])


def test_lab_train_plan_json_loads_no_weights(tiny_config, tmp_path, monkeypatch, run_lab):
    import safetensors.torch
    import transformers

    def refuse(*args, **kwargs):
        raise AssertionError("the plan must not load weights")

    monkeypatch.setattr(transformers.PreTrainedModel, "from_pretrained", classmethod(refuse))
    monkeypatch.setattr(safetensors.torch, "load_file", refuse)
    monkeypatch.chdir(tmp_path)
    code, out = run_lab(["train", "--plan", "--preset", "tiny-cpu", "--model", str(tiny_config), "--json"])
    assert code == 0, out.err
    plan = json.loads(out.out)
    assert [s["stage"] for s in plan["stages"]] == ["kt1", "kt2", "st"]
    assert plan["student"] == {"path": str(tiny_config), "source": "--model"}
    kt1 = plan["stages"][0]
    assert kt1["models"][0]["params"] == 106816 and kt1["fits"] and kt1["gpus"] == 1
    assert kt1["per_gpu"]["weights"] == 4 * 106816  # tiny-cpu: float32, no mixed precision


def test_plan_refuses_a_directory_without_config(tmp_path, monkeypatch, run_lab):
    monkeypatch.chdir(tmp_path)
    code, out = run_lab(["train", "--plan", "--preset", "tiny-cpu", "--model", str(tmp_path)])
    assert code != 0 and "config.json" in out.err

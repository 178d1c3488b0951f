"""The reward model at 7B/13B scale, checked on a tiny random model on CPU: LoRA through peft
(``feedback.rm_lora_r``; far fewer trainable parameters, the saved RM a plain merged
sequence-classification model that scores like the trained one), gradient checkpointing and
bf16 from the settings, the scoring batch size, and every pair TRL drops for
``feedback.rm_max_length`` counted in the manifest."""

from __future__ import annotations

import json
import random

import pytest

from lab_tools.config import Config
from lab_tools.feedback import rm as rm_mod
from lab_tools.feedback.evaluate import load_rm, score_pairs
from lab_tools.feedback.rm import split_by_leaf, train_reward_model

WORDS = "the answer is correct and complete knowledge documents are chunked into passages".split()


def _rows(n_leaves: int = 4, per_leaf: int = 6, long_every: int = 0, seed: int = 0) -> list[dict]:
    """Pairs whose chosen response ends in "yes." and rejected in "no."; every ``long_every``-th
    pair gets a long chosen response (for the length limit)."""
    rng = random.Random(seed)
    rows = []
    for leaf in range(n_leaves):
        for k in range(per_leaf):
            n = len(rows)
            words = 60 if long_every and n % long_every == 0 else rng.randint(3, 8)
            chosen = " ".join(rng.choice(WORDS) for _ in range(words)) + " yes."
            rejected = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 8))) + " no."
            rows.append({"prompt": [{"role": "user", "content": f"Question {k}: what is the score?"}],
                         "chosen": [{"role": "assistant", "content": chosen}],
                         "rejected": [{"role": "assistant", "content": rejected}],
                         "metadata": {"leaf": f"compositional_skills/leaf{leaf}", "id": f"pair-{n}"}})
    return rows


def _cfg(tmp_path, tiny_model, **fb) -> Config:
    cfg = Config(cache_dir=str(tmp_path / "cache"))
    cfg.train.student = str(tiny_model)
    cfg.feedback.rm_learning_rate = 3e-3
    cfg.feedback.rm_epochs = 1.0
    cfg.feedback.rm_batch_size = 8
    cfg.feedback.rm_max_length = 64
    cfg.feedback.rm_heldout_leaves = 0.25
    for k, v in fb.items():
        cfg.override(f"feedback.{k}", v)  # range-checked like lab.yaml
    return cfg


def _write(tmp_path, rows):
    path = tmp_path / "comparisons.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_rm_trains_with_lora_and_the_saved_rm_loads_for_scoring(tmp_path, tiny_model):
    from transformers import AutoModelForSequenceClassification, set_seed

    rows = _rows()
    cfg = _cfg(tmp_path, tiny_model, rm_lora_r=4, rm_lora_alpha=8, rm_gradient_checkpointing=True,
               rm_score_batch_size=3)
    out = tmp_path / "rm"
    manifest = train_reward_model(_write(tmp_path, rows), out, cfg, progress=False)
    params = manifest["parameters"]
    assert params["lora_r"] == 4
    assert 0 < params["trainable"] < params["total"] / 5, params  # adapters + score head only
    assert manifest["settings"]["rm_lora_r"] == 4 and manifest["settings"]["rm_gradient_checkpointing"]

    # the saved RM is a merged, plain sequence-classification directory: no adapter files
    assert not (out / "adapter_config.json").exists() and (out / "config.json").is_file()
    AutoModelForSequenceClassification.from_pretrained(out)
    _, held, _ = split_by_leaf(rows, cfg.feedback.rm_heldout_leaves, cfg.feedback.rm_seed)
    model, tok = load_rm(out)
    margins = score_pairs(model, tok, held, max_length=64, batch_size=3)
    # it scores as the trained (unmerged) model did
    assert sum(m > 0 for m in margins) / len(margins) == manifest["heldout_accuracy"]
    # and it is not the untrained start (same seed, so the same fresh score head)
    set_seed(cfg.feedback.rm_seed)
    base, base_tok = load_rm(tiny_model)
    assert score_pairs(base, base_tok, held, max_length=64) != pytest.approx(margins, abs=1e-6)


def test_full_fine_tuning_trains_every_parameter(tmp_path, tiny_model):
    cfg = _cfg(tmp_path, tiny_model)
    manifest = train_reward_model(_write(tmp_path, _rows(n_leaves=2, per_leaf=4)), tmp_path / "rm", cfg,
                                  progress=False)
    assert manifest["parameters"]["trainable"] == manifest["parameters"]["total"]
    assert manifest["parameters"]["lora_r"] == 0


def test_length_drop_count_equals_the_rows_trl_dropped(tmp_path, tiny_model):
    from transformers import AutoTokenizer

    rows = _rows(long_every=3)
    cfg = _cfg(tmp_path, tiny_model, rm_max_length=48)
    tok = AutoTokenizer.from_pretrained(tiny_model)

    def length(r, side):
        return len(tok.apply_chat_template(r["prompt"] + r[side], tokenize=True, return_dict=True)["input_ids"])

    train, _, _ = split_by_leaf(rows, cfg.feedback.rm_heldout_leaves, cfg.feedback.rm_seed)
    too_long = [r["metadata"]["id"] for r in train if max(length(r, "chosen"), length(r, "rejected")) > 48]
    assert 0 < len(too_long) < len(train)

    manifest = train_reward_model(_write(tmp_path, rows), tmp_path / "rm", cfg, progress=False)
    dropped = manifest["length_dropped"]
    assert dropped["max_length"] == 48 and dropped["count"] == len(too_long)
    assert [p["id"] for p in dropped["pairs"]] == too_long
    assert manifest["train_pairs"] == len(train) - len(too_long)  # what TRL trained on


def test_reward_config_takes_checkpointing_from_settings_and_bf16_only_on_cuda(tmp_path, monkeypatch):
    cfg = Config()
    args = rm_mod.reward_config(cfg.feedback, tmp_path / "w")
    assert not args.gradient_checkpointing and not args.activation_checkpointing
    assert args.bf16 is False and args.use_cpu  # this machine has no CUDA: float32
    cfg.override("feedback.rm_gradient_checkpointing", True)
    args = rm_mod.reward_config(cfg.feedback, tmp_path / "w")
    assert args.gradient_checkpointing and args.activation_checkpointing
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert rm_mod._bf16()
    from lab_tools.feedback.evaluate import rm_dtype

    assert rm_dtype("cuda") == torch.bfloat16 and rm_dtype("cpu") == torch.float32


def test_rm_settings_are_range_checked():
    from lab_tools.errors import ConfigError

    cfg = Config()
    for key, bad in (("rm_lora_r", -1), ("rm_score_batch_size", 0), ("request_chunk", -1)):
        with pytest.raises(ConfigError):
            cfg.override(f"feedback.{key}", bad)
    assert rm_mod.rm_peft_config(cfg.feedback) is None
    cfg.override("feedback.rm_lora_r", 8)
    peft = rm_mod.rm_peft_config(cfg.feedback)
    assert peft.r == 8 and peft.lora_alpha == 16 and "score" in peft.modules_to_save
    assert str(peft.task_type).endswith("SEQ_CLS")

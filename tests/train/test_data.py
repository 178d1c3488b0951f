"""Tokenization with an assistant-only loss mask, the length filter, and padding-free packing."""

from __future__ import annotations

import json

import pytest

from lab_tools.errors import LabError
from lab_tools.train.data import (IGNORE, collate_packed, pack, read_samples, tokenize_dataset,
                                  tokenize_sample)

MSGS = [{"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris is the capital."},
        {"role": "user", "content": "Rate the answer."},
        {"role": "assistant", "content": "Score: 3"}]


@pytest.fixture(scope="module")
def tok(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


def test_only_assistant_tokens_carry_loss(tok):
    t = tokenize_sample(tok, MSGS)
    learned = tok.decode([i for i, lab in zip(t.input_ids, t.labels) if lab != IGNORE])
    assert learned == "Paris is the capital.<|im_end|>\nScore: 3<|im_end|>\n"
    assert all(lab in (IGNORE, i) for i, lab in zip(t.input_ids, t.labels))
    assert tok.decode(t.input_ids) == tok.apply_chat_template(MSGS, tokenize=False)


def test_loss_on_all_opt_in(tok):
    t = tokenize_sample(tok, MSGS, loss_on_all=True)
    assert t.labels == t.input_ids


def test_too_long_samples_are_dropped_and_counted(tok):
    short = {"messages": MSGS[1:3], "metadata": {}}
    long = {"messages": [MSGS[1], {"role": "assistant", "content": "Paris " * 200}], "metadata": {}}
    kept, dropped = tokenize_dataset(tok, [short, long, short], max_seq_len=64)
    assert len(kept) == 2 and dropped == 1
    assert all(len(k.input_ids) <= 64 for k in kept)


def test_bad_lines_name_file_and_line(tmp_path):
    p = tmp_path / "kt1.jsonl"
    p.write_text(json.dumps({"messages": MSGS}) + "\n" + json.dumps({"messages": [MSGS[1]]}) + "\n")
    with pytest.raises(LabError) as exc:
        read_samples(p)
    assert exc.value.line == 2 and exc.value.file == str(p)


def test_packing_is_padding_free_and_matches_separate_forwards(tok, tiny_model):
    import torch
    from transformers import AutoModelForCausalLM

    samples = [tokenize_sample(tok, MSGS[1:3]), tokenize_sample(tok, MSGS),
               tokenize_sample(tok, MSGS[3:5])]
    groups = pack(samples, max_tokens=10_000)
    assert len(groups) == 1
    batch = collate_packed(groups[0])
    assert batch["input_ids"].numel() == sum(len(s.input_ids) for s in samples)  # no padding
    model = AutoModelForCausalLM.from_pretrained(tiny_model).eval()
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                           use_cache=False).logits[0]
        start = 0
        for s in groups[0]:  # each sample alone must give the same logits: no cross-attention
            alone = model(input_ids=torch.tensor([s.input_ids])).logits[0]
            torch.testing.assert_close(packed[start:start + len(s.input_ids)], alone, atol=1e-4, rtol=1e-4)
            start += len(s.input_ids)


def test_pack_respects_token_budget(tok):
    samples = [tokenize_sample(tok, MSGS[1:3]) for _ in range(7)]
    n = len(samples[0].input_ids)
    groups = pack(samples, max_tokens=3 * n)
    assert sorted(len(g) for g in groups) == [1, 3, 3]

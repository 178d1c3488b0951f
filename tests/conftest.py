"""Shared fixtures: a tiny random-weight model (session-scoped) and paths to shipped data."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "instructlab-taxonomy"

# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository root (holds taxonomy/, schemas/, training/)."""
    return REPO


@pytest.fixture(scope="session")
def corpus_dir() -> Path:
    """The shared InstructLab corpus; tests that need it skip when it is absent."""
    if not CORPUS.is_dir():
        pytest.skip("shared corpus not present")
    return CORPUS


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny random-weight Llama + BPE tokenizer with a ChatML chat template (built once)."""
    from lab_tools.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def varied_model(tmp_path_factory):
    """The tiny model with its weights spread out (noise of std 0.5 added), so that greedy
    outputs differ from prompt to prompt instead of repeating one token."""
    import torch
    from transformers import AutoModelForCausalLM

    from lab_tools.tiny import make_tiny_model

    src = make_tiny_model(tmp_path_factory.mktemp("tiny"))
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.5)
    out = tmp_path_factory.mktemp("varied")
    model.save_pretrained(out, safe_serialization=True)
    for f in src.iterdir():
        if f.name.startswith(("tokenizer", "special_tokens", "chat_template")):
            shutil.copy(f, out / f.name)
    return out


@pytest.fixture()
def cache_dir(tmp_path, monkeypatch) -> Path:
    """An empty lab-tools cache directory for this test (sets LAB_CACHE_DIR)."""
    d = tmp_path / "cache"
    monkeypatch.setenv("LAB_CACHE_DIR", str(d))
    return d


@pytest.fixture()
def run_lab(capsys):
    """Run the `lab` CLI in-process: ``run_lab([...]) -> (exit code, captured)`` where
    ``captured`` has ``.out`` and ``.err`` (a clean error must exit non-zero, not raise)."""
    from lab_tools.cli import main

    def run(args: list[str]):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code
        return code, capsys.readouterr()

    return run

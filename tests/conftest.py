"""Shared fixtures: a tiny random-weight model (session-scoped) and paths to shipped data."""

from __future__ import annotations

import os
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

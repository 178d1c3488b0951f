"""Fixtures for SDG tests: a small taxonomy written to tmp, a fake document resolver, a config."""

from __future__ import annotations

from pathlib import Path

import pytest
from sdg_taxonomy import DOC, LEAVES, write_leaf

from lab_tools.config import Config


@pytest.fixture()
def taxonomy(tmp_path) -> Path:
    """A taxonomy root with a creative skill, a foundational skill, a grounded skill, a knowledge leaf."""
    root = tmp_path / "taxonomy"
    for path, data in LEAVES.items():
        write_leaf(root, path, data)
    return root


@pytest.fixture()
def fake_documents(monkeypatch):
    """Resolve every knowledge leaf's document to DOC (the real resolver, lab_tools.taxonomy.documents, fetches them with git)."""
    from lab_tools.taxonomy import documents

    def resolve(leaf, **settings):
        return [documents.Document(path="planets.md", text=DOC, repo=leaf.document["repo"],
                                   commit=leaf.document["commit"], sha256="0" * 64)]

    monkeypatch.setattr(documents, "resolve_documents", resolve)
    return resolve


@pytest.fixture()
def cfg(tmp_path) -> Config:
    """A Config with its cache in tmp and small sample counts."""
    c = Config(cache_dir=str(tmp_path / "cache"))
    c.generate.samples = 4
    c.generate.chunk_tokens = 40  # the scripted teacher counts words: several chunks from DOC
    c.generate.chunk_overlap = 8
    c.generate.kt_split_tokens = 30
    return c

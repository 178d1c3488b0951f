"""Fixtures for end-to-end builds (see build_fixture.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from build_fixture import make_build_repo


@pytest.fixture()
def build_repo(tmp_path, repo_root, tiny_model) -> Path:
    """Path of the taxonomy root (``<repo>/taxonomy``) inside a fresh git repository with one
    knowledge leaf (document pinned to a commit of the same repo) and two skills leaves."""
    return make_build_repo(tmp_path, repo_root, tiny_model)

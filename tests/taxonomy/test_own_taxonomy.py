"""The repository's own taxonomy/: every leaf validates and every license passes the allowlist."""

from __future__ import annotations

import pytest

from lab_tools.config import load_config
from lab_tools.taxonomy.leaf import iter_leaf_paths
from lab_tools.taxonomy.licenses import check_licenses
from lab_tools.taxonomy.validate import validate_tree


@pytest.fixture(scope="module")
def taxonomy(repo_root):
    root = repo_root / "taxonomy"
    if not iter_leaf_paths(root):
        pytest.skip("taxonomy/ has no leaves yet")
    return root


def test_every_leaf_validates(taxonomy):
    errors = [f.text() for f in validate_tree(taxonomy) if f.is_error]
    assert errors == []


def test_every_leaf_license_checks(taxonomy, repo_root):
    cfg = load_config(repo_root, environ={})
    errors = [f.text() for f in check_licenses(taxonomy, iter_leaf_paths(taxonomy), cfg.licenses.allowlist)
              if f.is_error]
    assert errors == []


def test_knowledge_documents_resolve(taxonomy):
    from lab_tools.taxonomy.documents import resolve_documents
    from lab_tools.taxonomy.leaf import iter_leaves

    leaves = [leaf for leaf in iter_leaves(taxonomy) if leaf.kind == "knowledge"]
    for leaf in leaves:
        docs = resolve_documents(leaf)
        assert docs and all(d.text.strip() for d in docs), leaf.path

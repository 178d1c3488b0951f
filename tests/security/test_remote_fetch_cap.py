"""Issue 23 item 2: a remote document is fetched within its cap, before download.

The attack: a commit that holds a 20 MB blob beside the document was fetched whole; the leaf was
refused by ``documents.max_bytes_per_leaf`` but the 20 MB stayed in the documents cache for good.
Now only the trees and the blobs the patterns select are fetched, a download stops at the cap, a
refused fetch is deleted, and the cache is bounded. The "remote" is a local mirror over
``file://`` (``documents.allow_local``); ``uploadpack.allowFilter`` on the mirror plays a forge
that supports partial clone (GitHub, GitLab), and without it a server that ignores the filter.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from tests.security.test_documents import _git, ws  # noqa: F401  (ws: a fixture)

from lab_tools.config_sections import DocumentsConfig
from lab_tools.errors import LabError
from lab_tools.taxonomy import documents

pytestmark = pytest.mark.timeout(120)
BIG = 20 * 2**20
MiB = 2**20


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) if folder.exists() else 0


def _mirror(path: Path, *, filters: bool, extra: dict[str, bytes] | None = None) -> tuple[Path, str]:
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    if filters:
        _git(path, "config", "uploadpack.allowFilter", "true")
    (path / "notes.md").write_text("Small notes about the moon.\n", encoding="utf-8")
    (path / "blob.bin").write_bytes(os.urandom(BIG))  # incompressible: the pack is as big as the file
    for name, data in (extra or {}).items():
        (path / name).write_bytes(data)
    _git(path, "add", "-A")
    _git(path, "commit", "-q", "-m", "documents")
    return path, _git(path, "rev-parse", "HEAD")


@pytest.fixture()
def forge(tmp_path) -> tuple[Path, str]:
    return _mirror(tmp_path / "forge", filters=True)


def test_only_the_files_the_patterns_select_are_downloaded(ws, forge, cache_dir):
    mirror, sha = forge
    leaf = ws.leaf(repo=f"file://{mirror}", commit=sha, patterns=["*.md"])
    (doc,) = documents.resolve_documents(leaf, cache_dir=cache_dir, settings=DocumentsConfig(allow_local=True))
    assert doc.text == "Small notes about the moon.\n"
    assert _bytes(cache_dir) < MiB  # the 20 MB blob beside it never came
    # a second leaf (another pattern) on the same commit reuses the entry and adds only its file
    leaf = ws.leaf(repo=f"file://{mirror}", commit=sha, patterns=["notes.md"])
    (again,) = documents.resolve_documents(leaf, cache_dir=cache_dir, settings=DocumentsConfig(allow_local=True))
    assert again.sha256 == doc.sha256 and _bytes(cache_dir) < MiB


def test_a_selection_over_the_cap_is_refused_and_its_download_deleted(ws, forge, cache_dir):
    mirror, sha = forge
    leaf = ws.leaf(repo=f"file://{mirror}", commit=sha, patterns=["*.bin"])
    with pytest.raises(LabError) as err:
        documents.resolve_documents(leaf, cache_dir=cache_dir,
                                    settings=DocumentsConfig(allow_local=True, max_bytes_per_leaf=MiB))
    assert err.value.field == "document.patterns" and "1,048,576 bytes per leaf" in err.value.message
    assert _bytes(cache_dir) < MiB  # nothing over the cap stays
    assert not list((cache_dir / "documents").glob(".fetch-*"))


def test_a_server_that_ignores_the_filter_is_stopped_at_the_cap(ws, tmp_path, cache_dir):
    mirror, sha = _mirror(tmp_path / "plain", filters=False)  # upload-pack sends every blob anyway
    leaf = ws.leaf(repo=f"file://{mirror}", commit=sha, patterns=["*.md"])
    with pytest.raises(LabError) as err:
        documents.resolve_documents(leaf, cache_dir=cache_dir,
                                    settings=DocumentsConfig(allow_local=True, max_bytes_per_leaf=MiB))
    assert err.value.field == "document.patterns"
    assert "the download was stopped and deleted" in err.value.message
    assert _bytes(cache_dir / "documents") == 0  # no entry, no temporary folder


def test_the_documents_cache_is_bounded_least_recently_used_first(ws, tmp_path, cache_dir):
    settings = DocumentsConfig(allow_local=True, cache_max_bytes=1)  # every older entry goes
    keys = []
    for name in ("one", "two"):
        mirror, sha = _mirror(tmp_path / name, filters=True)
        url = f"file://{mirror}"
        documents.resolve_documents(ws.leaf(repo=url, commit=sha, patterns=["*.md"]), cache_dir=cache_dir,
                                    settings=settings)
        keys.append(hashlib.sha256(f"{url}\0{sha}".encode()).hexdigest())
    entries = sorted(p.name for p in (cache_dir / "documents").iterdir())
    assert entries == [keys[1]]  # the layout of the docstring: <cache>/documents/<sha256(url NUL commit)>


def test_lab_generate_keeps_the_cache_layout_of_the_docstring(ws, forge, cache_dir, run_lab):
    mirror, sha = forge
    url = f"file://{mirror}"
    ws.trust(allow_local=True)
    ws.leaf(repo=url, commit=sha, patterns=["*.md"])
    code, cap = run_lab(["generate", "pr/taxonomy", "--out", "out", "--config", "trusted.yaml", "--quiet"])
    assert code == 0, cap.err
    key = hashlib.sha256(f"{url}\0{sha}".encode()).hexdigest()
    assert (cache_dir / "documents" / key / ".git").is_dir(), sorted(p.name for p in cache_dir.rglob("*"))[:20]

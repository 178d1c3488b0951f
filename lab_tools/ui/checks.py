"""Live checks: the same validator and license check as ``lab taxonomy validate`` /
``lab taxonomy licenses``, run on exactly the files the page would write.

The leaf's folder is copied (regular files only) into a temporary taxonomy root at the same
relative path, the form's ``qna.yaml`` and ``attribution.txt`` are written over it, and
:func:`lab_tools.taxonomy.validate.validate_tree` (schema, extra checks, word limits, yamllint,
and any rule it gains) and :func:`lab_tools.taxonomy.licenses.check_licenses` run on that root.
Nothing in the real taxonomy is touched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from lab_tools.taxonomy.licenses import check_licenses
from lab_tools.taxonomy.validate import validate_tree
from lab_tools.ui.form import LeafForm, attribution_label_field

MAX_COPY_BYTES = 4 * 1024 * 1024  # other files of the leaf folder copied into the check root


@contextmanager
def staged_root(root: str | Path, rel: str, leaf: LeafForm):
    """A temporary taxonomy root holding only the leaf ``rel`` as the page would write it (its
    other regular files copied from ``root``); yields the temporary root, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="lab-ui-check-") as tmp:
        dest = Path(tmp) / rel
        dest.mkdir(parents=True)
        src = Path(root) / rel
        budget = MAX_COPY_BYTES
        if src.is_dir() and not src.is_symlink():
            for entry in sorted(os.scandir(src), key=lambda e: e.name):
                if entry.is_file(follow_symlinks=False) and entry.name not in ("qna.yaml", "attribution.txt"):
                    size = entry.stat(follow_symlinks=False).st_size
                    if size <= budget:
                        shutil.copyfile(entry.path, dest / entry.name)
                        budget -= size
        (dest / "qna.yaml").write_text(leaf.yaml_text(), encoding="utf-8")
        attribution = leaf.attribution_text()
        if attribution:
            (dest / "attribution.txt").write_text(attribution, encoding="utf-8")
        yield Path(tmp)


def _work_lines(leaf: LeafForm) -> list[int]:
    """1-based first line of each attribution work that is written (works are separated by one
    blank line, see :meth:`LeafForm.attribution_text`; empty works are not written)."""
    lines = leaf.attribution_text().splitlines()
    return [1] + [n + 1 for n, line in enumerate(lines, 1) if not line.strip()]


def check_leaf(root: str | Path, rel: str, leaf: LeafForm, allowlist: list[str]) -> list[dict]:
    """Every finding for the leaf ``rel`` as the page would write it.

    Returns:
        dicts ``{file, line, column, field, message, severity}``; ``file`` is ``qna.yaml``,
        ``attribution.txt`` or another file of the leaf folder; ``field`` is the form field the
        finding names (``seed_examples.2.answer``; ``attribution.<i>.license`` for the i-th work;
        ``attribution`` for the file as a whole; ``""`` for the whole ``qna.yaml``).
    """
    out = []
    with staged_root(root, rel, leaf) as tmp:
        base = os.path.join(str(tmp), rel)
        for f in validate_tree(tmp, [rel]):
            out.append({"file": os.path.relpath(f.file, base).replace(os.sep, "/"), "line": f.line,
                        "column": f.column, "field": f.field, "message": f.message, "severity": f.severity})
        starts = _work_lines(leaf)
        filled = [i for i, w in enumerate(leaf.works) if any(w.values())]
        for f in check_licenses(tmp, [rel], allowlist):
            idx = max((k for k, s in enumerate(starts) if s <= f.line), default=None)
            name = attribution_label_field(f.field)
            if idx is not None and idx < len(filled) and name:
                field = f"attribution.{filled[idx]}.{name}"
            else:
                field = "attribution"
            out.append({"file": "attribution.txt", "line": f.line, "column": f.column, "field": field,
                        "message": f.message, "severity": f.severity})
    return out

"""Findings: what the taxonomy checks report, and how they are printed.

A finding is an *error* (the leaf cannot be used as written; exit code 1) or a *warning* (usable,
but probably not what the author meant; exit code 0). Renderers:

- ``text``: ``path:line:col: field.path: message`` (``warning:`` prefix for warnings);
- ``json``: one JSON object per line with ``file, line, column, field, message, severity``;
- ``github``: GitHub Actions workflow commands (``::error file=...,line=...,col=...::msg``),
  which show as annotations on the pull request's diff.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from lab_tools.errors import plural

SEVERITIES = ("error", "warning")
FORMATS = ("text", "json", "github")


@dataclass(frozen=True)
class Finding:
    """One problem in one file.

    Attributes:
        file: path of the file as shown to the user (relative to the current directory when possible).
        line: 1-based line of the YAML node (1 when the whole file is concerned).
        column: 1-based column of the YAML node.
        field: dotted field path (``seed_examples.2.answer``), ``""`` for the whole file.
        message: what is wrong and how to fix it.
        severity: ``"error"`` or ``"warning"``.
    """
    file: str
    line: int
    column: int
    field: str
    message: str
    severity: str = "error"

    @property
    def is_error(self) -> bool:
        """True for severity ``error``."""
        return self.severity == "error"

    def text(self) -> str:
        """``path:line:col: field: message`` (warnings prefixed ``warning:``)."""
        field = f"{self.field}: " if self.field else ""
        sev = "" if self.is_error else "warning: "
        return f"{self.file}:{self.line}:{self.column}: {sev}{field}{self.message}"


def _gh_escape(value: str, prop: bool = False) -> str:
    # GitHub workflow-command escaping (actions/toolkit core/command.ts).
    value = value.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    if prop:
        value = value.replace(":", "%3A").replace(",", "%2C")
    return value


def render(findings: list[Finding], fmt: str = "text") -> str:
    """Render ``findings`` as ``fmt`` (one of :data:`FORMATS`); returns text without trailing newline.

    Raises:
        ValueError: unknown format.
    """
    if fmt == "text":
        return "\n".join(f.text() for f in findings)
    if fmt == "json":
        return "\n".join(json.dumps(asdict(f), ensure_ascii=False) for f in findings)
    if fmt == "github":
        out = []
        for f in findings:
            title = f.field or "qna.yaml"
            out.append(f"::{f.severity} file={_gh_escape(f.file, True)},line={f.line},col={f.column},"
                       f"title={_gh_escape(title, True)}::{_gh_escape(f.message)}")
        return "\n".join(out)
    raise ValueError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")


def summary(findings: list[Finding], leaves: int) -> str:
    """One line: ``N leaves checked: E errors, W warnings`` (``1 leaf``, ``1 error``, ``1 warning``)."""
    errors = sum(f.is_error for f in findings)
    return (f"{plural(leaves, 'leaf')} checked: {plural(errors, 'error')}, "
            f"{plural(len(findings) - errors, 'warning')}")

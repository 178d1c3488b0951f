"""Hostile-input-safe YAML loading with line numbers (placeholder until the taxonomy core lands).

OWNED BY the taxonomy-core work (issue 2): replace the body, keep ``load_yaml_file(path) -> object``
raising LabError(file=..., line=...) on bad input.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from lab_tools.errors import LabError


def load_yaml_file(path: Path):
    """Parse ``path`` as YAML. Raises LabError naming the file (and line) on any problem."""
    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LabError("file not found", file=str(path)) from None
    except (UnicodeDecodeError, OSError) as exc:
        raise LabError(f"cannot read: {exc}", file=str(path)) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise LabError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=str(path),
                       line=mark.line + 1 if mark else None) from None

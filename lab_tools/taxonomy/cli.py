"""`lab taxonomy`: validate, diff and license-check a taxonomy (no torch imported here).

Exit codes: 0 valid (warnings allowed), 1 any error finding (or a LabError), 2 usage errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from lab_tools.config import default_root, load_config
from lab_tools.errors import LabError, UsageError
from lab_tools.taxonomy.diff import changed_leaves
from lab_tools.taxonomy.findings import render, summary
from lab_tools.taxonomy.leaf import iter_leaf_paths, KINDS
from lab_tools.taxonomy.licenses import check_licenses
from lab_tools.taxonomy.validate import collect_files, has_errors, validate_tree


def root_dir(root: str | None) -> Path:
    """The taxonomy root a command works on: ``root`` as given, else :func:`lab_tools.config.default_root`.

    Raises:
        UsageError: it is not a directory.
    """
    path = Path(root) if root is not None else default_root()
    if not path.is_dir():
        raise UsageError(f"taxonomy root {path} is not a directory")
    return path


def _require_leaves(path: Path, given: str | None) -> None:
    """A taxonomy without a single leaf is the wrong folder, not a valid taxonomy: raise a
    LabError naming it (``given``: ROOT as typed; None when it defaulted to ./taxonomy or ``.``).
    Zero *changed* leaves (``--changed-only``) is fine; zero leaves in the tree is not."""
    if collect_files(path):
        return
    shown = str(path) if path.is_absolute() else f"{path} ({path.absolute()})"
    why = ("" if given is not None else
           "; no ROOT was given and there is no ./taxonomy folder here, so the current folder was checked")
    raise LabError(f"no leaves under {shown}: a taxonomy holds qna.yaml files in folders under "
                   f"{', '.join(p + '/' for p in KINDS)}{why}. Pass the taxonomy folder as ROOT.")


def _leaf_paths(root: Path, changed_only: bool, base: str | None) -> list[str] | None:
    if base is not None and not changed_only:
        raise UsageError("--base only makes sense with --changed-only")
    if not changed_only:
        return None
    return changed_leaves(root, base).changed


_ROOT = click.argument("root", required=False, type=click.Path(file_okay=False))
_CHANGED = click.option("--changed-only", is_flag=True, help="Only leaves changed against --base (see `lab taxonomy diff`).")
_BASE = click.option("--base", metavar="REF", default=None, help="Base ref for --changed-only (default origin/main, else main).")
_FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
                       show_default=True, help="text: path:line:col: field: message; json: one object per line; "
                       "github: Actions annotations.")


def _emit(findings, fmt: str, leaves: int) -> None:
    text = render(findings, fmt)
    if text:
        click.echo(text)
    if fmt != "json":
        click.echo(summary(findings, leaves), err=True)


@click.group("taxonomy")
def taxonomy():
    """Validate, diff and license-check a taxonomy of qna.yaml leaves (LAB 3.1)."""


@taxonomy.command("validate")
@_ROOT
@_CHANGED
@_BASE
@click.option("--strict", is_flag=True, help="Word-limit warnings become errors.")
@_FORMAT
def validate(root, changed_only, base, strict, fmt):
    """Check every leaf under ROOT (default ./taxonomy): schema, placement, safe YAML, duplicate
    questions, word limits, yamllint. Prints every finding; exits 1 on any error."""
    path = root_dir(root)
    _require_leaves(path, root)
    paths = _leaf_paths(path, changed_only, base)
    findings = validate_tree(path, paths, strict=strict)
    _emit(findings, fmt, len(collect_files(path, paths)))
    if has_errors(findings):
        sys.exit(1)  # not click's Exit: lab's root main() runs click with standalone_mode=False


@taxonomy.command("diff")
@_ROOT
@click.option("--base", metavar="REF", default=None, help="Base ref to compare against (default origin/main, else main).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: one 'changed LEAF' / 'deleted LEAF' line each; json: one object.")
def diff(root, base, fmt):
    """List the leaves of taxonomy ROOT (default ./taxonomy) changed against --base (committed,
    staged, unstaged, untracked), and deleted ones."""
    ch = changed_leaves(root_dir(root), base)
    if fmt == "json":
        click.echo(json.dumps({"base": ch.base, "changed": ch.changed, "deleted": ch.deleted}))
        return
    for leaf in ch.changed:
        click.echo(f"changed {leaf}")
    for leaf in ch.deleted:
        click.echo(f"deleted {leaf}")
    against = ch.base or "no common base: every leaf counts"
    click.echo(f"{len(ch.changed)} changed, {len(ch.deleted)} deleted (against {against})", err=True)


@taxonomy.command("licenses")
@_ROOT
@_CHANGED
@_BASE
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Extra lab.yaml-style settings file.")
@_FORMAT
def licenses(root, changed_only, base, config_file, fmt):
    """Parse the attribution.txt of each leaf under ROOT (default ./taxonomy), normalize its
    license to SPDX and check the allowlist (lab.yaml licenses.allowlist). Non-commercial /
    no-derivatives licenses are errors."""
    path = root_dir(root)
    _require_leaves(path, root)
    cfg = load_config(path, config_file)
    paths = _leaf_paths(path, changed_only, base)
    leaves = [p for p in (paths if paths is not None else iter_leaf_paths(path)) if (path / p / "qna.yaml").is_file()]
    findings = check_licenses(path, leaves, cfg.licenses.allowlist)
    _emit(findings, fmt, len(leaves))
    if has_errors(findings):
        sys.exit(1)  # not click's Exit: lab's root main() runs click with standalone_mode=False


__all__ = ["taxonomy", "LabError"]

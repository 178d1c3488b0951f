"""The taxonomy stages of `lab build` (:class:`lab_tools.stage.Stage`): ``validate`` (every leaf
against its schema and the repository's rules) and ``licenses`` (knowledge documents against
``licenses.allowlist``). Both write nothing; a failure stops the build before any teacher call.

| stage    | inputs (fingerprint)                                  | outputs |
|----------|-------------------------------------------------------|---------|
| validate | every file under the kind folders (names + bytes)     | none    |
| licenses | leaves' content hashes + the license allowlist        | none    |
"""

from __future__ import annotations

from pathlib import Path

from lab_tools.errors import LabError, plural
from lab_tools.stage import Context, Stage, StageResult
from lab_tools.taxonomy.leaf import KINDS
from lab_tools.taxonomy.licenses import check_licenses
from lab_tools.taxonomy.validate import render, validate_tree


class ValidateStage(Stage):
    """Validate the whole taxonomy (:func:`lab_tools.taxonomy.validate.validate_tree`); errors
    stop the build, the first 20 shown."""

    name = "validate"

    def inputs(self, ctx: Context) -> list:
        return [ctx.hasher.tree(ctx.root, [k for k in KINDS if (ctx.root / k).is_dir()])]

    def outputs(self, ctx: Context) -> list[Path]:
        return []

    def run(self, ctx: Context) -> StageResult:
        findings = validate_tree(ctx.root)
        errors = [f for f in findings if f.is_error]
        if errors:
            shown = render(errors[:20]) + ("\n..." if len(errors) > 20 else "")
            raise LabError(f"{plural(len(errors), 'validation error')} (run `lab taxonomy validate`):\n{shown}")
        warnings = len(findings)
        return self.done(f"{plural(len(ctx.leaf_paths), 'leaf')}, {plural(warnings, 'warning')}",
                         {"leaves": len(ctx.leaf_paths), "warnings": warnings})


class LicensesStage(Stage):
    """Check the knowledge leaves' documents against the allowlist
    (:func:`lab_tools.taxonomy.licenses.check_licenses`)."""

    name = "licenses"

    def inputs(self, ctx: Context) -> list:
        return [ctx.leaf_hashes, sorted(ctx.cfg.licenses.allowlist)]

    def outputs(self, ctx: Context) -> list[Path]:
        return []

    def run(self, ctx: Context) -> StageResult:
        findings = check_licenses(ctx.root, ctx.leaf_paths, list(ctx.cfg.licenses.allowlist))
        errors = [f for f in findings if f.is_error]
        if errors:
            raise LabError(f"{plural(len(errors), 'license error')} (run `lab taxonomy licenses`):\n{render(errors)}")
        n = sum(p.startswith("knowledge/") for p in ctx.leaf_paths)
        return self.done(f"{plural(n, 'knowledge document')} allowed, {plural(len(findings), 'warning')}",
                         {"warnings": len(findings)})

"""The preview flow: diff -> validate -> license check -> small generate -> one comment + status.

The bot only *reads* the pull request's files (taxonomy leaves, attribution, pinned documents):
nothing from the PR is imported or executed, and settings come from the trusted configuration the
caller passes (in the workflow: the base branch's ``lab.yaml``), never from the PR's own ``lab.yaml``.

Whatever fails inside the run (a bad ref, the teacher, the generator) is caught, named with its
stage in the comment, and turns the ``lab/preview`` status into ``failure``: a reviewer always sees
a comment that says what happened.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from lab_tools.bot.bounded import bounded_generate, pick_leaves
from lab_tools.bot.render import FindingView, LeafView, Preview, render_comment
from lab_tools.errors import LabError, plural
from lab_tools.feedback.comparisons import first_comparison, generate_comparisons
from lab_tools.gitsafe import find_repo, run_git
from lab_tools.redact import PathRedactor, repository_top
from lab_tools.taxonomy.leaf import KINDS


def _tree(root: Path):
    """The repository holding ``root`` (:func:`lab_tools.gitsafe.find_repo`), or None outside git."""
    try:
        return find_repo(root)
    except LabError:
        return None


def _rev(root: Path, ref: str) -> str | None:
    """The commit id ``ref`` names in the repository holding ``root``, or None. Git runs with an
    explicit git dir and work tree (:mod:`lab_tools.gitsafe`), never discovering from inside the
    PR's taxonomy (which may hold planted git metadata)."""
    tree = _tree(root)
    if tree is None:
        return None
    try:
        out = run_git(tree, "rev-parse", "--verify", "--quiet", "--end-of-options", ref + "^{commit}",
                      check=False, timeout=30)
    except LabError:
        return None
    return out.strip() or None


def git_head(root: Path) -> str | None:
    """The commit checked out at ``root`` (``git rev-parse HEAD``), or None outside git."""
    return _rev(root, "HEAD")


def pick_base(root: Path, branch: str) -> str | None:
    """The ref to diff against for a PR into ``branch``: ``origin/<branch>`` when the checkout has
    it (a CI clone), else ``<branch>`` (a local clone), else None (the diff's own default)."""
    return next((ref for ref in (f"origin/{branch}", branch) if _rev(root, ref)), None)


def _display_prefix(root: Path) -> str:
    """``root`` relative to its git top level (e.g. ``taxonomy/``), so locations in the comment
    match the paths in the PR's diff."""
    tree = _tree(root)
    if tree is None:
        return ""
    try:
        rel = os.path.relpath(root.resolve(), tree.work_tree)
    except ValueError:
        return ""
    return "" if rel == "." else rel.replace(os.sep, "/") + "/"


def _rel_to_root(file: str, root: Path) -> str:
    """A finding's ``file`` relative to the taxonomy root, POSIX style."""
    p = Path(file)
    base = root if not p.is_absolute() else root.resolve()
    try:
        return p.relative_to(base).as_posix()
    except ValueError:
        try:
            return p.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            return p.as_posix()


def _attach(findings, leaves: dict[str, LeafView], root: Path, prefix: str) -> None:
    """Put each finding under the changed leaf whose directory holds its file."""
    for f in findings:
        rel = _rel_to_root(str(f.file), root)
        view = FindingView(file=prefix + rel, line=int(getattr(f, "line", 0) or 0),
                           field=str(getattr(f, "field", "") or ""), message=str(f.message),
                           severity=str(getattr(f, "severity", "error")))
        owner = max((p for p in leaves if rel == p or rel.startswith(p + "/")), key=len, default=None)
        if owner is None:  # a stray file next to the leaves (e.g. a misnamed leaf): its folder's entry
            owner = str(Path(rel).parent.as_posix())
            top = owner.split("/")[0]
            leaves.setdefault(owner, LeafView(path=owner, kind=top if top in KINDS else ""))
        leaves[owner].findings.append(view)


def _stat(obj, name, default=None):
    return obj.get(name, default) if isinstance(obj, dict) else getattr(obj, name, default)


def _leaf_stats(report, leaf: str) -> tuple[dict, float | None, str | None]:
    """``(stats, seconds, error)`` for ``leaf`` from a :class:`lab_tools.sdg.pipeline.GenerateReport`
    (``report.leaves``: per-leaf records with ``generated``, ``kept``, ``rejected``/``malformed``/
    ``errors`` -> {stage: n}, ``cached``, ``seconds``, ``error``)."""
    rec = next((r for r in (_stat(report, "leaves") or []) if _stat(r, "leaf") == leaf), None)
    if rec is None:
        return {}, None, None

    def counts(name):
        value = _stat(rec, name) or {}
        return {str(k): int(v) for k, v in value.items() if v} if isinstance(value, dict) else {}

    stats = {"generated": int(_stat(rec, "generated", 0) or 0), "kept": int(_stat(rec, "kept", 0) or 0),
             "rejected": counts("rejected"), "malformed": counts("malformed"),
             "errors": counts("errors"), "cached": bool(_stat(rec, "cached", False)),
             "unused": int(_stat(rec, "unused", 0) or 0)}
    seconds = _stat(rec, "seconds")
    return stats, (float(seconds) if seconds is not None else None), _stat(rec, "error")


def _read_samples(out_dir: Path) -> dict[str, list[dict]]:
    """Samples of the phase datasets under ``out_dir`` grouped by ``metadata.leaf``."""
    by_leaf: dict[str, list[dict]] = {}
    for name in ("kt1.jsonl", "kt2.jsonl", "st.jsonl"):
        path = out_dir / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                sample = json.loads(line)
                by_leaf.setdefault(str(sample.get("metadata", {}).get("leaf", "")), []).append(sample)
    return by_leaf


def _read_rejected(out_dir: Path) -> dict[str, list[dict]]:
    """Filtered-out candidates in ``out_dir/rejected.jsonl`` grouped by ``leaf``."""
    by_leaf: dict[str, list[dict]] = {}
    path = out_dir / "rejected.jsonl"
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                rec = json.loads(line)
                by_leaf.setdefault(str(rec.get("leaf", "")), []).append(rec)
    return by_leaf


def _samples_for(by_leaf: dict[str, list[dict]], leaf: str) -> list[dict]:
    # metadata.leaf is the leaf path relative to the taxonomy root; accept a prefixed form too
    return by_leaf.get(leaf) or next((v for k, v in by_leaf.items() if k.endswith("/" + leaf)), [])


def build_preview(root: str | Path, cfg, *, base: str | None = None, samples: int | None = None,
                  mode: str = "preview", out_dir: str | Path | None = None, sha: str | None = None,
                  run_url: str | None = None) -> Preview:
    """Run the checks (and, in ``preview`` mode, a small generation) on the leaves changed under
    taxonomy ``root`` against ``base``; never raises for a failure inside the run.

    Args:
        cfg: a trusted :class:`lab_tools.config.Config` (teacher, judge, license allowlist, cache).
        samples: samples per leaf for the preview (default ``cfg.bot.samples``).
        mode: ``preview`` or ``validate`` (no generation).
        out_dir: where generated datasets go (default: a temporary directory, removed afterwards).

    Returns:
        the :class:`Preview`; ``failure`` names the stage and error when the run broke.
    """
    root = Path(root)
    start = time.monotonic()
    k = int(samples if samples is not None else cfg.bot.samples)
    preview = Preview(sha=sha or git_head(root) or "unknown", base=base, mode=mode,
                      teacher=cfg.generate.teacher, judge=cfg.generate.judge or cfg.generate.teacher,
                      samples_per_leaf=k, run_url=run_url)
    stage = "diff"
    leaves: dict[str, LeafView] = {}
    try:
        from lab_tools.taxonomy.diff import changed_leaves

        changes = changed_leaves(root, base)
        preview.base = changes.base or base
        preview.deleted = list(changes.deleted)
        leaves = {p: LeafView(path=p, kind=p.split("/")[0] if p.split("/")[0] in KINDS else "")
                  for p in changes.changed}
        prefix = _display_prefix(root)
        stage = "validate"
        from lab_tools.taxonomy.validate import validate_tree

        # the changed leaves, and (always, even with no changed leaf) anything in the tree that is
        # no part of a leaf: planted git metadata, symlinks, stray binaries
        _attach(validate_tree(root, paths=list(leaves)), leaves, root, prefix)
        if leaves:
            stage = "license check"
            from lab_tools.taxonomy.licenses import check_licenses

            _attach(check_licenses(root, list(changes.changed), list(cfg.licenses.allowlist)), leaves, root, prefix)
        ok = [p for p, v in leaves.items() if not v.errors and p in changes.changed]
        for v in leaves.values():
            if v.errors and mode == "preview":
                v.skipped = "fix the errors above to see generated samples"
        ok, over = pick_leaves(ok, cfg.bot.max_leaves)  # bounded work per pull request
        if mode == "preview":
            preview.skipped_leaves = over
            for p in over:
                leaves[p].skipped = (f"this preview generates {cfg.bot.max_leaves} changed leaves at most "
                                     "(bot.max_leaves); the run after merge generates every leaf")
        if mode == "preview" and ok:
            stage = "generate"
            report = _generate(root, ok, cfg, k, out_dir, leaves, preview, deadline=start + cfg.bot.time_budget)
            preview.teacher = str(getattr(report, "teacher", "") or preview.teacher)
            preview.judge = str(getattr(report, "judge", "") or preview.judge)
    except Exception as exc:  # noqa: BLE001 -- any failure must still end in a comment
        detail = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
        preview.failure = f"{stage}: {detail}"
        if not isinstance(exc, LabError):
            traceback.print_exc(file=sys.stderr)  # the workflow log gets the full story
    preview.leaves = list(leaves.values())
    preview.seconds = time.monotonic() - start
    _public_paths(preview, root, cfg.cache_path)
    return preview


def _public_paths(preview: Preview, root: Path, cache: Path) -> None:
    """Machine paths out of the comment: the messages that can quote one (errors, findings, the
    teacher spec) name paths relative to the repository (:class:`lab_tools.redact.PathRedactor`;
    generated samples are shown as they are)."""
    public = PathRedactor(repository_top(root) or root.resolve(), {"cache": cache}, catch_all=False)
    preview.teacher, preview.judge = public.text(preview.teacher), public.text(preview.judge)
    if preview.failure:
        preview.failure = public.text(preview.failure)
    for view in preview.leaves:
        if view.error:
            view.error = public.text(view.error)
        for f in view.findings:
            f.message = public.text(f.message)


def _generate(root: Path, paths: list[str], cfg, k: int, out_dir, leaves: dict[str, LeafView],
              preview: Preview, *, deadline: float):
    """The preview's generation, bounded (:mod:`lab_tools.bot.bounded`): ``k`` samples per leaf
    in at most ``bot.max_attempts`` rounds, nothing started after ``deadline``, prompts cut to
    ``bot.max_prompt_tokens``. Fills each leaf's view and the preview's budget notes."""
    with tempfile.TemporaryDirectory(prefix="lab-preview-") as tmp:
        out = Path(out_dir) if out_dir else Path(tmp) / "out"
        out.mkdir(parents=True, exist_ok=True)
        run = bounded_generate(root, paths, cfg, k, out, deadline, scratch=Path(tmp))  # shared with `lab ui`
        report = run.report
        for p in paths:
            o, view = run.outcomes[p], leaves[p]
            view.samples, view.rejected, view.stats = o.samples, o.rejected, o.stats
            view.seconds, view.error, view.attempts = o.seconds, o.error, o.attempts
            view.shortfall = run.shortfalls[p]
        preview.budget_cut += run.budget_cut
        preview.truncated_prompts += run.truncated_prompts
        if cfg.feedback.enabled and time.monotonic() >= deadline:
            preview.budget_cut.append("the synthetic comparisons of every leaf")
        elif cfg.feedback.enabled:  # one synthetic comparison (ALMoST) per changed leaf
            generate_comparisons(root, out, cfg, leaf_paths=paths, progress=False, require_pairs=False)
            for p in paths:
                leaves[p].comparison = first_comparison(out, p)
    return report


def run_preview(gh, pr: int, root: str | Path, cfg, *, base: str | None = None,
                samples: int | None = None, mode: str = "preview", out_dir=None,
                run_url: str | None = None) -> tuple[Preview, str]:
    """The whole bot run for pull request ``pr``: status pending, :func:`build_preview`, the sticky
    comment (created once, edited in place afterwards), status success or failure.

    ``gh``: a :class:`lab_tools.bot.github.GitHubClient`, or None to only build the comment.
    The status goes on the commit checked out at ``root`` (what was actually previewed), else on
    the PR head reported by GitHub. Returns ``(preview, comment_body)``.

    Raises:
        LabError: only for GitHub API failures (the comment or status could not be written).
    """
    root = Path(root)
    sha = git_head(root)
    if gh is not None:
        pull = gh.pull(pr)
        sha = sha or pull.head_sha
        base = base or pick_base(root, pull.base_ref)
        gh.set_status(sha, "pending", f"lab {mode} running", run_url)
    preview = build_preview(root, cfg, base=base, samples=samples, mode=mode, out_dir=out_dir,
                            sha=sha, run_url=run_url)
    body = render_comment(preview)
    if gh is not None:
        try:
            gh.upsert_comment(pr, body)
        except LabError:
            gh.set_status(preview.sha, "error", "lab bot could not write its comment", run_url)
            raise
        n_err = sum(v.errors for v in preview.leaves)
        if preview.failure:
            state, desc = "failure", f"failed in {preview.failure.split(':', 1)[0]}"
        elif any(v.error for v in preview.leaves):
            state, desc = "failure", "generation failed for some leaves"
        elif n_err:
            state, desc = "failure", f"{plural(n_err, 'error')} in {plural(len(preview.leaves), 'changed leaf')}"
        else:
            state, desc = "success", f"{plural(len(preview.leaves), 'changed leaf')} OK ({preview.seconds:.0f} s)"
        gh.set_status(preview.sha, state, desc, run_url)
    return preview, body

"""Cut a release directory from a build run.

A run directory (written by `lab build`, or assembled by hand from the stage commands) holds::

    run.json            provenance of the build: taxonomy root and commit, teacher, judge, student, preset
    data/               lab generate: kt1.jsonl kt2.jsonl st.jsonl dataset_card.json heldout_*.jsonl
    train/              lab train: manifest.json (with "selected"), metrics.csv, loss.png
    eval/               lab evaluate: eval.json branch_report.json branch_report.md

The release directory holds the selected model as a Hugging Face directory (safetensors,
tokenizer, config: loadable by transformers and vLLM), ``README.md`` (the model card,
:mod:`lab_tools.release.card`), ``release.json`` (the same facts, machine-readable), the loss
plot, the dataset card, the training manifest, the branch report, and ``SHA256SUMS`` for every
other file (``sha256sum -c SHA256SUMS`` passes). It is written to a temporary sibling and moved
into place (:func:`lab_tools.atomic.atomic_dir`), so a crash never leaves a half-written release
and a failed one leaves no temporary folder behind.

Published files name no machine paths: ``release.json``, the card and the copied JSON files pass
through :class:`lab_tools.redact.PathRedactor` (paths relative to the repository, ``<run>/...``,
``<cache>/...``); ``run.json`` in the run folder keeps the absolute taxonomy root it is read back by.

Sample counts per leaf and phase are counted from the phase datasets' ``metadata.leaf`` /
``metadata.phase`` fields, so the card states what the model was actually trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lab_tools.atomic import atomic_dir, write_json_atomic, write_text_atomic
from lab_tools.config import default_cache_dir
from lab_tools.errors import LabError
from lab_tools.jsonl import iter_jsonl
from lab_tools.redact import PathRedactor, repository_top

PHASE_FILES = ("kt1", "kt2", "st")
# training-only files a checkpoint directory may hold; not part of a release
_SKIP = {"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin", "rng_state.pth",
         "scaler.pt", "training_state.json"}
_SKIP_PREFIX = ("rng_state", "optimizer", "global_step")


@dataclass
class ReleaseResult:
    """``out_dir``: the release directory; ``info``: the content of ``release.json``."""
    out_dir: Path
    info: dict


def sha256_file(path: str | Path) -> str:
    """sha256 hex of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_json(path: str | Path, data) -> Path:
    """Write ``data`` as indented JSON atomically (:func:`lab_tools.atomic.write_json_atomic`)."""
    return write_json_atomic(path, data, indent=1, default=str, newline=True)


def read_json(path: str | Path, default=None):
    """Read a JSON file; ``default`` when it is missing. Raises LabError when it is not JSON."""
    p = Path(path)
    if not p.is_file():
        return default
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabError(f"not readable JSON: {exc}", file=str(p)) from exc


def taxonomy_commit(root: str | Path) -> dict:
    """``{"commit", "dirty", "branch"}`` of the git repository holding ``root`` (all None outside git).

    ``dirty`` is True when files under ``root`` differ from the commit (staged, unstaged or
    untracked), so the card can say the model was built from uncommitted leaves. Git runs through
    :mod:`lab_tools.gitsafe` (explicit git dir and work tree, never discovery inside ``root``)."""
    from lab_tools.gitsafe import find_repo, run_git

    try:
        tree = find_repo(root)
        rel = os.path.relpath(Path(root).resolve(), tree.work_tree)
        commit = run_git(tree, "rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).strip()
        status = run_git(tree, "status", "--porcelain", "--untracked-files=all", "--", rel)
        branch = run_git(tree, "symbolic-ref", "--quiet", "--short", "HEAD", check=False).strip()
        return {"commit": commit or None, "dirty": bool(status.strip()), "branch": branch or None}
    except LabError:  # not a git repo, git missing or failing: provenance says "unknown"
        return {"commit": None, "dirty": None, "branch": None}


def leaf_inventory(root: str | Path) -> list[dict]:
    """Every leaf under ``root``: ``{"path", "kind", "hash"}`` (content hash of qna.yaml + attribution)."""
    from lab_tools.taxonomy.leaf import iter_leaf_paths, leaf_hash, load_leaf

    out = []
    for path in iter_leaf_paths(root):
        leaf = load_leaf(root, path)
        out.append({"path": path, "kind": leaf.kind, "hash": leaf_hash(Path(root) / path)})
    return out


def document_licenses(root: str | Path) -> list[dict]:
    """The pinned document and license of every knowledge leaf:
    ``{"leaf", "repo", "commit", "patterns", "title", "link", "license", "spdx", "creators"}``
    (attribution fields None when the leaf has no ``attribution.txt``)."""
    from lab_tools.taxonomy.leaf import iter_leaves

    out = []
    for leaf in iter_leaves(root):
        if leaf.kind != "knowledge":
            continue
        doc = leaf.document or {}
        row = {"leaf": leaf.path, "repo": doc.get("repo"), "commit": doc.get("commit"),
               "patterns": doc.get("patterns"), "title": None, "link": None, "license": None,
               "spdx": None, "creators": None}
        attr = Path(root) / leaf.path / "attribution.txt"
        if attr.is_file():
            from lab_tools.taxonomy.licenses import parse_attribution

            a = parse_attribution(attr)
            spdx = getattr(a, "spdx", None)
            row.update(title=a.title, link=a.link, license=a.license, creators=a.creators,
                       spdx=str(spdx) if spdx is not None else None)
        out.append(row)
    return out


def sample_counts(data_dir: str | Path) -> dict[str, dict[str, int]]:
    """``{leaf: {"kt1": n, "kt2": n, "st": n, "total": n}}`` counted from the phase datasets'
    ``metadata.leaf`` (samples without it count under ``"(unknown)"``).

    Raises:
        LabError: a line that is not JSON, not an object, or has a ``metadata`` / ``metadata.leaf``
        of the wrong type (file and line named).
    """
    counts: dict[str, dict[str, int]] = {}
    for phase in PHASE_FILES:
        path = Path(data_dir) / f"{phase}.jsonl"
        if not path.is_file():
            continue
        for n, sample in iter_jsonl(path):
            if not isinstance(sample, dict):
                raise LabError(f"expected a sample (a JSON object), got a {type(sample).__name__}",
                               file=str(path), line=n)
            meta = sample.get("metadata") or {}
            if not isinstance(meta, dict):
                raise LabError("expected an object", file=str(path), line=n, field="metadata")
            leaf = meta.get("leaf") or "(unknown)"
            if not isinstance(leaf, str):
                raise LabError("expected a leaf path (a string)", file=str(path), line=n,
                               field="metadata.leaf")
            row = counts.setdefault(leaf, {p: 0 for p in PHASE_FILES} | {"total": 0})
            row[phase] += 1
            row["total"] += 1
    return dict(sorted(counts.items()))


def provenance(root: str | Path, cfg=None, **extra) -> dict:
    """What ``run.json`` records about a build: taxonomy root/commit/leaves and the settings.

    ``cfg``: the loaded :class:`lab_tools.config.Config` (teacher, judge, student, preset, license
    allowlist); ``extra`` overrides (e.g. ``preset=...`` from a flag)."""
    info = {"taxonomy": {"root": str(Path(root).resolve()), **taxonomy_commit(root)},
            "leaves": leaf_inventory(root), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if cfg is not None:
        info.update(teacher=cfg.generate.teacher, judge=cfg.generate.judge or cfg.generate.teacher,
                    student=cfg.train.student, preset=cfg.train.preset,
                    license_allowlist=list(cfg.licenses.allowlist),
                    generate={k: v for k, v in vars(cfg.generate).items()})
    info.update({k: v for k, v in extra.items() if v is not None})
    return info


def selected_model(train_dir: Path, manifest: dict) -> Path:
    """The selected checkpoint named by the training manifest's ``selected`` (absolute, or
    relative to the run's train dir or to the current directory).

    Raises:
        LabError: no ``selected`` entry or the directory has no ``config.json``.
    """
    sel = manifest.get("selected")
    if not sel:
        raise LabError("the training manifest names no selected checkpoint",
                       file=str(train_dir / "manifest.json"), field="selected")
    for cand in (Path(sel), train_dir / sel):
        if (cand / "config.json").is_file():
            return cand
    raise LabError(f"selected checkpoint {sel} is not a model directory (no config.json)",
                   file=str(train_dir / "manifest.json"), field="selected")


def _copy_model(src: Path, dst: Path) -> list[str]:
    copied = []
    for f in sorted(src.iterdir()):
        if not f.is_file() or f.name in _SKIP or f.name.startswith(_SKIP_PREFIX):
            continue
        shutil.copy2(f, dst / f.name)
        copied.append(f.name)
    if not any(n.endswith(".safetensors") for n in copied):
        raise LabError("the selected checkpoint holds no .safetensors weights", file=str(src))
    return copied


def write_sha256sums(directory: Path) -> Path:
    """``SHA256SUMS`` over every regular file in ``directory`` (recursively, sorted), in the
    ``sha256sum`` text format (``<hex>  <relative path>``), so ``sha256sum -c SHA256SUMS`` passes."""
    lines = []
    for f in sorted(directory.rglob("*")):
        if f.is_file() and f.name != "SHA256SUMS":
            lines.append(f"{sha256_file(f)}  {f.relative_to(directory).as_posix()}\n")
    out = directory / "SHA256SUMS"
    return write_text_atomic(out, "".join(lines))


def verify_sha256sums(directory: str | Path) -> list[str]:
    """Files listed in ``SHA256SUMS`` whose hash differs or that are missing (empty when all pass)."""
    d = Path(directory)
    bad = []
    for line in (d / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        digest, name = line.split("  ", 1)
        f = d / name
        if not f.is_file() or sha256_file(f) != digest:
            bad.append(name)
    return bad


def make_release(run_dir: str | Path, out_dir: str | Path | None = None, *,
                 taxonomy: str | Path | None = None, cfg=None,
                 allow_untrained: bool = False) -> ReleaseResult:
    """Build the release directory of the run at ``run_dir`` (default ``run_dir/release``).

    ``taxonomy`` overrides the root recorded in ``run.json`` (needed when there is no run.json).
    A model that no phase trained (every phase of the manifest skipped: the base model passed
    through) is refused unless ``allow_untrained`` (DESIGN.md Trust boundary: never released).

    Raises:
        LabError: the run lacks a training manifest or a selected model, no phase trained it
        (without ``allow_untrained``), or the taxonomy root is unknown.
    """
    from lab_tools.feedback.report import release_facts
    from lab_tools.release.card import render_card

    run = Path(run_dir)
    train_dir, data_dir, eval_dir = run / "train", run / "data", run / "eval"
    manifest = read_json(train_dir / "manifest.json")
    if manifest is None:
        raise LabError("no training manifest: run `lab train` (or `lab build`) first",
                       file=str(train_dir / "manifest.json"))
    from lab_tools.train.phases import trained_phases

    if not allow_untrained and not trained_phases(manifest):
        raise LabError("no phase trained this model (the training manifest records every phase as "
                       "skipped, so the selected model is the untrained base); pass --allow-untrained "
                       "to release it anyway", file=str(train_dir / "manifest.json"), field="phases")
    model_dir = selected_model(train_dir, manifest)
    prov = read_json(run / "run.json") or {}
    root = taxonomy or (prov.get("taxonomy") or {}).get("root")
    if root is None:
        raise LabError("unknown taxonomy root: no run.json in the run dir; pass --taxonomy",
                       file=str(run / "run.json"))
    if not prov or taxonomy is not None:
        prov = {**prov, **provenance(root, cfg)}
    evaluation = read_json(eval_dir / "eval.json")

    counts = sample_counts(data_dir)
    docs = document_licenses(root)
    repo = repository_top(root) or Path(root).resolve()
    cache = cfg.cache_path if cfg is not None else default_cache_dir()
    public = PathRedactor(repo, {"run": run, "cache": cache})
    info = {
        "format": "lab-tools release 1",
        "released": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": PathRedactor(repo, {"cache": cache}).text(str(run.resolve())),
        "taxonomy": prov.get("taxonomy"),
        "leaves": [dict(leaf, samples=counts.get(leaf["path"], {p: 0 for p in PHASE_FILES} | {"total": 0}))
                   for leaf in prov.get("leaves", [])],
        "samples": {p: sum(c[p] for c in counts.values()) for p in PHASE_FILES},
        "documents": docs,
        "teacher": prov.get("teacher"), "judge": prov.get("judge"), "student": prov.get("student"),
        "preset": manifest.get("preset") or prov.get("preset"),
        "training": {k: v for k, v in manifest.items() if k not in ("selected",)},
        "selected_checkpoint": _relative(model_dir, run),
        "evaluation": _eval_summary(evaluation),
        "feedback": release_facts(run),  # synthetic comparisons + reward model (ALMoST), None if off
        "files": [],
    }
    unattributed = [c for c in counts if c not in {leaf["path"] for leaf in prov.get("leaves", [])}]
    if unattributed:
        info["samples_from_unlisted_leaves"] = {c: counts[c] for c in unattributed}
    info = public.data(info)

    out = Path(out_dir) if out_dir else run / "release"
    with atomic_dir(out) as tmp:  # a failure below leaves neither a half release nor release.tmp*
        model_files = _copy_model(model_dir, tmp)
        for src, name in ((train_dir / "loss.png", "loss.png"), (train_dir / "metrics.csv", "metrics.csv"),
                          (train_dir / "manifest.json", "training_manifest.json"),
                          (data_dir / "dataset_card.json", "dataset_card.json"),
                          (eval_dir / "branch_report.md", "branch_report.md"),
                          (eval_dir / "eval.json", "eval.json"), (run / "rm" / "rm_eval.json", "rm_eval.json"),
                          (eval_dir / "alignment.json", "alignment.json")):
            if not src.is_file():
                continue
            if src.suffix == ".json":
                write_json(tmp / name, public.data(read_json(src)))
            elif src.suffix == ".md":
                write_text_atomic(tmp / name, public.text(src.read_text(encoding="utf-8")))
            else:
                shutil.copy2(src, tmp / name)
            info["files"].append(name)
        info["files"].sort()
        info["model_files"] = {n: sha256_file(tmp / n) for n in model_files}
        write_json(tmp / "release.json", info)
        branch_md = (tmp / "branch_report.md").read_text(encoding="utf-8") if (tmp / "branch_report.md").is_file() else None
        write_text_atomic(tmp / "README.md", render_card(info, branch_md))
        write_sha256sums(tmp)
    return ReleaseResult(out_dir=out, info=info)


def _relative(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when inside it (cards should not show one machine's paths)."""
    try:
        return Path(path).resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return str(path)


def _eval_summary(evaluation: dict | None) -> dict | None:
    """Totals before/after and verdict counts from eval.json (judge explanations stay in eval.json)."""
    if not evaluation:
        return None
    report = evaluation.get("report") or {}
    return {"totals": report.get("totals"), "counts": report.get("counts"),
            "rows": report.get("rows"), "judge_unable": report.get("judge_unable"),
            "judge_refused": report.get("judge_refused"),
            "judge": ((evaluation.get("trained") or {}).get("judge") or {}).get("judge")}

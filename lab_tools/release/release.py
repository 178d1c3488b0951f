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

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from lab_tools.atomic import atomic_dir, write_json_atomic, write_text_atomic
from lab_tools.config import default_cache_dir
from lab_tools.errors import LabError
from lab_tools.feedback.report import release_facts
from lab_tools.jsonl import iter_jsonl
from lab_tools.redact import PathRedactor, repository_top, strip_credentials_data
from lab_tools.release.binding import (credit_samples, published_source, sample_versions, selected_checkpoint,
                                       verify_weights)
from lab_tools.release.card import hub_base_model, render_card
from lab_tools.release.gguf_export import check_types, export_gguf, gguf_model_name
from lab_tools.taxonomy.leaf import iter_leaf_paths, leaf_hash, load_leaf
from lab_tools.taxonomy.provenance import document_licenses, taxonomy_commit  # noqa: F401 (re-exported)
from lab_tools.train.phases import trained_phases
from lab_tools.weights import model_files as checkpoint_files
from lab_tools.weights import sha256_file

PHASE_FILES = ("kt1", "kt2", "st")


@dataclass
class ReleaseResult:
    """``out_dir``: the release directory; ``info``: the content of ``release.json``."""
    out_dir: Path
    info: dict


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


def leaf_inventory(root: str | Path) -> list[dict]:
    """Every leaf under ``root``: ``{"path", "kind", "hash"}`` (content hash of qna.yaml + attribution)."""
    out = []
    for path in iter_leaf_paths(root):
        leaf = load_leaf(root, path)
        out.append({"path": path, "kind": leaf.kind, "hash": leaf_hash(Path(root) / path)})
    return out


def sample_counts(data_dir: str | Path) -> dict[str, dict[str, int]]:
    """``{leaf: {"kt1": n, "kt2": n, "st": n, "total": n}}`` counted from the phase datasets'
    ``metadata.leaf`` (samples without it count under ``"(unknown)"``), whatever their
    ``leaf_hash``: :func:`lab_tools.release.binding.sample_versions` summed over versions.

    Raises:
        LabError: a line that is not JSON, not an object, or has a ``metadata`` / ``metadata.leaf``
        / ``metadata.leaf_hash`` of the wrong type (file and line named).
    """
    counts: dict[str, dict[str, int]] = {}
    for leaf, versions in sample_versions(data_dir).items():
        row = counts.setdefault(leaf, {p: 0 for p in PHASE_FILES} | {"total": 0})
        for version_counts in versions.values():
            for key in row:
                row[key] += version_counts.get(key, 0)
    return dict(sorted(counts.items()))


def provenance(root: str | Path, cfg=None, **extra) -> dict:
    """What ``run.json`` records about a build: taxonomy root/commit/leaves and the settings.

    ``cfg``: the loaded :class:`lab_tools.config.Config` (teacher, judge, student, preset, license
    allowlist; ``dataset``: ``release.dataset``, the Hub id of the run's dataset, only when set);
    ``extra`` overrides (e.g. ``preset=...`` from a flag). Credentials in the specs'
    URLs are stripped (:func:`lab_tools.redact.strip_credentials_data`): ``run.json`` is stored
    with the run and uploaded as a workflow artifact."""
    info = {"taxonomy": {"root": str(Path(root).resolve()), **taxonomy_commit(root)},
            "leaves": leaf_inventory(root), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if cfg is not None:
        info.update(teacher=cfg.generate.teacher, judge=cfg.generate.judge or cfg.generate.teacher,
                    student=cfg.train.student, preset=cfg.train.preset,
                    license_allowlist=list(cfg.licenses.allowlist),
                    generate={k: v for k, v in vars(cfg.generate).items()},
                    **({"dataset": cfg.release.dataset} if cfg.release.dataset else {}))
    info.update({k: v for k, v in extra.items() if v is not None})
    return strip_credentials_data(info)


def _copy_model(src: Path, dst: Path) -> list[str]:
    """Copy the model files of checkpoint ``src`` (not training-only state; never a symbolic link:
    :func:`lab_tools.weights.model_files`) into ``dst``; returns their names."""
    copied = []
    for f in checkpoint_files(src, refuse_symlinks=True):
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
                 allow_untrained: bool = False, gguf=()) -> ReleaseResult:
    """Build the release directory of the run at ``run_dir`` (default ``run_dir/release``).

    ``gguf``: GGUF types (``f16``, ``q8_0``, ``q4_k_m`` ...) to write beside the safetensors with
    llama.cpp's converter, plus an Ollama ``Modelfile`` (:mod:`lab_tools.release.gguf_export`); recorded
    under ``gguf`` in ``release.json`` and covered by ``SHA256SUMS``.

    ``taxonomy`` overrides the root recorded in ``run.json`` where the documents and licenses are
    read (needed when there is no run.json, or the run moved to another machine); the leaves and
    their hashes come from ``run.json`` (provenance is computed from ``taxonomy`` only without one).
    A model that no phase trained (every phase of the manifest skipped: the base model passed
    through) is refused unless ``allow_untrained`` (DESIGN.md Trust boundary: never released).
    The release is bound to its run (:mod:`lab_tools.release.binding`): the selected checkpoint
    lies in the run folder (paths resolve against it, so a moved or copied run releases), no
    published file is a symbolic link, the model files' digests equal those recorded when the
    checkpoint was written and when it was evaluated, and a leaf is credited only with samples
    of its provenance version (``uncredited_samples`` in ``release.json`` lists the others).
    ``dataset`` in ``release.json`` (the model card's ``datasets``): ``cfg.release.dataset`` when
    ``cfg`` sets it, else the one ``run.json`` recorded, else None.

    Raises:
        LabError: the run lacks a training manifest or a selected model, no phase trained it
        (without ``allow_untrained``), the taxonomy root is unknown or missing, the selected
        checkpoint lies outside the run, a published file is a symbolic link, or a weight digest
        is missing or differs (the file named).
    """
    gguf = check_types(gguf)  # an unknown type fails before anything is read
    run = Path(run_dir)
    train_dir, data_dir, eval_dir = run / "train", run / "data", run / "eval"
    manifest = read_json(train_dir / "manifest.json")
    if manifest is None:
        raise LabError("no training manifest: run `lab train` (or `lab build`) first",
                       file=str(train_dir / "manifest.json"))
    untrained = not trained_phases(manifest)
    if not allow_untrained and untrained:
        raise LabError("no phase trained this model (the training manifest records every phase as "
                       "skipped, so the selected model is the untrained base); pass --allow-untrained "
                       "to release it anyway", file=str(train_dir / "manifest.json"), field="phases")
    model_dir, weights_key = selected_checkpoint(run, train_dir, manifest, base_ok=untrained)
    prov = read_json(run / "run.json") or {}
    root = taxonomy or (prov.get("taxonomy") or {}).get("root")
    if root is None:
        raise LabError("unknown taxonomy root: no run.json in the run dir; pass --taxonomy",
                       file=str(run / "run.json"))
    if not Path(root).is_dir():
        raise LabError(f"the taxonomy root recorded in run.json ({root}) is not a folder here; pass "
                       "--taxonomy", file=str(run / "run.json"), field="taxonomy.root")
    if not prov:
        prov = provenance(root, cfg)
    evaluation = read_json(eval_dir / "eval.json")

    versions = sample_versions(data_dir)
    counts = {leaf: {p: sum(c[p] for c in by.values()) for p in (*PHASE_FILES, "total")}
              for leaf, by in sorted(versions.items())}
    credited, uncredited = credit_samples(prov.get("leaves", []), versions)
    docs = document_licenses(root)
    repo = repository_top(root) or Path(root).resolve()
    cache = cfg.cache_path if cfg is not None else default_cache_dir()
    public = PathRedactor(repo, {"run": run, "cache": cache})
    info = {
        "format": "lab-tools release 1",
        "released": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "run": PathRedactor(repo, {"cache": cache}).text(str(run.resolve())),
        "taxonomy": prov.get("taxonomy"),
        "leaves": [dict(leaf, samples=credited[leaf["path"]]) for leaf in prov.get("leaves", [])],
        "samples": {p: sum(c[p] for c in counts.values()) for p in PHASE_FILES},
        "documents": docs,
        "teacher": prov.get("teacher"), "judge": prov.get("judge"), "student": prov.get("student"),
        # the Hub id the run's dataset is published under (release.dataset), for the card's `datasets`
        "dataset": (cfg.release.dataset if cfg is not None else None) or prov.get("dataset") or None,
        # the Hub id and license of the base model, for the card's front matter (release.card)
        "base_model": hub_base_model(prov.get("student"), manifest.get("base_model"), model_dir),
        "preset": manifest.get("preset") or prov.get("preset"),
        "training": {k: v for k, v in manifest.items() if k not in ("selected", "weights")},
        "selected_checkpoint": _relative(model_dir, run),
        "evaluation": _eval_summary(evaluation),
        "feedback": release_facts(run),  # synthetic comparisons + reward model (ALMoST), None if off
        "files": [],
    }
    unattributed = [c for c in counts if c not in {leaf["path"] for leaf in prov.get("leaves", [])}]
    if unattributed:
        info["samples_from_unlisted_leaves"] = {c: counts[c] for c in unattributed}
    if uncredited:  # generated from another version of the leaf (edited after generation)
        info["uncredited_samples"] = uncredited
    info = public.data(info)

    out = Path(out_dir) if out_dir else run / "release"
    with atomic_dir(out) as tmp:  # a failure below leaves neither a half release nor release.tmp*
        model_files = _copy_model(model_dir, tmp)
        # the bytes published are the bytes trained and evaluated (lab_tools.release.binding)
        current = {n: sha256_file(tmp / n) for n in model_files}
        # (an untrained release, --allow-untrained: no checkpoint was written, the base passes through)
        verify_weights(current, None if untrained else manifest, weights_key, train_dir, evaluation,
                       eval_dir / "eval.json")
        for src, name in ((train_dir / "loss.png", "loss.png"), (train_dir / "metrics.csv", "metrics.csv"),
                          (train_dir / "manifest.json", "training_manifest.json"),
                          (data_dir / "dataset_card.json", "dataset_card.json"),
                          (eval_dir / "branch_report.md", "branch_report.md"),
                          (eval_dir / "eval.json", "eval.json"), (run / "rm" / "rm_eval.json", "rm_eval.json"),
                          (eval_dir / "alignment.json", "alignment.json")):
            if not src.is_file() and not src.is_symlink():
                continue
            published_source(src, run)
            if src.suffix == ".json":
                write_json(tmp / name, public.data(read_json(src)))
            elif src.suffix == ".md":
                write_text_atomic(tmp / name, public.text(src.read_text(encoding="utf-8")))
            else:
                shutil.copy2(src, tmp / name)
            info["files"].append(name)
        if gguf:  # from the released files themselves, before SHA256SUMS is written
            info["gguf"] = export_gguf(tmp, tmp, gguf, cache_dir=cache,
                                       model_name=gguf_model_name(info.get("student")))
            info["files"] += [f["file"] for f in info["gguf"]["files"]] + [info["gguf"]["modelfile"]]
        info["files"].sort()
        info["model_files"] = current
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

"""What binds a release to its run: the selected checkpoint inside the run folder, the weights
that were trained and evaluated, the leaf versions that produced the samples.

Issue 23 item 4 and DESIGN.md, Trust boundary ("A release is bound to what was trained and
evaluated"). :func:`lab_tools.release.release.make_release` uses these checks:

- :func:`selected_checkpoint`: the manifest's ``selected`` checkpoint, resolved against the
  training manifest's folder (:mod:`lab_tools.runpaths`), must lie inside the run folder (a run
  is released from what it holds, wherever it was moved).
- :func:`published_source`: a file copied into the release is a regular file inside the run
  folder, never a symbolic link.
- :func:`verify_weights`: the digests of the model files as copied into the release equal those
  recorded when the checkpoint was written (training manifest, ``weights``) and when it was
  evaluated (``eval.json``, ``weights.files``); :mod:`lab_tools.weights`.
- :func:`credit_samples`: a leaf is credited only with the samples whose ``metadata.leaf_hash``
  equals the leaf's content hash in the run's provenance (``run.json``); samples generated from
  another version of a leaf (edited after generation) are not credited and are listed.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.jsonl import iter_jsonl
from lab_tools.runpaths import resolve
from lab_tools.weights import verify

PHASES = ("kt1", "kt2", "st")
NO_HASH = "(none)"  # the version key of samples that carry no metadata.leaf_hash


def _inside(path: Path, run: Path) -> bool:
    try:
        Path(os.path.realpath(path)).relative_to(os.path.realpath(run))
        return True
    except ValueError:
        return False


def selected_checkpoint(run: Path, train_dir: Path, manifest: dict, *, base_ok: bool = False) -> tuple[Path, str]:
    """``(model dir, key)``: the checkpoint the training manifest selects and its key in the
    manifest's ``weights`` (its path relative to ``train_dir``, e.g. ``st/epoch-1``).
    ``base_ok``: the manifest records no trained phase and the release was asked for anyway
    (``--allow-untrained``): the selected model is the student base, which lies outside the run.

    Raises:
        LabError: no ``selected`` entry; it is not a model directory (no ``config.json``); it lies
            outside the run folder (an absolute path of an older manifest naming another copy of
            the run, or a link out of it).
    """
    mpath = train_dir / "manifest.json"
    sel = manifest.get("selected")
    if not sel or not isinstance(sel, str):
        raise LabError("the training manifest names no selected checkpoint", file=str(mpath), field="selected")
    model_dir = resolve(sel, train_dir)
    if not (model_dir / "config.json").is_file():
        raise LabError(f"selected checkpoint {sel} is not a model directory (no config.json)",
                       file=str(mpath), field="selected")
    if not base_ok and not _inside(model_dir, run):
        raise LabError(f"selected checkpoint {sel} lies outside the run folder {run}: a release publishes "
                       "only what the run holds (a manifest written before run paths were relative names an "
                       "absolute path; copy the checkpoint into the run and record it relative to "
                       f"{train_dir})", file=str(mpath), field="selected")
    key = Path(os.path.relpath(os.path.realpath(model_dir), os.path.realpath(train_dir))).as_posix()
    return model_dir, key


def published_source(src: Path, run: Path) -> None:
    """Check that ``src``, about to be copied into a release, is a regular file of the run.

    Raises:
        LabError: ``src`` is a symbolic link or lies outside the run folder.
    """
    if src.is_symlink():
        raise LabError(f"{src.name} is a symbolic link (to {os.readlink(src)}); a release publishes only "
                       "regular files that the run folder holds", file=str(src))
    if not _inside(src, run):
        raise LabError(f"{src.name} lies outside the run folder {run} (through a linked folder); a release "
                       "publishes only files that the run folder holds", file=str(src))


def verify_weights(current: dict[str, str], manifest: dict | None, key: str, train_dir: Path,
                   evaluation: dict | None, eval_path: Path) -> None:
    """Check the released model files' digests ``current`` (``{name: sha256}``) against the
    training manifest's ``weights[key]`` (not when ``manifest`` is None: an untrained base passed
    through, no checkpoint written) and, when the run was evaluated (``evaluation`` is the
    content of ``eval.json``), against ``eval.json``'s ``weights.files``.

    Raises:
        LabError: a digest missing or different (:func:`lab_tools.weights.verify`; the file named).
    """
    if manifest is not None:
        verify(current, (manifest.get("weights") or {}).get(key), when="when the checkpoint was written",
               file=train_dir / "manifest.json", field=f"weights.{key}")
    if evaluation is not None:
        verify(current, ((evaluation.get("weights") or {}) if isinstance(evaluation, dict) else {}).get("files"),
               when="when it was evaluated", file=eval_path, field="weights.files")


def sample_versions(data_dir: str | Path) -> dict[str, dict[str, dict[str, int]]]:
    """``{leaf: {leaf_hash: {"kt1", "kt2", "st", "total"}}}`` counted from the phase datasets'
    ``metadata.leaf`` / ``metadata.leaf_hash`` (a sample without a hash counts under
    :data:`NO_HASH`, without a leaf under ``"(unknown)"``).

    Raises:
        LabError: a line that is not an object, or a ``metadata`` / ``leaf`` / ``leaf_hash`` of
        the wrong type (file and line named).
    """
    out: dict[str, dict[str, dict[str, int]]] = {}
    for phase in PHASES:
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
            leaf, version = meta.get("leaf") or "(unknown)", meta.get("leaf_hash") or NO_HASH
            for name, value in (("leaf", leaf), ("leaf_hash", version)):
                if not isinstance(value, str):
                    raise LabError(f"expected a string, got {type(value).__name__}", file=str(path), line=n,
                                   field=f"metadata.{name}")
            row = out.setdefault(leaf, {}).setdefault(version, {p: 0 for p in PHASES} | {"total": 0})
            row[phase] += 1
            row["total"] += 1
    return out


def credit_samples(leaves: list[dict], versions: dict) -> tuple[dict[str, dict[str, int]], list[dict]]:
    """``(credited, uncredited)`` for the provenance ``leaves`` (``{"path", "hash", ...}``) and the
    counts of :func:`sample_versions`.

    ``credited``: ``{leaf: {"kt1", "kt2", "st", "total"}}``, only samples whose ``leaf_hash`` is the
    leaf's provenance hash. ``uncredited``: one ``{"leaf", "hash", "samples": {leaf_hash: total}}``
    per provenance leaf with samples of another version (edited after generation) or of none.
    """
    credited, uncredited = {}, []
    for leaf in leaves:
        by_version = versions.get(leaf["path"]) or {}
        credited[leaf["path"]] = dict(by_version.get(leaf.get("hash")) or {p: 0 for p in PHASES} | {"total": 0})
        other = {v: c["total"] for v, c in sorted(by_version.items()) if v != leaf.get("hash")}
        if other:
            uncredited.append({"leaf": leaf["path"], "hash": leaf.get("hash"), "samples": other})
    return credited, uncredited

"""Digests of a model directory's files: what binds a release to what was trained and evaluated.

DESIGN.md, Trust boundary: "A release is bound to what was trained and evaluated: weight digests
recorded at checkpoint and evaluation, verified at release." The *model files* of a checkpoint
are every regular file a release publishes: the weights (``*.safetensors``, adapter files), the
config and the tokenizer; training-only state (optimizer, scheduler, RNG, trainer arguments) is
neither recorded nor published. Their digests (``{file name: sha256 hex}``) are recorded

- in the training manifest, under ``weights`` keyed by the checkpoint's path relative to the
  manifest's folder, when a checkpoint is written (KT/1, KT/2, ST: :mod:`lab_tools.train.loop`;
  pref: :mod:`lab_tools.train.pref`);
- in ``eval.json`` (``weights``) when the model is evaluated (:mod:`lab_tools.eval.evaluate`);

and checked by :func:`verify` at ``lab release`` against the very bytes copied into the release.
A model directory whose files include a symbolic link is refused where it is published
(:func:`model_files` with ``refuse_symlinks``): a link could point at any file on the machine.

``lab build`` decides whether to evaluate again from :func:`tree_digest`, which hashes the files
and memoizes a digest only while the file's size, mtime, ctime and inode are all unchanged: a
rewrite with the same size and a restored mtime (``touch -r``, ``os.utime``) still changes the
ctime, which user space cannot set.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from lab_tools.errors import LabError

# training-only files a checkpoint directory may hold (Accelerate, TRL/transformers Trainer
# checkpoints): not model files, never published, not part of a weight digest
TRAINING_ONLY = frozenset({"optimizer.pt", "scheduler.pt", "trainer_state.json", "training_args.bin",
                           "rng_state.pth", "scaler.pt", "training_state.json"})
TRAINING_ONLY_PREFIX = ("rng_state", "optimizer", "global_step")


def is_model_file(name: str) -> bool:
    """True for a file name a release publishes (not training-only state: :data:`TRAINING_ONLY`)."""
    return name not in TRAINING_ONLY and not name.startswith(TRAINING_ONLY_PREFIX)


def model_files(directory: str | Path, *, refuse_symlinks: bool = False) -> list[Path]:
    """The model files directly in ``directory`` (sorted by name; sub-folders are not model files).

    Raises:
        LabError: ``directory`` is not a folder; with ``refuse_symlinks``, a model file that is a
            symbolic link (named, with its target), since publishing it would publish whatever it
            points at.
    """
    d = Path(directory)
    if not d.is_dir():
        raise LabError("not a model directory", file=str(d))
    out = []
    for f in sorted(d.iterdir()):
        if not is_model_file(f.name):
            continue
        if f.is_symlink():
            if refuse_symlinks:
                raise LabError(f"{f.name} is a symbolic link (to {os.readlink(f)}); a release publishes "
                               "only regular files that the run folder holds", file=str(f))
            if not f.is_file():
                continue
        elif not f.is_file():
            continue
        out.append(f)
    return out


def sha256_file(path: str | Path) -> str:
    """sha256 hex of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def file_digests(directory: str | Path, *, memo: dict | None = None, refuse_symlinks: bool = False) -> dict[str, str]:
    """``{file name: sha256 hex}`` of the model files in ``directory`` (:func:`model_files`).

    ``memo``: a dict kept between calls (e.g. in ``build_state.json``); a file's digest is reused
    only while its (size, mtime_ns, ctime_ns, inode) are unchanged.

    Raises:
        LabError: see :func:`model_files`.
    """
    out = {}
    for f in model_files(directory, refuse_symlinks=refuse_symlinks):
        if memo is None:
            out[f.name] = sha256_file(f)
            continue
        st = f.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        key = str(f.absolute())
        hit = memo.get(key)
        if isinstance(hit, list) and len(hit) == 5 and hit[:4] == stamp:
            out[f.name] = hit[4]
        else:
            out[f.name] = sha256_file(f)
            memo[key] = stamp + [out[f.name]]
    return out


def combined(digests: dict[str, str]) -> str:
    """One sha256 hex over ``{file name: sha256}`` (names sorted): a model directory's identity."""
    return hashlib.sha256(json.dumps(sorted(digests.items())).encode()).hexdigest()


def tree_digest(directory: str | Path, memo: dict | None = None) -> str:
    """:func:`combined` over :func:`file_digests` (with ``memo``): the evaluate stage's weight
    fingerprint in ``lab build``."""
    return combined(file_digests(directory, memo=memo))


def differences(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """Human-readable differences between two ``{file: sha256}`` maps, one per file:
    ``"model.safetensors: changed"``, ``"...: missing"``, ``"...: not recorded"`` (sorted by name)."""
    out = []
    for name in sorted(set(recorded) | set(current)):
        if name not in current:
            out.append(f"{name}: missing")
        elif name not in recorded:
            out.append(f"{name}: not recorded")
        elif recorded[name] != current[name]:
            out.append(f"{name}: changed (recorded sha256 {recorded[name][:12]}, now {current[name][:12]})")
    return out


def verify(current: dict[str, str], recorded, *, when: str, file: str | Path, field: str) -> None:
    """Check ``current`` digests against those ``recorded`` ``when`` (e.g. "when the checkpoint
    was written") in ``file`` at ``field``.

    Raises:
        LabError: nothing recorded (a run from a lab-tools version that recorded no digests), or a
            file changed, missing or not recorded; the message names every such file.
    """
    if not isinstance(recorded, dict) or not recorded or \
            not all(isinstance(k, str) and isinstance(v, str) for k, v in recorded.items()):
        raise LabError(f"no weight digests recorded {when}, so the release cannot show that it "
                       "publishes those weights (written by an older lab-tools?); run that step again",
                       file=str(file), field=field)
    diff = differences(recorded, current)
    if diff:
        raise LabError(f"the selected model's files differ from those recorded {when}: " + "; ".join(diff)
                       + "; refusing to release weights that are not what was recorded", file=str(file),
                       field=field)

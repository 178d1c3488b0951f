"""llama.cpp's own GGUF tools: ``convert_hf_to_gguf.py`` + gguf-py from a pinned source, and
``llama_model_quantize`` from llama-cpp-python.

The converter is not in any wheel: it ships with the llama.cpp sources. We take it from the
source distribution of llama-cpp-python (:data:`SDIST_VERSION`, whose ``vendor/llama.cpp`` is the
llama.cpp commit that the installed ``llama_cpp`` binding was built from, so converter and
runtime agree on the GGUF format), pinned by URL and sha256, fetched once into the lab-tools cache
(``<cache>/llama.cpp/``) and verified; only ``convert_hf_to_gguf.py``, ``conversion/``,
``gguf-py/`` and ``LICENSE`` are extracted. The converter runs in a subprocess with gguf-py first
on ``PYTHONPATH`` (it needs torch, transformers, numpy, safetensors, and sentencepiece: its Llama
path imports it before it looks for ``tokenizer.json``). Its tensor mapping is llama.cpp's; none
is written here.

Quantization to the k-quants (``q4_k_m`` ...) is llama.cpp's ``llama-quantize``, reached through
llama-cpp-python's low-level ``llama_cpp.llama_model_quantize``, also in a subprocess (a native
abort must not take the ``lab`` process with it): :mod:`lab_tools.release.gguf_quantize`.

An offline machine: put the sdist (same name, same sha256) into ``<cache>/llama.cpp/`` by hand.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

from filelock import FileLock

from lab_tools.atomic import atomic_dir
from lab_tools.config import default_cache_dir
from lab_tools.errors import LabError

SDIST_VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{SDIST_VERSION}.tar.gz"
# From PyPI's simple index (https://pypi.org/simple/llama-cpp-python/), checked 2026-12-07.
SDIST_URL = ("https://files.pythonhosted.org/packages/ec/e9/"
             "e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe7cf3/" + SDIST_NAME)
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
# what is extracted from the sdist's vendor/llama.cpp/
_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
# modules the converter imports for a Llama-family model (requirements-convert_hf_to_gguf.txt)
CONVERTER_MODULES = ("torch", "numpy", "safetensors", "transformers", "sentencepiece", "yaml")
_DOWNLOAD_TIMEOUT = 60  # seconds without data before the download fails


def llamacpp_cache(cache_dir: str | Path) -> Path:
    """``<cache>/llama.cpp``: the sdist while it is fetched, the extracted converter, the last log."""
    return Path(cache_dir) / "llama.cpp"


def converter_dir(cache_dir: str | Path, *, url: str = SDIST_URL) -> Path:
    """The folder holding ``convert_hf_to_gguf.py`` (with ``conversion/`` and ``gguf-py/`` beside
    it), extracted from the pinned llama-cpp-python sdist; fetched and verified on first use.

    A file named :data:`SDIST_NAME` already in ``<cache>/llama.cpp/`` is used instead of a
    download (an offline machine); its sha256 is checked the same way. The sdist (77 MB) is
    removed once extracted. A file lock makes concurrent processes fetch it once.

    Raises:
        LabError: the download fails, the file's sha256 is not :data:`SDIST_SHA256`, or the
        archive lacks the converter.
    """
    base = llamacpp_cache(cache_dir)
    target = base / f"converter-{SDIST_VERSION}"
    if (target / "convert_hf_to_gguf.py").is_file():
        return target
    base.mkdir(parents=True, exist_ok=True)
    with FileLock(str(base / ".lock")):
        if (target / "convert_hf_to_gguf.py").is_file():  # another process finished meanwhile
            return target
        sdist = base / SDIST_NAME
        if not sdist.is_file():
            _download(url, sdist)
        digest = _sha256(sdist)
        if digest != SDIST_SHA256:
            sdist.unlink()
            raise LabError(f"sha256 {digest} is not the pinned {SDIST_SHA256} of llama-cpp-python "
                           f"{SDIST_VERSION}; the file was removed, run the command again",
                           file=str(sdist))
        _extract(sdist, target)
        sdist.unlink()
    return target


def _download(url: str, dest: Path) -> None:
    part = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT) as resp, open(part, "wb") as fh:
            for block in iter(lambda: resp.read(1 << 20), b""):
                fh.write(block)
        part.replace(dest)
    except OSError as exc:  # URLError, timeouts, a full disk
        part.unlink(missing_ok=True)
        raise LabError(f"cannot download llama.cpp's converter (llama-cpp-python {SDIST_VERSION} "
                       f"sources) from {url}: {getattr(exc, 'reason', exc)}. On a machine without "
                       f"network, copy {SDIST_NAME} (e.g. from `pip download --no-binary :all: "
                       f"--no-deps llama-cpp-python=={SDIST_VERSION}`) to {dest}") from None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _extract(sdist: Path, target: Path) -> None:
    prefix = f"llama_cpp_python-{SDIST_VERSION}/vendor/llama.cpp/"
    with tarfile.open(sdist, "r:gz") as tar, atomic_dir(target) as tmp:
        members = []
        for m in tar.getmembers():
            if not m.name.startswith(prefix):
                continue
            rel = m.name[len(prefix):]
            if any(rel == keep or (keep.endswith("/") and rel.startswith(keep)) for keep in _MEMBERS):
                m.name = rel
                members.append(m)
        if not any(m.name == "convert_hf_to_gguf.py" for m in members):
            raise LabError("the archive holds no vendor/llama.cpp/convert_hf_to_gguf.py", file=str(sdist))
        tar.extractall(tmp, members=members, filter="data")


def missing_converter_modules() -> list[str]:
    """Modules of :data:`CONVERTER_MODULES` that this Python cannot import."""
    return [m for m in CONVERTER_MODULES if importlib.util.find_spec(m) is None]


def convert_hf_to_gguf(model_dir: str | Path, out_file: str | Path, outtype: str, *,
                       cache_dir: str | Path, model_name: str | None = None,
                       timeout: float = 3600) -> Path:
    """Run llama.cpp's ``convert_hf_to_gguf.py MODEL_DIR --outfile OUT_FILE --outtype OUTTYPE``
    (``f32``, ``f16``, ``bf16`` or ``q8_0``, the types the converter writes itself) in a
    subprocess of this Python, hub offline; ``model_name`` becomes ``general.name``.

    The converter's output goes to ``<cache>/llama.cpp/convert.log``.

    Raises:
        LabError: a module the converter needs is missing (named, with the pip command), the
        converter exits non-zero (its last error lines quoted: an unsupported architecture, an
        unrecognised BPE pre-tokenizer ...) or runs longer than ``timeout`` seconds.
    """
    missing = missing_converter_modules()
    if missing:
        raise LabError(f"llama.cpp's converter needs {', '.join(missing)}: pip install "
                       + " ".join("pyyaml" if m == "yaml" else m for m in missing))
    conv = converter_dir(cache_dir)
    log = llamacpp_cache(cache_dir) / "convert.log"
    cmd = [sys.executable, str(conv / "convert_hf_to_gguf.py"), str(model_dir),
           "--outfile", str(out_file), "--outtype", outtype]
    if model_name:
        cmd += ["--model-name", model_name]
    env = dict(os.environ, HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([str(conv / "gguf-py"), str(conv)]
                                          + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
    env.pop("NO_LOCAL_GGUF", None)  # the converter then also puts its own gguf-py first
    _run(cmd, env, log, timeout, what=f"llama.cpp's convert_hf_to_gguf.py ({outtype})")
    if not Path(out_file).is_file():
        raise LabError(f"llama.cpp's converter wrote no file; see {log}", file=str(out_file))
    return Path(out_file)


def require_quantizer(qtype: str) -> None:
    """Check that llama.cpp's quantizer (llama-cpp-python) is importable for ``qtype``.

    Raises:
        LabError: it is not (with the pip command).
    """
    if importlib.util.find_spec("llama_cpp") is None:
        raise LabError(f"quantizing to {qtype} needs llama.cpp's llama-quantize: pip install "
                       f"llama-cpp-python=={SDIST_VERSION} (f16, bf16, f32 and q8_0 need only the converter)",
                       field="--gguf")


def quantize_gguf(in_file: str | Path, out_file: str | Path, qtype: str, *, cache_dir: str | Path,
                  timeout: float = 3600) -> Path:
    """Quantize a 16/32-bit GGUF to ``qtype`` (a key of
    :data:`lab_tools.release.gguf_quantize.FTYPES`) with llama.cpp's ``llama_model_quantize``
    (llama-cpp-python) in a subprocess; output in ``<cache>/llama.cpp/quantize.log``.

    Raises:
        LabError: llama-cpp-python is not installed, or quantization fails (exit code and the
        last lines of its output quoted).
    """
    require_quantizer(qtype)
    log = llamacpp_cache(cache_dir) / "quantize.log"
    cmd = [sys.executable, "-m", "lab_tools.release.gguf_quantize", str(in_file), str(out_file), qtype]
    _run(cmd, dict(os.environ), log, timeout, what=f"llama.cpp's llama_model_quantize ({qtype})")
    if not Path(out_file).is_file():
        raise LabError(f"llama_model_quantize wrote no file; see {log}", file=str(out_file))
    return Path(out_file)


def _run(cmd: list[str], env: dict, log: Path, timeout: float, *, what: str) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(log, "w", encoding="utf-8") as fh:
            done = subprocess.run(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise LabError(f"{what} ran longer than {timeout:.0f} s; see {log}") from None
    if done.returncode != 0:
        raise LabError(f"{what} failed (exit code {done.returncode}):\n  "
                       + "\n  ".join(_error_lines(log)) + f"\n(full output: {log})")


def _error_lines(log: Path, n: int = 6) -> list[str]:
    """The last ``n`` non-empty lines of the log that are not progress bars or stack frames."""
    try:
        lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    keep = [ln.rstrip() for ln in lines if ln.strip() and not ln.startswith(("  File ", "    "))
            and not ln.startswith("Writing:")]
    return keep[-n:]


if __name__ == "__main__":  # fetch the converter now (an install script, an image build)
    print(converter_dir(default_cache_dir()))

"""`lab serve RELEASE`: an OpenAI-compatible endpoint for a release on loopback (127.0.0.1).

Two engines (:mod:`lab_tools.serve`): llama.cpp's server (``llama_cpp.server``) for a GGUF of the
release (``lab release --gguf TYPE``) or a ``.gguf`` file, and ``transformers serve`` for the
safetensors model. ``--engine auto`` takes llama.cpp when the release holds a GGUF and
llama-cpp-python's server extras are installed, else transformers. The server runs in the
foreground until Ctrl-C; ``lab chat --endpoint URL`` (or any OpenAI client) talks to it. It has no
authentication, so it listens on loopback only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import tempfile
from pathlib import Path

import click

from lab_tools.errors import LabError, UsageError
from lab_tools.models import require_local_model_dir
from lab_tools.serve import (LLAMACPP_SERVER_MODULES, start_llamacpp_server, start_transformers_serve, stop,
                             wait_for_models)

ENGINES = ("auto", "llama.cpp", "transformers")


def release_ggufs(folder: Path) -> list[Path]:
    """The GGUF files of a release folder: in ``release.json``'s order (``gguf.files``) when it
    lists them, else every ``*.gguf`` sorted by name."""
    listed = []
    info = folder / "release.json"
    if info.is_file():
        try:
            listed = [folder / f["file"] for f in ((json.loads(info.read_text(encoding="utf-8")).get("gguf")
                                                    or {}).get("files") or [])]
        except (ValueError, TypeError, KeyError):
            listed = []
    return [p for p in listed if p.is_file()] or sorted(folder.glob("*.gguf"))


def llamacpp_server_available() -> bool:
    """Whether llama-cpp-python and its server extras can be imported here."""
    return all(importlib.util.find_spec(m) is not None for m in LLAMACPP_SERVER_MODULES)


def choose(target: Path, engine: str, gguf: str | None) -> tuple[str, Path]:
    """``(engine, path)`` to serve for TARGET (a release or model folder, or a ``.gguf`` file):
    ``llama.cpp`` with a GGUF file or ``transformers`` with a model folder.

    ``gguf``: which GGUF of the release (a type such as ``q8_0``, or a file name); default the
    first (:func:`release_ggufs`).

    Raises:
        UsageError: the engine cannot serve TARGET (no GGUF for llama.cpp, a GGUF file for
        transformers, no such ``--gguf``), or no model folder (no ``config.json``).
        LabError: llama.cpp was asked for and its server extras are missing.
    """
    if target.is_file():
        if target.suffix != ".gguf":
            raise UsageError(f"{target} is neither a model folder nor a .gguf file", field="RELEASE")
        if engine == "transformers":
            raise UsageError("transformers serves a model folder, not a GGUF file", field="--engine")
        candidates = [target]
    else:
        candidates = release_ggufs(target)
        if gguf:
            want = [p for p in candidates if p.name in (gguf, f"model-{gguf.lower()}.gguf")]
            if not want:
                raise UsageError(f"the release holds no GGUF {gguf!r} (it holds: "
                                 f"{', '.join(p.name for p in candidates) or 'none'})", field="--gguf")
            candidates = want
    if engine == "auto":
        engine = "llama.cpp" if candidates and llamacpp_server_available() else "transformers"
    if engine == "llama.cpp":
        if not candidates:
            raise UsageError(f"{target} holds no GGUF file; write one with `lab release --gguf q8_0` "
                             "or serve it with --engine transformers", field="--engine")
        if not llamacpp_server_available():
            missing = [m for m in LLAMACPP_SERVER_MODULES if importlib.util.find_spec(m) is None]
            raise LabError(f"llama.cpp's server needs {', '.join(missing)}: pip install "
                           "'llama-cpp-python[server]' (or serve the safetensors with --engine transformers)")
        return engine, candidates[0]
    return engine, Path(require_local_model_dir(target, "RELEASE", embedded=False))


@click.command("serve")
@click.argument("target", metavar="RELEASE", type=click.Path(exists=True, path_type=Path))
@click.option("--engine", type=click.Choice(ENGINES), default="auto", show_default=True,
              help="llama.cpp (a GGUF of the release), transformers (its safetensors), or auto: "
                   "llama.cpp when there is a GGUF and llama-cpp-python[server] is installed.")
@click.option("--gguf", "gguf", default=None, metavar="TYPE|FILE",
              help="Which GGUF of the release llama.cpp serves (default: the first one written).")
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port on 127.0.0.1 (0: a free one).")
@click.option("--temperature", type=click.FloatRange(0, 2), default=0.7, show_default=True,
              help="transformers: the served generation config's sampling temperature (0 = greedy).")
@click.option("--ctx", "n_ctx", type=click.IntRange(64, 1_000_000), default=4096, show_default=True,
              help="llama.cpp: context length in tokens.")
def serve(target, engine, gguf, port, temperature, n_ctx):
    """Serve RELEASE (a release or model folder, or a .gguf file) as an OpenAI-compatible endpoint
    on 127.0.0.1 until Ctrl-C."""
    engine, path = choose(target, engine, gguf)
    fd, log_name = tempfile.mkstemp(prefix="lab-serve-", suffix=".log")
    os.close(fd)
    log = Path(log_name)
    if engine == "llama.cpp":
        name = target.name if target.is_dir() else path.stem
        proc, url = start_llamacpp_server(path, alias=name, port=port or None, n_ctx=n_ctx, log=log)
    else:
        proc, url, name = start_transformers_serve(path, log=log, temperature=temperature, port=port or None)
    models = wait_for_models(proc, url, 30, what=engine, log=log)
    click.echo(f"serving {path} with {engine} at {url} (model {name!r}; /v1/models lists {len(models)})")
    click.echo(f"  lab chat --endpoint {url} --model {name}")
    click.echo(f"  server log: {log}; Ctrl-C to stop")

    def on_term(signum, frame):  # `kill PID`, a service manager: stop the server too
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        rc = proc.wait()
    except KeyboardInterrupt:
        stop(proc)
        click.echo("stopped")
        return
    finally:
        signal.signal(signal.SIGTERM, previous)
    raise LabError(f"the {engine} server exited with {rc}; see {log}")

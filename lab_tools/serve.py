"""A local OpenAI-compatible server for tests and benchmarks: `transformers serve` on loopback.

vLLM and llama.cpp speak the same API; `transformers serve` (extra ``transformers[serving]``) is
the one that runs here on CPU with a local model directory and no network.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from lab_tools.errors import LabError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_executable() -> Path | None:
    """The ``transformers`` console script next to this Python, or None when not installed."""
    exe = Path(sys.executable).with_name("transformers")
    return exe if exe.exists() else None


def start_transformers_serve(model_dir: str | Path, *, log: Path | None = None, timeout: float = 180,
                             continuous_batching: bool = False,
                             temperature: float = 0.7, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``transformers serve`` on a free loopback port (CPU, hub offline) for MODEL_DIR and
    wait until it has answered a first one-token request (the model is loaded then).
    ``port``: this port on 127.0.0.1 instead of a free one.

    Returns ``(process, base_url, model)``: base_url is ``http://127.0.0.1:PORT/v1`` and
    ``model`` the name requests must use (the server is pinned to it: the directory from
    :func:`sampling_model_dir`, not MODEL_DIR itself). Stop it with :func:`stop`.
    ``log``: file for the server's output (default: discarded).
    ``continuous_batching``: serve concurrent requests in shared forward passes (paged attention),
    as vLLM and llama.cpp's parallel slots do; without it the server answers one request at a
    time (measured here with the 135M model: 17 tokens/s at 1, 4 or 16 requests in flight; with
    it 15, 41 and 103 tokens/s).

    Sampling: ``transformers serve`` builds every request's settings on the model's
    ``generation_config.json``; a request's ``temperature`` does not turn ``do_sample`` on. Since
    transformers 5.25 continuous batching also starts its manager from that file when the server
    starts (per-request temperature, top-k and top-p only where the file sets them; before, the
    first request's settings were used for every request). A model whose file leaves
    ``do_sample`` off is therefore served greedy, whatever the request says. So the server gets
    :func:`sampling_model_dir` (``do_sample`` on at ``temperature``; a request with temperature 0
    is still greedy), and the first request also asks for sampling, which transformers < 5.25
    reads with continuous batching. ``temperature`` 0 serves greedy.

    Raises:
        LabError: ``transformers serve`` is not installed, exits early, does not listen
        within ``timeout`` seconds, or fails its first request.
    """
    exe = serve_executable()
    if exe is None:
        raise LabError("transformers serve is not installed (pip install 'transformers[serving]')")
    served = sampling_model_dir(model_dir, temperature)
    port = port or free_port()
    out = log.open("w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([str(exe), "serve", str(served), "--host", "127.0.0.1", "--port", str(port),
                             "--device", "cpu"] + (["--continuous-batching"] if continuous_batching else []),
                            env=dict(os.environ, HF_HUB_OFFLINE="1"),
                            stdout=out, stderr=subprocess.STDOUT)
    if log:
        out.close()  # the server holds its own copy of the file
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"transformers serve exited with {proc.returncode}"
                           + (f"; see {log}" if log else ""))
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                pass
        except OSError:
            time.sleep(0.5)
            continue
        url = f"http://127.0.0.1:{port}/v1"
        try:
            _first_request(url, str(served), continuous_batching, temperature, deadline - time.monotonic())
        except Exception as exc:  # the openai client's errors: the server is not usable
            proc.kill()
            raise LabError(f"transformers serve did not answer its first request: {exc}"
                           + (f"; see {log}" if log else "")) from exc
        return proc, url, str(served)
    proc.kill()
    raise LabError(f"transformers serve did not start in {timeout:.0f} s")


def sampling_model_dir(model_dir: str | Path, temperature: float) -> Path:
    """A directory that serves MODEL_DIR with sampling on: a symlink to each of its files, and its
    ``generation_config.json`` (or a new one) with ``do_sample`` = ``temperature`` > 0,
    ``temperature`` and ``top_k`` 50 / ``top_p`` 1.0 where it sets none (so that continuous
    batching has the processors to set them per request; see :func:`start_transformers_serve`).

    The directory lies under the system's temporary folder, named by MODEL_DIR's resolved path and
    ``temperature`` (the same model and temperature give the same name, so what a client records
    as the model, such as the SDG cache key, stays stable). MODEL_DIR is never written.

    Raises:
        LabError: MODEL_DIR is not a directory, or its generation_config.json is not valid JSON.
    """
    import hashlib
    import json
    import tempfile

    src = Path(model_dir).resolve()
    if not src.is_dir():
        raise LabError(f"{model_dir}: not a model directory")
    key = hashlib.sha256(f"{src}\0{temperature}".encode()).hexdigest()[:16]
    dest = Path(tempfile.gettempdir()) / f"lab-serve-{src.name}-{key}"
    dest.mkdir(exist_ok=True)
    for f in src.iterdir():
        link = dest / f.name
        if f.name != "generation_config.json" and not link.is_symlink():
            link.symlink_to(f)
    gen_path = src / "generation_config.json"
    try:
        config = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    except json.JSONDecodeError as exc:
        raise LabError(f"{gen_path}: line {exc.lineno}: not valid JSON ({exc.msg})") from exc
    config["do_sample"] = temperature > 0
    if temperature > 0:
        config["temperature"] = temperature
        config.setdefault("top_k", 50)
        config.setdefault("top_p", 1.0)
    tmp = dest / f"generation_config.json.{os.getpid()}"
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(dest / "generation_config.json")  # atomic: another server may be reading it
    return dest


def _first_request(url: str, model: str, continuous_batching: bool, temperature: float,
                   timeout: float) -> None:
    """One token, so that the server has loaded the model before anything is timed; with
    continuous batching it also fixes the shared sampling settings: ``do_sample`` on when
    ``temperature`` > 0."""
    import json

    from openai import OpenAI

    extra = {}
    if continuous_batching:
        config = {"do_sample": temperature > 0, **({"temperature": temperature} if temperature > 0 else {})}
        extra = {"generation_config": json.dumps(config)}
    OpenAI(base_url=url, api_key="none", timeout=max(timeout, 10), max_retries=0).chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1, extra_body=extra)


# what `python -m llama_cpp.server` imports (llama-cpp-python and its `server` extra)
LLAMACPP_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context",
                           "pydantic_settings")


def start_llamacpp_server(gguf_file: str | Path, *, alias: str, port: int | None = None,
                          n_ctx: int = 4096, log: Path | None = None,
                          timeout: float = 120) -> tuple[subprocess.Popen, str]:
    """Start llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) for a
    GGUF file on 127.0.0.1 (``port``, else a free one), the model named ``alias`` in requests,
    ``n_ctx`` tokens of context; the chat template is the one stored in the GGUF. Waits until
    ``/v1/models`` answers. Returns ``(process, base_url)``; stop it with :func:`stop`.

    Raises:
        LabError: the server's extras are not installed (``pip install 'llama-cpp-python[server]'``),
        or it exits early or does not answer within ``timeout`` seconds (its log named).
    """
    import importlib.util

    missing = [m for m in LLAMACPP_SERVER_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise LabError(f"llama.cpp's server needs {', '.join(missing)}: pip install 'llama-cpp-python[server]'")
    port = port or free_port()
    out = log.open("w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(gguf_file),
                             "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
                             "--n_ctx", str(n_ctx)], stdout=out, stderr=subprocess.STDOUT)
    if log:
        out.close()
    url = f"http://127.0.0.1:{port}/v1"
    wait_for_models(proc, url, timeout, what="llama.cpp's server", log=log)
    return proc, url


def wait_for_models(proc: subprocess.Popen, url: str, timeout: float, *, what: str,
                    log: Path | None = None) -> list[str]:
    """Poll ``URL/models`` until it answers; returns the model ids it lists.

    Raises:
        LabError: ``proc`` exits first, or nothing answers within ``timeout`` seconds (the
        process is killed then).
    """
    import json
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LabError(f"{what} exited with {proc.returncode}" + (f"; see {log}" if log else ""))
        try:
            with urllib.request.urlopen(f"{url}/models", timeout=5) as resp:
                return [m.get("id") for m in json.load(resp).get("data", [])]
        except (OSError, ValueError):
            time.sleep(0.5)
    proc.kill()
    raise LabError(f"{what} did not answer {url}/models in {timeout:.0f} s" + (f"; see {log}" if log else ""))


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate a server started by :func:`start_transformers_serve` (kill if it lingers)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()

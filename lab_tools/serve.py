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
                             temperature: float = 0.7) -> tuple[subprocess.Popen, str]:
    """Start ``transformers serve MODEL_DIR`` on a free loopback port (CPU, hub offline) and wait
    until it has answered a first one-token request (the model is loaded then). Returns ``(process, base_url)`` with base_url ``http://127.0.0.1:PORT/v1``;
    stop it with :func:`stop`. ``log``: file for the server's output (default: discarded).
    ``continuous_batching``: serve concurrent requests in shared forward passes (paged attention),
    as vLLM and llama.cpp's parallel slots do; without it the server answers one request at a
    time (measured here with the 135M model: 17 tokens/s at 1, 4 or 16 requests in flight; with
    it 15, 41 and 103 tokens/s). Continuous batching applies the *first* request's sampling
    settings to every request (transformers 5.x ``CBGenerateManager.init_cb``: per-request
    temperature and seed are ignored, and a request without ``do_sample`` makes the server greedy
    for good, so identical prompts get identical replies); so the first request sets sampling at
    ``temperature`` (0 = greedy).

    Raises:
        LabError: ``transformers serve`` is not installed, exits early, does not listen
        within ``timeout`` seconds, or fails its first request.
    """
    exe = serve_executable()
    if exe is None:
        raise LabError("transformers serve is not installed (pip install 'transformers[serving]')")
    port = free_port()
    out = log.open("w") if log else subprocess.DEVNULL
    proc = subprocess.Popen([str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
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
            _first_request(url, str(model_dir), continuous_batching, temperature, deadline - time.monotonic())
        except Exception as exc:  # the openai client's errors: the server is not usable
            proc.kill()
            raise LabError(f"transformers serve did not answer its first request: {exc}"
                           + (f"; see {log}" if log else "")) from exc
        return proc, url
    proc.kill()
    raise LabError(f"transformers serve did not start in {timeout:.0f} s")


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


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate a server started by :func:`start_transformers_serve` (kill if it lingers)."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()

"""`lab chat --endpoint URL` against OpenAI-compatible servers, and `lab serve` (transformers serve;
the llama.cpp engine is tested with a GGUF in tests/release/test_gguf.py)."""

import json
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest
from click.testing import CliRunner
from werkzeug.wrappers import Response

from lab_tools.chat import chat
from lab_tools.serve import serve_executable


def _completion(text: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def _models(*names) -> dict:
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "x"} for n in names]}


def test_chat_endpoint_sends_the_history_and_prints_replies(httpserver):
    seen = []

    def answer(request):
        body = request.get_json()
        seen.append(body)
        return Response(json.dumps(_completion(f"reply {len(seen)}")), content_type="application/json")

    httpserver.expect_request("/v1/models").respond_with_json(_models("only-model"))
    httpserver.expect_request("/v1/chat/completions").respond_with_handler(answer)
    res = CliRunner().invoke(chat, ["--endpoint", httpserver.url_for("/v1"), "--system", "Be brief.",
                                    "--max-new-tokens", "7"], input="Hi\nAnd you?\n")
    assert res.exit_code == 0, res.output
    assert res.output.splitlines() == ["model: reply 1", "model: reply 2"]
    assert [b["model"] for b in seen] == ["only-model", "only-model"]  # the one model /v1/models lists
    assert seen[1]["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                                   {"role": "assistant", "content": "reply 1"},
                                   {"role": "user", "content": "And you?"}]
    assert seen[0]["max_tokens"] == 7 and seen[0]["temperature"] == 0


def test_chat_endpoint_needs_model_when_several_are_served(httpserver, run_lab, monkeypatch):
    httpserver.expect_request("/v1/models").respond_with_json(_models("a", "b"))
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("Hi\n"))
    code, cap = run_lab(["chat", "--endpoint", httpserver.url_for("/v1")])
    assert code == 1 and "serves 2 models; pick one with --model (a, b)" in cap.err
    assert "Traceback" not in cap.err


def test_chat_endpoint_server_down_is_a_clean_error(run_lab, monkeypatch):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once the socket is closed
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("Hi\n"))
    code, cap = run_lab(["chat", "--endpoint", f"http://127.0.0.1:{port}/v1", "--model", "m"])
    assert code == 1 and "--endpoint: the endpoint" in cap.err and "failed" in cap.err
    assert "Traceback" not in cap.err


def test_chat_needs_a_model_or_an_endpoint(run_lab):
    code, cap = run_lab(["chat"])
    assert code == 2 and "--model DIR (or embedded), or --endpoint URL" in cap.err


@pytest.mark.skipif(serve_executable() is None, reason="transformers serve is not installed")
def test_lab_serve_answers_models_and_lab_chat_talks_to_it(tiny_model):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lab_tools", "serve", str(tiny_model), "--port", str(port),
                             "--engine", "transformers"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        first = proc.stdout.readline()  # printed once the model has answered a first request
        assert f"with transformers at http://127.0.0.1:{port}/v1" in first, first + proc.stdout.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=10) as resp:
            names = [m["id"] for m in json.load(resp)["data"]]
        assert len(names) == 1 and names[0] in first
        res = CliRunner().invoke(chat, ["--endpoint", f"http://127.0.0.1:{port}", "--max-new-tokens", "3"],
                                 input="Hi\n")
        assert res.exit_code == 0, res.output
        assert res.output.startswith("model:")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0  # stopped cleanly, with its server
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_lab_serve_refuses_llama_cpp_without_a_gguf(run_lab, tiny_model):
    code, cap = run_lab(["serve", str(tiny_model), "--engine", "llama.cpp"])
    assert code == 2 and "holds no GGUF file" in cap.err and "lab release --gguf q8_0" in cap.err

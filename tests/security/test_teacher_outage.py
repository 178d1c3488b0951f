"""A failing teacher fails the run (DESIGN.md, Trust boundary: a run that learned nothing is never
cached as done and never released).

End to end through the CLI: an unreachable OpenAI-compatible teacher makes `lab generate` exit
non-zero naming the teacher and the first error, caches no shard, and `lab train` / `lab release`
refuse what it wrote; once the server answers on the same URL, a rerun generates (nothing was
cached as finished). A teacher that fails a few requests (HTTP 500) under
``generate.max_request_error_fraction`` still succeeds, with the errors counted apart from the
quality rejections. Two local teachers with the same folder name never share SDG shards.
"""

from __future__ import annotations

import json
import shutil
import socket
import threading
from pathlib import Path

import pytest

from tests.e2e.build_fixture import make_build_repo
from tests.sdg.sdg_taxonomy import HAIKU, write_leaf

from lab_tools.sdg.backends import ChatRequest
from lab_tools.sdg.fake import ScriptedTeacher

MODEL = "teacher-model"


def _closed_port() -> int:
    """A loopback port that nothing listens on (bound once by us, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _openai_handler(fail=lambda body: False):
    """A werkzeug handler speaking the OpenAI chat-completions API with the scripted teacher's
    replies; requests for which ``fail(body)`` is true get HTTP 500."""
    from werkzeug import Response

    teacher = ScriptedTeacher()

    def handle(request):
        body = json.loads(request.get_data())
        if fail(body):
            return Response("upstream exploded", status=500)
        comp = teacher.generate([ChatRequest(body["messages"], max_tokens=body.get("max_tokens", 256),
                                             temperature=body.get("temperature", 0.7),
                                             seed=body.get("seed"))])[0]
        reply = {"id": "c", "object": "chat.completion", "created": 0, "model": body["model"],
                 "choices": [{"index": 0, "finish_reason": "stop",
                              "message": {"role": "assistant", "content": comp.text}}],
                 "usage": {"prompt_tokens": comp.prompt_tokens, "completion_tokens": comp.completion_tokens,
                           "total_tokens": comp.prompt_tokens + comp.completion_tokens}}
        return Response(json.dumps(reply), status=200, content_type="application/json")

    return handle


def _shards(cache_dir: Path) -> list[Path]:
    return sorted((cache_dir / "sdg").rglob("shard.json")) if (cache_dir / "sdg").is_dir() else []


@pytest.fixture()
def repo(tmp_path, repo_root, tiny_model) -> Path:
    """The e2e build repository (knowledge + two skills leaves, tiny student); its taxonomy root."""
    return make_build_repo(tmp_path, repo_root, tiny_model)


def test_unreachable_teacher_fails_caches_nothing_and_nothing_trains(repo, cache_dir, tmp_path, run_lab,
                                                                    tiny_model, monkeypatch):
    from pytest_httpserver import HTTPServer

    monkeypatch.setenv("LAB_GENERATE__MAX_RETRIES", "0")
    port = _closed_port()
    spec = f"openai:http://127.0.0.1:{port}/v1#{MODEL}"
    run = tmp_path / "run"
    gen = ["generate", str(repo), "--teacher", spec, "--judge", spec, "--out", str(run / "data"), "--quiet"]

    code, io = run_lab(gen)
    assert code == 1, io.out + io.err
    assert f"openai:http://127.0.0.1:{port}/v1#{MODEL}" in io.err  # names the teacher: server and model
    assert "first error:" in io.err and "APIConnectionError" in io.err and "Traceback" not in io.err
    assert "err questions" in io.out  # the summary table counts the failed requests apart
    assert _shards(cache_dir) == [] and not list(cache_dir.rglob("stage-*.json"))
    card = json.loads((run / "data" / "dataset_card.json").read_text())
    assert card["request_errors"] > 0 and sum(card["phases"].values()) == 0
    assert all(leaf["error"] and sum(leaf["errors"].values()) == sum(leaf["requests_by_stage"].values()) > 0
               for leaf in card["leaves"])

    # lab train refuses the empty output before writing anything
    train = ["train", "--data", str(run / "data"), "--out", str(run / "train"), "--model", str(tiny_model),
             "--quiet"]
    code, io = run_lab(train)
    assert code == 1 and "no phase has samples of its own" in io.err and "--allow-untrained" in io.err
    assert "Traceback" not in io.err and not (run / "train" / "manifest.json").exists()
    # with the flag it passes the base model on, and lab release refuses that model
    code, io = run_lab(train + ["--allow-untrained"])
    assert code == 0, io.err
    manifest = json.loads((run / "train" / "manifest.json").read_text())
    assert all("skipped" in e for e in manifest["phases"].values())
    code, io = run_lab(["release", "--run", str(run), "--taxonomy", str(repo)])
    assert code == 1 and "no phase trained this model" in io.err and "--allow-untrained" in io.err
    assert "Traceback" not in io.err and not (run / "release").exists()
    assert not list(run.glob("release.tmp*"))

    # the teacher is back on the same URL: the rerun generates every leaf (none says "cached")
    server = HTTPServer("127.0.0.1", port, threaded=True)
    server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(_openai_handler())
    server.start()
    try:
        code, io = run_lab(gen)
    finally:
        server.stop()
    assert code == 0, io.out + io.err
    card = json.loads((run / "data" / "dataset_card.json").read_text())
    assert card["leaves"] and not any(leaf["cached"] or leaf["error"] for leaf in card["leaves"])
    assert card["request_errors"] == 0 and sum(card["phases"].values()) > 0
    assert len(_shards(cache_dir)) == len(card["leaves"])


def test_build_stops_at_generate_naming_the_teacher(repo, cache_dir, tmp_path, run_lab, monkeypatch):
    monkeypatch.setenv("LAB_GENERATE__MAX_RETRIES", "0")
    port = _closed_port()
    spec = f"openai:http://127.0.0.1:{port}/v1#{MODEL}"
    out = tmp_path / "build"
    code, io = run_lab(["build", str(repo), "--out", str(out), "--quiet", "--teacher", spec, "--judge", spec])
    assert code == 1
    assert "build stopped at stage 'generate'" in io.err and f"127.0.0.1:{port}/v1#{MODEL}" in io.err
    assert not (out / "train").exists() and not (out / "release").exists() and _shards(cache_dir) == []


def test_teacher_failing_some_requests_under_the_threshold_succeeds_with_errors_counted(
        httpserver, cache_dir, tmp_path, run_lab, monkeypatch):
    """One response request (of at least eight) gets HTTP 500 (no retries): at most 12.5 % is
    under the default fraction 0.2, so the leaf is kept and cached, with the failed request
    counted apart from the quality rejections."""
    root = tmp_path / "taxonomy"
    write_leaf(root, "compositional_skills/writing/poetry/haiku", HAIKU)
    lock, seen = threading.Lock(), {"response": 0}

    def first_response_fails(body):
        if "creative writer" not in json.dumps(body["messages"]):  # the response stage's system prompt
            return False
        with lock:
            seen["response"] += 1
            return seen["response"] == 1

    httpserver.expect_request("/v1/chat/completions", method="POST").respond_with_handler(
        _openai_handler(first_response_fails))
    monkeypatch.setenv("LAB_GENERATE__MAX_RETRIES", "0")
    spec = f"openai:{httpserver.url_for('/v1')}#{MODEL}"
    out = tmp_path / "out"
    code, io = run_lab(["generate", str(root), "--teacher", spec, "--samples", "8", "--out", str(out),
                        "--quiet"])
    assert code == 0, io.out + io.err
    sent = seen["response"]
    assert sent >= 8  # samples 8: responses for at least 8 instructions
    [leaf] = json.loads((out / "dataset_card.json").read_text())["leaves"]
    assert leaf["errors"] == {"responses": 1} and leaf["requests_by_stage"]["responses"] == sent
    assert leaf["lost"] == {"responses": 1} and "responses" not in leaf["rejected"]
    assert 0 < leaf["kept"] <= 8 and not leaf["error"] and not leaf["cached"]
    assert "err responses" in io.out and f"1/{sent}" in io.out and "1 teacher/judge request failed" in io.out
    assert f"responses: 1/{sent}" in (out / "README.md").read_text()
    assert len(_shards(cache_dir)) == 1


def test_same_basename_teachers_get_different_cache_keys(tmp_path, tiny_model):
    from lab_tools.config import Config
    from lab_tools.sdg.backends import OpenAITeacher, teacher_identity, teacher_name
    from lab_tools.sdg.pipeline import _key
    from lab_tools.taxonomy.leaf import load_leaf

    a, b = tmp_path / "a" / "model", tmp_path / "b" / "model"
    for d in (a, b):
        shutil.copytree(tiny_model, d)
    (b / "config.json").write_text((b / "config.json").read_text().replace("{", '{"_variant": 2, ', 1))
    assert teacher_name(f"transformers:{a}") == teacher_name(f"transformers:{b}")  # same shown name
    ids = {teacher_identity(f"transformers:{d}") for d in (a, b)}
    assert len(ids) == 2 and all(str(tmp_path) in i for i in ids)
    # same path, other weights (a new file size): another identity too
    before = teacher_identity(f"transformers:{a}")
    weights = next(a.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes() + b"\0")
    assert teacher_identity(f"transformers:{a}") != before
    # two copies with identical bytes under the same basename still differ by resolved path
    c = tmp_path / "c" / "model"
    shutil.copytree(a, c)
    assert teacher_identity(f"transformers:{a}") != teacher_identity(f"transformers:{c}")
    # the same model name on two servers
    assert teacher_identity("openai:http://10.0.0.1:8000/v1#m") != teacher_identity("openai:http://10.0.0.2:8000/v1#m")
    served = OpenAITeacher("http://10.0.0.1:8000/v1/", "m", timeout=7, max_retries=1)
    assert served.identity == teacher_identity("openai:http://10.0.0.1:8000/v1#m")
    assert served.client.max_retries == 1 and served.client.timeout.read == 7  # the client's own retries

    root = tmp_path / "taxonomy"
    write_leaf(root, "compositional_skills/writing/poetry/haiku", HAIKU)
    leaf = load_leaf(root, "compositional_skills/writing/poetry/haiku")
    cfg = Config()
    keys = {_key(leaf, cfg, teacher_identity(f"transformers:{d}"), "judge") for d in (a, b, c)}
    assert len(keys) == 3

"""Teacher backends: spec parsing, transformers in-process batching, openai against real servers."""

from __future__ import annotations

import json

import pytest

from lab_tools.errors import LabError
from lab_tools.sdg.backends import ChatRequest, OpenAITeacher, make_teacher, teacher_name


def _req(text: str, **kw) -> ChatRequest:
    return ChatRequest([{"role": "user", "content": text}], **kw)


@pytest.mark.parametrize("spec", ["nope:x", "openai:127.0.0.1#m", "openai:http://x/v1", "vllm:", "transformers:/no/such/dir"])
def test_bad_specs_are_lab_errors(spec):
    with pytest.raises(LabError):
        make_teacher(spec)


def test_vllm_missing_is_a_clear_error():
    pytest.importorskip("lab_tools")
    try:
        import vllm  # noqa: F401
        pytest.skip("vllm installed")
    except ImportError:
        pass
    with pytest.raises(LabError, match="vLLM"):
        make_teacher("vllm:some-model")


def test_transformers_backend_batches_and_bounds_tokens(tiny_model):
    t = make_teacher(f"transformers:{tiny_model}", batch_size=3)
    assert t.name == teacher_name(f"transformers:{tiny_model}")
    reqs = [_req("hello " * n, max_tokens=5 + n % 3, temperature=0.0) for n in range(1, 8)]
    reqs.append(_req("sampled", max_tokens=6, temperature=0.9, seed=1))
    out = t.generate(reqs)
    assert len(out) == len(reqs) and not any(c.error for c in out)
    for r, c in zip(reqs, out):
        assert 0 <= c.completion_tokens <= r.max_tokens and c.prompt_tokens > 0
    # greedy is deterministic and independent of the batch it ran in
    alone = t.generate([reqs[2]])[0]
    assert alone.text == out[2].text
    assert t.count_tokens("hello hello") > 0


def test_openai_retries_are_the_clients_own(httpserver):
    """A 500 then a 200: the openai client retries by itself (its retry-count header says so);
    a server that stays down (503) gives an error naming the server once ``max_retries`` are spent."""
    body = {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "fine"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_data("boom", status=500)
    httpserver.expect_ordered_request("/v1/chat/completions").respond_with_json(body)
    t = OpenAITeacher(httpserver.url_for("/v1"), "m", workers=1, max_retries=2)
    [c] = t.generate([_req("hi", max_tokens=4)])
    assert c.error is None and c.text == "fine" and c.extra["attempts"] == 2 and c.completion_tokens == 1
    assert [r.headers.get("x-stainless-retry-count") for r, _ in httpserver.log] == ["0", "1"]
    httpserver.clear()
    httpserver.expect_request("/v1/chat/completions").respond_with_data("down", status=503)
    t = OpenAITeacher(httpserver.url_for("/v1"), "m", workers=1, max_retries=1)
    [c] = t.generate([_req("hi", max_tokens=4)])
    assert c.text == "" and "HTTP 503" in c.error and t.identity in c.error
    assert len(httpserver.log) == 2  # one try and one retry
    httpserver.clear()
    httpserver.expect_request("/v1/chat/completions").respond_with_data("no", status=400)
    [c] = t.generate([_req("hi", max_tokens=4)])
    assert "HTTP 400" in c.error and len(httpserver.log) == 1  # a client error is not retried


def test_openai_workers_bound_requests_in_flight_across_callers():
    """The pipeline calls ``generate`` from one thread per leaf: ``workers`` still bounds the
    requests in flight over all of them, and every request is answered in its caller's order."""
    import threading
    import time
    from types import SimpleNamespace

    t = OpenAITeacher("http://127.0.0.1:9/v1", "m", workers=3)
    lock, now = threading.Lock(), {"in": 0, "max": 0}

    def create(**kw):
        with lock:
            now["in"] += 1
            now["max"] = max(now["max"], now["in"])
        time.sleep(0.02)
        with lock:
            now["in"] -= 1
        msg = SimpleNamespace(content=kw["messages"][0]["content"].upper())
        return SimpleNamespace(choices=[SimpleNamespace(message=msg)],
                               usage=SimpleNamespace(prompt_tokens=1, completion_tokens=1))

    def raw_create(**kw):
        return SimpleNamespace(parse=lambda: create(**kw), retries_taken=0)

    t.client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(
        with_raw_response=SimpleNamespace(create=raw_create))))
    results = {}

    def caller(k):
        results[k] = [c.text for c in t.generate([_req(f"leaf{k} q{i}") for i in range(4)])]

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert results == {k: [f"LEAF{k} Q{i}" for i in range(4)] for k in range(4)}
    assert now["max"] == 3 and t.requests_sent == 16


@pytest.fixture(scope="module")
def served_tiny(tiny_model):
    """`transformers serve` on a free loopback port, serving the tiny model directory."""
    from lab_tools.serve import serve_executable, start_transformers_serve, stop

    if serve_executable() is None:
        pytest.skip("transformers serve not installed (pip install 'transformers[serving]')")
    try:
        proc, url, served = start_transformers_serve(tiny_model, timeout=120)
    except LabError as exc:
        pytest.fail(str(exc))
    yield url, served
    stop(proc)


@pytest.mark.slow
def test_openai_backend_against_transformers_serve(served_tiny):
    url, model = served_tiny
    t = make_teacher(f"openai:{url}#{model}", workers=3)
    reqs = [_req(f"question {i}", max_tokens=4 + i % 3, temperature=0.0) for i in range(6)]
    out = t.generate(reqs)
    assert [c.error for c in out] == [None] * 6
    assert all(0 < c.completion_tokens <= r.max_tokens for r, c in zip(reqs, out))
    assert all(c.prompt_tokens > 0 for c in out)


@pytest.mark.slow
def test_generate_dataset_through_transformers_serve(served_tiny, tmp_path):
    """The whole pipeline against the server: the tiny model's output is noise, so what matters is
    that every request is answered, parsed tolerantly and accounted for (no crash)."""
    from sdg_taxonomy import LEAVES, write_leaf

    from lab_tools.config import Config
    from lab_tools.sdg.pipeline import generate_dataset

    url, model = served_tiny
    root = tmp_path / "taxonomy"
    write_leaf(root, "foundational_skills/reasoning/arithmetic", LEAVES["foundational_skills/reasoning/arithmetic"])
    cfg = Config(cache_dir=str(tmp_path / "cache"))
    cfg.generate.samples, cfg.generate.teacher, cfg.generate.workers = 2, f"openai:{url}#{model}", 4
    cfg.generate.question_tokens = cfg.generate.answer_tokens = 12
    cfg.generate.questions_per_request = 2
    rep = generate_dataset(root, None, tmp_path / "out", cfg, progress=False)
    [leaf] = rep.leaves
    # 2 samples x question_factor 2 at 2 per request: 2 question requests, each reply at least one
    # candidate or one malformed reply
    assert leaf.error is None and leaf.generated >= 2 and leaf.requests >= 2
    assert leaf.generated == leaf.kept + sum(leaf.rejected.values()) + leaf.unused
    assert json.loads((tmp_path / "out" / "dataset_card.json").read_text())["teacher"] == f"openai:{model}"


@pytest.mark.slow
def test_continuous_batching_server_samples(tiny_model):
    """A sampled batch through `transformers serve --continuous-batching` is never greedy by
    accident: the same prompt at temperature 0.7 gets different replies (a greedy server gives one
    reply four times). transformers 5.25 takes do_sample from the model's generation_config.json
    (the tiny model's leaves it off), so start_transformers_serve serves a sampling copy."""
    from lab_tools.serve import serve_executable, start_transformers_serve, stop

    if serve_executable() is None:
        pytest.skip("transformers serve not installed (pip install 'transformers[serving]')")
    proc, url, served = start_transformers_serve(tiny_model, timeout=120, continuous_batching=True)
    try:
        t = OpenAITeacher(url, served, workers=4)
        out = t.generate([_req("Tell me a story.", max_tokens=12, temperature=0.7) for _ in range(4)])
        assert not any(c.error for c in out)
        assert len({c.text for c in out}) > 1
    finally:
        stop(proc)


@pytest.mark.slow
def test_transformers_serve_samples_and_stays_greedy_at_zero(served_tiny):
    """Without continuous batching too, a request at temperature 0.7 samples (transformers takes
    do_sample from the model's generation_config.json, which the tiny model leaves off) and one
    at temperature 0 stays greedy."""
    url, model = served_tiny
    t = OpenAITeacher(url, model, workers=1)
    sampled = t.generate([_req("Tell me a story.", max_tokens=12, temperature=0.7) for _ in range(4)])
    greedy = t.generate([_req("Tell me a story.", max_tokens=12, temperature=0.0) for _ in range(3)])
    assert not any(c.error for c in sampled + greedy)
    assert len({c.text for c in sampled}) > 1
    assert len({c.text for c in greedy}) == 1


def test_sampling_model_dir_leaves_the_model_alone(tmp_path):
    """The served copy links the model's files, sets sampling in its own generation_config.json,
    never writes the model directory, and has a stable name per (model, temperature)."""
    import json

    from lab_tools.serve import sampling_model_dir

    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "generation_config.json").write_text('{"do_sample": false, "top_k": 20}')
    served = sampling_model_dir(model, 0.7)
    assert json.loads((model / "generation_config.json").read_text()) == {"do_sample": False, "top_k": 20}
    assert (served / "config.json").resolve() == (model / "config.json").resolve()
    config = json.loads((served / "generation_config.json").read_text())
    assert config == {"do_sample": True, "temperature": 0.7, "top_k": 20, "top_p": 1.0}
    assert sampling_model_dir(model, 0.7) == served and sampling_model_dir(model, 0.5) != served
    assert json.loads((sampling_model_dir(model, 0) / "generation_config.json").read_text())["do_sample"] is False
    (model / "generation_config.json").write_text("{oops")
    with pytest.raises(LabError, match="generation_config.json: line 1"):
        sampling_model_dir(model, 0.7)

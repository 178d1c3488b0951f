"""The CTranslate2 engine against the transformers reference on a tiny random-weight model
(issue 26): same prompts → same greedy outputs in float32, the same limits (max new tokens, end
tokens, chat template), scores within tolerance, the engine in every identity, and the fallback
to transformers when ctranslate2 is missing."""

from __future__ import annotations

import json
import math
import shutil
import sys

import pytest

pytest.importorskip("ctranslate2")

from lab_tools.engines import resolve_engine  # noqa: E402
from lab_tools.errors import LabError  # noqa: E402
from lab_tools.sdg.backends import ChatRequest, make_teacher, teacher_identity, teacher_name  # noqa: E402

PROMPTS = ["hello there", "what is a leaf in the taxonomy?", "x", "write three short lines about rain and the sea"]


@pytest.fixture(scope="module")
def pair(varied_model, tmp_path_factory):
    """(ctranslate2 float32 teacher, transformers teacher) of the varied model."""
    cache = tmp_path_factory.mktemp("cache")
    spec = f"transformers:{varied_model}"
    return (make_teacher(spec, cache, engine="ctranslate2", compute_type="float32", batch_size=3),
            make_teacher(spec, cache, engine="transformers", batch_size=3))


def _reqs(max_tokens=16, temperature=0.0, seed=0):
    return [ChatRequest([{"role": "user", "content": p}], max_tokens=max_tokens, temperature=temperature,
                        seed=seed + i) for i, p in enumerate(PROMPTS)]


def test_greedy_outputs_equal_transformers_in_float32(pair):
    ct2, ref = pair
    assert ct2.name.startswith("ctranslate2:") and ref.name.startswith("transformers:")
    got, want = ct2.generate(_reqs()), ref.generate(_reqs())
    assert [c.error for c in got] == [None] * len(PROMPTS)
    assert [c.text for c in got] == [c.text for c in want]
    assert [c.completion_tokens for c in got] == [c.completion_tokens for c in want]
    assert [c.prompt_tokens for c in got] == [c.prompt_tokens for c in want]  # the same chat template
    assert len({c.text for c in want}) > 1  # the outputs differ by prompt: the comparison means something
    assert all(0 < c.completion_tokens <= 16 for c in got)


def test_max_new_tokens_respected(pair):
    ct2, _ = pair
    for n in (1, 5):
        assert all(c.completion_tokens <= n for c in ct2.generate(_reqs(max_tokens=n)))
        assert all(c.completion_tokens <= n for c in ct2.generate(_reqs(max_tokens=n, temperature=0.9)))


def test_stops_at_eos_like_transformers(varied_model, tmp_path):
    """A model whose EOS is the 4th token it writes greedily for the first prompt: both engines
    stop there, and the text holds the 3 tokens before it."""
    from transformers import AutoTokenizer

    probe = make_teacher(f"transformers:{varied_model}", tmp_path, engine="transformers")
    req = _reqs(max_tokens=12)[:1]
    prompt = probe.tok(probe._prompt(req[0]), add_special_tokens=False)["input_ids"]
    import torch

    with torch.no_grad():
        gen = probe.model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                                   pad_token_id=probe.tok.pad_token_id)[0, len(prompt):].tolist()
    stop = next(t for t in gen[3:] if t not in gen[:3])  # a token first written at position >= 3
    cut = gen.index(stop)
    model_dir = tmp_path / "eos"
    shutil.copytree(varied_model, model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    tok.eos_token = tok.convert_ids_to_tokens(stop)
    tok.save_pretrained(model_dir)
    cfg = json.loads((model_dir / "generation_config.json").read_text())
    cfg["eos_token_id"] = stop
    (model_dir / "generation_config.json").write_text(json.dumps(cfg))
    spec = f"transformers:{model_dir}"
    a = make_teacher(spec, tmp_path, engine="ctranslate2", compute_type="float32").generate(req)[0]
    b = make_teacher(spec, tmp_path, engine="transformers").generate(req)[0]
    assert a.completion_tokens == b.completion_tokens == cut < 12
    assert a.text == b.text == probe.tok.decode(gen[:cut], skip_special_tokens=True)


def test_sampling_is_seeded(pair):
    ct2, _ = pair
    assert ct2.engine.workers == min(2, ct2.engine.threads)  # batches split across workers where there are 2 CPUs
    first = [c.text for c in ct2.generate(_reqs(temperature=0.9))]
    for _ in range(4):  # whichever thread takes which part of a batch, the same texts
        again = [c.text for c in ct2.generate(_reqs(temperature=0.9))]
        assert first == again
    other = [c.text for c in ct2.generate(_reqs(temperature=0.9, seed=100))]
    assert first == again
    assert first != other


def test_raw_view_equal_to_transformers(pair):
    from lab_tools.feedback.raw import RawCT2Teacher, raw_view

    ct2, ref = pair
    raw_ct2, raw_ref = raw_view(ct2), raw_view(ref)
    assert isinstance(raw_ct2, RawCT2Teacher) and raw_ct2.identity == ct2.identity + "+raw"
    got, want = raw_ct2.generate(_reqs()), raw_ref.generate(_reqs())
    assert [c.text for c in got] == [c.text for c in want]
    assert got[0].prompt_tokens == len(ct2.tok(PROMPTS[0], add_special_tokens=False)["input_ids"])  # no template


def test_scores_within_tolerance(pair, varied_model, tmp_path):
    from lab_tools.engines.load import load_scoring_model
    from lab_tools.eval.preference import ABItem, ab_preferences
    from lab_tools.eval.scoring import answer_prompts, mc_accuracy

    ct2, ref = pair
    model, tok = load_scoring_model(varied_model, tmp_path, engine="ctranslate2", compute_type="float32")
    items = [{"question": "what is a leaf?", "choices": ["a qna file", "the sea", "three lines about rain"],
              "answer": 0},
             {"question": "x", "choices": ["hello", "what is the taxonomy"], "answer": 1}]
    _, got = mc_accuracy(model, tok, items, batch_size=2)
    _, want = mc_accuracy(ref.model, ref.tok, items, batch_size=2)
    for g, w in zip(got, want):
        assert g["scores"] == pytest.approx(w["scores"], abs=1e-3)
        assert g["pred"] == w["pred"]
    ab = [ABItem("User: hello", "the sea", "rain"), ABItem("User: what is a leaf?", "a file", "a tree")]
    assert ab_preferences(model, tok, ab, batch_size=3) == pytest.approx(
        ab_preferences(ref.model, ref.tok, ab, batch_size=3), abs=1e-4)
    prompts = [{"messages": [{"role": "user", "content": p}]} for p in PROMPTS]
    assert answer_prompts(model, tok, prompts, max_new_tokens=8, batch_size=2) == \
        answer_prompts(ref.model, ref.tok, prompts, max_new_tokens=8, batch_size=2)


def test_int8_scores_close(varied_model, tmp_path):
    """int8 (the default compute type) changes scores a little, not their meaning."""
    from lab_tools.engines.load import load_scoring_model

    m8, _ = load_scoring_model(varied_model, tmp_path, engine="ctranslate2", compute_type="int8")
    m32, tok = load_scoring_model(varied_model, tmp_path, engine="ctranslate2", compute_type="float32")
    seq = tok("hello there, what is a leaf in the taxonomy?", add_special_tokens=False)["input_ids"]
    a, b = m8.score([seq])[0], m32.score([seq])[0]
    assert len(a) == len(seq) - 1 and all(math.isfinite(v) for v in a)
    assert sum(a) / len(a) == pytest.approx(sum(b) / len(b), rel=0.1)


def test_engine_in_identity_and_name(pair, varied_model, tmp_path):
    ct2, ref = pair
    spec = f"transformers:{varied_model}"
    ids = {teacher_identity(spec, tmp_path, engine="transformers"),
           teacher_identity(spec, tmp_path, engine="ctranslate2", compute_type="float32"),
           teacher_identity(spec, tmp_path, engine="ctranslate2", compute_type="int8")}
    assert len(ids) == 3
    assert ref.identity == teacher_identity(spec, tmp_path, engine="transformers")
    assert ct2.identity == teacher_identity(spec, tmp_path, engine="ctranslate2", compute_type="float32")
    assert "+ctranslate2-" in ct2.identity and "-float32" in ct2.identity
    assert teacher_name(spec, engine="ctranslate2") == ct2.name
    assert teacher_name(spec, engine="transformers") == ref.name


def test_auto_falls_back_to_transformers_with_one_warning(varied_model, tmp_path, monkeypatch, capsys):
    import lab_tools.engines as engines
    from lab_tools.sdg.backends import TransformersTeacher

    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # `import ctranslate2` now fails
    monkeypatch.setattr(engines, "_warned", set())
    spec = f"transformers:{varied_model}"
    teacher = make_teacher(spec, tmp_path)  # engine auto
    assert isinstance(teacher, TransformersTeacher)
    assert teacher.identity == teacher_identity(spec, tmp_path) == teacher_identity(spec, tmp_path,
                                                                                   engine="transformers")
    make_teacher(spec, tmp_path)
    err = capsys.readouterr().err
    assert err.count("warning: ctranslate2 is not installed") == 1
    with pytest.raises(LabError, match="generate.engine: engine ctranslate2 is not installed"):
        make_teacher(spec, tmp_path, engine="ctranslate2")


def test_auto_picks_ctranslate2_on_cpu(varied_model):
    assert resolve_engine("auto", varied_model) == "ctranslate2"
    assert resolve_engine("transformers", varied_model) == "transformers"


def test_unsupported_architecture(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "not-a-model"}))
    assert resolve_engine("auto", tmp_path) == "transformers"
    with pytest.raises(LabError, match="cannot convert"):
        resolve_engine("ctranslate2", tmp_path)


def test_config_rejects_unknown_engine():
    from lab_tools.config import load_config
    from lab_tools.errors import ConfigError

    with pytest.raises(ConfigError, match=r"generate.engine: must be one of auto, transformers, ctranslate2"):
        load_config(environ={"LAB_GENERATE__ENGINE": "fast"})
    with pytest.raises(ConfigError, match=r"generate.engine_compute_type"):
        load_config(environ={"LAB_GENERATE__ENGINE_COMPUTE_TYPE": "int4"})
    assert load_config(environ={"LAB_GENERATE__ENGINE": "transformers"}).generate.engine == "transformers"


def test_length_chunks():
    from lab_tools.engines.ct2 import length_chunks

    lengths = [300, 9, 10, 290, 12, 500]
    assert length_chunks(lengths, 8, 32) == [[1, 2, 4], [3, 0], [5]]  # spread <= 32 within a batch
    assert length_chunks(lengths, 2, 1000) == [[1, 2], [4, 3], [0, 5]]  # at most batch_size each
    assert sorted(i for c in length_chunks(lengths, 3, 0) for i in c) == list(range(6))
    assert length_chunks([1, 2, 1, 3], 8, 32) == [[0, 2], [1, 3]]  # one-token prompts apart


def test_one_token_prompt_beside_longer_ones(pair):
    """A raw one-token prompt in the same call as longer ones: every output equals the
    transformers reference (CTranslate2 would return the longer prompts' tails otherwise)."""
    from lab_tools.feedback.raw import raw_view

    ct2, ref = pair
    reqs = [ChatRequest([{"role": "user", "content": p}], max_tokens=16, temperature=0.0)
            for p in ("x", "hello there")]
    assert len(ct2.tok("x", add_special_tokens=False)["input_ids"]) == 1
    assert [c.text for c in raw_view(ct2).generate(reqs)] == [c.text for c in raw_view(ref).generate(reqs)]

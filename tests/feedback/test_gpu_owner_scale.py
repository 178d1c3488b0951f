"""One GPU owner at a time: the in-process vLLM teacher takes its engine settings from
``generate.vllm_*`` and gives its GPU memory back on ``close()`` (a stub ``vllm`` module records
what it is asked), ``lab build`` closes a teacher that holds a GPU before every stage that
trains, and builds its ``vllm:`` judge lazily."""

from __future__ import annotations

import gc
import sys
import types
import weakref

import pytest

from lab_tools.config import Config
from lab_tools.sdg import backends
from lab_tools.sdg.backends import ChatRequest, LazyTeacher, make_teacher, release_gpu_teachers, teacher_options


class _Core:
    def __init__(self, calls):
        self.calls = calls

    def shutdown(self):
        self.calls.append("engine_core.shutdown")


class _Tok:
    def encode(self, text, add_special_tokens=False):
        return text.split()


@pytest.fixture()
def fake_vllm(monkeypatch):
    """``sys.modules['vllm']`` (and ``vllm.distributed.parallel_state``) replaced by stubs that
    record ``LLM(**kwargs)``, the engine shutdown and the distributed cleanup."""
    calls: list = []
    made: list = []

    class LLM:
        def __init__(self, **kwargs):
            self.kwargs = kwargs
            self.llm_engine = types.SimpleNamespace(engine_core=_Core(calls))
            made.append(weakref.ref(self))
            calls.append(("LLM", kwargs))

        def get_tokenizer(self):
            return _Tok()

        def chat(self, messages, params, use_tqdm=False):
            out = types.SimpleNamespace(text="ok", token_ids=[1, 2])
            return [types.SimpleNamespace(outputs=[out], prompt_token_ids=[1]) for _ in messages]

    class SamplingParams:
        def __init__(self, **kwargs):
            self.kwargs = kwargs

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, SamplingParams
    dist = types.ModuleType("vllm.distributed")
    ps = types.ModuleType("vllm.distributed.parallel_state")
    ps.destroy_model_parallel = lambda: calls.append("destroy_model_parallel")
    ps.destroy_distributed_environment = lambda: calls.append("destroy_distributed_environment")
    dist.parallel_state = ps
    vllm.distributed = dist
    for name, mod in (("vllm", vllm), ("vllm.distributed", dist), ("vllm.distributed.parallel_state", ps)):
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(calls=calls, made=made, ps=ps)


def test_vllm_teacher_takes_the_engine_settings(fake_vllm):
    cfg = Config()
    for key, value in (("vllm_tensor_parallel_size", 4), ("vllm_gpu_memory_utilization", 0.45),
                       ("vllm_max_model_len", 8192)):
        cfg.override(f"generate.{key}", value)
    t = make_teacher("vllm:/models/teacher", **teacher_options(cfg.generate))
    assert fake_vllm.calls[0] == ("LLM", {"model": "/models/teacher", "tensor_parallel_size": 4,
                                          "gpu_memory_utilization": 0.45, "max_model_len": 8192})
    assert t.on_gpu and t.schedules_batches
    assert [c.text for c in t.generate([ChatRequest([{"role": "user", "content": "hi"}])])] == ["ok"]


def test_vllm_max_model_len_0_leaves_the_models_own(fake_vllm):
    make_teacher("vllm:m", **teacher_options(Config().generate))
    assert fake_vllm.calls[0] == ("LLM", {"model": "m", "tensor_parallel_size": 1, "gpu_memory_utilization": 0.9})


def test_close_releases_the_engine(fake_vllm):
    t = make_teacher("vllm:m")
    engine = fake_vllm.made[0]
    t.close()
    gc.collect()
    assert engine() is None, "the LLM object is still referenced after close()"
    assert fake_vllm.calls[1:] == ["engine_core.shutdown", "destroy_model_parallel", "destroy_distributed_environment"]
    assert t.generate([ChatRequest([{"role": "user", "content": "hi"}])])[0].error  # closed: an error, no crash
    t.close()  # idempotent
    assert len(fake_vllm.calls) == 4


def test_close_prefers_vllms_own_cleanup(fake_vllm):
    fake_vllm.ps.cleanup_dist_env_and_memory = lambda: fake_vllm.calls.append("cleanup_dist_env_and_memory")
    make_teacher("vllm:m").close()
    assert fake_vllm.calls[1:] == ["engine_core.shutdown", "cleanup_dist_env_and_memory"]


def test_release_closes_only_what_holds_a_gpu(fake_vllm):
    gpu, cpu = make_teacher("vllm:m"), make_teacher("scripted:")
    held = {"vllm:m": gpu, "scripted:": cpu}
    assert release_gpu_teachers(held) == ["vllm:m"]
    assert held == {"scripted:": cpu} and gpu.llm is None


def test_lazy_teacher_loads_on_first_use_only(fake_vllm):
    lazy = LazyTeacher("vllm:m", lambda: make_teacher("vllm:m"))
    assert lazy.name == "vllm:m" and not lazy.on_gpu and fake_vllm.calls == []
    assert lazy.generate([ChatRequest([{"role": "user", "content": "hi"}])])[0].text == "ok"
    assert lazy.on_gpu and len(fake_vllm.made) == 1
    assert release_gpu_teachers({"vllm:m": lazy}) == ["vllm:m"]
    assert not lazy.on_gpu and "engine_core.shutdown" in fake_vllm.calls


def test_build_closes_a_gpu_teacher_before_every_training_stage(tmp_path, monkeypatch):
    from lab_tools import build
    from lab_tools.stage import StageResult

    events: list[str] = []

    class GpuTeacher:
        on_gpu, name = True, "vllm:teacher"

        def close(self):
            events.append("close")

    def stage(name):
        def run(self, ctx):
            events.append(name)
            if name in ("generate", "comparisons", "self_play", "evaluate"):  # stages that use the teacher
                ctx.backends.setdefault("vllm:teacher", GpuTeacher())
            return StageResult(name, "ran", summary=name)
        return run

    for s in build.PIPELINE:
        monkeypatch.setattr(type(s), "run", stage(s.name))
        monkeypatch.setattr(type(s), "fingerprint", lambda self, ctx: self.name)
    cfg = Config()
    cfg.feedback.enabled = cfg.feedback.self_play = True
    (tmp_path / "taxonomy").mkdir()
    build.run_build(tmp_path / "taxonomy", tmp_path / "out", cfg, progress=False)
    assert events == ["validate", "licenses", "generate", "comparisons", "close", "reward_model", "self_play",
                      "close", "train", "pref", "evaluate", "alignment", "release"]


def test_build_backend_starts_a_vllm_judge_lazily(tmp_path, fake_vllm, monkeypatch):
    from lab_tools.stage import Context

    (tmp_path / "taxonomy").mkdir()
    cfg = Config()
    cfg.override("generate.vllm_gpu_memory_utilization", 0.3)
    b = Context(tmp_path / "taxonomy", tmp_path / "out", cfg, {"stages": {}}, resume=False, progress=False,
                console=None)
    judge = b.backend("vllm:judge")
    assert isinstance(judge, backends.LazyTeacher) and fake_vllm.calls == []
    judge.count_tokens("a b c")
    assert fake_vllm.calls[0][1]["gpu_memory_utilization"] == 0.3

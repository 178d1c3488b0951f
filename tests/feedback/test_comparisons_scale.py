"""The comparison stage's request chunks (``feedback.request_chunk``): how many requests go out
per teacher ``generate`` call, with the scripted teacher (lab_tools/sdg/fake.py). Whole leaves
per call; 0 sends everything at once to a teacher that keeps its own queue (a server, vLLM) and
``2 * batch_size`` to an in-process batching one."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

from lab_tools.config import Config
from lab_tools.feedback import sampling
from lab_tools.feedback.rubric import Configuration
from lab_tools.sdg.cache import LeafCache
from lab_tools.sdg.fake import ScriptedTeacher

PROMPTS_PER_LEAF = 3
LEAVES = 6  # 18 requests per configuration


class Recording(ScriptedTeacher):
    """The scripted teacher, recording the size of every ``generate`` call."""

    def __init__(self, **attrs):
        super().__init__(None)
        self.sizes: list[int] = []
        for k, v in attrs.items():
            setattr(self, k, v)

    def generate(self, requests):
        self.sizes.append(len(requests))
        return super().generate(requests)


class Pool:
    def __init__(self, model):
        self.model = model

    def get(self, conf):
        return self.model


class Bar:
    def add(self, *a):
        pass

    def advance(self, *a):
        pass


def _jobs(tmp_path: Path) -> list:
    jobs = []
    for n in range(LEAVES):
        leaf = types.SimpleNamespace(path=f"compositional_skills/leaf{n}", content_hash=f"{n:064d}",
                                     seed_examples=[], kind="compositional_skills")
        prompts = [f"Write a haiku about topic {n}-{k}." for k in range(PROMPTS_PER_LEAF)]
        cache = LeafCache(tmp_path / "cache", f"{n:02d}" + "0" * 62)
        jobs.append(sampling.LeafJob(leaf, prompts, cache, {"responses": [], "seconds": 0.0}))
    return jobs


CONFS = [Configuration("plain", "scripted:", rank=0), Configuration("system", "scripted:", system="Be brief.", rank=1)]


def _sizes(tmp_path, model, **fb) -> list[int]:
    cfg = Config()
    for k, v in fb.items():
        cfg.override(f"feedback.{k}", v)
    sampling.answer_jobs(_jobs(tmp_path), CONFS, cfg.feedback, Pool(model), Bar(), 0.2)
    return model.sizes


@pytest.mark.parametrize("chunk, expected", [(1, [3] * 6), (6, [6] * 3), (7, [9, 9]), (100, [18])])
def test_request_chunk_sets_the_requests_per_generate_call(tmp_path, chunk, expected):
    sizes = _sizes(tmp_path, Recording(), request_chunk=chunk, batch_size=1)
    assert sizes == expected * len(CONFS)  # whole leaves per call, every configuration alike


def test_default_sends_everything_at_once_to_a_teacher_with_its_own_queue(tmp_path):
    assert _sizes(tmp_path, Recording(concurrent=True), batch_size=2) == [18, 18]  # a server
    assert _sizes(tmp_path / "v", Recording(schedules_batches=True), batch_size=2) == [18, 18]  # vLLM


def test_default_chunks_an_in_process_teacher_by_twice_its_batch_size(tmp_path):
    assert _sizes(tmp_path, Recording(), batch_size=2) == [6, 6, 6] * 2  # >= 4 requests, whole leaves


def test_every_answer_is_stored_whatever_the_chunks(tmp_path):
    jobs = _jobs(tmp_path)
    cfg = Config()
    cfg.override("feedback.request_chunk", 5)
    sampling.answer_jobs(jobs, CONFS, cfg.feedback, Pool(Recording()), Bar(), 0.2)
    assert all([r["config"] for r in j.state["responses"]] == ["plain", "system"] for j in jobs)
    assert all(len(r["answers"]) == PROMPTS_PER_LEAF for j in jobs for r in j.state["responses"])

"""Teacher (and judge) backends behind one small interface.

The interface is fixed; other stages (eval, bot, build) rely on it:
``make_teacher(spec, cache_dir) -> Teacher`` and ``Teacher.generate(requests)``
(:mod:`lab_tools.sdg.teacher`: ``ChatRequest``, ``Completion``, ``Teacher``; re-exported here).

Specs (DESIGN.md, Backends):

- ``transformers:embedded`` / ``transformers:PATH``: in-process, batched generation (left padding),
  on the engine ``generate.engine`` picks (:mod:`lab_tools.engines`): PyTorch (the reference), or
  CTranslate2 on a CPU (:class:`lab_tools.sdg.ct2_teacher.CT2Teacher`; name ``ctranslate2:...``).
- ``openai:URL#MODEL``: any OpenAI-compatible server (vLLM, llama.cpp, ``transformers serve``),
  chat completions with bounded concurrency, timeouts and the openai client's own retries
  (exponential backoff with jitter, ``Retry-After``).
- ``vllm:MODEL``: in-process vLLM (GPU), imported only when used; its engine settings come from
  ``generate.vllm_*`` (:func:`teacher_options`), and ``close()`` gives its GPU memory back.
- ``scripted:`` / ``scripted:PATH``: the deterministic fake teacher of :mod:`lab_tools.sdg.fake`.

One GPU owner at a time: an in-process GPU teacher (``on_gpu``) holds most of the GPU's memory
(vLLM reserves ``gpu_memory_utilization`` of it up front), so whoever builds one closes it
(:func:`close_teacher`) before a model that trains is loaded; ``lab build`` does so before its
training stages (:func:`release_gpu_teachers`) and builds its ``vllm:`` judge lazily
(:class:`LazyTeacher`). A served teacher (``openai:URL#MODEL`` in front of ``vllm serve`` on GPUs
of its own) never competes with training: docs/multi-node.md.
"""

from __future__ import annotations

from lab_tools.errors import LabError
from lab_tools.models import resolve_model
from lab_tools.sdg.ct2_teacher import CT2Teacher
from lab_tools.sdg.fake import ScriptedTeacher
from lab_tools.sdg.hf_teacher import TransformersTeacher
from lab_tools.sdg.identity import (WEIGHT_INDEXES, WEIGHT_SUFFIXES, embedded_identity,  # noqa: F401 (re-exported)
                                    local_engine, local_model_identity, openai_identity, teacher_identity,
                                    teacher_name)
from lab_tools.sdg.openai_teacher import OpenAITeacher
from lab_tools.sdg.teacher import (ChatRequest, Completion, Teacher, close_teacher,  # noqa: F401 (re-exported)
                                   estimate_tokens, free_torch_memory)
from lab_tools.sdg.vllm_teacher import VLLMTeacher


def release_gpu_teachers(backends: dict) -> list[str]:
    """Close and remove every teacher of ``backends`` (spec -> teacher) that holds a GPU
    (``on_gpu``: in-process vLLM, a transformers model on CUDA, a loaded :class:`LazyTeacher`);
    views of a closed model (``+raw``) go with it. Returns the specs released."""
    gone = [k for k, t in backends.items() if getattr(t, "on_gpu", False)]
    for k in gone:
        close_teacher(backends.pop(k))
    for k in [k for k in backends if k.endswith("+raw") and k.removesuffix("+raw") in gone]:
        backends.pop(k)
    return gone


class LazyTeacher:
    """A teacher built on its first ``generate``/``count_tokens`` (``factory()``), so that holding
    one costs no GPU memory until it is used; ``name``/``identity`` come from the spec without
    loading. ``close()`` closes the built teacher (a later use builds it again). Memory freed
    by others (gc, CUDA cache) is collected before building."""

    def __init__(self, spec: str, factory, cache_dir=None):
        self.spec, self._factory, self._teacher = spec, factory, None
        self.name = teacher_name(spec, cache_dir)
        self.identity = teacher_identity(spec, cache_dir)

    @property
    def on_gpu(self) -> bool:
        return self._teacher is not None and getattr(self._teacher, "on_gpu", False)

    def _get(self):
        if self._teacher is None:
            free_torch_memory()
            self._teacher = self._factory()
        return self._teacher

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        return self._get().generate(requests)

    def count_tokens(self, text: str) -> int:
        return self._get().count_tokens(text)

    def close(self) -> None:
        teacher, self._teacher = self._teacher, None
        close_teacher(teacher)


def teacher_options(g, **override) -> dict:
    """The :func:`make_teacher` keyword arguments from ``generate`` settings ``g``
    (:class:`lab_tools.config_sections.GenerateConfig`): workers, batch size, timeout, retries and the
    ``vllm_*`` engine settings, the local-model engine (``engine``, ``engine_compute_type``,
    ``engine_threads``); ``override`` replaces any of them (e.g. ``batch_size``)."""
    return {"workers": g.workers, "batch_size": g.batch_size, "timeout": g.request_timeout,
            "max_retries": g.max_retries, "tensor_parallel_size": g.vllm_tensor_parallel_size,
            "gpu_memory_utilization": g.vllm_gpu_memory_utilization, "max_model_len": g.vllm_max_model_len,
            "engine": g.engine, "compute_type": g.engine_compute_type, "engine_threads": g.engine_threads,
            "max_prompt_tokens": g.max_prompt_tokens, **override}


def make_teacher(spec: str, cache_dir=None, *, max_prompt_tokens: int = 0, **options) -> Teacher:
    """:func:`build_teacher` with ``max_prompt_tokens`` (``generate.max_prompt_tokens``; 0 = none)
    set on the teacher: every backend cuts its prompts to it and to the model's context
    (:func:`lab_tools.sdg.truncation.fit_requests`). ``options``: :func:`build_teacher`'s.

    Raises:
        LabError: like :func:`build_teacher`.
    """
    teacher = build_teacher(spec, cache_dir, **options)
    if max_prompt_tokens:
        teacher.max_prompt_tokens = int(max_prompt_tokens)
    return teacher


def build_teacher(spec: str, cache_dir=None, *, workers: int = 8, batch_size: int = 16,
                 timeout: float = 120.0, max_retries: int = 3, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int = 0, engine: str = "auto",
                 compute_type: str = "int8", engine_threads: int = 0) -> Teacher:
    """Build a teacher from ``transformers:PATH|embedded``, ``openai:URL#MODEL``, ``vllm:MODEL``,
    ``scripted:`` or ``scripted:PATH`` (a JSON script for the fake teacher).

    ``workers``: concurrent requests for ``openai``; ``timeout`` (seconds per request) and
    ``max_retries`` (the openai client's retries) for ``openai``; ``batch_size``: sequences per
    forward pass for ``transformers``; ``tensor_parallel_size``, ``gpu_memory_utilization`` and
    ``max_model_len`` for ``vllm`` (:class:`VLLMTeacher`); ``engine`` (``auto``, ``transformers``,
    ``ctranslate2``: :func:`lab_tools.engines.resolve_engine`), ``compute_type`` and
    ``engine_threads`` (0 = all CPUs) for ``transformers:``. :func:`teacher_options` gives them
    all from the ``generate`` settings.

    Raises:
        LabError: unknown scheme, missing path, or a backend that is not installed.
    """
    scheme, _, rest = str(spec).partition(":")
    if scheme == "transformers":
        if local_engine(rest, engine) == "ctranslate2":
            path = resolve_model(rest or "embedded", cache_dir)
            return CT2Teacher(path, identity=teacher_identity(spec, cache_dir, engine="ctranslate2",
                                                              compute_type=compute_type),
                              source_identity=local_model_identity(path), cache_dir=cache_dir,
                              batch_size=batch_size, compute_type=compute_type, threads=engine_threads)
        return TransformersTeacher(rest or "embedded", cache_dir, batch_size=batch_size)
    if scheme == "openai":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise LabError(f"teacher {spec!r}: expected openai:URL#MODEL "
                           "(e.g. openai:http://127.0.0.1:8000/v1#my-model)", field="generate.teacher")
        return OpenAITeacher(url, model, workers=workers, timeout=timeout, max_retries=max_retries)
    if scheme == "vllm":
        if not rest:
            raise LabError(f"teacher {spec!r}: expected vllm:MODEL", field="generate.teacher")
        return VLLMTeacher(rest, tensor_parallel_size=tensor_parallel_size,
                           gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
    if scheme == "scripted":
        return ScriptedTeacher(rest or None)
    raise LabError(f"unknown teacher {spec!r}: use transformers:PATH|embedded, openai:URL#MODEL, "
                   "vllm:MODEL or scripted:[PATH]", field="generate.teacher")

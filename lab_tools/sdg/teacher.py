"""The teacher (and judge) interface every backend implements: one request, one completion, one
small protocol. Below every backend (:mod:`lab_tools.sdg.backends` builds the real ones, the
scripted teacher of :mod:`lab_tools.sdg.fake` is one too), so a backend never imports the module
that chooses between them.
"""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass, field
from typing import Protocol


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
    default ``name``): the full identity the SDG cache key holds (see
    :func:`lab_tools.sdg.backends.teacher_identity`)."""
    name: str

    def generate(self, requests: list[ChatRequest]) -> list[Completion]:
        """Answer every request (same order). Never raises for a single bad request: it is
        returned as a Completion with ``error`` set."""
        ...

    def count_tokens(self, text: str) -> int:
        """Number of tokens of ``text`` in this model's tokenizer (estimates allowed for remote models)."""
        ...


class LocalTemplate:
    """What an in-process teacher with the model's own tokenizer (``self.tok``) shares: token
    counts and the chat-template prompt it feeds the model (transformers and CTranslate2 alike,
    so their prompts and truncation are the same). Subclasses set ``context_len``."""
    tok = None
    max_prompt_tokens = 0  # a cap of our own on prompts (make_teacher sets it), 0 = none

    def count_tokens(self, text: str) -> int:
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def _prompt(self, req: ChatRequest) -> str:
        return self.tok.apply_chat_template(req.messages, tokenize=False, add_generation_prompt=True)

    def _count_prompt(self, messages: list[dict]) -> int:
        try:  # exactly what generate() feeds the model: the chat template applied
            return self.count_tokens(self._prompt(ChatRequest(messages)))
        except Exception:  # noqa: BLE001 -- a template error is reported by generate() itself
            return sum(self.count_tokens(str(m.get("content") or "")) for m in messages)


def estimate_tokens(text: str) -> int:
    """Rough token count for models whose tokenizer we do not have: ~4 characters per token."""
    return max(1, (len(text) + 3) // 4) if text else 0


def free_torch_memory() -> None:
    """``gc.collect()``, then ``torch.cuda.empty_cache()`` when torch is loaded and CUDA is up."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def close_teacher(teacher) -> None:
    """Close ``teacher`` when it has a ``close()`` (in-process backends); others are left alone."""
    close = getattr(teacher, "close", None)
    if callable(close):
        close()

"""Prompts cut to fit the model's context: one place every teacher/judge backend shares.

A leaf's text reaches the teacher inside a prompt (seed examples, a document chunk, a grounded
context), and a pull request controls that text; a prompt longer than the model's context either
fails (a server's HTTP 400, vLLM's "prompt too long") or runs past the model's position
embeddings. So every backend fits its requests first, with :func:`fit_requests`, and marks the
completions of the prompts it cut with :func:`mark_cut`; the SDG pipeline counts them
(``truncated_prompts`` per leaf, in the dataset card and the bot's comment).

How a prompt is cut (:func:`truncate_prompt`): first whole few-shot turns go (the user/assistant
pairs between the system message and the last user message, oldest first), then the middle of the
longest message is replaced by :data:`ELLIPSIS` (an instruction stated before a document and one
stated after it both survive), until the prompt fits.

A backend calls, at the top of its ``generate``::

    requests, cuts = fit_requests(requests, self.count_tokens, context_len=self.context_len,
                                  cap=self.max_prompt_tokens)
    ...
    return mark_cut(completions, cuts)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

#: what replaces the text cut out of a message
ELLIPSIS = " […] "
#: tokens a chat template adds per message (role markers), when the prompt is counted without it
MESSAGE_OVERHEAD = 8
#: the key of ``Completion.extra`` that holds how many prompt tokens were cut
CUT_KEY = "prompt_tokens_cut"
# the least a prompt may keep when a request's max_tokens leaves less of the context
_MIN_PROMPT = 16


def prompt_limit(max_tokens: int, *, context_len: int = 0, cap: int = 0) -> int | None:
    """Tokens a prompt may take: the smaller of ``cap`` (a configured cap, 0 = none) and the
    model's ``context_len`` less the reply's ``max_tokens`` (0 = unknown, e.g. a server),
    at least 16; None when neither bounds it."""
    limits = [cap] if cap > 0 else []
    if context_len > 0:
        limits.append(max(_MIN_PROMPT, context_len - max(0, max_tokens)))
    return min(limits) if limits else None


def _default_counter(count_tokens: Callable[[str], int]) -> Callable[[list[dict]], int]:
    return lambda msgs: sum(count_tokens(str(m.get("content") or "")) + MESSAGE_OVERHEAD for m in msgs)


def truncate_prompt(messages: list[dict], limit: int | None, count_tokens: Callable[[str], int], *,
                    count_prompt: Callable[[list[dict]], int] | None = None) -> tuple[list[dict], int]:
    """``messages`` cut to at most ``limit`` tokens (see the module doc for how).

    Args:
        messages: chat messages ``[{"role", "content"}]`` (not modified).
        limit: tokens the whole prompt may take; None or <= 0: no limit.
        count_tokens: the model's token count of a text.
        count_prompt: the token count of a whole message list (e.g. with the chat template
            applied); default: each content's tokens plus :data:`MESSAGE_OVERHEAD` per message.

    Returns:
        ``(messages, cut)``: the fitted messages (the same list when nothing was cut) and the
        tokens cut (0 = untouched). A prompt whose fixed parts alone exceed ``limit`` is cut as far
        as it goes; ``cut`` still says how much went.
    """
    count = count_prompt or _default_counter(count_tokens)
    before = count(messages)
    if limit is None or limit <= 0 or before <= limit:
        return messages, 0
    msgs = [dict(m) for m in messages]
    while count(msgs) > limit:  # few-shot turns first, oldest first, a user/assistant pair at a time
        first = 1 if msgs and msgs[0].get("role") == "system" else 0
        last_user = max((i for i, m in enumerate(msgs) if m.get("role") == "user"), default=len(msgs) - 1)
        if last_user - first < 2:
            break
        del msgs[first:first + 2]
    for _ in range(16):  # then the middle of the longest message, re-counted each time
        excess = count(msgs) - limit
        if excess <= 0:
            break
        i = max(range(len(msgs)), key=lambda k: len(str(msgs[k].get("content") or "")))
        text = str(msgs[i].get("content") or "")
        if len(text) <= len(ELLIPSIS):
            break
        per_token = len(text) / max(1, count_tokens(text))
        drop = min(len(text), int((excess + count_tokens(ELLIPSIS) + 1) * per_token) + 1)
        keep = len(text) - drop
        head = (keep + 1) // 2
        msgs[i]["content"] = text[:head] + ELLIPSIS + text[len(text) - (keep - head):] if keep > 0 else ""
    return msgs, max(1, before - count(msgs))


def fit_requests(requests: list, count_tokens: Callable[[str], int], *, context_len: int = 0, cap: int = 0,
                 count_prompt: Callable[[list[dict]], int] | None = None) -> tuple[list, list[int]]:
    """Fit every request (:class:`lab_tools.sdg.backends.ChatRequest`) to :func:`prompt_limit` of
    its own ``max_tokens``; the requests that needed no cut are returned as they are.

    Returns:
        ``(requests, cuts)``: same order and length; ``cuts[i]``: prompt tokens cut from request
        ``i`` (0 = untouched). Pass ``cuts`` to :func:`mark_cut` with the completions.
    """
    out, cuts = [], []
    for req in requests:
        limit = prompt_limit(req.max_tokens, context_len=context_len, cap=cap)
        msgs, cut = truncate_prompt(req.messages, limit, count_tokens, count_prompt=count_prompt)
        out.append(dataclasses.replace(req, messages=msgs) if cut else req)
        cuts.append(cut)
    return out, cuts


def mark_cut(completions: list, cuts: list[int]) -> list:
    """Record in each completion's ``extra`` (:data:`CUT_KEY`) how many prompt tokens its request
    lost; returns ``completions``. The SDG pipeline counts the marked ones."""
    for comp, cut in zip(completions, cuts):
        if cut and comp is not None:
            comp.extra[CUT_KEY] = int(cut)
    return completions


def was_cut(completion) -> bool:
    """Whether ``completion``'s prompt was cut to fit (:func:`mark_cut`)."""
    return bool((getattr(completion, "extra", None) or {}).get(CUT_KEY))

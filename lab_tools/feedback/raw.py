"""Raw-format (vanilla-model) prompting for synthetic comparisons, as ALMoST prompts its base
models (``generator.py``, ``PromptedResponseGenerator``): the whole dialogue is plain text ending
in ``Assistant:``, no chat template; the reply is cut at the next ``Human:`` / ``Assistant:``.
"""

from __future__ import annotations

import re

from lab_tools.sdg.backends import ChatRequest, TransformersTeacher
from lab_tools.sdg.ct2_teacher import CT2Teacher

_NEXT_TURN = re.compile(r"(?:\n\s*)?\b(?:Human|Assistant|User)\s*:", re.IGNORECASE)


class RawTransformersTeacher(TransformersTeacher):
    """A view of a loaded :class:`~lab_tools.sdg.backends.TransformersTeacher` (same model and
    tokenizer, nothing loaded again) that sends each request's last user message as the raw
    prompt text, without the chat template."""

    def __init__(self, base: TransformersTeacher):  # noqa: D107 -- shares base's model, no super().__init__
        self.model, self.tok, self.batch_size = base.model, base.tok, base.batch_size
        self.name = base.name + "+raw"
        self.identity = getattr(base, "identity", base.name) + "+raw"

    def _prompt(self, req: ChatRequest) -> str:
        return req.messages[-1]["content"]


class RawCT2Teacher(CT2Teacher):
    """The raw view of a loaded :class:`~lab_tools.sdg.ct2_teacher.CT2Teacher` (same engine and
    tokenizer): each request's last user message is the prompt text, no chat template."""

    def __init__(self, base: CT2Teacher):  # noqa: D107 -- shares base's engine, no super().__init__
        self.engine, self.tok, self.batch_size, self.model_dir = base.engine, base.tok, base.batch_size, base.model_dir
        self.name = base.name + "+raw"
        self.identity = base.identity + "+raw"

    def _prompt(self, req: ChatRequest) -> str:
        return req.messages[-1]["content"]


def raw_view(teacher):
    """The raw-format view of an in-process ``teacher`` (:class:`RawTransformersTeacher` or
    :class:`RawCT2Teacher`, sharing its loaded model), or None for a backend that has none
    (a server or the scripted teacher get the chat messages as they are)."""
    if isinstance(teacher, TransformersTeacher):
        return RawTransformersTeacher(teacher)
    if isinstance(teacher, CT2Teacher):
        return RawCT2Teacher(teacher)
    return None


def cut_at_next_turn(text: str) -> tuple[str, bool]:
    """``(reply, cut)``: ``text`` up to the model's next ``Human:``/``Assistant:``/``User:`` turn
    (ALMoST splits on them), and whether such a turn was found."""
    m = _NEXT_TURN.search(text)
    return (text[:m.start()].strip(), True) if m else (text.strip(), False)

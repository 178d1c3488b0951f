"""Raw-format (vanilla-model) prompting for synthetic comparisons, as ALMoST prompts its base
models (``generator.py``, ``PromptedResponseGenerator``): the whole dialogue is plain text ending
in ``Assistant:``, no chat template; the reply is cut at the next ``Human:`` / ``Assistant:``.
"""

from __future__ import annotations

import re

from lab_tools.sdg.backends import ChatRequest, TransformersTeacher

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


def cut_at_next_turn(text: str) -> tuple[str, bool]:
    """``(reply, cut)``: ``text`` up to the model's next ``Human:``/``Assistant:``/``User:`` turn
    (ALMoST splits on them), and whether such a turn was found."""
    m = _NEXT_TURN.search(text)
    return (text[:m.start()].strip(), True) if m else (text.strip(), False)

"""An Ollama ``Modelfile`` for a GGUF of a release: FROM, the chat template in Ollama's Go-template
form, the default system message, and stop sequences.

Ollama does not run Jinja chat templates, so the tokenizer's template is translated. Not by
recognising template text, but by what it renders: :func:`derive_chat_format` renders the
tokenizer's own template with marker contents (one user turn; user + assistant; two rounds; with
and without a system message; with and without the generation prompt) and reads off the preamble,
each role's text before and after its content, the text that opens the assistant's turn and any
system message the template adds when there is none. That describes every template that wraps
each message on its own (ChatML as in SmolLM2 and Qwen, Llama 3, Zephyr, Phi-3 ...). The result
is checked: the Go template's rendering (simulated, the way Ollama prepends the Modelfile's SYSTEM)
must equal the Jinja rendering on several conversations; a template that folds messages into each
other (Llama 2's ``[INST] <<SYS>>``, Gemma's system-into-first-user) fails that check with an
error that says so.

Stops: the tokenizer's special tokens in the turn markers (ChatML: ``<|im_end|>``,
``<|im_start|>``), else the markers themselves.

Ollama's Modelfile format: https://github.com/ollama/ollama/blob/main/docs/modelfile.md
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Callable

from lab_tools.errors import LabError

ROLES = ("system", "user", "assistant")
# marker contents: plain ASCII words no template changes (no spaces to strip, no case to fold)
_S, _U1, _A1, _U2, _A2 = "labsys7f3a", "labusr1c9e", "labast4b2d", "labusr8d61", "labast0e57"

Render = Callable[[list[dict], bool], str]  # (messages, add_generation_prompt) -> text


@dataclass(frozen=True)
class ChatFormat:
    """A per-message chat format.

    ``preamble``: text before the first message (a BOS token, or empty); ``wrap``: role ->
    (text before the content, text after it); ``generation``: text after the last message that
    opens the assistant's turn; ``default_system``: the system message the template inserts when
    the conversation has none (None: it inserts none); ``stops``: stop sequences."""
    preamble: str
    wrap: dict[str, tuple[str, str]]
    generation: str
    default_system: str | None
    stops: tuple[str, ...]

    def render(self, messages: list[dict]) -> str:
        """The prompt Ollama builds with :func:`go_template` for ``messages`` that end with a user
        turn (the Modelfile's SYSTEM prepended when the first message is not a system one)."""
        if self.default_system is not None and (not messages or messages[0]["role"] != "system"):
            messages = [{"role": "system", "content": self.default_system}] + messages
        out = [self.preamble]
        for m in messages:
            pre, post = self.wrap[m["role"]]
            out += [pre, m["content"], post]
        if messages and messages[-1]["role"] != "assistant":
            out.append(self.generation)
        return "".join(out)


class TemplateNotSupported(LabError):
    """The chat template is not a per-message format that a Go template can express."""


def _split(text: str, marker: str, what: str) -> tuple[str, str]:
    if text.count(marker) != 1:
        raise TemplateNotSupported(f"the chat template does not render {what} exactly once")
    before, after = text.split(marker)
    return before, after


def _grown(longer: str, shorter: str, what: str) -> str:
    if not longer.startswith(shorter):
        raise TemplateNotSupported(f"the chat template renders earlier turns differently once {what} "
                                   "follows, which a per-message Go template cannot do")
    return longer[len(shorter):]


def derive_chat_format(render: Render, special_tokens: list[str] = ()) -> ChatFormat:
    """Read a :class:`ChatFormat` off a chat template through ``render(messages,
    add_generation_prompt)`` (the tokenizer's ``apply_chat_template(..., tokenize=False)``).
    ``special_tokens``: the tokenizer's special tokens (for the stops).

    Raises:
        TemplateNotSupported: the template is not per-message (a turn renders differently by
        position, messages are merged, the system role is refused), so no Go template in the
        form of :func:`go_template` reproduces it.
    """
    def r(msgs, gen=False):
        try:
            return render([{"role": role, "content": c} for role, c in msgs], gen)
        except Exception as exc:  # jinja's raise_exception, TemplateError: the template refuses
            raise TemplateNotSupported(f"the chat template refuses {[m[0] for m in msgs]}: {exc}") from None

    u = r([("user", _U1)])
    ua = r([("user", _U1), ("assistant", _A1)])
    uau = r([("user", _U1), ("assistant", _A1), ("user", _U2)])
    uaua = r([("user", _U1), ("assistant", _A1), ("user", _U2), ("assistant", _A2)])
    a_pre, a_post = _split(_grown(ua, u, "an assistant turn"), _A1, "an assistant message")
    u_pre, u_post = _split(_grown(uau, ua, "a user turn"), _U2, "a user message")
    if _grown(uaua, uau, "an assistant turn") != a_pre + _A2 + a_post:
        raise TemplateNotSupported("the chat template renders the second assistant turn differently")
    first_user = u_pre + _U1 + u_post
    if not u.endswith(first_user):
        raise TemplateNotSupported("the chat template renders the first user turn differently")
    head = u[: len(u) - len(first_user)]
    generation = _grown(r([("user", _U1)], True), u, "the generation prompt")

    s = r([("system", _S), ("user", _U1)])
    if not s.endswith(first_user):
        raise TemplateNotSupported("the chat template renders the user turn after a system message differently")
    s_open, s_post = _split(s[: len(s) - len(first_user)], _S, "a system message")
    if s_open.startswith(head):  # nothing is inserted without a system message
        preamble, default = head, None
    elif head.startswith(s_open) and head.endswith(s_post) and len(head) >= len(s_open) + len(s_post):
        default = head[len(s_open): len(head) - len(s_post)]
        # the system turn always comes first here, so the preamble is what precedes the turn
        # opener that the user and assistant markers share (ChatML's <|im_start|>, Llama 3's
        # <|start_header_id|>): Llama 3's <|begin_of_text|>, nothing for ChatML
        opener = os.path.commonprefix([u_pre, a_pre])
        at = s_open.find(opener) if opener else 0
        preamble = s_open[:at] if at > 0 else ""
    else:
        raise TemplateNotSupported("the chat template's text before the first message depends on "
                                   "whether there is a system message in a way a Go template cannot follow")
    fmt = ChatFormat(preamble=preamble, generation=generation, default_system=default or None,
                     wrap={"system": (s_open[len(preamble):], s_post), "user": (u_pre, u_post),
                           "assistant": (a_pre, a_post)},
                     stops=_stops(special_tokens, a_post, u_pre, a_pre, generation))
    if default == "":
        raise TemplateNotSupported("the chat template writes an empty system turn when there is none")
    _check(fmt, r)
    return fmt


def _stops(special_tokens, a_post: str, u_pre: str, a_pre: str, generation: str) -> tuple[str, ...]:
    """Special tokens in the end-of-turn and turn-opening markers, in order of appearance; without
    special tokens there, the stripped end-of-turn text and the user marker's first line."""
    markers = a_post + u_pre + a_pre + generation
    found = sorted({t for t in special_tokens if t and t in markers}, key=lambda t: (markers.index(t), -len(t)))
    found = [t for t in found if not any(t != o and t in o for o in found)]  # longest form only
    if found:
        return tuple(found)
    plain = [x for x in (a_post.strip(), (u_pre.strip().splitlines() or [""])[0].strip()) if x]
    return tuple(dict.fromkeys(plain))


def _check(fmt: ChatFormat, r) -> None:
    convs = [[("user", _U1)], [("system", _S), ("user", _U1)],
             [("user", _U1), ("assistant", _A1), ("user", _U2)],
             [("system", _S), ("user", _U1), ("assistant", _A1), ("user", _U2)]]
    for conv in convs:
        want = r(conv, True)
        got = fmt.render([{"role": role, "content": c} for role, c in conv])
        if got != want:
            raise TemplateNotSupported(
                f"a per-message Go template does not reproduce the chat template for roles "
                f"{[c[0] for c in conv]} (expected {want!r}, the Go form gives {got!r})")


def _literal(text: str) -> str:
    """``text`` as template text: raw, unless it holds ``{{`` or ``\"\"\"`` (then a Go string action)."""
    if "{{" in text or '"""' in text or text.endswith('"'):
        return "{{ " + json.dumps(text, ensure_ascii=False) + " }}"
    return text


def go_template(fmt: ChatFormat) -> str:
    """Ollama's TEMPLATE for ``fmt``: over ``.Messages``, each role wrapped as the Jinja template
    wraps it; the last assistant message left open (a prefill Ollama continues), the generation
    prompt after a last message of another role. No whitespace-trimming actions, so every newline
    of the markers stays."""
    branches = []
    for role in ROLES:
        pre, post = fmt.wrap[role]
        close = f"{{{{ if not $last }}}}{_literal(post)}{{{{ end }}}}" if role == "assistant" else _literal(post)
        branches.append(f'{{{{ {"if" if not branches else "else if"} eq .Role "{role}" }}}}'
                        f"{_literal(pre)}{{{{ .Content }}}}{close}")
    return (f"{_literal(fmt.preamble)}{{{{ range $i, $_ := .Messages }}}}"
            f"{{{{ $last := eq (len (slice $.Messages $i)) 1 }}}}"
            + "".join(branches) + "{{ end }}"
            f'{{{{ if and $last (ne .Role "assistant") }}}}{_literal(fmt.generation)}{{{{ end }}}}'
            "{{ end }}")


def modelfile_text(gguf_name: str, fmt: ChatFormat) -> str:
    """The ``Modelfile``: ``FROM ./GGUF_NAME``, ``TEMPLATE``, ``SYSTEM`` (when the chat template
    has a default system message) and one ``PARAMETER stop`` per stop sequence.

    Raises:
        LabError: the default system message or a stop holds a character sequence a Modelfile
        string cannot carry (``\"\"\"``, a double quote in a stop).
    """
    lines = ["# Ollama Modelfile written by lab-tools (lab release --gguf); the chat template is the",
             "# tokenizer's, in Go-template form. Use: ollama create NAME -f Modelfile && ollama run NAME",
             f"FROM ./{gguf_name}", f'TEMPLATE """{go_template(fmt)}"""']
    if fmt.default_system:
        if '"""' in fmt.default_system:
            raise LabError('the default system message holds """, which a Modelfile SYSTEM cannot carry')
        lines.append(f'SYSTEM """{fmt.default_system}"""')
    for stop in fmt.stops:
        if '"' in stop or "\n" in stop:
            continue  # not expressible as a PARAMETER value; the template's end-of-turn token still ends a reply
        lines.append(f'PARAMETER stop "{stop}"')
    return "\n".join(lines) + "\n"


def tokenizer_chat_format(tok) -> ChatFormat:
    """:func:`derive_chat_format` for a Hugging Face tokenizer with a chat template.

    Raises:
        TemplateNotSupported: see :func:`derive_chat_format` (the message says how to go on).
    """
    specials = list(dict.fromkeys(list(getattr(tok, "all_special_tokens", []))
                                  + [t.content for t in getattr(tok, "added_tokens_decoder", {}).values()
                                     if getattr(t, "special", False)]))

    def render(messages, gen):
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)

    return derive_chat_format(render, specials)

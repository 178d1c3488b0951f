"""Escaping of untrusted text for markdown that GitHub or the Hugging Face Hub renders.

One rule for everything this project publishes: the bot's pull-request comment
(:mod:`lab_tools.bot.render`), the model card and the dataset card. Text a contributor or a model
wrote (leaf paths, attribution titles, creators and links, generated samples, validator messages
that quote a file) goes through one of:

- :func:`inline` -- one line of prose, safe both in markdown and inside HTML tags such as
  ``<summary>`` or ``<code>``: markdown and HTML punctuation become numeric character references
  (CommonMark 6.2: "entity and numeric character references cannot be used in place of symbols
  indicating structure"), so ``[x](y)``, ``![x](y)``, ``<img>``, ``|`` and ``**`` render as
  literal text, also inside a table cell;
- :func:`code` -- :func:`inline` inside ``<code>``: a path or identifier shown as code. A markdown
  code span (backticks) is not used for untrusted text: a backtick in the text would close it,
  and GFM splits table cells at ``|`` even inside code spans;
- :func:`link_text` -- a URL shown as text, never as a live link, and only when it is ``http(s)``;
- :func:`code_block` -- a fenced block whose fence is longer than any backtick run inside
  (CommonMark 4.5), so the text cannot close it; HTML and markdown are inert inside it.

In all of them ``@name`` and ``#123`` get a zero-width joiner after the sigil, so GitHub neither
notifies anyone nor cross-links issues; ``scheme://`` gets one after the colon, so no autolink;
control and bidi-override characters are dropped (:func:`neutralize`).
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from lab_tools.errors import plural

ZWJ = "\u200d"

# characters that can start markdown or HTML structure anywhere in a line
_INLINE_ESCAPES = {c: f"&#{ord(c)};" for c in "&<>\"'`*_[]()!|~\\{}$"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u202a-\u202e\u2066-\u2069]")
_SIGIL = re.compile(r"([@#])(?=[\w-])")
_SCHEME = re.compile(r"(?i)(\w):(?=//)")
_WWW = re.compile(r"(?i)\bwww\.")
_LEADING = re.compile(r"^([#>+\-=]|[0-9](?=[0-9]*[.)]))")


def neutralize(text: str) -> str:
    """Defuse mentions (``@user``, ``@org/team``), issue references (``#12``) and autolinks
    (``https://``, ``www.``) with zero-width joiners; drop control and bidi-override characters."""
    text = _CONTROL.sub("", text)
    text = _SIGIL.sub(lambda m: m.group(1) + ZWJ, text)
    text = _SCHEME.sub(lambda m: m.group(1) + ":" + ZWJ, text)
    return _WWW.sub(lambda m: m.group(0)[:3] + ZWJ + ".", text)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, with an ellipsis note when cut."""
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + f" … [{plural(len(text) - limit, 'character')} more]"


def inline(text, limit: int = 300) -> str:
    """One line of untrusted text, inert in markdown and in HTML (see module docstring).

    Newlines become spaces; ``limit`` characters at most (before escaping)."""
    text = clip(" ".join(str(text).split()), limit)
    text = neutralize(text)
    out = "".join(_INLINE_ESCAPES.get(c, c) for c in text)
    # a line-leading "#", ">", "-", "1." would start a heading/quote/list if this ends up first
    return _LEADING.sub(lambda m: f"&#{ord(m.group(1))};", out)


def code(text, limit: int = 300) -> str:
    """Untrusted ``text`` (a leaf path, a file name, a model name) as inline code:
    ``<code>`` + :func:`inline` + ``</code>``; ``–`` for None or an empty string."""
    if text is None or text == "":
        return "–"
    return f"<code>{inline(text, limit)}</code>"


def link_text(url, limit: int = 300) -> str:
    """A contributor's link shown as text, not as a live link: an ``http``/``https`` URL with a
    host, escaped by :func:`inline` (the joiner after the scheme stops autolinking); anything else
    (``javascript:``, ``file:``, ``data:``, relative, credentials in it) is replaced by a note.
    ``–`` for None or an empty string."""
    if url is None or str(url).strip() == "":
        return "–"
    url = str(url).strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "(link not shown: only http(s) links are)"
    if parts.username is not None or parts.password is not None:
        return "(link not shown: it carries credentials)"
    return inline(url, limit)


def code_block(text, lang: str = "", limit: int = 4000) -> str:
    """A fenced code block holding untrusted ``text`` verbatim (clipped to ``limit`` characters).

    The fence is one backtick longer than the longest backtick run in ``text`` (at least 3)."""
    text = neutralize(clip(str(text), limit).replace("\r\n", "\n").replace("\r", "\n"))
    runs = [len(r) for r in re.findall(r"`+", text)]
    fence = "`" * max(3, max(runs, default=0) + 1)
    return f"{fence}{lang}\n{text}\n{fence}"

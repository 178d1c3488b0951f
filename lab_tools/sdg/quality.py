"""Tolerant parsing of teacher output, text normalization and similarity (LAB 3.2, quality controls).

Every parser returns ``None`` for output it cannot use; the caller counts it as malformed and
rejects the candidate with a reason. Nothing here raises on model output.
"""

from __future__ import annotations

import re
import unicodedata

from rapidfuzz.distance import LCSseq, Levenshtein

_LEAD = re.compile(r"^\s*(?:[-*•]\s+|\d+[.)]\s+|(?:new\s+)?(?:request|question|instruction|task|q)\s*\d*\s*[:.-]\s*)",
                   re.IGNORECASE)
_YES = re.compile(r"\b(yes|yeah|correct|true|supported|self-contained)\b", re.IGNORECASE)
_NO = re.compile(r"\b(no|not|false|unsupported|incorrect)\b", re.IGNORECASE)
_DOC_REF = re.compile(r"\b(the|this|above|given|following)\s+(text|passage|document|excerpt|context|article|paragraph)\b",
                      re.IGNORECASE)


def clean(text: str | None) -> str:
    """Strip whitespace, surrounding quotes and chat-role residue from a model reply."""
    t = (text or "").strip()
    t = re.sub(r"^(assistant|answer|response)\s*:\s*", "", t, flags=re.IGNORECASE).strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'`":
        t = t[1:-1].strip()
    return t


def parse_question(text: str | None, min_chars: int = 8) -> str | None:
    """The first request in a reply (a leading "Question:"/numbering is dropped; only the first
    paragraph is kept, since small models tend to answer their own question). None if too short."""
    t = clean(text)
    if not t:
        return None
    para = re.split(r"\n\s*\n", t)[0].strip()
    para = re.split(r"\n\s*(?:answer|response)\s*:", para, flags=re.IGNORECASE)[0]
    para = _LEAD.sub("", para).strip().strip("\"'").strip()
    return para if len(para) >= min_chars else None


_ITEM = re.compile(r"(?m)^\s*(?:\d+\s*[.)]|[-*•])\s+")


def split_items(text: str | None) -> list[str]:
    """The items of a numbered (``1.``/``1)``) or bulleted list reply, each with its continuation
    lines; a reply with no list marker at line start is one item. Empty items are dropped."""
    t = clean(text)
    marks = list(_ITEM.finditer(t))
    if not marks:
        return [t] if t else []
    bounds = [m.end() for m in marks] + [len(t)]
    starts = [m.start() for m in marks[1:]] + [len(t)]
    return [x for x in (t[b:e].strip() for b, e in zip(bounds, starts)) if x]


def parse_questions(text: str | None, *, truncated: bool = False) -> tuple[list[str], int]:
    """``(questions, malformed)`` from a reply that lists several requests (LAB 3.2.1 asks the
    teacher for a list of new instructions per call). Each list item goes through
    :func:`parse_question`; items it cannot use count as malformed, and a reply with nothing
    usable (empty included) counts as at least one malformed reply. ``truncated``: the reply hit
    its token bound, so its last item is cut and is dropped (counted as malformed) unless it is
    the only one."""
    items = split_items(text)
    if truncated and len(items) > 1:
        items = items[:-1]
        bad = 1
    else:
        bad = 0
    out = []
    for item in items:
        q = parse_question(item)
        if q:
            out.append(q)
        else:
            bad += 1
    return out, bad or (0 if out else 1)


def trigram_repeat_rate(text: str, numbers: bool = False) -> float:
    """Fraction of repeated word trigrams in ``text`` (``1 - unique/total`` over lower-cased
    words; 0 for fewer than 3 words). Words are letter runs; with ``numbers`` digit runs count
    as words too (answers: "Q1: High 200, Low 100; Q2: ..." is a table, not a loop), without
    them list numbering is ignored (instruction lists: "2. Solve this riddle, 3. Solve ...")."""
    words = re.findall(r"[a-z0-9']+" if numbers else r"[a-z']+", text.lower())
    grams = list(zip(words, words[1:], words[2:]))
    return 1 - len(set(grams)) / len(grams) if grams else 0.0


def repetitive(text: str, min_words: int = 12, max_repeat: float = 0.5) -> bool:
    """True when ``text`` loops: at least ``min_words`` words and more than ``max_repeat`` of its
    word trigrams are repeats (:func:`trigram_repeat_rate`; a small teacher's degenerate output,
    e.g. "2. Solve this riddle, 3. Solve this riddle, ..."). Natural prose repeats few trigrams."""
    if len(re.findall(r"[a-z']+", text.lower())) < min_words:
        return False
    return trigram_repeat_rate(text) > max_repeat


def _fields(text: str, names: tuple[str, ...]) -> dict[str, str]:
    pattern = re.compile(r"(?im)^\s*\**\s*(" + "|".join(names) + r")\s*\**\s*:\s*(?:\*\*)?\s*")
    out: dict[str, str] = {}
    marks = list(pattern.finditer(text))
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        key = m.group(1).lower()
        if key not in out:
            out[key] = text[m.end():end].strip()
    return out


def parse_grounded(text: str | None, *, truncated: bool = False) -> tuple[str, list[str], int]:
    """``(context, questions, malformed)`` from a grounded-skill reply: a new context and a list of
    questions about it ("Context: ...", then "Questions:" with a numbered list; a single "Question:"
    or list items right after the context are read too). The context must have at least 20
    characters, else nothing is usable: ``("", [], 1)``. ``truncated``: as in :func:`parse_questions`."""
    f = _fields(clean(text), ("context", "questions", "question"))
    ctx, qtext = f.get("context", ""), f.get("questions") or f.get("question") or ""
    if not qtext:  # "Context: ...\n1. ...\n2. ...": the list ends the context
        m = _ITEM.search(ctx)
        if m:
            ctx, qtext = ctx[:m.start()], ctx[m.start():]
    ctx = ctx.strip()
    if len(ctx) < 20:
        return "", [], 1
    questions, bad = parse_questions(qtext, truncated=truncated)
    return ctx, questions, bad


def parse_qa(text: str | None) -> tuple[str, str] | None:
    """``(question, answer)`` from a "Question: ... Answer: ..." reply (also "Q:"/"A:"), else None."""
    t = re.sub(r"(?im)^\s*q\s*:", "Question:", clean(text))
    t = re.sub(r"(?im)^\s*a\s*:", "Answer:", t)
    t = re.sub(r"(?i)\?\s*answer\s*:", "?\nAnswer:", t)
    if not re.match(r"(?is)\s*\**\s*question\s*\**\s*:", t):
        t = "Question: " + t
    f = _fields(t, ("question", "answer"))
    q, a = f.get("question", "").strip(), f.get("answer", "").strip()
    a = re.split(r"\n\s*\**\s*question\s*\**\s*:", a, flags=re.IGNORECASE)[0].strip()
    return (q, a) if len(q) >= 8 and a else None


def parse_yes_no(text: str | None) -> bool | None:
    """True/False from the first word that says yes or no; None when the reply says neither."""
    t = clean(text)
    y, n = _YES.search(t), _NO.search(t)
    if y and (not n or y.start() < n.start()):
        return True
    if n:
        return False
    return None


# a grade at the very end of a line: "3", "[[3]]", "3/3", "3 out of 3", "(2).", "**3**"
_SCORE_TAIL = r"[\[(*\s]*(\d+)\s*(?:/\s*\d+|out\s+of\s+\d+)?[\s\])*.!\"'`]*$"
_SCORE_MARKED = re.compile(r"\b(?:score|rating|grade|rate\s+it)\b\W{0,6}(?:(?:is|of|as)\s+)?" + _SCORE_TAIL,
                           re.IGNORECASE)
_SCORE_ALONE = re.compile(r"^\W*" + _SCORE_TAIL)
_EXPLANATION = re.compile(r"\W*explanation\b", re.IGNORECASE)


def parse_score(text: str | None, scale=(1, 2, 3)) -> int | None:
    """The grade at the END of a pair-evaluation reply (LAB 3.2.1, figure 4: the judge explains
    first, then scores), so that numbers in the explanation are never taken for the grade.

    Only the reply's last non-empty line is read. Its grade is the number that ends it (closing
    brackets, "/3", "out of 3" and final punctuation allowed) when that number follows a marker
    ("Score: 3", "**Rating:** [[2]]", "I would rate it 3."), stands alone on the line ("3",
    "[[2]]"), or ends a one-line reply of at most six words that is no explanation ("Correct. 3";
    not "Explanation: the sum is 3", cut before its score). None when there is no such number
    (e.g. an explanation cut by the token bound) or it is not in ``scale`` ("10", "0")."""
    lines = [ln for ln in clean(text).splitlines() if ln.strip()]
    if not lines:
        return None
    last = lines[-1]
    m = _SCORE_MARKED.search(last) or _SCORE_ALONE.match(last)
    if m is None and len(lines) == 1 and len(last.split()) <= 6 and not _EXPLANATION.match(last):
        m = re.search(_SCORE_TAIL, last)
    if m is None:
        return None
    v = int(m.group(1))
    return v if v in scale else None


def refers_to_document(question: str) -> bool:
    """True when a question points at a document it does not contain ("the passage", "the text
    above"): a rule-based part of the self-contained check of LAB 3.2.2."""
    return bool(_DOC_REF.search(question))


def normalize(text: str) -> str:
    """``text`` for comparison: Unicode NFKC, lower case, every punctuation or symbol character
    replaced by a space, whitespace runs collapsed ("Write a Haiku -- about rain!" and
    "write a haiku about rain" normalize alike)."""
    t = unicodedata.normalize("NFKC", text or "").lower()
    t = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in t)
    return " ".join(t.split())


def similarity(a: str, b: str) -> float:
    """ROUGE-L style similarity in [0, 1] of the :func:`normalize` d texts: longest common
    subsequence of words over the longer text's length (rapidfuzz ``LCSseq``)."""
    return LCSseq.normalized_similarity(normalize(a).split(), normalize(b).split())


def near_duplicate(text: str, others: list[str], threshold: float) -> str | None:
    """The first of ``others`` at least ``threshold`` similar to ``text`` (see :func:`similarity`), else None."""
    for o in others:
        if similarity(text, o) >= threshold:
            return o
    return None


def seed_copy(text: str, seeds: list[str], threshold: float) -> str | None:
    """The first seed example that ``text`` copies, else None. A copy is, after :func:`normalize`
    (case, punctuation and whitespace do not count), at least ``threshold`` similar (see
    :func:`similarity`; the seed threshold is stricter than the within-leaf near-duplicate one,
    since seed examples are the held-out evaluation set), or at most one word edit away
    (one word changed, added or dropped: word-level Levenshtein distance <= 1, for texts of
    three words or more)."""
    a = normalize(text).split()
    for seed in seeds:
        b = normalize(seed).split()
        if LCSseq.normalized_similarity(a, b) >= threshold or (
                max(len(a), len(b)) >= 3 and Levenshtein.distance(a, b) <= 1):
            return seed
    return None

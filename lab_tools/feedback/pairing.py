"""ALMoST's pairing rule and heuristic filters for synthetic comparisons (arXiv 2305.13735).

Sources: ALMoST's ``generator.py`` (``PromptedResponseGenerator.check_bad``) and
``synthetic_feedback.py`` (``SyntheticRanker.get_comparison``, ``check_length``), as described
in its README section 3 "Construct Synthetic comparisons".

1. A response stopped by the token limit is first cut to its last full sentence
   (:func:`cut_to_last_sentence`; recorded as ``trimmed``), since a cut-off reply would always
   fail the sentence-end rule with short generation budgets.
2. Invalid ("BAD") responses are dropped, never used as "rejected" (:func:`bad_reason`); so are
   responses that fail the caller's ``screen`` (the SDG quality filters and the seed-copy rule,
   :func:`lab_tools.sdg.filters.screen_turn`): neither side of a pair is garbage or a held-out copy.
3. The valid responses of one prompt are sorted by rank; pairs are walked in
   ``itertools.combinations`` order (best first); a pair is skipped when its two ranks are equal,
   or when its chosen configuration or its chosen rank was already used as "chosen" for this
   prompt. That yields a chain of adjacent ranks (A>B, B>C, ...), at most K-1 pairs for K ranks.
4. The length rule (ALMoST's heuristic filter): drop a pair whose chosen response is shorter than
   the rejected one AND shorter than ``mean - std/2`` of the lengths (characters) of that prompt's
   valid responses (population std, as numpy's default).
"""

from __future__ import annotations

import itertools
import re
import statistics
from dataclasses import dataclass, field

_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*(?=\s|$)")
_DONT_KNOW = re.compile(r"\b(?:i\s+)?(?:don['’]?t|do\s+not)\s+know\b", re.IGNORECASE)
# a turn of a role other than the assistant's, or chat-template tokens, inside a response
_ROLE_LEAK = re.compile(r"(?im)^\s*(?:human|user|assistant|system|question|answer)\s*:|\b(?:human|assistant)\s*:")
_TEMPLATE_LEAK = re.compile(r"<\|[a-z_]+\|>|</?s>|<image>|\[/?INST\]", re.IGNORECASE)
_CLOSERS = "\"'”’)]*_ \n"


@dataclass
class Response:
    """One configuration's response to one prompt. ``rank``: the configuration's rubric rank
    (0 = best); ``truncated``: generation stopped at the token limit. Filled by :func:`prepare`:
    ``trimmed`` (cut to the last full sentence), ``bad`` (why it is invalid, None if valid) and
    ``detail`` (the measured value behind ``bad``, when a screen gave one)."""
    config: str
    rank: int
    text: str
    truncated: bool = False
    trimmed: bool = False
    bad: str | None = None
    detail: str = ""


@dataclass
class Pair:
    """A kept comparison: ``chosen`` ranks strictly better than ``rejected``."""
    chosen: Response
    rejected: Response


@dataclass
class PairingResult:
    """What :func:`make_pairs` did for one prompt: kept ``pairs``, ``invalid`` responses (with
    ``bad`` set), pairs dropped by the length rule, ``skipped`` counts by reason (``tie``,
    ``chosen config used``, ``chosen rank used``, ``identical``), the length ``threshold``
    (None when fewer than two valid responses)."""
    pairs: list[Pair] = field(default_factory=list)
    invalid: list[Response] = field(default_factory=list)
    length_dropped: list[Pair] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    threshold: float | None = None


def cut_to_last_sentence(text: str) -> str:
    """``text`` up to and including its last sentence end (``.``, ``!`` or ``?``, with closing
    quotes or brackets), or ``text`` unchanged when it has none."""
    ends = list(_SENTENCE_END.finditer(text))
    return text[:ends[-1].end()].rstrip() if ends else text


def bad_reason(text: str, min_chars: int = 50) -> str | None:
    """Why ``text`` is an invalid response, or None when valid. Rules (ALMoST ``check_bad``, with
    role and template leakage generalized to chat models): ``empty``; ``too short`` (fewer than
    ``min_chars`` characters); ``ends with ? or :``; ``I don't know``; ``role leakage`` (a
    ``Human:``/``User:``/``Assistant:`` turn inside the reply); ``template leakage`` (chat-template
    tokens such as ``<|im_end|>``); ``unfinished`` (does not end with ``.`` or ``!``)."""
    t = text.strip()
    if not t:
        return "empty"
    if _TEMPLATE_LEAK.search(t):
        return "template leakage"
    if _ROLE_LEAK.search(t):
        return "role leakage"
    if _DONT_KNOW.search(t):
        return "I don't know"
    if len(t) < min_chars:
        return "too short"
    end = t.rstrip(_CLOSERS)
    if end.endswith(("?", ":")):
        return "ends with ? or :"
    if not end.endswith((".", "!")):
        return "unfinished"
    return None


def prepare(r: Response, min_chars: int = 50, screen=None) -> Response:
    """Trim a truncated response to its last full sentence (sets ``trimmed`` when that changed
    the text), then set ``bad``: ALMoST's rules (:func:`bad_reason`), then, for a response they
    pass, ``screen(r)`` when given (an object with ``reason``, None = pass, and ``detail``, e.g.
    a :class:`lab_tools.sdg.filters.Verdict`). Returns ``r`` (modified in place)."""
    text = r.text.strip()
    if r.truncated:
        cut = cut_to_last_sentence(text)
        r.trimmed = cut != text
        text = cut
    r.text = text
    r.bad = bad_reason(text, min_chars)
    if r.bad is None and screen is not None:
        verdict = screen(r)
        r.bad, r.detail = verdict.reason, verdict.detail or ""
    return r


def length_threshold(lengths: list[int]) -> float:
    """``mean - std/2`` of ``lengths`` (population std), ALMoST's ``check_length`` bound."""
    return statistics.fmean(lengths) - statistics.pstdev(lengths) / 2


def make_pairs(responses: list[Response], min_chars: int = 50, screen=None) -> PairingResult:
    """ALMoST pairing of one prompt's ``responses`` (see the module doc, steps 1-4); ``screen``:
    the caller's further filter of each response (see :func:`prepare`).

    Returns a :class:`PairingResult`; each response gets ``trimmed``/``bad`` set."""
    res = PairingResult()
    valid = []
    for r in responses:
        prepare(r, min_chars, screen)
        (res.invalid if r.bad else valid).append(r)
    if len(valid) < 2:
        return res
    valid.sort(key=lambda r: r.rank)  # stable: equal ranks keep the configuration order
    res.threshold = length_threshold([len(r.text) for r in valid])
    used_configs: set[str] = set()
    used_ranks: set[int] = set()

    def skip(reason: str) -> None:
        res.skipped[reason] = res.skipped.get(reason, 0) + 1

    for a, b in itertools.combinations(valid, 2):
        if a.rank == b.rank:
            skip("tie")
        elif a.config in used_configs:
            skip("chosen config used")
        elif a.rank in used_ranks:
            skip("chosen rank used")
        elif a.text == b.text:
            skip("identical")
        elif len(a.text) < len(b.text) and len(a.text) < res.threshold:
            res.length_dropped.append(Pair(a, b))
        else:
            res.pairs.append(Pair(a, b))
            used_configs.add(a.config)
            used_ranks.add(a.rank)
    return res

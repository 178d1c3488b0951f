"""Token-aware chunking of knowledge documents with overlap (LAB 3.2.2: each chunk must fit the
teacher's context together with the prompt and the in-context seed examples)."""

from __future__ import annotations

import re
from collections.abc import Callable


def _units(text: str) -> list[str]:
    """Paragraphs, then sentences for paragraphs that are long; markdown structure is kept."""
    out: list[str] = []
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if para:
            out += [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9#*\-])", para) if s.strip()]
            out[-1] += "\n"  # remember the paragraph break
    return out


def chunk_text(text: str, count_tokens: Callable[[str], int], max_tokens: int = 256,
               overlap: int = 32) -> list[str]:
    """Split ``text`` into chunks of at most ``max_tokens`` tokens (as counted by ``count_tokens``),
    on sentence/paragraph boundaries; each chunk starts with the last sentences of the previous one
    totalling at most ``overlap`` tokens. A single sentence longer than ``max_tokens`` is cut by
    words, and a single word longer than that (a document without whitespace) by characters
    (:func:`hard_split`): ``max_tokens`` is a hard cap whatever the text. Returns [] for blank text.
    """
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    units: list[tuple[str, int]] = []
    for u in _units(text):
        n = count_tokens(u)
        if n <= max_tokens:
            units.append((u, n))
            continue
        words, piece = [], []
        for w in u.split():  # a word over the cap (no whitespace in it) is cut by characters
            words += [w] if count_tokens(w) <= max_tokens else hard_split(w, count_tokens, max_tokens)
        for w in words:  # an over-long sentence: greedy word packing
            if piece and count_tokens(" ".join(piece + [w])) > max_tokens:
                units.append((" ".join(piece), count_tokens(" ".join(piece))))
                piece = []
            piece.append(w)
        if piece:
            units.append((" ".join(piece), count_tokens(" ".join(piece))))
    chunks: list[str] = []
    cur: list[tuple[str, int]] = []
    fresh = 0  # units in cur that are not overlap carried from the previous chunk
    for u in units:
        if cur and sum(n for _, n in cur) + u[1] > max_tokens:
            chunks.append(_join(cur))
            carry: list[tuple[str, int]] = []
            for prev in reversed(cur):
                if sum(n for _, n in carry) + prev[1] > overlap or sum(n for _, n in carry) + prev[1] + u[1] > max_tokens:
                    break
                carry.insert(0, prev)
            cur, fresh = carry, 0
        cur.append(u)
        fresh += 1
    if cur and fresh:
        chunks.append(_join(cur))
    # the cap is hard: a join that a real tokenizer counts over it (merges across the joints)
    return [piece for c in chunks
            for piece in ([c] if count_tokens(c) <= max_tokens else hard_split(c, count_tokens, max_tokens))]


def hard_split(text: str, count_tokens: Callable[[str], int], max_tokens: int) -> list[str]:
    """``text`` cut into consecutive pieces of at most ``max_tokens`` tokens each, by characters
    (for text with no whitespace to cut at); each piece is the longest prefix of the rest that
    fits, found by doubling then bisection (O(log n) counts per piece, each of a piece-sized
    text). A single character over the cap (possible only when ``max_tokens`` is below one
    character's byte tokens) still makes a piece of its own, so the loop always advances."""
    pieces, rest = [], text
    while rest:
        if count_tokens(rest) <= max_tokens:
            pieces.append(rest)
            break
        lo, hi = 1, min(len(rest), max(1, max_tokens) * 4)  # lo: a prefix length known to fit
        while hi < len(rest) and count_tokens(rest[:hi]) <= max_tokens:
            lo, hi = hi, min(len(rest), hi * 2)
        while hi - lo > 1:  # count(rest[:lo]) fits (or lo == 1), count(rest[:hi]) does not
            mid = (lo + hi) // 2
            if count_tokens(rest[:mid]) <= max_tokens:
                lo = mid
            else:
                hi = mid
        pieces.append(rest[:lo])
        rest = rest[lo:]
    return pieces


def _join(units: list[tuple[str, int]]) -> str:
    return " ".join(u for u, _ in units).replace("\n ", "\n\n").strip()

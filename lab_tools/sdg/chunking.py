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
    words. Returns [] for blank text.
    """
    if max_tokens <= 0:
        raise ValueError("max_tokens must be positive")
    units: list[tuple[str, int]] = []
    for u in _units(text):
        n = count_tokens(u)
        if n <= max_tokens:
            units.append((u, n))
            continue
        words, piece = u.split(), []
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
    return chunks


def _join(units: list[tuple[str, int]]) -> str:
    return " ".join(u for u, _ in units).replace("\n ", "\n\n").strip()

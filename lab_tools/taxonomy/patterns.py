"""Knowledge document patterns (``document.patterns``) with bounded cost: checked, compiled, matched.

A pattern comes from a pull request, so it is hostile input (DESIGN.md, Trust boundary: "work
per PR is bounded ... pattern complexity, time"). Git wildmatch patterns are translated to
regular expressions by ``pathspec``; a pattern such as ``*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b``
becomes ``[^/]*a[^/]*a...`` whose backtracking in Python's ``re`` grows as n^k on a file name
of n characters (issue 23: 10 stars on a 40-character name took 26 s, 14 stars spin for hours).
Three bounds, each with its own error:

- :func:`check_pattern` (used by ``lab taxonomy validate`` and by the resolver before any git
  call): a non-empty string of at most :data:`MAX_PATTERN_CHARS` characters, no control
  characters, at most :data:`MAX_STARS` runs of ``*`` (``**`` counts once), a pattern pathspec
  can compile (``notes[z-a].md`` or a lone backslash is an error, not a traceback), no negation
  or comment, and no pathological behaviour on a probe name built from its own literals;
- at most :data:`MAX_PATTERNS` patterns per leaf;
- :class:`Matcher`: the compiled expression runs in the ``regex`` library, whose ``timeout``
  argument stops a match, against one deadline per leaf (``documents.match_timeout``); past it
  the pattern is an error naming its field.

The semantics stay pathspec's ``GitIgnoreSpec`` for one include pattern (a file matches when the
pattern's expression matches its path), so the wildmatch tests keep their meaning.
"""

from __future__ import annotations

import time

import pathspec
import regex

#: most patterns one leaf may list
MAX_PATTERNS = 32
#: longest pattern, in characters
MAX_PATTERN_CHARS = 256
#: most runs of ``*`` in one pattern (``**`` is one run): the backtracking exponent
MAX_STARS = 6
#: seconds a probe match may take in :func:`check_pattern` before the pattern is called pathological
PROBE_SECONDS = 0.25
_PROBE_REPEAT = 64


class PatternError(ValueError):
    """A pattern that is refused; ``str(err)`` says why and what to write instead."""


def _shown(value, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _star_runs(pat: str) -> int:
    runs, prev = 0, ""
    for ch in pat:
        if ch == "*" and prev != "*":
            runs += 1
        prev = ch
    return runs


def _probe(pat: str) -> str:
    """A file name that makes a backtracking matcher work hardest for ``pat``: every ``*`` replaced
    by many copies of the literal that follows it, and the pattern's last literal changed, so the
    match must fail only after trying the splits."""
    out, pending = [], False
    for ch in pat:
        if ch == "*":
            pending = True
            continue
        if pending and ch not in "/?[]\\":
            out.append(ch * _PROBE_REPEAT)
        pending = False
        out.append(ch if ch not in "?[]\\" else "x")
    if pending:
        out.append("x" * _PROBE_REPEAT)
    out.append("\x01")  # never in a pattern (refused above): the probe never matches fully
    return "".join(out)


def compile_pattern(pat) -> regex.Pattern:
    """The compiled expression of one document pattern, after every check of this module.

    Args:
        pat: the value of ``document.patterns[i]`` as loaded from YAML (any type).

    Returns:
        a ``regex`` pattern object; a path (POSIX, relative to the document folder) is selected
        when its ``match`` succeeds, exactly as pathspec's ``GitIgnoreSpec`` would select it.

    Raises:
        PatternError: not a non-empty string; over :data:`MAX_PATTERN_CHARS` characters or
            :data:`MAX_STARS` runs of ``*``; a control character; a negation or comment; a
            pattern pathspec cannot compile; a probe match slower than :data:`PROBE_SECONDS`.
    """
    if not isinstance(pat, str) or not pat.strip():
        raise PatternError(f"each pattern must be a non-empty string, not {_shown(pat)}")
    if len(pat) > MAX_PATTERN_CHARS:
        raise PatternError(f"pattern has {len(pat)} characters, over the limit of {MAX_PATTERN_CHARS}; "
                           "name the folder or file type instead (e.g. chapters/**/*.md)")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in pat):
        raise PatternError(f"pattern {_shown(pat)} holds a control character")
    stars = _star_runs(pat)
    if stars > MAX_STARS:
        raise PatternError(f"pattern {_shown(pat)} has {stars} wildcards (*), over the limit of {MAX_STARS} "
                           "(many wildcards make matching slow); name the folder or file type instead")
    try:
        spec = pathspec.GitIgnoreSpec.from_lines([pat])
    except Exception as exc:  # noqa: BLE001  (pathspec raises its own error, re.error, ValueError)
        raise PatternError(f"pattern {_shown(pat)} is not a valid git wildmatch pattern "
                           f"({str(exc).splitlines()[0][:120] or type(exc).__name__}); "
                           "check brackets ([a-z]) and backslashes") from None
    if not spec.patterns or spec.patterns[0].include is not True:
        raise PatternError(f"pattern {_shown(pat)} selects nothing: negations (!), comments (#) and "
                           "unclosed brackets are not supported; list the files to include")
    compiled = spec.patterns[0].regex
    try:
        expr = regex.compile(compiled.pattern, compiled.flags | regex.VERSION0)
    except regex.error as exc:
        raise PatternError(f"pattern {_shown(pat)} is not a valid git wildmatch pattern ({exc})") from None
    try:
        expr.match(_probe(pat), timeout=PROBE_SECONDS)
    except TimeoutError:
        raise PatternError(f"pattern {_shown(pat)} is too slow to match (over {PROBE_SECONDS:g} s on one "
                           "file name); use fewer wildcards") from None
    return expr


def check_pattern(pat) -> str | None:
    """Why ``pat`` is refused (one sentence), or None when it is a valid bounded pattern
    (:func:`compile_pattern`'s checks, for validators that collect findings)."""
    try:
        compile_pattern(pat)
    except PatternError as exc:
        return str(exc)
    return None


class MatchTimeout(Exception):
    """Matching ran past the deadline; ``index`` is the pattern that was running."""

    def __init__(self, index: int):
        super().__init__(index)
        self.index = index


class Matcher:
    """Matches compiled patterns against file paths within one deadline.

    Args:
        expressions: from :func:`compile_pattern`, in the leaf's order.
        seconds: the whole budget for every :meth:`select` call of this matcher (wall clock).
    """

    def __init__(self, expressions: list, seconds: float):
        self.expressions = expressions
        self.seconds = seconds
        self._deadline = time.monotonic() + seconds

    def select(self, index: int, paths) -> list[str]:
        """The paths pattern ``index`` selects, sorted.

        Raises:
            MatchTimeout: the budget ran out during this call.
        """
        expr, hits = self.expressions[index], []
        for p in paths:
            left = self._deadline - time.monotonic()
            if left <= 0:
                raise MatchTimeout(index)
            try:
                if expr.match(p, timeout=left):
                    hits.append(p)
            except TimeoutError:
                raise MatchTimeout(index) from None
        return sorted(hits)

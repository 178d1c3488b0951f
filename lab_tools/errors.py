"""Errors that the CLI turns into clean messages (never a traceback).

Rule (TRL style): an *error* is input we cannot use as given (the command exits non-zero);
a *warning* is input we can use but that probably is not what the author meant (exit 0).
Correct input is silent.

:func:`plural` words the counts in messages ("1 error", "2 errors", "1 leaf", "3 leaves").
"""

from __future__ import annotations

from lab_tools.redact import strip_credentials


class LabError(Exception):
    """A user-facing error: bad input, bad config, a failed stage.

    Args:
        message: what is wrong and, where possible, how to fix it.
        file: the file at fault (path as given by the user), if any.
        line: 1-based line in ``file``, if known.
        field: dotted field path inside the file (e.g. ``seed_examples.2.answer``), if any.

    ``str(err)`` renders as ``file:line: field: message`` with absent parts left out.
    The CLI prints it and exits with code 1 (``UsageError`` exits 2). Credentials in a URL the
    message quotes (a teacher spec ``openai:http://user:token@host/v1#m``) are stripped
    (:func:`lab_tools.redact.strip_credentials`): messages end up in CI logs and PR comments.
    """

    exit_code = 1

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        message = strip_credentials(message)
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class ConfigError(LabError):
    """Invalid ``lab.yaml`` / ``--config`` / ``LAB_*`` settings; ``errors`` holds every problem found."""

    def __init__(self, errors: list[str], file: str | None = None):
        super().__init__("; ".join(errors) if len(errors) == 1 else
                         f"{len(errors)} config errors:\n  " + "\n  ".join(errors), file=file)
        self.errors = errors


class UsageError(LabError):
    """Wrong command-line usage (exit code 2)."""

    exit_code = 2


# Nouns of user-facing counts whose plural is not NOUN + "s".
_IRREGULAR = {"leaf": "leaves", "entry": "entries"}


def plural(n: int, noun: str, many: str | None = None) -> str:
    """``n`` and ``noun`` in the right number, for user-facing counts: ``plural(1, "error")`` is
    ``"1 error"``, ``plural(2, "error")`` ``"2 errors"``, ``plural(3, "changed leaf")``
    ``"3 changed leaves"`` (the last word of ``noun`` is inflected: ``+s``, or the irregular
    plurals this module knows, such as leaf -> leaves). ``many``: the plural to use instead."""
    if n == 1:
        return f"{n} {noun}"
    if many is None:
        head, _, last = noun.rpartition(" ")
        last = _IRREGULAR.get(last, last + "s")
        many = f"{head} {last}" if head else last
    return f"{n} {many}"

"""Machine paths out of what is published (model card, release.json, PR comments, CI logs).

A published file names paths relative to the repository, never the build machine's absolute
paths (they leak user names and folder layouts, and differ between machines for the same build).
:class:`PathRedactor` rewrites every occurrence of a known base folder inside a string:

| absolute path under            | written as                      |
|--------------------------------|---------------------------------|
| the repository (its work tree) | relative to it (``taxonomy/x``) |
| a named base (run dir, cache)  | ``<run>/...``, ``<cache>/...``  |
| the home directory             | ``~/...``                       |
| the temporary directory        | ``<tmp>/...``                   |

and (with ``catch_all``) any other absolute path as ``<abs>/<last component>``. The longest matching base wins, so a
run folder inside the repository is written relative to the repository only when it is not
itself a named base. The repository top is found by walking up to the nearest ``.git`` entry (no
git call, so a tree written by a pull request is never opened as a repository).

Secrets out of the same places: :func:`strip_credentials` drops the user and password of every
URL in a string (``openai:http://user:token@host/v1#model`` → ``openai:http://host/v1#model``)
and the values of secret-looking query parameters (``?api_key=...``). It is the one function for
every teacher, judge or model spec that is shown or stored (bot comment, ``release.json``,
``run.json``, dataset card, error messages, the SDG cache key); :meth:`PathRedactor.text` applies
it too, so whatever is redacted for paths is also free of credentials.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

# an absolute path not preceded by a word, a dot, a slash or a scheme colon (URLs stay), e.g. in
# "transformers:/models/x" or "file at /srv/x"; the first component may not be empty (no "//")
# scheme://user[:password]@ : the userinfo of a URL (RFC 3986 3.2.1), anywhere in a string
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/?#\s'\"<>]*@")  # up to the last "@" of the authority
# ?name=value / &name=value for names that carry secrets (api_key, token, access_token, sig, ...)
_SECRET_QUERY = re.compile(r"(?i)([?&;](?:[a-z0-9_\-]*(?:key|token|secret|password|passwd|pwd|auth|sig|signature|credential)"
                           r"[a-z0-9_\-]*)=)[^&#\s'\"<>]*")
REDACTED = "REDACTED"


def strip_credentials(text):
    """``text`` with credentials taken out of every URL in it: the userinfo (``user:token@``) is
    dropped and secret-looking query values (``api_key=``, ``token=``, ``sig=``...) become
    ``REDACTED``. Non-strings (None, numbers) come back as they are. What remains still names the
    server and the model, so two teachers stay distinguishable."""
    if not isinstance(text, str) or ("@" not in text and "=" not in text):
        return text
    text = _USERINFO.sub(lambda m: m.group(1), text)
    return _SECRET_QUERY.sub(lambda m: m.group(1) + REDACTED, text)


def strip_credentials_data(obj):
    """A copy of ``obj`` (JSON-like: dict, list, str, scalars) with :func:`strip_credentials`
    applied to every string, dict keys included."""
    if isinstance(obj, str):
        return strip_credentials(obj)
    if isinstance(obj, dict):
        return {strip_credentials(k): strip_credentials_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strip_credentials_data(v) for v in obj]
    return obj


_ABS = re.compile(r"(?:^|(?<=[\s=`'\"(\[,]))/(?!/)[^\s`'\"|,;()\[\]<>]+|(?<=[a-z]:)/(?!/)[^\s`'\"|,;()\[\]<>]+")


def repository_top(path: str | Path) -> Path | None:
    """The nearest folder at or above ``path`` holding a ``.git`` entry (resolved), or None."""
    here = Path(path).resolve()
    for d in (here, *here.parents):
        if (d / ".git").exists():
            return d
    return None


class PathRedactor:
    """Rewrites absolute paths in strings (and in nested dicts/lists: keys and values).

    Args:
        repo: the repository top (paths under it become relative); None: none.
        bases: extra ``{label: folder}`` written as ``<label>/...`` (e.g. ``{"run": run_dir}``).
        catch_all: also rewrite absolute paths under no known folder (off where text quotes
            contributors' content, e.g. generated samples, which may mention ``/etc/hosts``).
    """

    def __init__(self, repo: str | Path | None = None, bases: dict[str, str | Path | None] | None = None,
                 *, catch_all: bool = True):
        self.catch_all = catch_all
        pairs: list[tuple[str, str]] = []

        def add(folder, label: str) -> None:
            if folder is None:
                return
            for form in {str(Path(folder).expanduser()), str(Path(folder).expanduser().resolve())}:
                if form not in ("/", "") and os.path.isabs(form):
                    pairs.append((form.rstrip("/"), label))

        add(repo, "")
        for label, folder in (bases or {}).items():
            add(folder, f"<{label}>")
        add(os.path.expanduser("~"), "~")
        add(tempfile.gettempdir(), "<tmp>")
        self._pairs = sorted(set(pairs), key=lambda p: -len(p[0]))
        alternatives = "|".join(re.escape(prefix) for prefix, _ in self._pairs)
        self._known = re.compile(rf"(?:{alternatives})(?=/|$|[^\w.\-])") if self._pairs else None
        self._labels = dict(self._pairs)

    def _known_sub(self, m: re.Match) -> str:
        label = self._labels[m.group(0)]
        if label:
            return label
        rest = m.string[m.end():]
        return "." if not rest.startswith("/") else "\0"  # "\0/" marks a repo-relative start

    def text(self, s: str) -> str:
        """``s`` with every absolute path rewritten (see the module table) and credentials
        stripped from its URLs (:func:`strip_credentials`)."""
        s = strip_credentials(s)
        if self._known is not None:
            s = self._known.sub(self._known_sub, s).replace("\0/", "")
        if not self.catch_all:
            return s
        return _ABS.sub(lambda m: "<abs>/" + m.group(0).rstrip("/").rsplit("/", 1)[-1], s)

    def data(self, obj):
        """A copy of ``obj`` (JSON-like: dict, list, str, scalars) with :meth:`text` applied to
        every string, dict keys included."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {self.text(k) if isinstance(k, str) else k: self.data(v) for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return [self.data(v) for v in obj]
        return obj

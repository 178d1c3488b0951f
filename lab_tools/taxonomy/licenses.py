"""`lab taxonomy licenses`: parse each leaf's ``attribution.txt`` and check its license.

``attribution.txt`` is InstructLab's plain-text format, one ``Key: value`` per line::

    Title of work: Black-capped chickadee
    Link to work: https://en.wikipedia.org/wiki/Black-capped_chickadee
    Revision: https://en.wikipedia.org/w/index.php?title=...&oldid=1219937468
    License of the work: CC-BY-SA-4.0
    Creator names: Wikipedia Authors

A file may list several works (the keys repeat). Licenses are normalized to SPDX ids with
``license-expression`` (``CC BY-NC-SA 4.0`` -> ``CC-BY-NC-SA-4.0``, ``Apache 2.0`` -> ``Apache-2.0``).

Rules (CONTRIBUTING.md, "Checks"):
- a non-commercial (``-NC``) or no-derivatives (``-ND``) license is an error for every leaf: the
  data would end up in a released model;
- for knowledge leaves (the documents are training data, LAB 3.2.2), a missing ``attribution.txt``,
  a missing title/link/license/creators, an unknown license or one outside the allowlist is an error;
- for skills leaves the same problems are warnings (seed examples are usually self-authored).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.taxonomy.findings import Finding
from lab_tools.taxonomy.leaf import SYMLINK_MESSAGE, refuse_symlinks
from lab_tools.taxonomy.safeyaml import read_text

_KEYS = {
    "title of work": "title", "title": "title", "name of work": "title",
    "link to work": "link", "link": "link", "url": "link", "source": "link",
    "license of the work": "license", "license": "license", "licence": "license",
    "licence of the work": "license",
    "creator names": "creators", "creator": "creators", "creators": "creators", "author": "creators",
    "authors": "creators", "revision": "revision",
}
_LINE = re.compile(r"^\s*([A-Za-z][A-Za-z ]{0,40}?)\s*:\s*(.*?)\s*$")
_OPS = re.compile(r"\b(AND|OR|WITH)\b|[()]", re.I)


@dataclass
class Attribution:
    """One work named in ``attribution.txt`` (or, from :func:`parse_attribution`, all of them merged).

    Attributes:
        title, link, license, creators: the values as written ("" when absent).
        spdx: the license as a normalized SPDX expression, or None when missing or unknown.
        line: 1-based line of the license (or of the first line of the entry).
        unknown: license keys that are not SPDX ids.
        entries: for a merged attribution, the individual works.
    """
    title: str = ""
    link: str = ""
    license: str = ""
    creators: str = ""
    spdx: str | None = None
    line: int = 1
    unknown: list[str] = field(default_factory=list)
    revision: str = ""
    entries: list["Attribution"] = field(default_factory=list)


@functools.lru_cache(maxsize=1)
def _licensing():
    from license_expression import get_spdx_licensing

    return get_spdx_licensing()


def normalize_license(text: str) -> tuple[str | None, list[str]]:
    """Normalize a license as written to an SPDX expression.

    Returns:
        ``(spdx, unknown_keys)``: ``spdx`` is None when ``text`` is empty or names anything that is
        not an SPDX id (then ``unknown_keys`` lists what was not recognized).
    """
    text = (text or "").strip().rstrip(".")
    if not text or text.lower() in {"-", "n/a", "none", "unknown"}:
        return None, []
    lic = _licensing()
    candidates = [text]
    if not _OPS.search(text):
        # "CC BY-NC-SA 4.0", "Apache 2.0", "CC0 1.0": SPDX ids have dashes where people write spaces
        squashed = re.sub(r"\s+", "-", re.sub(r"(?i)\b(license|licence|version|v)\b,?", " ", text).strip())
        candidates += [squashed, re.sub(r"\s+", "-", text)]
    unknown: list[str] = []
    for cand in candidates:
        try:
            expr = lic.parse(cand, validate=False)
        except Exception:  # license_expression raises several error types on garbage
            continue
        if expr is None:
            continue
        unknown = list(lic.unknown_license_keys(expr))
        if not unknown:
            return str(expr), []
    return None, unknown or [text]


def parse_attributions(path: str | Path) -> list[Attribution]:
    """Every work listed in ``attribution.txt`` at ``path``, in order.

    Raises:
        LabError: the file is a symlink (never read through: it may point outside the taxonomy),
            missing, over 1 MiB, binary or not UTF-8.
    """
    if Path(path).is_symlink():
        raise LabError(SYMLINK_MESSAGE, file=str(path))
    text = read_text(path)
    works: list[Attribution] = []
    cur: Attribution | None = None
    seen: set[str] = set()
    for no, raw in enumerate(text.splitlines(), 1):
        m = _LINE.match(raw)
        if not m:
            continue
        key = _KEYS.get(m.group(1).strip().lower())
        if key is None:
            continue
        if cur is None or key in seen:
            cur = Attribution(line=no)
            works.append(cur)
            seen = set()
        seen.add(key)
        setattr(cur, key, m.group(2))
        if key == "license":
            cur.line = no
            cur.spdx, cur.unknown = normalize_license(m.group(2))
    return works


def parse_attribution(path: str | Path) -> Attribution:
    """``attribution.txt`` at ``path`` as one :class:`Attribution`: title, link and creators of the
    first work; ``license`` the distinct licenses joined by ``; ``; ``spdx`` their SPDX ids joined by
    `` AND `` (None if any is missing or unknown); ``entries`` every work.

    Raises:
        LabError: unreadable file (see :func:`parse_attributions`).
    """
    works = parse_attributions(path)
    if not works:
        return Attribution()
    first = works[0]
    lics = list(dict.fromkeys(w.license for w in works if w.license))
    spdx = None
    if all(w.spdx for w in works):
        spdx = " AND ".join(dict.fromkeys(w.spdx for w in works))
    return Attribution(title=first.title, link=first.link, license="; ".join(lics),
                       creators=first.creators, spdx=spdx, line=first.line,
                       unknown=[u for w in works for u in w.unknown], revision=first.revision,
                       entries=works)


def _restricted(spdx: str) -> str | None:
    keys = _licensing().license_keys(_licensing().parse(spdx, validate=False))
    for k in keys:
        if re.search(r"-NC(-|$)", k, re.I) or "noncommercial" in k.lower():
            return f"{k} is non-commercial"
        if re.search(r"-ND(-|$)", k, re.I):
            return f"{k} forbids derivatives"
    return None


def check_licenses(root: str | Path, leaf_paths: list[str], allowlist: list[str]) -> list[Finding]:
    """License findings for the leaves ``leaf_paths`` (directories relative to taxonomy ``root``).

    ``allowlist``: SPDX ids accepted (lab.yaml ``licenses.allowlist``). See the module docstring for
    which problems are errors and which are warnings. Never raises for bad files: an unreadable
    ``attribution.txt`` is an error finding.
    """
    root = Path(root)
    allowed = {a.lower() for a in allowlist}
    out: list[Finding] = []
    for leaf in leaf_paths:
        leaf = leaf[: -len("/qna.yaml")] if leaf.endswith("/qna.yaml") else leaf
        knowledge = leaf.split("/", 1)[0] == "knowledge"
        sev = "error" if knowledge else "warning"
        path = root / leaf / "attribution.txt"
        shown = str(path)
        try:
            refuse_symlinks(root, Path(leaf) / "attribution.txt")  # before anything follows the link
        except LabError as err:
            out.append(Finding(err.file or shown, 1, 1, "", err.message))
            continue
        if not path.is_file():
            out.append(Finding(shown, 1, 1, "", "missing attribution.txt (Title of work, Link to work, "
                               "License of the work, Creator names)", sev))
            continue
        try:
            works = parse_attributions(path)
        except LabError as err:
            out.append(Finding(shown, err.line or 1, 1, "", err.message))
            continue
        if not works:
            out.append(Finding(shown, 1, 1, "", "no 'Key: value' lines found (Title of work, Link to "
                               "work, License of the work, Creator names)", sev))
            continue
        for w in works:
            if knowledge:
                for name, label in (("title", "Title of work"), ("link", "Link to work"),
                                    ("creators", "Creator names")):
                    if not getattr(w, name).strip():
                        out.append(Finding(shown, w.line, 1, label, "missing", sev))
            if not w.license.strip():
                out.append(Finding(shown, w.line, 1, "License of the work", "missing license", sev))
            elif w.spdx is None:
                out.append(Finding(shown, w.line, 1, "License of the work",
                                   f"{w.license!r} is not an SPDX license id (e.g. CC-BY-4.0)", sev))
            elif (why := _restricted(w.spdx)):
                out.append(Finding(shown, w.line, 1, "License of the work", f"{why}; the data would be "
                                   "part of a released model, so it cannot be used"))
            else:
                keys = _licensing().license_keys(_licensing().parse(w.spdx, validate=False))
                bad = [k for k in keys if k.lower() not in allowed]
                if bad:
                    out.append(Finding(shown, w.line, 1, "License of the work", f"{', '.join(bad)} is not "
                                       f"in the license allowlist ({', '.join(allowlist)})", sev))
    return out

"""`lab taxonomy validate`: every problem in a taxonomy's ``qna.yaml`` leaves, reported at once.

Checks, per file (each becomes a :class:`Finding`; CONTRIBUTING.md "Checks" explains each one):

1. place: the file is named ``qna.yaml``, sits under ``knowledge/``, ``foundational_skills/`` or
   ``compositional_skills/`` (the top folder decides the kind, LAB 3.1), and is not a symlink (nor
   in a symlinked folder);
2. safe YAML (:mod:`lab_tools.taxonomy.safeyaml`): size, binary, UTF-8, tabs, aliases, nesting,
   duplicate keys, a mapping at the top;
3. version: skills 1-3, knowledge 3; knowledge 1-2 are refused as deprecated (InstructLab dropped
   them: knowledge-SDG needs a pinned document and contexts);
4. the JSON Schema for (kind, version) from ``schemas/`` (InstructLab's constraints); and the
   bounds of knowledge ``document.patterns`` (:mod:`lab_tools.taxonomy.patterns`: count, length,
   wildcards, a pattern git wildmatch can compile, none pathological for the matcher);
5. duplicate seed questions: the same (context, question) pair twice. For skills each seed example
   is one (context, question, answer), so a repeated pair is an error; a knowledge seed example is
   one context with several questions, so the same question twice in one seed example is an error,
   and in two seed examples that quote the same context a warning (instructlab-schema accepts both,
   see its ``knowledge_valid`` test data). The same question under another context is fine;
6. word limits from InstructLab's docs: a context at most 500 words, a question plus its answer at
   most 250 words (warnings; errors with ``strict``);
7. yamllint, with InstructLab's configuration (``relaxed``, no line-length), as warnings, for
   version 2 and later files (InstructLab does not lint version 1 files either);
8. nothing else (always over the whole tree, whatever ``paths`` says): every file or folder under
   the root must be part of a leaf (a leaf folder's :data:`~lab_tools.taxonomy.leaf.LEAF_FILES`, the
   folders on the way to a leaf, or a ``*.yaml`` reported by check 1), and no entry may be a
   symlink. So git metadata (``HEAD``, ``config``, ``objects/``, a nested ``.git``), stray binaries
   and links to files outside the tree never pass review (DESIGN.md, Trust boundary). When the root
   is itself a git work tree's top (an InstructLab-style taxonomy repository), only its three top
   folders are checked: README, CI files and ``.git`` beside them belong to the repository.

Speed: each schema is compiled once per process, each file is read and parsed once with libyaml.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from lab_tools.errors import LabError, plural
from lab_tools.taxonomy.findings import Finding, render, summary  # noqa: F401  (re-exported)
from lab_tools.taxonomy.leaf import KINDS, LEAF_FILES, SYMLINK_MESSAGE
from lab_tools.taxonomy.patterns import MAX_PATTERNS, check_pattern
from lab_tools.taxonomy.safeyaml import YamlDoc, load_yaml_doc
from lab_tools.taxonomy.schema import DEPRECATED_KNOWLEDGE, SUPPORTED, family, validator

__all__ = ["Finding", "render", "summary", "validate_tree", "validate_file", "collect_files", "has_errors",
           "stray_findings",
           "CONTEXT_WORDS", "QA_WORDS", "YAMLLINT_CONFIG"]

CONTEXT_WORDS = 500  # InstructLab docs: a context of at most 500 words
QA_WORDS = 250  # InstructLab docs: a question and its answer together at most 250 words
YAMLLINT_CONFIG = "{extends: relaxed, rules: {line-length: disable}}"  # instructlab-schema's default
_SKIP_DIRS = {".git", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache"}


@functools.lru_cache(maxsize=1)
def _yamllint_conf():
    from yamllint.config import YamlLintConfig

    return YamlLintConfig(YAMLLINT_CONFIG)


def _field(path) -> str:
    return ".".join(str(p) for p in path)


def collect_files(root: str | Path, paths: list[str] | None = None) -> list[Path]:
    """The files to validate, relative to ``root``: every ``qna.yaml`` under ``root`` plus every
    other ``*.yaml``/``*.yml`` inside the three top folders (so a misnamed leaf is reported), or
    only those under ``paths`` (leaf directories or files relative to ``root``; missing ones
    are skipped: a deleted leaf has nothing to validate). Symlinks are listed, not followed."""
    root_s = os.fspath(root)
    found: list[str] = []

    def walk(abs_dir: str, rel_dir: str, top: str) -> None:
        # os.scandir on strings: pathlib and os.walk cost more than parsing a leaf
        try:
            entries = sorted(os.scandir(abs_dir), key=lambda e: e.name)
        except OSError:
            return
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            if e.is_dir(follow_symlinks=False):
                if e.name not in _SKIP_DIRS and not e.name.startswith("."):
                    walk(e.path, rel, top or e.name)
            elif e.is_symlink() and e.name != "qna.yaml" and os.path.isfile(os.path.join(e.path, "qna.yaml")):
                found.append(f"{rel}/qna.yaml")  # a symlinked directory may hide a leaf outside the root
            elif e.name == "qna.yaml" or (top in KINDS and e.name.endswith((".yaml", ".yml"))):
                found.append(rel)

    for start in ([""] if paths is None else [str(p).strip("/") for p in paths]):
        full = os.path.join(root_s, start) if start else root_s
        if os.path.isfile(full) or os.path.islink(full):
            found.append(start)
        elif os.path.isdir(full):
            walk(full, start, start.split("/", 1)[0])
    return [Path(f) for f in sorted(set(found))]


def _place_findings(root: Path, rel: Path, shown: str) -> list[Finding]:
    out = []
    full = os.path.join(root, rel)
    # collect_files never descends into a symlinked directory, so a link can only be the file
    # itself or its folder (a symlinked leaf folder); resolve only then (realpath is costly)
    # (never read through it: only the target's path is compared, and never shown)
    if os.path.islink(full) or os.path.islink(os.path.dirname(full)):
        real = os.path.realpath(full)
        real_root = _realroot(os.fspath(root))
        if os.path.commonpath([real, real_root]) != real_root:
            return [Finding(shown, 1, 1, "", "symlink leaves the taxonomy root; commit the file itself")]
        return [Finding(shown, 1, 1, "", SYMLINK_MESSAGE)]
    parts = rel.parts
    if rel.name != "qna.yaml":
        out.append(Finding(shown, 1, 1, "", f"a leaf file must be named qna.yaml, not {rel.name}"))
    if not parts or parts[0] not in KINDS or len(parts) < 3:
        out.append(Finding(shown, 1, 1, "", "a leaf must sit in a folder under one of "
                           f"{', '.join(k + '/' for k in KINDS)} (the top folder decides the kind)"))
    return out


@functools.lru_cache(maxsize=64)
def _realroot(root: str) -> str:
    return os.path.realpath(root)


_STRAY = ("not part of a leaf (a taxonomy holds only leaf folders with "
          + " and ".join(LEAF_FILES) + "); remove it")


def stray_findings(root: str | Path, checked: set[str] | None = None) -> list[Finding]:
    """Check 8: one error per file or folder under taxonomy ``root`` that is no part of a leaf, per
    symlink, and per nested ``.git``. A folder holding nothing that belongs to a leaf is one finding
    (with its file count), not one per file. Nothing is read: names and file types only.

    ``checked``: the files (relative POSIX paths) that checks 1-7 look at in this run, as
    :func:`collect_files` lists them (default: all). A ``qna.yaml`` anywhere and a ``*.yaml``/
    ``*.yml`` in the three top folders are never strays (check 1 places them); a symlink among
    ``checked`` is left to check 1, every other symlink is reported here, so each is reported once.
    """
    root_s = os.fspath(root)
    shown = str(root)
    at_repo_top = os.path.lexists(os.path.join(root_s, ".git"))
    if checked is None:
        checked = {p.as_posix() for p in collect_files(root)}
    out: list[Finding] = []

    def found(rel: str, message: str) -> None:
        out.append(Finding(os.path.join(shown, rel), 1, 1, "", message))

    def report(rel: str, files: int | None) -> None:
        count = "" if files is None else f"{files} file" + ("" if files == 1 else "s")
        found(rel, (f"folder ({count}) is " if files is not None else "file is ") + _STRAY)

    def walk(abs_dir: str, rel_dir: str, top: str) -> tuple[bool, list[tuple[str, int | None]]]:
        """``(holds something checked, strays here: (rel, files in a folder | None for a file))``."""
        try:
            entries = sorted(os.scandir(abs_dir), key=lambda e: e.name)
        except OSError:
            return True, []
        leaf_here = any(e.name == "qna.yaml" for e in entries)
        kept, strays = False, []
        for e in entries:
            rel = f"{rel_dir}/{e.name}" if rel_dir else e.name
            in_kind = (top or e.name) in KINDS
            if not rel_dir and at_repo_top and e.name not in KINDS:
                continue  # the repository's own files beside the taxonomy folders
            checked_yaml = e.name == "qna.yaml" or (in_kind and e.name.endswith((".yaml", ".yml")))
            if e.is_symlink():
                kept = True
                if rel not in checked and f"{rel}/qna.yaml" not in checked:  # else check 1 says it
                    found(rel, SYMLINK_MESSAGE)
            elif e.name == ".git":
                kept = True
                found(rel, "a nested git repository (.git) is " + _STRAY)
            elif e.is_dir(follow_symlinks=False) and (e.name in _SKIP_DIRS or e.name.startswith(".")):
                kept = True  # checks 1-7 never look inside (a leaf hidden there would pass unseen)
                report(rel, sum(len(files) for _, _, files in os.walk(e.path)))
            elif e.is_dir(follow_symlinks=False):
                sub_kept, sub_strays = walk(e.path, rel, top or e.name)
                if sub_kept:
                    kept = True
                    for srel, n in sub_strays:
                        report(srel, n)
                elif sub_strays:  # an empty folder (git cannot hold one) is left alone
                    strays.append((rel, sum(1 if n is None else n for _, n in sub_strays)))
            elif checked_yaml:
                kept = True
            elif not (leaf_here and e.name in LEAF_FILES):
                strays.append((rel, None))
        return kept or leaf_here, strays

    _, strays = walk(root_s, "", "")
    for rel, n in strays:  # the root's own strays are never folded into one finding
        report(rel, n)
    return sorted(out, key=lambda f: f.file)


def _schema_findings(doc: YamlDoc, fam: str, version: int, shown: str) -> list[Finding]:
    out = []
    for err in validator(fam, version).iter_errors(doc.data):
        path = tuple(err.absolute_path)
        line, col = doc.position(path)
        kw = err.validator
        if kw in ("unevaluatedProperties", "additionalProperties") and isinstance(err.instance, dict):
            allowed = set((err.schema.get("properties") or {}).keys())
            for key in err.instance:
                if key not in allowed:
                    kl, kc = doc.key_positions.get(path + (key,), (line, col))
                    out.append(Finding(shown, kl, kc, _field(path + (key,)),
                                       f"unknown field {key!r} (allowed here: {', '.join(sorted(allowed))})"))
            continue
        if kw == "required":
            missing = [k for k in err.validator_value if k not in err.instance]
            for key in missing:
                out.append(Finding(shown, line, col, _field(path + (key,)), "required field is missing"))
            continue
        if kw == "minItems":
            msg = f"needs at least {plural(err.validator_value, 'item')}, has {len(err.instance)}"
        elif kw == "uniqueItems":
            msg = "has duplicate items; every item must be different"
        elif kw == "minLength":
            msg = "must not be empty"
        elif kw == "type":
            msg = f"must be of type {err.validator_value}, not {_type_name(err.instance)}"
        elif kw == "const":
            msg = f"must be {err.validator_value!r}, not {err.instance!r}"
        else:
            msg = err.message[-200:]
        out.append(Finding(shown, line, col, _field(path), msg))
    return out


def _type_name(value) -> str:
    if value is None:
        return "null (an empty value)"
    return {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number"}.get(type(value), type(value).__name__)


def _extra_findings(doc: YamlDoc, fam: str, shown: str, strict: bool) -> list[Finding]:
    """Duplicate seed questions and InstructLab's word limits (checks 5 and 6)."""
    out = []
    sev = "error" if strict else "warning"
    examples = doc.data.get("seed_examples")
    if not isinstance(examples, list):
        return out
    seen: dict = {}

    def words(x) -> int:
        return len(x.split()) if isinstance(x, str) else 0

    def norm(x) -> str:
        return " ".join(x.split()).casefold() if isinstance(x, str) else ""

    def check_qa(q, a, path, ctx_key, example):
        # a duplicate is the same (context, question) pair (check 5); ``example`` is the seed example
        if isinstance(q, str) and q.strip():
            key = (ctx_key, norm(q))
            line, col = doc.position(path + ("question",))
            if key in seen:
                where, first = seen[key]
                if fam == "knowledge" and first != example:
                    out.append(Finding(shown, line, col, _field(path + ("question",)),
                                       f"same question as {where}, and seed examples {first} and {example} "
                                       "quote the same context; give each seed example its own excerpt",
                                       "warning"))
                else:
                    out.append(Finding(shown, line, col, _field(path + ("question",)),
                                       f"duplicate seed question (same as {where}); make each question different"))
            else:
                seen[key] = (f"{_field(path + ('question',))} at line {line}", example)
        n = words(q) + words(a)
        if n > QA_WORDS:
            line, col = doc.position(path)
            out.append(Finding(shown, line, col, _field(path), f"question and answer have {n} words, "
                               f"over InstructLab's limit of {QA_WORDS}; shorten them", sev))

    for i, ex in enumerate(examples):
        if not isinstance(ex, dict):
            continue
        path = ("seed_examples", i)
        ctx = ex.get("context")
        if words(ctx) > CONTEXT_WORDS:
            line, col = doc.position(path + ("context",))
            out.append(Finding(shown, line, col, _field(path + ("context",)), f"context has {words(ctx)} "
                               f"words, over InstructLab's limit of {CONTEXT_WORDS}; use a shorter excerpt", sev))
        if fam == "knowledge":
            qas = ex.get("questions_and_answers")
            for j, qa in enumerate(qas if isinstance(qas, list) else []):
                if isinstance(qa, dict):
                    check_qa(qa.get("question"), qa.get("answer"), path + ("questions_and_answers", j),
                             norm(ctx), i)
        else:
            check_qa(ex.get("question"), ex.get("answer"), path, norm(ctx), i)
    return out


def _pattern_findings(doc: YamlDoc, fam: str, shown: str) -> list[Finding]:
    """Check 4b: ``document.patterns`` within :mod:`lab_tools.taxonomy.patterns`' bounds (count,
    length, wildcards, a pattern pathspec compiles, not pathological), one finding per pattern."""
    document = doc.data.get("document") if fam == "knowledge" else None
    patterns = document.get("patterns") if isinstance(document, dict) else None
    if not isinstance(patterns, list):
        return []
    out = []
    if len(patterns) > MAX_PATTERNS:
        line, col = doc.position(("document", "patterns"))
        out.append(Finding(shown, line, col, "document.patterns", f"{len(patterns)} patterns, over the limit of "
                           f"{MAX_PATTERNS} per leaf; use folder patterns (chapters/**/*.md)"))
    for i, pat in enumerate(patterns):
        if not isinstance(pat, str) or not pat:
            continue  # the schema reports its type or emptiness
        problem = check_pattern(pat)
        if problem:
            line, col = doc.position(("document", "patterns", i))
            out.append(Finding(shown, line, col, f"document.patterns.{i}", problem))
    return out


def _lint_findings(text: str, shown: str) -> list[Finding]:
    # We already parsed the file with libyaml, so skip yamllint's own syntax pass and ask only
    # for its cosmetic problems (yamllint's API; honours `# yamllint disable` comments).
    from yamllint import linter

    out = []
    for p in linter.get_cosmetic_problems(text, _yamllint_conf(), None):
        out.append(Finding(shown, p.line, p.column, "", f"{p.desc} (yamllint {p.rule})", "warning"))
    return out


def validate_file(root: str | Path, rel: str | Path, *, strict: bool = False,
                  display_root: str | None = None) -> list[Finding]:
    """Every finding for the file ``rel`` (relative to taxonomy ``root``). Never raises for bad
    content: a file that cannot be parsed gives one error finding with the parser's line.

    ``display_root`` prefixes paths in findings (default: ``root`` as given)."""
    root = Path(root)
    rel = Path(rel)
    shown = os.path.join(str(root) if display_root is None else display_root, str(rel))
    out = _place_findings(root, rel, shown)
    if any("symlink" in f.message for f in out):
        return out
    try:
        doc = load_yaml_doc(root / rel)
    except LabError as err:
        out.append(Finding(shown, err.line or 1, 1, err.field or "", err.message))
        return out
    data = doc.data
    kind = rel.parts[0] if rel.parts and rel.parts[0] in KINDS else (
        "knowledge" if "document" in data else "compositional_skills")
    fam = family(kind)
    version = data.get("version", 1)
    line, col = doc.position(("version",))
    if not isinstance(version, int) or isinstance(version, bool):
        out.append(Finding(shown, line, col, "version", f"must be an integer (1, 2 or 3), not {version!r}"))
        return out
    if fam == "knowledge" and version in DEPRECATED_KNOWLEDGE:
        out.append(Finding(shown, line, col, "version", f"knowledge version {version} is deprecated and "
                           "no longer accepted; rewrite the leaf as version 3 (document_outline, and seed "
                           "examples each with a context and questions_and_answers)"))
        return out
    if (fam, version) not in SUPPORTED:
        want = "3" if fam == "knowledge" else "1, 2 or 3"
        out.append(Finding(shown, line, col, "version", f"unsupported version {version} for {kind} (use {want})"))
        return out
    out += _schema_findings(doc, fam, version, shown)
    out += _pattern_findings(doc, fam, shown)
    out += _extra_findings(doc, fam, shown, strict)
    if version >= 2:
        out += _lint_findings(doc.text, shown)
    return out


def validate_tree(root: str | Path, paths: list[str] | None = None, strict: bool = False) -> list[Finding]:
    """Validate every leaf under taxonomy ``root`` (or only ``paths``: leaf directories or files
    relative to ``root``, as :func:`lab_tools.taxonomy.diff.changed_leaves` returns them).

    Returns:
        findings sorted by file, line, column; errors and warnings together (``strict`` turns the
        word-limit warnings into errors). An empty list means every leaf is valid and clean.

    Raises:
        LabError: ``root`` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise LabError("taxonomy root is not a directory", file=str(root))
    files = collect_files(root, paths)
    out: list[Finding] = stray_findings(root, {p.as_posix() for p in files})
    for rel in files:
        out += validate_file(root, rel, strict=strict)
    return sorted(out, key=lambda f: (f.file, f.line, f.column, f.field))


def has_errors(findings: list[Finding]) -> bool:
    """True when any finding has severity ``error`` (the exit code 1 rule)."""
    return any(f.is_error for f in findings)

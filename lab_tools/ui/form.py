"""Form data from the page -> the ``qna.yaml`` and ``attribution.txt`` it writes, and back.

The page never sends YAML. It sends a JSON object of plain fields (:func:`form_to_leaf` names
them); each field is type- and size-checked, the leaf is built as a dict in InstructLab's key
order and written with ``yaml.safe_dump`` semantics (:class:`LeafDumper`: indented sequences,
multi-line text as literal blocks ``|``, no line folding), so an unchanged leaf written in the
project's style comes back byte for byte and an edit shows as just that edit in ``git diff``.

Empty strings are left out (a missing required field is then reported by the validator as
"required field is missing", as it would be for a hand-written file).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import yaml

from lab_tools.errors import LabError

MAX_TEXT = 20_000  # characters per text field
MAX_ITEMS = 50  # seed examples, question/answer pairs, patterns, attribution works
_WORK_KEYS = ("title", "link", "revision", "license", "creators")
_WORK_LABELS = {"title": "Title of work", "link": "Link to work", "revision": "Revision",
                "license": "License of the work", "creators": "Creator names"}
_TOP_SKILLS = ("version", "created_by", "task_description", "seed_examples", "attribution", "explicit_start")
_TOP_KNOWLEDGE = ("version", "created_by", "domain", "document_outline", "seed_examples", "document",
                  "attribution", "explicit_start")


class FormError(LabError):
    """The page sent something that is not a form of the expected shape (HTTP 400)."""


class LeafDumper(yaml.SafeDumper):
    """``yaml.SafeDumper`` that indents block sequences under their key (the taxonomy's style)
    and writes every string containing a newline as a literal block scalar."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _str_representer(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


LeafDumper.add_representer(str, _str_representer)


def dump_yaml(data: dict, explicit_start: bool = True) -> str:
    """``data`` as YAML text in the taxonomy's style (see :class:`LeafDumper`), keys in dict order."""
    return yaml.dump(data, Dumper=LeafDumper, sort_keys=False, explicit_start=explicit_start,
                     allow_unicode=True, width=10**9, indent=2)


def _text(value, where: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormError(f"{where} must be text")
    if len(value) > MAX_TEXT:
        raise FormError(f"{where} is longer than {MAX_TEXT} characters")
    return value.replace("\r\n", "\n").replace("\r", "\n")


def _items(value, where: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise FormError(f"{where} must be a list")
    if len(value) > MAX_ITEMS:
        raise FormError(f"{where} has more than {MAX_ITEMS} items")
    return value


def _obj(value, where: str, keys) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise FormError(f"{where} must be an object")
    unknown = sorted(set(value) - set(keys))
    if unknown:
        raise FormError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    return value


def _put(out: dict, key: str, value: str) -> None:
    if value.strip():
        out[key] = value


@dataclass
class LeafForm:
    """A checked form: ``data`` (the ``qna.yaml`` mapping, in key order), ``works`` (attribution
    entries, dicts with :data:`_WORK_KEYS`) and ``explicit_start`` (write the ``---`` line)."""
    data: dict
    works: list[dict] = field(default_factory=list)
    explicit_start: bool = True

    def yaml_text(self) -> str:
        """The ``qna.yaml`` text this form writes."""
        return dump_yaml(self.data, self.explicit_start)

    def attribution_text(self) -> str:
        """The ``attribution.txt`` text this form writes (one ``Key: value`` line per filled field,
        a blank line between works), or "" when no work has any field filled."""
        blocks = []
        for w in self.works:
            lines = [f"{_WORK_LABELS[k]}: {w[k]}" for k in _WORK_KEYS if w.get(k)]
            if lines:
                blocks.append("\n".join(lines) + "\n")
        return "\n".join(blocks)


def form_to_leaf(kind: str, form) -> LeafForm:
    """Check the page's ``form`` for a leaf of ``kind`` and build the leaf from it.

    ``form`` fields: ``version`` (int, default 3), ``created_by``, and for skills
    ``task_description`` and ``seed_examples: [{context?, question, answer}]``; for knowledge
    ``domain``, ``document_outline``, ``document: {repo, commit, patterns: [..]}`` and
    ``seed_examples: [{context, questions_and_answers: [{question, answer}]}]``;
    ``attribution: [{title, link, revision, license, creators}]``; ``explicit_start`` (bool).

    Raises:
        FormError: a field of the wrong type, an unknown field, text over :data:`MAX_TEXT`
        characters, a list over :data:`MAX_ITEMS` items.
    """
    knowledge = kind == "knowledge"
    form = _obj(form, "form", _TOP_KNOWLEDGE if knowledge else _TOP_SKILLS)
    version = form.get("version", 3)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 3:
        raise FormError("version must be 1, 2 or 3")
    data: dict = {"version": version}
    _put(data, "created_by", _text(form.get("created_by"), "created_by"))
    if knowledge:
        _put(data, "domain", _text(form.get("domain"), "domain"))
        _put(data, "document_outline", _text(form.get("document_outline"), "document_outline"))
    else:
        _put(data, "task_description", _text(form.get("task_description"), "task_description"))
    examples = []
    for i, ex in enumerate(_items(form.get("seed_examples"), "seed_examples")):
        where = f"seed_examples.{i}"
        out: dict = {}
        if knowledge:
            ex = _obj(ex, where, ("context", "questions_and_answers"))
            _put(out, "context", _text(ex.get("context"), f"{where}.context"))
            qas = []
            for j, qa in enumerate(_items(ex.get("questions_and_answers"), f"{where}.questions_and_answers")):
                qa = _obj(qa, f"{where}.questions_and_answers.{j}", ("question", "answer"))
                pair: dict = {}
                _put(pair, "question", _text(qa.get("question"), f"{where}.questions_and_answers.{j}.question"))
                _put(pair, "answer", _text(qa.get("answer"), f"{where}.questions_and_answers.{j}.answer"))
                qas.append(pair)
            out["questions_and_answers"] = qas
        else:
            ex = _obj(ex, where, ("context", "question", "answer"))
            for key in ("context", "question", "answer"):
                _put(out, key, _text(ex.get(key), f"{where}.{key}"))
        examples.append(out)
    data["seed_examples"] = examples
    if knowledge:
        doc = _obj(form.get("document"), "document", ("repo", "commit", "patterns"))
        d: dict = {}
        _put(d, "repo", _text(doc.get("repo"), "document.repo"))
        _put(d, "commit", _text(doc.get("commit"), "document.commit"))
        patterns = [_text(p, f"document.patterns.{k}") for k, p in enumerate(_items(doc.get("patterns"), "document.patterns"))]
        d["patterns"] = [p for p in patterns if p.strip()]
        data["document"] = d
    works = []
    for k, w in enumerate(_items(form.get("attribution"), "attribution")):
        w = _obj(w, f"attribution.{k}", _WORK_KEYS)
        # one line per value in attribution.txt: newlines inside a value are folded to spaces
        works.append({key: " ".join(_text(w.get(key), f"attribution.{k}.{key}").split()) for key in _WORK_KEYS})
    start = form.get("explicit_start", True)
    if not isinstance(start, bool):
        raise FormError("explicit_start must be true or false")
    return LeafForm(data=data, works=works, explicit_start=start)


def _as_text(value) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def leaf_to_form(kind: str, data: dict, text: str, works: list) -> tuple[dict, list[str]]:
    """The form for an existing leaf: ``(form, dropped)`` where ``dropped`` lists the dotted
    fields of ``data`` the form has no place for (saving from the page removes them).

    ``data``: the parsed ``qna.yaml``; ``text``: its text (for ``explicit_start``); ``works``:
    :class:`lab_tools.taxonomy.licenses.Attribution` entries of its ``attribution.txt``."""
    knowledge = kind == "knowledge"
    top = _TOP_KNOWLEDGE if knowledge else _TOP_SKILLS
    dropped = [str(k) for k in data if k not in top or k in ("attribution", "explicit_start")]
    version = data.get("version", 1)
    form: dict = {"version": version if isinstance(version, int) and not isinstance(version, bool) else 3,
                  "created_by": _as_text(data.get("created_by"))}
    if knowledge:
        form["domain"] = _as_text(data.get("domain"))
        form["document_outline"] = _as_text(data.get("document_outline"))
        doc = data.get("document") if isinstance(data.get("document"), dict) else {}
        pats = doc.get("patterns") if isinstance(doc.get("patterns"), list) else []
        form["document"] = {"repo": _as_text(doc.get("repo")), "commit": _as_text(doc.get("commit")),
                            "patterns": [_as_text(p) for p in pats]}
    else:
        form["task_description"] = _as_text(data.get("task_description"))
    examples = []
    raw = data.get("seed_examples") if isinstance(data.get("seed_examples"), list) else []
    for i, ex in enumerate(raw):
        if not isinstance(ex, dict):
            dropped.append(f"seed_examples.{i}")
            continue
        keys = ("context", "questions_and_answers") if knowledge else ("context", "question", "answer")
        dropped += [f"seed_examples.{i}.{k}" for k in ex if k not in keys]
        if knowledge:
            qas = ex.get("questions_and_answers") if isinstance(ex.get("questions_and_answers"), list) else []
            examples.append({"context": _as_text(ex.get("context")), "questions_and_answers": [
                {"question": _as_text(q.get("question")), "answer": _as_text(q.get("answer"))}
                for q in qas if isinstance(q, dict)]})
        else:
            examples.append({k: _as_text(ex.get(k)) for k in keys})
    form["seed_examples"] = examples
    form["attribution"] = [{k: _as_text(getattr(w, k, "")) for k in _WORK_KEYS} for w in works]
    form["explicit_start"] = text.lstrip().startswith("---")
    return form, dropped


def blank_form(kind: str, min_examples: int, min_qas: int = 3) -> dict:
    """An empty form for a new leaf of ``kind`` with ``min_examples`` empty seed examples
    (``min_qas`` question/answer pairs each for knowledge) and one empty attribution work."""
    if kind == "knowledge":
        form = {"version": 3, "created_by": "", "domain": "", "document_outline": "",
                "document": {"repo": "", "commit": "", "patterns": [""]},
                "seed_examples": [{"context": "", "questions_and_answers": [
                    {"question": "", "answer": ""} for _ in range(min_qas)]} for _ in range(min_examples)]}
    else:
        form = {"version": 3, "created_by": "", "task_description": "",
                "seed_examples": [{"context": "", "question": "", "answer": ""} for _ in range(min_examples)]}
    form["attribution"] = [{k: "" for k in _WORK_KEYS}]
    form["explicit_start"] = True
    return form


def attribution_label_field(label: str) -> str:
    """The form field (``title``, ``license``, ...) for an ``attribution.txt`` key as the
    license check names it (``License of the work``); "" when unknown."""
    return next((k for k, v in _WORK_LABELS.items() if v == label), "")

"""The output of ``lab generate`` as one Hugging Face dataset: a shared sample schema and the card.

**One schema.** ``kt1.jsonl``, ``kt2.jsonl`` and ``st.jsonl`` hold ``{"messages", "metadata"}``
rows whose ``metadata`` has the same fields, in the same order, for every kind of leaf
(:data:`METADATA_FIELDS`, :func:`sample_metadata`), so that
``datasets.load_dataset("json", data_files={"kt1": ..., "kt2": ..., "st": ...})`` gives one
``DatasetDict``. ``datasets`` takes the features of the first split and casts the others to them,
and a field that is null in every row of the first split has the type null, to which no typed
value casts; so a field that only one kind has cannot stay null in the other kind's rows of KT/1:

- ``persona``: the system prompt the response was generated under: ``precise`` or ``creative``
  (skills, LAB 3.2.1) or ``knowledge`` (knowledge-SDG's question-and-answer prompt);
- ``source``: the document chunk ``{"path", "commit", "chunk"}`` of a knowledge sample, null for
  skills (KT/1 holds only knowledge, so its type is always known);
- ``scores``: a list of ``{"name", "value"}`` (value a float, null when the check did not run:
  ``generate.model_judges: false``), one entry per check that ran on the sample's kind:
  ``rules``, ``reward`` (reward-model scorer), ``question_ok`` and ``pair`` (skills: instruction and
  pair evaluation; a pass is 1.0), ``faithful`` and ``self_contained`` (knowledge). A mapping per
  kind would give KT/1 null columns for the skills' checks; :func:`scores_of` gives it back.

``score`` (the ranking score) and ``response_tokens`` are numbers in every row; ``scorer`` names
what ranked the sample. The SDG cache keeps its own shape; the schema is applied when the phase
files are written (:func:`lab_tools.sdg.phases.write_phase_datasets`), so it changes no cache key.

**One card.** ``dataset_card.json`` (machine-readable, read by the feedback stages and the release)
and ``README.md``, a Hub dataset card written with ``huggingface_hub.DatasetCard`` /
``DatasetCardData`` (:func:`write_readme`): licenses of the documents and of the teacher's output,
``configs`` with their splits and files (``sft``: kt1/kt2/st; ``preference``: ``comparisons.jsonl``,
TRL's conversational preference format; ``self_play``: ``selfplay.jsonl``, conversational),
task categories, size category, the source taxonomy's commit. Each stage that adds a file sets
its block of ``dataset_card.json`` and its section of the README (:func:`set_card_section`); the
front matter is recomputed from the files present each time. Both files are free of
credentials (:func:`lab_tools.redact.strip_credentials_data`); contributor text in the README is
escaped (:mod:`lab_tools.markdown`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab_tools.atomic import write_json_atomic, write_text_atomic
from lab_tools.errors import LabError
from lab_tools.jsonl import iter_jsonl
from lab_tools.markdown import code
from lab_tools.models import EMBEDDED_LICENSE
from lab_tools.redact import strip_credentials, strip_credentials_data
from lab_tools.taxonomy.provenance import document_licenses, taxonomy_commit

CARD_JSON = "dataset_card.json"
CARD_README = "README.md"
PHASE_SPLITS = ("kt1", "kt2", "st")
COMPARISONS_FILE = "comparisons.jsonl"
SELF_PLAY_FILE = "selfplay.jsonl"
#: every phase sample's ``metadata`` fields, in this order (module docstring)
METADATA_FIELDS = ("leaf", "leaf_hash", "kind", "phase", "teacher", "judge", "prompt_version", "id",
                   "response_tokens", "persona", "source", "score", "scorer", "scores")
SOURCE_FIELDS = ("path", "commit", "chunk")
KNOWLEDGE_PERSONA = "knowledge"
# Hub size categories (huggingface.co/docs/hub/datasets-cards): upper bounds and names
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))
_SPDX_ID = re.compile(r"[A-Za-z0-9.+\-]+")


def _number(value) -> float | None:
    """A score as a float (a boolean check as 1.0 / 0.0); None stays None."""
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def scores_of(metadata: dict) -> dict:
    """``{check: value}`` of a sample's ``metadata.scores``, whether it is the phase files' list of
    ``{"name", "value"}`` or the SDG cache's mapping (empty when absent)."""
    scores = (metadata or {}).get("scores")
    if isinstance(scores, dict):
        return dict(scores)
    if isinstance(scores, list):
        return {str(e.get("name")): e.get("value") for e in scores if isinstance(e, dict)}
    return {}


def sample_metadata(metadata: dict) -> dict:
    """``metadata`` of one generated sample in the shared phase-file schema (module docstring):
    every field of :data:`METADATA_FIELDS` present (null when absent), ``source`` with its three
    fields or null, ``scores`` as a list of ``{"name", "value"}`` floats, ``score`` a float,
    ``response_tokens`` an int; any other key is kept after them."""
    md = dict(metadata or {})
    out = {k: md.get(k) for k in METADATA_FIELDS}
    if out["persona"] is None and md.get("kind") == "knowledge":
        out["persona"] = KNOWLEDGE_PERSONA
    src = md.get("source")
    out["source"] = {k: src.get(k) for k in SOURCE_FIELDS} if isinstance(src, dict) else None
    out["response_tokens"] = int(md.get("response_tokens") or 0)
    out["score"] = _number(md.get("score"))
    out["scores"] = [{"name": str(k), "value": _number(v)} for k, v in scores_of(md).items()]
    return {**out, **{k: v for k, v in md.items() if k not in out}}


def read_card_json(data_dir: str | Path) -> dict:
    """``dataset_card.json`` of ``data_dir`` ({} when there is none).

    Raises:
        LabError: the file exists but is not a JSON object (file named)."""
    path = Path(data_dir) / CARD_JSON
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabError(f"not readable JSON: {exc}", file=str(path)) from None
    if not isinstance(card, dict):
        raise LabError("expected a JSON object (the dataset card)", file=str(path))
    return card


def write_card_json(data_dir: str | Path, card: dict) -> Path:
    """Write ``dataset_card.json`` with credentials stripped from every string (teacher specs)."""
    return write_json_atomic(Path(data_dir) / CARD_JSON, strip_credentials_data(card), indent=2, newline=True)


def source_facts(root: str | Path, teacher_spec: str, teacher_license: str | None) -> dict:
    """What the card says about where the data came from: ``taxonomy`` (commit, dirty, branch of
    the repository holding ``root``) and ``licenses``: ``documents`` (per knowledge leaf: its
    SPDX expression, or the license as written when unknown) and ``teacher`` (``teacher_license``,
    else the embedded model's for ``transformers:embedded``, else None: unknown terms)."""
    spec = str(teacher_spec)
    teacher = teacher_license or (EMBEDDED_LICENSE if spec in ("transformers:embedded", "transformers:") else None)
    docs = {d["leaf"]: d.get("spdx") or d.get("license") for d in document_licenses(root)}
    return {"taxonomy": taxonomy_commit(root), "licenses": {"documents": docs, "teacher": teacher}}


def hub_licenses(card: dict) -> list[str]:
    """The card's ``license`` list: the Hub's lower-case ids of every SPDX id in the documents'
    and the teacher's licenses (and the comparison configurations' declared licenses);
    ``other`` for any license that is missing or not an SPDX expression."""
    lic = card.get("licenses") or {}
    exprs = list((lic.get("documents") or {}).values()) + [lic.get("teacher")]
    for entry in (card.get("feedback") or {}).get("teacher_licenses") or []:
        exprs.append(str(entry).rpartition(": ")[2])
    out: set[str] = set()
    for expr in exprs:
        ids = [t for t in re.split(r"\s+(?:AND|OR|WITH)\s+|[()]", str(expr or "")) if t.strip()]
        if not expr or not ids or not all(_SPDX_ID.fullmatch(t.strip()) for t in ids):
            out.add("other")
            continue
        out.update(t.strip().lower() for t in ids)
    return sorted(out) or ["other"]


def _rows(path: Path) -> int:
    return sum(1 for _ in iter_jsonl(path)) if path.is_file() else 0


def size_category(n: int) -> str:
    """The Hub's size category of a dataset of ``n`` rows (``n<1K``, ``1K<n<10K``, ...)."""
    for bound, name in _SIZES:
        if n < bound:
            return name
    return "n>1T"


def card_data(data_dir: str | Path, card: dict):
    """The ``huggingface_hub.DatasetCardData`` of the dataset in ``data_dir`` (module docstring)."""
    from huggingface_hub import DatasetCardData

    d = Path(data_dir)
    configs = [{"config_name": "sft", "default": True,
                "data_files": [{"split": p, "path": f"{p}.jsonl"} for p in PHASE_SPLITS if (d / f"{p}.jsonl").is_file()]}]
    tags = ["synthetic", "sft", "lab", "instructlab", "taxonomy"]
    rows = sum(_rows(d / f"{p}.jsonl") for p in PHASE_SPLITS)
    if (d / COMPARISONS_FILE).is_file():
        configs.append({"config_name": "preference", "data_files": [{"split": "train", "path": COMPARISONS_FILE}]})
        tags += ["preference", "dpo", "almost"]
        rows += _rows(d / COMPARISONS_FILE)
    if (d / SELF_PLAY_FILE).is_file():
        configs.append({"config_name": "self_play", "data_files": [{"split": "train", "path": SELF_PLAY_FILE}]})
        tags.append("self-play")
        rows += _rows(d / SELF_PLAY_FILE)
    kinds = {leaf.get("kind") for leaf in card.get("leaves") or []}
    tax = card.get("taxonomy") or {}
    return DatasetCardData(
        pretty_name="lab-tools synthetic data from a taxonomy (LAB)", license=hub_licenses(card),
        task_categories=["text-generation"] + (["question-answering"] if "knowledge" in kinds else []),
        size_categories=[size_category(rows)], tags=tags, configs=configs,
        source_taxonomy={"commit": tax.get("commit"), "dirty": tax.get("dirty"), "branch": tax.get("branch")},
        teacher=strip_credentials(card.get("teacher")), judge=strip_credentials(card.get("judge")),
        prompt_version=card.get("prompt_version"))


def _licenses_md(card: dict) -> str:
    lic = card.get("licenses") or {}
    docs = lic.get("documents") or {}
    lines = ["## Licenses", "",
             f"Teacher output: {code(lic.get('teacher')) if lic.get('teacher') else 'unknown terms (set generate.teacher_license)'}."]
    if docs:
        lines += ["", "| knowledge leaf | document license |", "|---|---|"]
        lines += [f"| {code(leaf)} | {code(spdx) if spdx else 'missing'} |" for leaf, spdx in sorted(docs.items())]
    return "\n".join(lines) + "\n"


def _loading_md(card_data_) -> str:
    files = {c["config_name"]: c["data_files"] for c in card_data_.configs}
    sft = ", ".join(f'"{f["split"]}": "{f["path"]}"' for f in files.get("sft", []))
    return ("## Loading\n\n```python\nfrom datasets import load_dataset\n"
            f"sft = load_dataset(\"json\", data_files={{{sft}}})  # a DatasetDict, one schema\n"
            + (f"pref = load_dataset(\"json\", data_files=\"{COMPARISONS_FILE}\")  # TRL: prompt / chosen / rejected\n"
               if "preference" in files else "")
            + (f"self_play = load_dataset(\"json\", data_files=\"{SELF_PLAY_FILE}\")  # conversational: messages\n"
               if "self_play" in files else "")
            + "```\n")


def _section_bounds(body: str, heading: str) -> tuple[int, int] | None:
    """Start and end of the ``## heading`` section of ``body`` (up to the next ``## `` heading)."""
    m = re.search(rf"(?m)^## {re.escape(heading)}[ \t]*$", body)
    if m is None:
        return None
    nxt = re.search(r"(?m)^## ", body[m.end():])
    return m.start(), m.end() + nxt.start() if nxt else len(body)


def _with_section(body: str, heading: str, section_md: str) -> str:
    """``body`` with its ``## heading`` section replaced by ``section_md`` (appended when absent)."""
    section = section_md.rstrip("\n") + "\n\n"
    where = _section_bounds(body, heading)
    if where is None:
        return body.rstrip("\n") + "\n\n" + section
    return body[:where[0]] + section + body[where[1]:].lstrip("\n")


def _body_of(data_dir: Path) -> str:
    path = data_dir / CARD_README
    if not path.is_file():
        return "# Dataset card\n"
    from huggingface_hub import DatasetCard

    return DatasetCard.load(path).text


def write_readme(data_dir: str | Path, body: str) -> Path:
    """``README.md`` of ``data_dir``: the front matter of :func:`card_data` (from
    ``dataset_card.json`` and the files present) above ``body`` (markdown), with its
    ``## Licenses`` and ``## Loading`` sections brought up to date."""
    from huggingface_hub import DatasetCard

    d = Path(data_dir)
    card = read_card_json(d)
    data = card_data(d, card)
    body = _with_section(body, "Licenses", _licenses_md(card))
    body = _with_section(body, "Loading", _loading_md(data))
    hub = DatasetCard(f"---\n{data.to_yaml()}\n---\n\n{body.strip()}\n")
    return write_text_atomic(d / CARD_README, str(hub))


def write_dataset_card(data_dir: str | Path, card: dict, body: str) -> tuple[Path, Path]:
    """The SDG stage's card: ``dataset_card.json`` = ``card``, ``README.md`` = ``body`` under the
    Hub front matter. Returns both paths."""
    return write_card_json(data_dir, card), write_readme(data_dir, body)


def set_card_section(data_dir: str | Path, key: str, block: dict, heading: str, section_md: str) -> None:
    """A later stage's part of the card: ``dataset_card.json[key] = block`` and the README's
    ``## heading`` section replaced by ``section_md`` (front matter recomputed: configs, size)."""
    d = Path(data_dir)
    card = read_card_json(d)
    card[key] = block
    write_card_json(d, card)
    write_readme(d, _with_section(_body_of(d), heading, section_md))

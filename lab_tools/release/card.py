"""The model card (``README.md`` of a release), rendered from ``release.json``.

Follows the Hugging Face model card layout (YAML front matter, then markdown sections). Every
fact comes from ``release.json`` so the card and the machine-readable file cannot disagree:
taxonomy commit, leaves with their sample counts per phase, the license of every knowledge
document, teacher and judge, preset and hyper-parameters of each phase (LAB 3.3, table 2), the
evaluation before and after, the loss plot.
"""

from __future__ import annotations

import json

import yaml

from lab_tools.errors import plural
from lab_tools.eval.report import format_change, format_total_with_interval
from lab_tools.eval.stats import format_estimate
from lab_tools.feedback.report import card_lines

_BASE_MODELS = {"embedded": "HuggingFaceTB/SmolLM2-135M-Instruct"}


def _cell(value) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _scalars(d: dict) -> dict:
    """Flatten a nested mapping into ``a.b: scalar`` pairs (lists of scalars kept; others summarized)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            for k2, v2 in _scalars(v).items():
                out[f"{k}.{k2}"] = v2
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            out[k] = plural(len(v), "entry")
        else:
            out[k] = v
    return out


PHASE_NAMES = {"kt1": "KT/1", "kt2": "KT/2", "st": "ST"}


def _training_section(info: dict) -> list[str]:
    """Preset settings shared by all phases, then one column per phase: its hyper-parameters
    (LAB table 2) and what happened (samples incl. replay, steps, checkpoint selection)."""
    training = info.get("training") or {}
    hp = training.get("hyperparameters") or {}
    phases = training.get("phases") or {}
    lines = ["## Training", "",
             f"Phased training (LAB 3.3: KT/1 → KT/2 → ST with replay buffers), preset "
             f"`{_cell(info.get('preset'))}`, student `{_cell(info.get('student'))}`. "
             f"Selected checkpoint: `{_cell(info.get('selected_checkpoint'))}`.", ""]
    shared = _scalars({k: v for k, v in hp.items() if k not in PHASE_NAMES})
    if shared:
        lines += ["| preset setting | value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in sorted(shared.items())]
        lines.append("")
    names = [p for p in PHASE_NAMES if p in hp or p in phases]
    if not names:
        return lines
    rows: dict[str, dict[str, object]] = {}
    notes: list[str] = []
    for p in names:
        for k, v in _scalars(hp.get(p) or {}).items():
            rows.setdefault(k, {})[p] = v
        entry = phases.get(p) or {}
        if entry.get("skipped"):
            rows.setdefault("skipped", {})[p] = entry["skipped"]
        for k, v in _scalars(entry.get("samples") or {}).items():
            rows.setdefault(f"samples: {k}", {})[p] = v
        for k in ("steps", "dropped_too_long", "selection", "selected"):
            if k in entry:
                v = entry[k]
                if k == "selected" and isinstance(v, str):  # phase/epoch-N, not one machine's path
                    v = "/".join(str(v).rstrip("/").split("/")[-2:])
                rows.setdefault(k, {})[p] = v
        decision = entry.get("decision") or {}
        scores = decision.get("candidates") or entry.get("scores") or {}
        if isinstance(scores, dict) and scores:
            rows.setdefault("checkpoint scores", {})[p] = "; ".join(
                f"{str(c).rstrip('/').rsplit('/', 1)[-1]}: {format_estimate(v) if isinstance(v, dict) else _cell(v)}"
                for c, v in scores.items())
        if decision.get("verdict"):
            rows.setdefault("decision", {})[p] = decision["verdict"]
        judge = decision.get("judge") or {}
        if judge and not judge.get("used"):
            notes.append(f"{PHASE_NAMES[p]} selection used no judge: {judge.get('reason')}.")
    lines += ["| | " + " | ".join(PHASE_NAMES[p] for p in names) + " |",
              "|---|" + "---|" * len(names)]
    for k, per in rows.items():
        lines.append(f"| {k} | " + " | ".join(_cell(per.get(p)) for p in names) + " |")
    lines += ["", "Checkpoints were chosen on the *selection* part of the held-out items (every leaf in turn); "
              "scores are value [95% interval] (n items). A later checkpoint replaced an earlier one only when "
              "its gain's interval lay above 0 (LAB: avoid overtraining); the evaluation below uses the "
              "*test* part.", ""]
    if notes:
        lines += [f"- {n}" for n in notes] + [""]
    return lines


def _eval_section(info: dict, branch_md: str | None) -> list[str]:
    ev = info.get("evaluation")
    lines = ["## Evaluation", ""]
    if not ev:
        return lines + ["Not evaluated.", ""]
    lines += ["Knowledge: multiple-choice log-likelihood accuracy (MMLU style) on seed questions held "
              "out from the knowledge leaves. Skills: the judge's 1-10 rating (MT-Bench single-answer "
              f"grading) of answers to held-out skill prompts; judge `{_cell(ev.get('judge'))}`; and, needing "
              "no judge, the mean log-probability per token (nats) of the held-out seed answers "
              "(`reference`, higher is better). Items: the held-out *test* part (never the ones a checkpoint "
              "was chosen on). Figures: value [95% interval]; the change is the mean per-item difference with "
              "its paired-bootstrap interval, called improved / regressed only when the interval excludes 0; "
              "an accuracy whose interval is wider than +-15 points is too small to decide.", "",
              "| score | items | before (base) | after (trained) | change and verdict |", "|---|---:|---|---|---|"]
    for name, tot in (ev.get("totals") or {}).items():
        lines.append(f"| {name} | {_cell(tot.get('n'))} | {format_total_with_interval(name, tot, 'base')} | "
                     f"{format_total_with_interval(name, tot, 'trained')} | {format_change(name, tot)} |")
    lines.append("")
    for key in ("judge_refused", "judge_unable"):
        if ev.get(key):
            lines += [f"Judge not used: {_cell(ev[key])}.", ""]
    if branch_md:
        body = branch_md.split("\n", 2)[-1] if branch_md.startswith("#") else branch_md
        lines += ["### Per leaf (branch report)", "", body.strip(), ""]
    return lines


def render_card(info: dict, branch_md: str | None = None) -> str:
    """Markdown model card for the release described by ``info`` (the ``release.json`` dict)."""
    tax = info.get("taxonomy") or {}
    student = info.get("student")
    front = {"library_name": "transformers", "pipeline_tag": "text-generation",
             "tags": ["lab", "instructlab", "synthetic-data", "taxonomy"]}
    if student in _BASE_MODELS:
        front["base_model"] = _BASE_MODELS[student]
    licenses = sorted({d["spdx"] or d["license"] for d in info.get("documents", []) if d.get("spdx") or d.get("license")})
    commit = tax.get("commit") or "unknown (not a git repository)"
    dirty = " (with uncommitted changes)" if tax.get("dirty") else ""
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             "# Model card", "",
             "Trained with lab-tools from a Git-native taxonomy following LAB (Large-scale Alignment for "
             "chatBots, arXiv 2403.01081): taxonomy-driven synthetic data generation (3.2) and phased "
             "training (3.3).", "",
             "## Provenance", "",
             f"- Taxonomy commit: `{commit}`{dirty}" + (f" on branch `{tax['branch']}`" if tax.get("branch") else ""),
             f"- Taxonomy root: `{_cell(tax.get('root'))}`",
             f"- Teacher: `{_cell(info.get('teacher'))}`",
             f"- Judge: `{_cell(info.get('judge'))}`",
             f"- Student (base model): `{_cell(student)}`",
             f"- Samples: KT/1 {info['samples']['kt1']}, KT/2 {info['samples']['kt2']}, ST {info['samples']['st']}",
             f"- Released: {info.get('released')}", "",
             "## Leaves and sample counts", "",
             "| leaf | kind | content hash | KT/1 | KT/2 | ST | total |", "|---|---|---|---:|---:|---:|---:|"]
    for leaf in info.get("leaves", []):
        s = leaf["samples"]
        lines.append(f"| `{leaf['path']}` | {leaf['kind']} | `{leaf['hash'][:12]}` | {s['kt1']} | {s['kt2']} | "
                     f"{s['st']} | {s['total']} |")
    lines += ["", "## Knowledge documents and licenses", ""]
    docs = info.get("documents") or []
    if docs:
        lines += ["| leaf | document (repo @ commit, patterns) | title | license | creators | link |",
                  "|---|---|---|---|---|---|"]
        for d in docs:
            where = f"{_cell(d.get('repo'))} @ `{_cell(d.get('commit'))}` {_cell(d.get('patterns'))}"
            lines.append(f"| `{d['leaf']}` | {where} | {_cell(d.get('title'))} | {_cell(d.get('spdx') or d.get('license'))} | "
                         f"{_cell(d.get('creators'))} | {_cell(d.get('link'))} |")
        lines += ["", f"Licenses of the training documents: {', '.join(licenses) or '–'}.", ""]
    else:
        lines += ["No knowledge leaves.", ""]
    lines += _training_section(info)
    lines += _eval_section(info, branch_md)
    lines += card_lines(info)  # synthetic comparisons and the reward model, when feedback ran
    if "loss.png" in info.get("files", []):
        lines += ["## Loss", "", "![training loss per phase](loss.png)", ""]
    lines += ["## Use", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              "tok = AutoTokenizer.from_pretrained(\"path/to/this/dir\")",
              "model = AutoModelForCausalLM.from_pretrained(\"path/to/this/dir\")",
              "```", "", "Or `lab chat --model path/to/this/dir`.", "",
              "## Files", "",
              "Every file is listed in `SHA256SUMS`; check with `sha256sum -c SHA256SUMS`. "
              "`release.json` holds this card's facts in machine-readable form.", "",
              "<details><summary>model file checksums</summary>", "", "```json",
              json.dumps(info.get("model_files", {}), indent=1), "```", "", "</details>", ""]
    return "\n".join(lines)

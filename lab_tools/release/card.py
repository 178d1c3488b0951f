"""The model card (``README.md`` of a release), rendered from ``release.json``.

A Hugging Face Hub model card written with ``huggingface_hub.ModelCard`` / ``ModelCardData``
(:func:`card_data`): ``license`` and ``base_model`` (of the base model; for a local student from
the training manifest, the student's own card or its ``config.json``), ``model-index`` with every
evaluation total (task, metric, value; n and the 95% interval in the metric's ``args``), tags.
Contributor text (leaf paths, attribution titles, creators and links, document repos and
patterns) is escaped by :mod:`lab_tools.markdown`, the rule of the bot's comment; links only when
``http(s)``, shown as text. ``release.yml`` publishes the card's body (no front matter) as the
release notes. Every fact comes from ``release.json`` so the card and the machine-readable file cannot disagree:
taxonomy commit, leaves with their sample counts per phase, the license of every knowledge
document, teacher and judge, preset and hyper-parameters of each phase (LAB 3.3, table 2), the
evaluation before and after, the loss plot.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab_tools.errors import plural
from lab_tools.eval.report import format_change, format_total_with_interval
from lab_tools.eval.stats import format_estimate
from lab_tools.feedback.report import card_lines
from lab_tools.markdown import code, inline, link_text
from lab_tools.models import EMBEDDED_LICENSE, EMBEDDED_REPO

_HUB_ID = re.compile(r"[A-Za-z0-9][\w.\-]*/[\w.\-]+")
# model-index entries of the evaluation totals: (metric type, pretty name)
_METRICS = {"knowledge": ("accuracy", "multiple-choice accuracy (length-normalized log-likelihood)"),
            "judge": ("judge_score", "judge rating 1-10 (MT-Bench single-answer grading)"),
            "reference": ("log_likelihood", "mean log-probability per token of the seed answers (nats)")}


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


def _uncredited_lines(info: dict) -> list[str]:
    """The samples no leaf is credited with: generated from another version of the leaf than the
    one the provenance records (``metadata.leaf_hash`` differs: edited after generation), from
    :func:`lab_tools.release.binding.credit_samples`."""
    rows = info.get("uncredited_samples") or []
    if not rows:
        return []
    out = ["", "Not credited above: samples generated from another version of a leaf than the one "
           "recorded (the leaf was edited after generation), so they are not counted for it:", ""]
    for row in rows:
        versions = ", ".join(f"{n} from {code(str(h)[:12])}" for h, n in row["samples"].items())
        out.append(f"- {code(row['leaf'])} (recorded {code(str(row.get('hash'))[:12])}): {versions}")
    return out


def hub_base_model(student, manifest_base: str | None = None, model_dir: str | Path | None = None) -> dict:
    """``{"base_model", "license"}`` of the model a release was trained from, for the card's
    front matter: the embedded student is SmolLM2 (its Hub id and license); a local student is
    named by a Hub id found, in this order, in ``student`` itself, the training manifest's
    ``base_model`` (``manifest_base``), the student's own model card (``README.md`` front
    matter: ``base_model``, else the student is taken as the base and its ``license`` read), or
    the ``_name_or_path`` of the released model's ``config.json`` (``model_dir``); a local path is
    never given as a Hub id. ``base_model`` None when none is found; ``license`` ``other`` when
    the base model's license is unknown."""
    if student in ("embedded", None, "") and not manifest_base:
        student = "embedded"
    if student == "embedded":
        return {"base_model": EMBEDDED_REPO, "license": EMBEDDED_LICENSE}

    def hub_id(value) -> str | None:
        value = str(value or "").strip()
        return value if _HUB_ID.fullmatch(value) and not Path(value).expanduser().exists() else None

    base, license_ = hub_id(student) or hub_id(manifest_base), None
    for folder in (student, manifest_base):
        card_path = Path(str(folder or "")).expanduser() / "README.md"
        if folder and card_path.is_file():
            from huggingface_hub import ModelCard

            try:
                data = ModelCard.load(card_path).data
            except (ValueError, OSError):
                continue
            own = data.base_model[0] if isinstance(data.base_model, list) and data.base_model else data.base_model
            base = base or hub_id(own)
            license_ = license_ or (str(data.license) if data.license else None)
            break
    config = Path(str(model_dir or "")) / "config.json"
    if base is None and model_dir and config.is_file():
        try:
            base = hub_id(json.loads(config.read_text(encoding="utf-8")).get("_name_or_path"))
        except (OSError, ValueError, AttributeError):
            base = None
    return {"base_model": base, "license": license_ or "other"}


def eval_results(info: dict) -> list:
    """``huggingface_hub.EvalResult`` of every evaluation total of the release (the trained
    model on the held-out *test* items): metric value, with ``n`` and the 95% interval
    (``interval_low``/``interval_high``; Wilson for accuracies, bootstrap for means) and the
    base model's value in the metric's ``args``."""
    from huggingface_hub import EvalResult

    out = []
    for name, tot in ((info.get("evaluation") or {}).get("totals") or {}).items():
        if not isinstance(tot, dict) or tot.get("trained") is None:
            continue
        metric, pretty = _METRICS.get(name, (str(name), str(name)))
        lo, hi = tot.get("trained_interval") or (None, None)
        args = {"n": tot.get("n"), "interval_low": lo, "interval_high": hi, "confidence": 0.95,
                "base_model_value": tot.get("base")}
        out.append(EvalResult(task_type="text-generation", task_name=f"{name} (held-out seed examples)",
                              dataset_type="lab-heldout", dataset_name="held-out seed examples of the taxonomy",
                              dataset_split="test", metric_type=metric, metric_name=pretty,
                              metric_value=tot["trained"], metric_args={k: v for k, v in args.items() if v is not None}))
    return out


def card_data(info: dict):
    """The ``huggingface_hub.ModelCardData`` (front matter) of the release ``info``; ``datasets``:
    ``[info["dataset"]]`` (``release.dataset``, the Hub id of the run's dataset), omitted when unset."""
    from huggingface_hub import ModelCardData

    base = info.get("base_model") or hub_base_model(info.get("student"))
    results = eval_results(info)
    return ModelCardData(
        library_name="transformers", pipeline_tag="text-generation", license=base.get("license") or "other",
        base_model=base.get("base_model"), model_name="lab-tools student" if results else None,
        datasets=[info["dataset"]] if info.get("dataset") else None,
        eval_results=results or None, tags=["lab", "instructlab", "synthetic-data", "taxonomy", "sft"]
        + (["dpo", "almost"] if info.get("feedback") else []),
        source_taxonomy={k: (info.get("taxonomy") or {}).get(k) for k in ("commit", "dirty", "branch")})


def render_card(info: dict, branch_md: str | None = None) -> str:
    """The Hub model card (``README.md`` of a release; front matter by :func:`card_data`, then
    the markdown sections) for the release described by ``info`` (the ``release.json`` dict)."""
    from huggingface_hub import ModelCard

    body = _card_body(info, branch_md)
    return str(ModelCard(f"---\n{card_data(info).to_yaml()}\n---\n\n{body}"))


def _card_body(info: dict, branch_md: str | None) -> str:
    tax = info.get("taxonomy") or {}
    student = info.get("student")
    licenses = sorted({d["spdx"] or d["license"] for d in info.get("documents", []) if d.get("spdx") or d.get("license")})
    commit = tax.get("commit") or "unknown (not a git repository)"
    dirty = " (with uncommitted changes)" if tax.get("dirty") else ""
    lines = ["# Model card", "",
             "Trained with lab-tools from a Git-native taxonomy following LAB (Large-scale Alignment for "
             "chatBots, arXiv 2403.01081): taxonomy-driven synthetic data generation (3.2) and phased "
             "training (3.3).", "",
             "## Provenance", "",
             f"- Taxonomy commit: {code(commit)}{dirty}" + (f" on branch {code(tax['branch'])}" if tax.get("branch") else ""),
             f"- Taxonomy root: {code(tax.get('root'))}",
             f"- Teacher: {code(info.get('teacher'))}",
             f"- Judge: {code(info.get('judge'))}",
             f"- Student (base model): {code(student)}",
             *([f"- Training data (Hub dataset): {code(info['dataset'])}"] if info.get("dataset") else []),
             f"- Samples: KT/1 {info['samples']['kt1']}, KT/2 {info['samples']['kt2']}, ST {info['samples']['st']}",
             f"- Released: {info.get('released')}", "",
             "## Leaves and sample counts", "",
             "| leaf | kind | content hash | KT/1 | KT/2 | ST | total |", "|---|---|---|---:|---:|---:|---:|"]
    for leaf in info.get("leaves", []):
        s = leaf["samples"]
        lines.append(f"| {code(leaf['path'])} | {inline(leaf['kind'])} | {code(str(leaf['hash'])[:12])} | {s['kt1']} | "
                     f"{s['kt2']} | {s['st']} | {s['total']} |")
    lines += _uncredited_lines(info)
    lines += ["", "## Knowledge documents and licenses", ""]
    docs = info.get("documents") or []
    if docs:
        lines += ["| leaf | document (repo @ commit, patterns) | title | license | creators | link |",
                  "|---|---|---|---|---|---|"]
        for d in docs:
            patterns = d.get("patterns")
            where = (f"{code(d.get('repo'))} @ {code(d.get('commit'))} "
                     f"{', '.join(code(x) for x in patterns) if isinstance(patterns, list) else code(patterns)}")
            lines.append(f"| {code(d['leaf'])} | {where} | {inline(d.get('title') or '–')} | "
                         f"{inline(d.get('spdx') or d.get('license') or '–')} | {inline(d.get('creators') or '–')} | "
                         f"{link_text(d.get('link'))} |")
        lines += ["", f"Licenses of the training documents: {inline(', '.join(licenses) or '–', 2000)}.", ""]
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

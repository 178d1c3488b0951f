"""Markdown for the synthetic comparisons and the reward model: the dataset card section, the
model card section and the build summary line. Every value comes from the ``feedback`` block of
``dataset_card.json`` and from ``rm_eval.json`` (written by :mod:`lab_tools.feedback.evaluate`)."""

from __future__ import annotations

from lab_tools.errors import plural
from lab_tools.eval.alignment import alignment_markdown
from lab_tools.eval.stats import format_estimate, wilson
from lab_tools.markdown import code


def _count(n, noun: str) -> str:
    """``plural(n, noun)``, or ``– nouns`` when the count is unknown."""
    return plural(n, noun) if isinstance(n, int) else f"– {noun}s"


def _cell(value) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _prop(value, n) -> str:
    """A proportion with its Wilson 95% interval and n (:mod:`lab_tools.eval.stats`), "too small
    to decide" when the interval is wider than +-15 points."""
    if value is None or not n:
        return "–"
    return format_estimate(wilson(min(n, max(0.0, round(value * n * 2) / 2)), n), percent=True)


def comparisons_markdown(block: dict) -> str:
    """The ``## Synthetic comparisons`` section: configurations and rubric, teacher licenses,
    pairs per leaf and per configuration pair, drops by reason."""
    lines = ["## Synthetic comparisons", "",
             f"{block.get('method', '')}. Rubric (best first, `=` ties): `{_cell(block.get('rubric'))}`. "
             f"Pairs: **{block.get('pairs', 0)}**; responses cut to their last full sentence: "
             f"{block.get('trimmed', 0)}.", "",
             "| configuration | rank | model | demonstrations | shots | format | license |",
             "|---|---:|---|---|---:|---|---|"]
    for c in block.get("configurations", []):
        lines.append(f"| {_cell(c['name'])} | {c['rank']} | `{_cell(c.get('backend'))}` | {c['demonstrations']} | "
                     f"{c['shots']} | {c['format']} | {_cell(c.get('license'))} |")
    if block.get("teacher_licenses"):
        lines += ["", "Teacher licenses (their terms apply to models trained on these comparisons): "
                  + "; ".join(block["teacher_licenses"]) + "."]
    lines += ["", "| configuration pair (chosen > rejected) | pairs |", "|---|---:|"]
    lines += [f"| {_cell(k)} | {v} |" for k, v in sorted(block.get("per_config_pair", {}).items())]
    lines += ["", "| leaf | prompts | pairs | invalid responses | length rule | fewer than 2 valid | cached |",
              "|---|---:|---:|---|---:|---:|---|"]
    for leaf in block.get("leaves", []):
        inv = ", ".join(f"{k}: {v}" for k, v in sorted(leaf.get("invalid", {}).items())) or "0"
        lines.append(f"| {code(leaf['leaf'])} | {leaf['prompts']} | {leaf['pairs']} | {_cell(inv)} | "
                     f"{leaf['length_dropped']} | {leaf['few_valid']} | {'yes' if leaf.get('cached') else 'no'} |")
    lines += ["", "| dropped (reason) | count |", "|---|---:|"]
    lines += [f"| {_cell(k)} | {v} |" for k, v in sorted(block.get("dropped", {}).items())]
    return "\n".join(lines) + "\n"


def rm_markdown(rm: dict) -> str:
    """The ``## Reward model`` section from ``rm_eval.json``: held-out accuracy (split by leaf)
    next to the longer-answer baseline, per leaf, post-validation, Static HHH per type."""
    train = rm.get("training") or {}
    held = rm.get("heldout") or {}
    lines = ["## Reward model", "",
             f"A sequence-classification reward model (TRL `RewardTrainer`) from `{_cell(train.get('base'))}`, "
             f"trained on {_count(train.get('train_pairs'), 'synthetic comparison')} of "
             f"{plural(len(train.get('train_leaves') or []), 'leaf')}; held out: "
             f"{plural(held.get('n', 0), 'comparison')} of "
             f"leaves it never saw ({', '.join(code(x) for x in train.get('heldout_leaves') or []) or '–'}).", "",
             "Accuracies: value [95% Wilson interval] (n pairs); an interval wider than +-15 points is too "
             "small to decide whether the RM beats chance (50%) or the longer-answer baseline.", "",
             "| evaluation | pairs | reward model | longer answer wins |", "|---|---:|---|---|",
             f"| held-out synthetic comparisons (split by leaf) | {held.get('n', 0)} | "
             f"{_prop(held.get('accuracy'), held.get('n'))} | {_prop(held.get('length_baseline'), held.get('n'))} |"]
    for leaf, v in sorted((held.get("per_leaf") or {}).items()):
        lines.append(f"| · {code(leaf)} | {v['n']} | {_prop(v['accuracy'], v['n'])} | "
                     f"{_prop(v['length_baseline'], v['n'])} |")
    hhh = rm.get("static_hhh") or {}
    if hhh:
        lines.append(f"| Static HHH (all; chance 50%) | {hhh['n']} | {_prop(hhh['accuracy'], hhh['n'])} | "
                     f"{_prop(hhh['length_baseline'], hhh['n'])} |")
        for t, v in sorted((hhh.get("per_type") or {}).items()):
            lines.append(f"| · {t} | {v['n']} | {_prop(v['accuracy'], v['n'])} | {_prop(v['length_baseline'], v['n'])} |")
    pv = train.get("post_validation")
    if pv:
        folds = pv.get("folds") or []
        lines += ["", f"ALMoST post-validation, cross-fitted over {len(folds)} folds of leaves (each pair scored by an "
                  f"RM trained on the other folds): {pv['dropped']} of {pv['pairs_before']} training pairs ranked the "
                  f"wrong way were dropped and the final RM trained on the rest. Held-out accuracy: fold RMs "
                  f"{_pct(pv['first_heldout_accuracy'])}, final {_pct(held.get('accuracy'))}."]
        lines += [f"- fold {f['fold']}: leaves {', '.join(code(lf) for lf in f['leaves'])}; "
                  f"{f['pairs_scored']} pairs scored, {f['dropped']} dropped" for f in folds]
    return "\n".join(lines) + "\n"


def release_facts(run_dir) -> dict | None:
    """The ``feedback`` entry of a release's ``release.json``: the comparisons block of the
    dataset card and the RM's evaluation (``rm/rm_eval.json``) of the run at ``run_dir``, or None
    when the run made no comparisons."""
    import json
    from pathlib import Path

    run = Path(run_dir)
    try:
        block = json.loads((run / "data" / "dataset_card.json").read_text(encoding="utf-8")).get("feedback")
    except (OSError, ValueError):
        block = None
    if not block:
        return None
    try:
        rm = json.loads((run / "rm" / "rm_eval.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        rm = None
    comparisons = {k: v for k, v in block.items() if k != "leaves"}
    comparisons["leaves"] = [{k: leaf.get(k) for k in ("leaf", "prompts", "pairs", "invalid", "length_dropped",
                                                       "few_valid", "cached")} for leaf in block.get("leaves", [])]
    return {"comparisons": comparisons, "reward_model": rm, **_later_stages(run)}


def _later_stages(run) -> dict:
    """Self-play (dataset card), the preference phase (training manifest) and the alignment
    evaluation (``eval/alignment.json``) of a run, each None when it did not run."""
    import json
    from pathlib import Path

    def read(path):
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    card = read(run / "data" / "dataset_card.json") or {}
    sp = card.get("self_play")
    pref = (((read(run / "train" / "manifest.json") or {}).get("phases") or {}).get("pref"))
    if pref:
        pref = {k: pref.get(k) for k in ("method", "comparisons", "steps", "kept", "reason", "knowledge",
                                         "st_mean_length", "judges", "decision")} | {
            "candidates": {Path(c).name: v for c, v in (pref.get("candidates") or {}).items()},
            "selected_candidate": Path(pref["candidate"]).name if pref.get("candidate") else None}
    return {"self_play": {k: v for k, v in sp.items() if k != "leaves"} | {
                "per_leaf": {r["leaf"]: r["kept"] for r in sp.get("leaves", [])}} if sp else None,
            "preference": pref, "alignment": read(run / "eval" / "alignment.json")}


def _pref_markdown(pref: dict) -> str:
    """The ``## Preference phase`` section: the decision (figure, n, interval, verdict), the
    candidates, the judges not used and why."""
    dec = pref.get("decision") or {}
    vs_st = dec.get("pref_vs_st") or {}
    guard = (dec.get("guards") or {}).get("knowledge") or {}
    head = (f"## Preference phase\n\nMethod `{pref['method']}` on "
            f"{plural(pref['comparisons'], 'synthetic comparison')}, {plural(pref['steps'], 'step')}, from the "
            f"ST-selected checkpoint, decided on the held-out *selection* items. Selection: {pref['reason']}. "
            f"The release holds the **{'preference-tuned' if pref['kept'] == 'pref' else 'ST'}** model.\n\n")
    if vs_st:
        head += (f"- pref vs ST ({vs_st.get('metric')}): change {format_estimate(vs_st.get('gain'))}: "
                 f"{vs_st.get('verdict')}.\n")
    if guard:
        head += (f"- knowledge score (MC accuracy) pref vs ST: change {format_estimate(guard.get('gain'))}: "
                 f"{guard.get('verdict')}.\n")
    for j in pref.get("judges") or []:
        if not j.get("used"):
            head += f"- {j.get('kind')} judge not used: {j.get('reason')}.\n"
    if not any(j.get("used") for j in pref.get("judges") or []) and pref.get("judges") is not None:
        head += ("- **No capable judge was used**: the decision rests on the reward model and/or held-out "
                 "reference log-likelihood.\n")
    def rm(c):  # a win-rate dict with n and interval, or a bare win rate (older files)
        return format_estimate(c["rm"], percent=True) if isinstance(c.get("rm"), dict) else _pct(c.get("rm_win_rate"))

    rows = "\n".join(
        f"| {name} | {format_estimate(c if 'win_rate' in c else None, percent=True)} | "
        f"{c.get('wins', '–')}-{c.get('ties', '–')}-{c.get('losses', '–')} | {rm(c)} | "
        f"{format_estimate(c.get('reference'))} |" for name, c in pref["candidates"].items())
    return (head + "\n| candidate | win rate vs ST (judge) | wins-ties-losses | win rate (reward model) | "
            "reference log-lik (nats/token) |\n|---|---|---|---|---|\n" + rows + "\n")


def card_lines(info: dict) -> list[str]:
    """Model-card lines for the release ``info`` (``release.json``): the synthetic comparisons
    (counts per leaf and per configuration pair, drops, teacher licenses) and the RM's accuracies."""
    fb = info.get("feedback")
    if not fb:
        return []
    lines = [comparisons_markdown(fb["comparisons"]).replace("## Synthetic comparisons",
                                                             "## Synthetic comparisons (ALMoST)", 1)]
    if fb.get("reward_model"):
        lines.append(rm_markdown(fb["reward_model"]))
    sp, pref = fb.get("self_play"), fb.get("preference")
    if sp:
        lines.append(f"## RM-guided self-play\n\n{plural(sp['kept'], 'multi-turn conversation')} trained in ST "
                     f"(best of {plural(sp['candidates'], 'assistant candidate')} per turn by the reward model, up to "
                     f"{plural(sp['max_turns'], 'turn')}, mean {_cell(sp.get('mean_turns'))}; assistant `{sp.get('assistant')}`). Per leaf: "
                     + (", ".join(f"{code(k)} {v}" for k, v in sorted(sp["per_leaf"].items())) or "–") + ".\n")
    if pref:
        lines.append(_pref_markdown(pref))
    if fb.get("alignment"):
        lines.append(alignment_markdown(fb["alignment"]))
    return lines

"""Markdown for the synthetic comparisons and the reward model: the dataset card section, the
model card section and the build summary line. Every value comes from the ``feedback`` block of
``dataset_card.json`` and from ``rm_eval.json`` (written by :mod:`lab_tools.feedback.evaluate`)."""

from __future__ import annotations


def _cell(value) -> str:
    if value is None or value == "":
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _pct(value) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


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
        lines.append(f"| `{_cell(leaf['leaf'])}` | {leaf['prompts']} | {leaf['pairs']} | {_cell(inv)} | "
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
             f"trained on {train.get('train_pairs', '–')} synthetic comparisons of "
             f"{len(train.get('train_leaves') or [])} leaves; held out: {held.get('n', 0)} comparisons of "
             f"leaves it never saw ({', '.join(f'`{x}`' for x in train.get('heldout_leaves') or []) or '–'}).", "",
             "| evaluation | pairs | reward model | longer answer wins |", "|---|---:|---:|---:|",
             f"| held-out synthetic comparisons (split by leaf) | {held.get('n', 0)} | {_pct(held.get('accuracy'))} | "
             f"{_pct(held.get('length_baseline'))} |"]
    for leaf, v in sorted((held.get("per_leaf") or {}).items()):
        lines.append(f"| · `{_cell(leaf)}` | {v['n']} | {_pct(v['accuracy'])} | {_pct(v['length_baseline'])} |")
    hhh = rm.get("static_hhh") or {}
    if hhh:
        lines.append(f"| Static HHH (all; chance 50%) | {hhh['n']} | {_pct(hhh['accuracy'])} | "
                     f"{_pct(hhh['length_baseline'])} |")
        for t, v in sorted((hhh.get("per_type") or {}).items()):
            lines.append(f"| · {t} | {v['n']} | {_pct(v['accuracy'])} | {_pct(v['length_baseline'])} |")
    pv = train.get("post_validation")
    if pv:
        lines += ["", f"ALMoST post-validation: the first RM ranked {pv['dropped']} of {pv['pairs_before']} training "
                  f"pairs the wrong way; they were dropped and the RM retrained. Held-out accuracy: first RM "
                  f"{_pct(pv['first_heldout_accuracy'])}, retrained {_pct(held.get('accuracy'))}."]
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
                                         "st_mean_length")} | {
            "candidates": {Path(c).name: v for c, v in (pref.get("candidates") or {}).items()},
            "selected_candidate": Path(pref["candidate"]).name if pref.get("candidate") else None}
    return {"self_play": {k: v for k, v in sp.items() if k != "leaves"} | {
                "per_leaf": {r["leaf"]: r["kept"] for r in sp.get("leaves", [])}} if sp else None,
            "preference": pref, "alignment": read(run / "eval" / "alignment.json")}


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
        lines.append(f"## RM-guided self-play\n\n{sp['kept']} multi-turn conversations trained in ST (best of "
                     f"{sp['candidates']} assistant candidates per turn by the reward model, up to {sp['max_turns']} "
                     f"turns, mean {_cell(sp.get('mean_turns'))}; assistant `{sp.get('assistant')}`). Per leaf: "
                     + (", ".join(f"`{k}` {v}" for k, v in sorted(sp["per_leaf"].items())) or "–") + ".\n")
    if pref:
        k = pref.get("knowledge") or {}
        lines.append(f"## Preference phase\n\nMethod `{pref['method']}` on {pref['comparisons']} synthetic "
                     f"comparisons, {pref['steps']} steps, from the ST-selected checkpoint. Selection: {pref['reason']}. "
                     f"The release holds the **{'preference-tuned' if pref['kept'] == 'pref' else 'ST'}** model "
                     f"(knowledge score ST {_pct(k.get('st'))}, pref {_pct(k.get('pref'))}).\n\n"
                     "| candidate | win rate vs ST (judge) | wins-ties-losses | win rate (reward model) |\n"
                     "|---|---:|---|---:|\n" + "\n".join(
                         f"| {name} | {_pct(c.get('win_rate'))} | {c.get('wins')}-{c.get('ties')}-{c.get('losses')} | "
                         f"{_pct(c.get('rm_win_rate'))} |" for name, c in pref["candidates"].items()) + "\n")
    if fb.get("alignment"):
        from lab_tools.eval.alignment import alignment_markdown

        lines.append(alignment_markdown(fb["alignment"]))
    return lines

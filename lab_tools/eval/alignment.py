"""Alignment evaluation of a training run: base vs ST vs the preference phase (ALMoST, arXiv
2305.13735, evaluation), written to ``alignment.json`` and shown in the branch report and card.

- **Static HHH accuracy** of each policy (base, ST, pref) by ALMoST's protocol: an A/B choice
  by next-token probability, both orders (:func:`lab_tools.eval.preference.hhh_accuracy`), per type.
- **Win rate of pref vs ST** on the held-out skill prompts (greedy answers): by the
  position-debiased pairwise judge (next-token probability, both orders: works where the judge
  gives no parseable rating), by the reward model (reported; it is what pref was tuned against,
  so never the only selector), and by a capable judge when one is configured (both orders, its
  written A/B verdict).
- **Alignment tax**: knowledge score (MC accuracy on held-out items) and held-out reference
  log-likelihood (nats/token), pref vs ST; mean response length (characters).

The models come from the run's ``manifest.json``: ``base_model``, the ST-selected checkpoint and
the pref phase's selected candidate (``candidate``: evaluated even when the release kept ST).
The items are the *test* part of the held-out files (:mod:`lab_tools.eval.sets`), never the ones
the pref phase decided on; every figure carries n and a 95% interval (:mod:`lab_tools.eval.stats`).
A judge that is the base, ST or pref model, or unable on a calibration set, is not used
(:mod:`lab_tools.eval.judges`); the block then says that no capable judge was used.
"""

from __future__ import annotations

import json
from pathlib import Path

from lab_tools.atomic import write_json_atomic, write_text_atomic
from lab_tools.engines.load import load_scoring_model
from lab_tools.errors import LabError
from lab_tools.eval.decisions import compare, win_rate
from lab_tools.eval.evalset import load_eval_set
from lab_tools.eval.judges import calibrate_capable, calibrate_pairwise, make_judge, refusal
from lab_tools.eval.preference import hhh_accuracy, load_static_hhh
from lab_tools.eval.stats import bootstrap_mean, format_estimate, proportion
from lab_tools.feedback.evaluate import hhh_default_path
from lab_tools.progress import Progress, token_budget
from lab_tools.runpaths import resolve
from lab_tools.train.pref_select import pairwise_judge_dir, rm_verdicts_fn


def run_models(run_dir: str | Path) -> dict[str, str]:
    """``{"base", "st", "pref"}`` model dirs of a training run (``pref`` absent without the phase),
    the manifest's paths resolved against ``run_dir`` (:func:`lab_tools.runpaths.resolve`).

    Raises:
        LabError: no manifest, or no trained ST phase.
    """
    mpath = Path(run_dir) / "manifest.json"
    if not mpath.is_file():
        raise LabError("no training run here (manifest.json missing)", file=str(mpath))
    manifest = json.loads(mpath.read_text(encoding="utf-8"))
    phases = manifest.get("phases") or {}
    st = (phases.get("st") or {}).get("selected")
    if not st:
        raise LabError("the run has no ST-selected checkpoint to evaluate", file=str(mpath), field="phases.st")
    out = {"base": manifest["base_model"], "st": str(resolve(st, Path(run_dir)))}
    if (phases.get("pref") or {}).get("candidate"):
        out["pref"] = str(resolve(phases["pref"]["candidate"], Path(run_dir)))
    return out


def _win_rates(models, prompts, answers, *, judge_dir, rm_dir, capable_judge, batch_size, say,
               engine: str = "auto", compute_type: str = "int8", bar: Progress | None = None) -> dict:
    """Pref-vs-ST win rates by each judge that may judge (:mod:`lab_tools.eval.judges`: never the
    base, ST or pref model, never one unable on the calibration set), and by the reward model;
    ``bar``: their scored or decoded tokens move it (:func:`lab_tools.progress.token_budget`)."""
    from lab_tools.eval.preference import capable_judge_win_rate, pairwise_win_rate

    wr = {"judge": None, "reward_model": None, "capable_judge": None, "judges": []}
    why = "no in-process pairwise judge (the judge is a server or scripted)" if judge_dir is None else \
        refusal(judge_dir, {"base": models.get("base"), "ST": models["st"], "pref": models["pref"]})
    if why:
        wr["judges"].append({"kind": "pairwise", "judge": judge_dir, "used": False, "reason": why})
    else:
        judge, jtok = load_scoring_model(judge_dir, engine=engine, compute_type=compute_type)
        status = calibrate_pairwise(judge, jtok, prompts, name=str(judge_dir), batch_size=batch_size, progress=bar)
        wr["judges"].append({"kind": "pairwise", **status})
        if status["used"]:
            wr["judge"] = pairwise_win_rate(judge, jtok, prompts, answers["pref"], answers["st"],
                                            batch_size=batch_size, progress=bar, task="pref vs ST judge")
        del judge
    if capable_judge is not None:
        status = calibrate_capable(capable_judge, prompts)
        wr["judges"].append({"kind": "capable", **status})
        if status["used"]:
            with token_budget(bar, "pref vs ST capable judge", 2 * 8 * len(prompts)):  # 2 replies of <= 8 tokens
                wr["capable_judge"] = capable_judge_win_rate(capable_judge, prompts, answers["pref"], answers["st"])
    if rm_dir:
        wr["reward_model"] = win_rate(rm_verdicts_fn(rm_dir)(prompts, answers["pref"], answers["st"], progress=bar))
    for s in wr["judges"]:
        if not s["used"]:
            say(f"[alignment] {s['kind']} judge not used: {s['reason']}")
    if wr["judge"] is None and wr["capable_judge"] is None:
        wr["no_capable_judge"] = "; ".join(s["reason"] for s in wr["judges"]) or "no judge configured"
    return wr


def evaluate_alignment(models: dict[str, str], prompts: list[dict], mc_items: list[dict], *,
                       hhh_items: list | None, judge_dir: str | None, rm_dir: str | None = None,
                       capable_judge=None, max_new_tokens: int = 64, batch_size: int = 4,
                       progress=None, engine: str = "auto", compute_type: str = "int8") -> dict:
    """The alignment block (see module doc) for ``models`` (``{"base", "st", "pref"?}`` dirs).

    ``prompts``: held-out skill prompts (the *test* part: :func:`lab_tools.eval.evalset.load_eval_set`);
    ``mc_items``: held-out knowledge items (test part); ``hhh_items``:
    :class:`lab_tools.eval.preference.ABItem` list (None: skip); ``judge_dir``: the local causal LM
    of the pairwise judge (None: none); ``rm_dir``: the reward model; ``capable_judge``: a Teacher
    that answers A/B in words, or None. A judge that is the base, ST or pref model, or unable on
    the calibration set, is not used (``win_rate.judges`` says why; ``win_rate.no_capable_judge``
    when no judge was used at all). ``engine``/``compute_type``: what runs the models' scores,
    answers and the pairwise judge (``generate.engine``: :func:`lab_tools.engines.load.load_scoring_model`).

    Returns ``{"static_hhh": {label: {"accuracy", "n", "interval", "per_type"}}, "win_rate":
    {"judge", "reward_model", "capable_judge": win-rate dicts with n and interval | None,
    "judges": [status]}, "alignment_tax": {"knowledge", "reference_loglik": {label: Estimate dict},
    "mean_length": {label: chars}, "pref_vs_st": {"knowledge", "reference_loglik": paired
    comparison}}}``; a part with nothing to score is None. Intervals: 95% (Wilson for
    proportions, bootstrap for means and differences: :mod:`lab_tools.eval.stats`).
    ``progress``: a callable that prints a status line (None: silent); with it, a
    :class:`lab_tools.progress.Progress` (stage ``alignment``) shows items per model and the tokens
    scored or decoded within each part, so it moves mid-batch in a terminal and in a CI log.
    """
    say = progress or (lambda *_: None)
    # bars, or `progress:` lines in a CI log, that move as tokens are scored or decoded
    with Progress(progress is not None, stage="alignment", transient=True) as bar:
        return _evaluate(models, prompts, mc_items, hhh_items=hhh_items, judge_dir=judge_dir, rm_dir=rm_dir,
                         capable_judge=capable_judge, max_new_tokens=max_new_tokens, batch_size=batch_size,
                         say=say, bar=bar, engine=engine, compute_type=compute_type)


def _evaluate(models, prompts, mc_items, *, hhh_items, judge_dir, rm_dir, capable_judge, max_new_tokens,
              batch_size, say, bar: Progress, engine, compute_type) -> dict:
    """:func:`evaluate_alignment`'s work; ``bar``: item task per model label (Static HHH pairs,
    MC items, reference and answer prompts), token tasks per part (:func:`token_budget`)."""
    from lab_tools.eval.scoring import answer_prompts, mc_accuracy, reference_logprob
    out = {"models": dict(models), "static_hhh": {}, "win_rate": None,
           "alignment_tax": {"knowledge": {}, "reference_loglik": {}, "mean_length": {}, "pref_vs_st": None}}
    answers, per_item = {}, {}
    for label, path in models.items():
        units = len(hhh_items or []) + (0 if label == "base" else len(mc_items) + 2 * len(prompts))
        if units:
            bar.add(label, units)
        model, tok = load_scoring_model(path, engine=engine, compute_type=compute_type)
        if hhh_items:
            out["static_hhh"][label] = hhh_accuracy(model, tok, hhh_items, batch_size=batch_size, progress=bar,
                                                    task=f"{label} static HHH")
            bar.advance(label, len(hhh_items))  # units > 0 here
            say(f"[alignment] {label}: Static HHH {out['static_hhh'][label]['accuracy']:.3f}")
        if label == "base":
            continue
        tax = out["alignment_tax"]
        mc = [float(r["correct"]) for r in mc_accuracy(model, tok, mc_items, batch_size=batch_size, progress=bar,
                                                       task=f"{label} knowledge")[1]] if mc_items else []
        if units:
            bar.advance(label, len(mc_items))
        refs = reference_logprob(model, tok, prompts, batch_size=batch_size, progress=bar,
                                 task=f"{label} reference") if prompts else []
        if units:
            bar.advance(label, len(prompts))
        per_item[label] = {"knowledge": mc, "reference_loglik": refs}
        tax["knowledge"][label] = proportion(mc).to_dict() if mc else None
        tax["reference_loglik"][label] = bootstrap_mean(refs).to_dict() if any(v is not None for v in refs) else None
        with token_budget(bar, f"{label} answers", len(prompts) * max_new_tokens):  # decode steps move it
            answers[label] = (answer_prompts(model, tok, prompts, max_new_tokens, batch_size=batch_size)
                              if prompts else [])
        if units:
            bar.advance(label, len(prompts))
        tax["mean_length"][label] = (sum(len(a) for a in answers[label]) / len(answers[label])
                                     if answers[label] else None)
        del model
    if "pref" in models:
        out["alignment_tax"]["pref_vs_st"] = {
            "knowledge": compare(per_item["st"]["knowledge"], per_item["pref"]["knowledge"], is_proportion=True)
            if mc_items else None,
            "reference_loglik": compare(per_item["st"]["reference_loglik"], per_item["pref"]["reference_loglik"],
                                        is_proportion=False) if prompts else None}
    if "pref" in models and prompts:
        wr = _win_rates(models, prompts, answers, engine=engine, compute_type=compute_type,
                        judge_dir=judge_dir, rm_dir=rm_dir, capable_judge=capable_judge,
                        batch_size=batch_size, say=say, bar=bar)
        out["win_rate"] = wr
        shown = [(k, wr[k]["win_rate"]) for k in ("judge", "capable_judge", "reward_model") if wr[k]]
        if shown:
            say("[alignment] pref vs ST win rate: " + ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in shown))
    return out


def alignment_markdown(block: dict) -> str:
    """The alignment section of the branch report / model card (markdown): every figure with its
    n and 95% interval, "too small to decide" where a proportion's interval is wider than +-15
    points, which judges were not used and why."""
    pct = lambda v: format_estimate(v, percent=True)  # noqa: E731
    num = lambda v: format_estimate(v)  # noqa: E731
    lines = ["## Alignment (synthetic feedback)", "",
             "Figures: value [95% interval] (n items); proportions by Wilson, means and differences by "
             "bootstrap (2000 resamples, fixed seed), on the held-out *test* items (never the ones a "
             "checkpoint was chosen on).", ""]
    hhh = block.get("static_hhh") or {}
    if hhh:
        types = sorted({t for v in hhh.values() for t in v["per_type"]})
        lines += ["Static HHH accuracy (A/B by next-token probability, both orders; chance 50%):", "",
                  "| model | all | " + " | ".join(types) + " |", "|---|---|" + "---|" * len(types)]
        for label, v in hhh.items():
            lines.append(f"| {label} | {pct(v)} | "
                         + " | ".join(pct(v["per_type"].get(t)) for t in types) + " |")
        lines.append("")
    wr = block.get("win_rate")
    if wr:
        lines += ["Win rate of pref vs ST on held-out prompts (ties count half):", "",
                  "| judge | win rate | wins-ties-losses |", "|---|---|---|"]
        for key, label in (("judge", "pairwise judge (next-token A/B, both orders)"),
                           ("capable_judge", "capable judge (written A/B, both orders)"),
                           ("reward_model", "reward model (what pref was tuned on)")):
            w = wr.get(key)
            if isinstance(w, dict):
                lines.append(f"| {label} | {pct(w)} | {w['wins']}-{w['ties']}-{w['losses']} |")
            elif w is not None:  # an older file: a bare win rate
                lines.append(f"| {label} | {pct(w)} | – |")
        lines.append("")
        for s in wr.get("judges") or []:
            if not s.get("used"):
                lines.append(f"- {s['kind']} judge not used: {s['reason']}.")
        if wr.get("no_capable_judge"):
            lines.append("- **No capable judge was used**: the figures above rest on the reward model and "
                         "held-out reference log-likelihood only.")
        lines.append("")
    tax = block.get("alignment_tax") or {}
    if tax.get("knowledge"):
        labels = list(tax["knowledge"])
        lines += ["Alignment tax:", "", "| metric | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels),
                  "| knowledge score (MC accuracy) | " + " | ".join(pct(tax["knowledge"][k]) for k in labels) + " |",
                  "| held-out reference log-likelihood (nats/token) | "
                  + " | ".join(num(tax["reference_loglik"].get(k)) for k in labels) + " |",
                  "| mean response length (chars) | "
                  + " | ".join(format_estimate(tax["mean_length"].get(k), digits=1) for k in labels) + " |", ""]
        for name, c in (tax.get("pref_vs_st") or {}).items():
            if c:
                lines.append(f"- pref vs ST, {name.replace('_', ' ')}: change {num(c['gain'])}: {c['verdict']}.")
        lines.append("")
    return "\n".join(lines)


def alignment_cli(run_dir, root, data_dir, cfg, out_dir, *, judge_spec=None, rm_dir=None, hhh_file=None,
                  max_mc: int = 120, max_prompts: int = 16, max_new_tokens: int = 64, progress=True) -> dict:
    """``lab evaluate --training-run``: :func:`evaluate_alignment` on the run's models with the
    held-out test items of ``data_dir`` (or the taxonomy), Static HHH from ``hhh_file`` (default the
    file shipped with the package), the pairwise judge of
    :func:`lab_tools.train.pref_select.pairwise_judge_dir`, and the configured judge as the capable judge
    when it is a server (``openai:``/``vllm:``); writes ``alignment.json`` and ``alignment.md``."""
    import click

    models = run_models(run_dir)  # the run is checked before anything is loaded
    if hhh_file and not Path(hhh_file).is_file():
        raise LabError("Static HHH file not found (--hhh)", file=str(hhh_file))
    spec = judge_spec or cfg.generate.judge or cfg.generate.teacher
    capable = None
    if str(spec).split(":", 1)[0] in ("openai", "vllm"):
        capable = make_judge(spec, cfg.cache_path)
    hhh = load_static_hhh(Path(hhh_file) if hhh_file else hhh_default_path())
    evalset = load_eval_set(taxonomy=root, data_dir=data_dir, mmlu_files=[], max_mc=max_mc, max_prompts=max_prompts)
    block = evaluate_alignment(models, evalset.prompts, evalset.mc, hhh_items=hhh,
                               judge_dir=pairwise_judge_dir(spec, cfg), rm_dir=rm_dir, capable_judge=capable,
                               max_new_tokens=max_new_tokens, engine=cfg.generate.engine,
                               compute_type=cfg.generate.engine_compute_type,
                               progress=(lambda m: click.echo(m, err=True)) if progress else None)
    out = Path(out_dir)
    write_json_atomic(out / "alignment.json", block, indent=1)
    md = alignment_markdown(block)
    write_text_atomic(out / "alignment.md", md + "\n")
    click.echo(md)
    return block

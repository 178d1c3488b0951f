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
"""

from __future__ import annotations

import json
from pathlib import Path

from lab_tools.errors import LabError


def run_models(run_dir: str | Path) -> dict[str, str]:
    """``{"base", "st", "pref"}`` model dirs of a training run (``pref`` absent without the phase).

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
    out = {"base": manifest["base_model"], "st": st}
    if (phases.get("pref") or {}).get("candidate"):
        out["pref"] = phases["pref"]["candidate"]
    return out


def evaluate_alignment(models: dict[str, str], prompts: list[dict], mc_items: list[dict], *,
                       hhh_items: list | None, judge_dir: str, rm_dir: str | None = None,
                       capable_judge=None, max_new_tokens: int = 64, batch_size: int = 4,
                       progress=None) -> dict:
    """The alignment block (see module doc) for ``models`` (``{"base", "st", "pref"?}`` dirs).

    ``prompts``: held-out skill prompts (heldout_prompts.jsonl rows); ``mc_items``: held-out
    knowledge items; ``hhh_items``: :class:`lab_tools.eval.preference.ABItem` list (None: skip);
    ``judge_dir``: the local causal LM of the pairwise judge; ``rm_dir``: the reward model;
    ``capable_judge``: a Teacher that answers A/B in words, or None.

    Returns ``{"static_hhh": {label: {"accuracy", "n", "per_type"}}, "win_rate": {"judge",
    "reward_model", "capable_judge"}, "alignment_tax": {"knowledge", "reference_loglik",
    "mean_length"}: {label: value}}``; a part with nothing to score is None.
    """
    from lab_tools.eval.preference import capable_judge_win_rate, hhh_accuracy, pairwise_win_rate
    from lab_tools.eval.scoring import answer_prompts, mc_accuracy, reference_logprob
    from lab_tools.models import load_model

    say = progress or (lambda *_: None)
    out = {"models": dict(models), "static_hhh": {}, "win_rate": None,
           "alignment_tax": {"knowledge": {}, "reference_loglik": {}, "mean_length": {}}}
    answers = {}
    for label, path in models.items():
        model, tok = load_model(path)
        if hhh_items:
            out["static_hhh"][label] = hhh_accuracy(model, tok, hhh_items, batch_size=batch_size)
            say(f"[alignment] {label}: Static HHH {out['static_hhh'][label]['accuracy']:.3f}")
        if label == "base":
            continue
        tax = out["alignment_tax"]
        tax["knowledge"][label] = mc_accuracy(model, tok, mc_items, batch_size=batch_size)[0] if mc_items else None
        refs = [v for v in reference_logprob(model, tok, prompts, batch_size=batch_size) if v is not None]
        tax["reference_loglik"][label] = sum(refs) / len(refs) if refs else None
        answers[label] = answer_prompts(model, tok, prompts, max_new_tokens, batch_size=batch_size) if prompts else []
        tax["mean_length"][label] = (sum(len(a) for a in answers[label]) / len(answers[label])
                                     if answers[label] else None)
        del model
    if "pref" in models and prompts:
        judge, jtok = load_model(judge_dir)
        wr = {"judge": pairwise_win_rate(judge, jtok, prompts, answers["pref"], answers["st"],
                                         batch_size=batch_size), "reward_model": None, "capable_judge": None}
        del judge
        if rm_dir:
            from lab_tools.train.pref import rm_win_rate_fn

            wr["reward_model"] = rm_win_rate_fn(rm_dir)(prompts, answers["pref"], answers["st"])
        if capable_judge is not None:
            wr["capable_judge"] = capable_judge_win_rate(capable_judge, prompts, answers["pref"], answers["st"])
        out["win_rate"] = wr
        say(f"[alignment] pref vs ST win rate: judge {wr['judge']['win_rate']:.3f}"
            + (f", reward model {wr['reward_model']:.3f}" if wr["reward_model"] is not None else ""))
    return out


def alignment_markdown(block: dict) -> str:
    """The alignment section of the branch report / model card (markdown)."""
    pct = lambda v: "–" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    num = lambda v: "–" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["## Alignment (synthetic feedback)", ""]
    hhh = block.get("static_hhh") or {}
    if hhh:
        types = sorted({t for v in hhh.values() for t in v["per_type"]})
        lines += ["Static HHH accuracy (A/B by next-token probability, both orders; chance 50%):", "",
                  "| model | all | " + " | ".join(types) + " |", "|---|---:|" + "---:|" * len(types)]
        for label, v in hhh.items():
            lines.append(f"| {label} | {pct(v['accuracy'])} ({v['n']}) | "
                         + " | ".join(pct(v["per_type"].get(t, {}).get("accuracy")) for t in types) + " |")
        lines.append("")
    wr = block.get("win_rate")
    if wr:
        j = wr["judge"]
        lines += ["Win rate of pref vs ST on held-out prompts (ties count half):", "",
                  "| judge | win rate | wins-ties-losses |", "|---|---:|---|",
                  f"| pairwise judge (next-token A/B, both orders) | {pct(j['win_rate'])} | "
                  f"{j['wins']}-{j['ties']}-{j['losses']} |"]
        if wr.get("reward_model") is not None:
            lines.append(f"| reward model (what pref was tuned on: reported, not a selector) | "
                         f"{pct(wr['reward_model'])} | – |")
        if wr.get("capable_judge"):
            c = wr["capable_judge"]
            lines.append(f"| capable judge (both orders) | {pct(c['win_rate'])} | {c['wins']}-{c['ties']}-{c['losses']} |")
        lines.append("")
    tax = block.get("alignment_tax") or {}
    if tax.get("knowledge"):
        labels = list(tax["knowledge"])
        lines += ["Alignment tax:", "", "| metric | " + " | ".join(labels) + " |", "|---|" + "---:|" * len(labels),
                  "| knowledge score (MC accuracy) | " + " | ".join(pct(tax["knowledge"][k]) for k in labels) + " |",
                  "| held-out reference log-likelihood (nats/token) | "
                  + " | ".join(num(tax["reference_loglik"].get(k)) for k in labels) + " |",
                  "| mean response length (chars) | "
                  + " | ".join(num(tax["mean_length"].get(k)) for k in labels) + " |", ""]
    return "\n".join(lines)


def alignment_cli(run_dir, root, data_dir, cfg, out_dir, *, judge_spec=None, rm_dir=None, hhh_file=None,
                  max_mc: int = 120, max_prompts: int = 16, max_new_tokens: int = 64, progress=True) -> dict:
    """``lab evaluate --training-run``: :func:`evaluate_alignment` on the run's models with the
    held-out items of ``data_dir`` (or the taxonomy), Static HHH from ``hhh_file`` (default the
    file shipped with the package), the pairwise judge of
    :func:`lab_tools.train.pref.pairwise_judge_dir`, and the configured judge as the capable judge
    when it is a server (``openai:``/``vllm:``); writes ``alignment.json`` and ``alignment.md``."""
    import click

    from lab_tools.atomic import write_json_atomic, write_text_atomic
    from lab_tools.eval.evaluate import load_eval_set
    from lab_tools.eval.preference import load_static_hhh
    from lab_tools.feedback.evaluate import hhh_default_path
    from lab_tools.train.pref import pairwise_judge_dir

    models = run_models(run_dir)  # the run is checked before anything is loaded
    if hhh_file and not Path(hhh_file).is_file():
        raise LabError("Static HHH file not found (--hhh)", file=str(hhh_file))
    spec = judge_spec or cfg.generate.judge or cfg.generate.teacher
    capable = None
    if str(spec).split(":", 1)[0] in ("openai", "vllm"):
        from lab_tools.eval.cli import make_judge

        capable = make_judge(spec, cfg.cache_path)
    hhh = load_static_hhh(Path(hhh_file) if hhh_file else hhh_default_path())
    evalset = load_eval_set(taxonomy=root, data_dir=data_dir, mmlu_files=[], max_mc=max_mc, max_prompts=max_prompts)
    block = evaluate_alignment(models, evalset.prompts, evalset.mc, hhh_items=hhh,
                               judge_dir=pairwise_judge_dir(spec, cfg), rm_dir=rm_dir, capable_judge=capable,
                               max_new_tokens=max_new_tokens,
                               progress=(lambda m: click.echo(m, err=True)) if progress else None)
    out = Path(out_dir)
    write_json_atomic(out / "alignment.json", block, indent=1)
    md = alignment_markdown(block)
    write_text_atomic(out / "alignment.md", md + "\n")
    click.echo(md)
    return block

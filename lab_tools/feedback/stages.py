"""The feedback stages of ``lab build`` (when ``feedback.enabled``): ``comparisons`` (after
generate), ``reward_model`` (train + evaluate the RM), ``self_play`` (RM-guided self-play, when
``feedback.self_play``; before train, whose ST phase trains on it), ``pref`` (the preference phase
after train) and ``alignment`` (after evaluate: Static HHH base/ST/pref, win rates, alignment tax). Each takes the build's state object
(:class:`lab_tools.build._Build`: ``root``, ``out``, ``cfg``, ``data_dir``, ``hasher``,
``leaf_hashes``, ``progress``, loaded ``_backends``, ``trained_rm()``) and returns ``(summary, data)``.

Fingerprints (the stage is skipped when unchanged):

| stage        | sha256 over                                                                   |
|--------------|-------------------------------------------------------------------------------|
| comparisons  | leaves' content hashes + phase datasets + feedback settings (not ``rm_*``) + teacher + student + HHH dialogues |
| reward_model | ``comparisons.jsonl`` + ``rm_*`` settings + RM base + Static HHH file + ``hhh_pairs`` |
| self_play    | ``st.jsonl`` + the reward model + teacher + student + feedback settings          |
| pref         | ST-selected model + ``comparisons.jsonl`` + preset file + reward model + judge   |
| alignment    | base/ST/pref models + held-out files + reward model + Static HHH file + judge + caps |
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lab_tools.errors import plural
from lab_tools.eval.stats import Estimate, format_estimate


# Held-out items the build's alignment stage scores per policy (ST, pref; Static HHH for base too):
# the knowledge score on 16 MC items, the win rate on 8 prompts (both from the held-out test part); ``batch_size``
# 8 answers the 8 prompts in one batch (on a CPU a decode step costs little more for 8 sequences
# than for 4). ``lab evaluate --training-run`` has its own, larger defaults.
ALIGNMENT_CAPS = {"max_mc": 16, "max_prompts": 8, "batch_size": 8}


def fingerprint_parts(b, name: str) -> list:
    """What the fingerprint of stage ``name`` covers (see the module doc)."""
    from lab_tools.feedback.evaluate import hhh_default_path
    from lab_tools.feedback.rubric import demos_version

    fb = dataclasses.asdict(b.cfg.feedback)
    rm = b.trained_rm()
    rm_id = b.hasher.model(rm) if rm else None
    if name == "self_play":
        return [b.leaf_hashes, b.hasher.file(b.data_dir / "st.jsonl"), rm_id, fb, b.cfg.generate.teacher,
                b.cfg.train.student, dataclasses.asdict(b.cfg.generate.filters)]  # turns are screened
    if name in ("pref", "alignment"):
        from lab_tools.train.config import preset_path

        models = _run_models(b)
        ids = {k: (b.hasher.model(Path(v)) if Path(v).is_dir() else v) for k, v in models.items()}
        preset = b.cfg.train.preset
        parts = [rm_id, b.judge_spec, b.hasher.file(b.data_dir / "comparisons.jsonl"), preset,
                 b.hasher.file(preset_path(preset))]
        if name == "pref":
            return parts + [ids.get("st")]
        heldout = b.hasher.files([b.data_dir / "heldout_mc.jsonl", b.data_dir / "heldout_prompts.jsonl"])
        return parts + [ids, heldout, b.hasher.file(hhh_default_path()), fb["hhh_pairs"], ALIGNMENT_CAPS]
    if name == "comparisons":
        data = b.hasher.files(b.data_dir / f"{p}.jsonl" for p in ("kt1", "kt2", "st"))
        return [b.leaf_hashes, data, {k: v for k, v in fb.items() if not k.startswith("rm_")},
                b.cfg.generate.teacher, b.cfg.train.student, demos_version(),
                dataclasses.asdict(b.cfg.generate.filters)]  # both sides are screened
    base = b.cfg.feedback.rm_base or b.cfg.train.student
    base_id = b.hasher.model(Path(base)) if Path(base).is_dir() else base
    return [b.hasher.file(b.data_dir / "comparisons.jsonl"), {k: v for k, v in fb.items() if k.startswith("rm_")},
            base_id, b.hasher.file(hhh_default_path()), fb["hhh_pairs"]]


def comparisons_stage(b):
    """Synthetic comparisons for every leaf (cached per leaf); fails on a teacher error or no pair."""
    from lab_tools.feedback.comparisons import generate_comparisons

    rep = generate_comparisons(b.root, b.data_dir, b.cfg, backends=b._backends, progress=b.progress)
    fresh = sum(not s["cached"] for s in rep.leaves)
    pairs = ", ".join(f"{k} {v}" for k, v in sorted(rep.card["per_config_pair"].items()))
    return (f"{plural(rep.pairs, 'pair')} ({pairs}); {sum(rep.card['dropped'].values())} dropped; "
            f"{plural(fresh, 'leaf')} generated, {len(rep.leaves) - fresh} cached"), \
        {"pairs": rep.pairs, "per_config_pair": rep.card["per_config_pair"], "dropped": rep.card["dropped"],
         "generation_seconds": round(rep.generation_seconds, 1)}


def reward_model_stage(b):
    """Train the RM on ``data/comparisons.jsonl`` into ``OUT/rm`` and evaluate it (held-out leaves,
    Static HHH, the shipped file); ``OUT/rm/rm_eval.json`` feeds the model card."""
    from lab_tools.feedback.evaluate import hhh_default_path
    from lab_tools.feedback.rm import evaluate_saved, train_reward_model

    comparisons, rm_dir = b.data_dir / "comparisons.jsonl", b.out / "rm"
    manifest = train_reward_model(comparisons, rm_dir, b.cfg, progress=b.progress)
    res = evaluate_saved(rm_dir, comparisons, hhh_path=hhh_default_path(), hhh_pairs=b.cfg.feedback.hhh_pairs)

    def fig(d: dict, key: str, interval: str) -> str:  # n and the Wilson 95% interval on every figure
        low, high = d.get(interval) or (None, None)
        return format_estimate(Estimate(d.get(key), d.get("n", 0), low, high, "wilson", proportion=True), percent=True)

    held, static = res["heldout"], res["static_hhh"] or {}
    summary = (f"{manifest['train_pairs']} training pairs; held-out: RM {fig(held, 'accuracy', 'interval')} vs "
               f"longer {fig(held, 'length_baseline', 'length_baseline_interval')}")
    if static:
        summary += (f"; Static HHH: RM {fig(static, 'accuracy', 'interval')} vs longer "
                    f"{fig(static, 'length_baseline', 'length_baseline_interval')}")
    pv = manifest.get("post_validation")
    if pv:
        summary += f"; post-validation dropped {pv['dropped']}"
    return summary, {"train_pairs": manifest["train_pairs"], "heldout": {k: held.get(k) for k in ("n", "accuracy",
                                                                                               "length_baseline")},
                     "static_hhh": {k: static.get(k) for k in ("n", "accuracy", "length_baseline")} if static else None,
                     "post_validation_dropped": pv["dropped"] if pv else None}


def _run_models(b) -> dict:
    """``{"base", "st", "pref"?}`` of the build's training run, or {} before there is one."""
    from lab_tools.errors import LabError
    from lab_tools.eval.alignment import run_models

    try:
        return run_models(b.train_dir)
    except LabError:
        return {}


def outputs_present(b, name: str) -> bool:
    """Whether stage ``name``'s outputs are on disk (a skipped stage must have them)."""
    import json

    if name == "self_play":
        return (b.data_dir / "selfplay.jsonl").is_file()
    if name == "alignment":
        return (b.eval_dir / "alignment.json").is_file()
    try:
        manifest = json.loads((b.train_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(((manifest.get("phases") or {}).get("pref") or {}).get("selected"))


def self_play_stage(b):
    """RM-guided self-play for every compositional-skill leaf (cached per leaf) into
    ``data/selfplay.jsonl``; fails on a teacher error or when no conversation is kept."""
    from lab_tools.feedback.selfplay import generate_self_play

    rep = generate_self_play(b.root, b.data_dir, b.cfg, b.out / "rm", backends=b._backends, progress=b.progress)
    turns = [t for r in rep.leaves for t in r["turns"]]
    fresh = sum(not r["cached"] for r in rep.leaves)
    mean = sum(turns) / len(turns) if turns else 0
    return (f"{plural(rep.kept, 'conversation')} kept ({mean:.1f} assistant turns each); {plural(fresh, 'leaf')} generated, "
            f"{len(rep.leaves) - fresh} cached"), {"kept": rep.kept, "mean_turns": round(mean, 2)}


def pref_stage(b):
    """The preference phase after ST of the build's training run (``train/pref``); pref replaces
    ST only with a measurable gain on the selection set, by a judge that may judge (else the
    reward model with reference log-likelihood as a guard), and no knowledge regression."""
    from lab_tools.eval.stats import Estimate, format_estimate
    from lab_tools.train.pref import (capable_judge_for, pairwise_judge_dir, policy_reward_line, rm_verdicts_fn,
                                      train_pref)

    rm = b.trained_rm()
    rm_dir = str(rm) if rm else None
    entry = train_pref(b.train_dir, b.data_dir, preset=b.cfg.train.preset,
                       judge_dir=pairwise_judge_dir(b.judge_spec, b.cfg), rm_dir=rm_dir, progress=b.progress,
                       rm_verdicts=rm_verdicts_fn(rm_dir, b.cfg.feedback.rm_max_length),
                       capable_judge=capable_judge_for(b.judge_spec, b.cfg, backend=b.backend))
    best = entry["candidates"].get(entry["candidate"], {})
    wr = best.get("win_rate")
    vs_st = (entry.get("decision") or {}).get("pref_vs_st") or {}
    return (f"{entry['method']} on {plural(entry['comparisons'], 'comparison')}, {plural(entry['steps'], 'step')}; "
            f"{vs_st.get('metric', 'no decision')}: {vs_st.get('verdict', '–')} "
            f"(change {format_estimate(vs_st.get('gain'))}); release keeps {entry['kept']}"
            + (f"; policy moved: {policy_reward_line(pr)}" if (pr := entry.get("policy_reward")) else "")), \
        {"method": entry["method"], "kept": entry["kept"], "win_rate": wr, "reason": entry["reason"],
         "policy_reward": entry.get("policy_reward")}


def alignment_stage(b):
    """``eval/alignment.json``: Static HHH accuracy of base/ST/pref, pref-vs-ST win rates (judges
    that may judge, reward model), the alignment tax (:mod:`lab_tools.eval.alignment`), at the
    build's caps, on the *test* part of the held-out items (:mod:`lab_tools.eval.sets`)."""
    from lab_tools.atomic import write_json_atomic, write_text_atomic
    from lab_tools.build import EVAL_CAPS
    from lab_tools.eval.alignment import alignment_markdown, evaluate_alignment, run_models
    from lab_tools.eval.evaluate import load_eval_set
    from lab_tools.eval.preference import load_static_hhh
    from lab_tools.feedback.evaluate import evenly_spaced, hhh_default_path
    from lab_tools.train.pref import capable_judge_for, pairwise_judge_dir

    rm = b.trained_rm()
    say = (lambda m: b.console.print(m, markup=False, highlight=False)) if b.progress else None  # "[alignment]" is no markup
    evalset = load_eval_set(data_dir=b.data_dir, taxonomy=b.root, max_mc=ALIGNMENT_CAPS["max_mc"],
                            max_prompts=ALIGNMENT_CAPS["max_prompts"])
    hhh = evenly_spaced(load_static_hhh(hhh_default_path()), b.cfg.feedback.hhh_pairs)
    block = evaluate_alignment(run_models(b.train_dir), evalset.prompts, evalset.mc, hhh_items=hhh,
                               judge_dir=pairwise_judge_dir(b.judge_spec, b.cfg),
                               rm_dir=str(rm) if rm else None,
                               capable_judge=capable_judge_for(b.judge_spec, b.cfg, backend=b.backend),
                               max_new_tokens=EVAL_CAPS["max_new_tokens"], batch_size=ALIGNMENT_CAPS["batch_size"],
                               progress=say)
    write_json_atomic(b.eval_dir / "alignment.json", block, indent=1)
    write_text_atomic(b.eval_dir / "alignment.md", alignment_markdown(block) + "\n")
    hhh_acc = {k: v["accuracy"] for k, v in block["static_hhh"].items()}
    wr = (block.get("win_rate") or {}).get("judge") or (block.get("win_rate") or {}).get("reward_model") or {}
    which = "judge" if (block.get("win_rate") or {}).get("judge") else "reward model"
    return ("Static HHH " + ", ".join(f"{k} {format_estimate(v, percent=True)}" for k, v in block["static_hhh"].items())
            + (f"; pref vs ST win rate ({which}) {format_estimate(wr, percent=True)}" if wr else "")), \
        {"static_hhh": hhh_acc, "win_rate": wr.get("win_rate")}

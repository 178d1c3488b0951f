"""The two feedback stages of ``lab build`` (when ``feedback.enabled``): ``comparisons`` (after
generate) and ``reward_model`` (train + evaluate the RM). Each takes the build's state object
(:class:`lab_tools.build._Build`: ``root``, ``out``, ``cfg``, ``data_dir``, ``hasher``,
``leaf_hashes``, ``progress``, loaded ``_backends``) and returns ``(summary, data)``.

Fingerprints (the stage is skipped when unchanged):

| stage        | sha256 over                                                                   |
|--------------|-------------------------------------------------------------------------------|
| comparisons  | leaves' content hashes + phase datasets + feedback settings (not ``rm_*``) + teacher + student + HHH dialogues |
| reward_model | ``comparisons.jsonl`` + ``rm_*`` settings + RM base + Static HHH file            |
"""

from __future__ import annotations

import dataclasses
from pathlib import Path


def fingerprint_parts(b, name: str) -> list:
    """What the fingerprint of stage ``name`` covers (see the module doc)."""
    from lab_tools.feedback.evaluate import hhh_default_path
    from lab_tools.feedback.rubric import demos_version

    fb = dataclasses.asdict(b.cfg.feedback)
    if name == "comparisons":
        data = b.hasher.files(b.data_dir / f"{p}.jsonl" for p in ("kt1", "kt2", "st"))
        return [b.leaf_hashes, data, {k: v for k, v in fb.items() if not k.startswith("rm_")},
                b.cfg.generate.teacher, b.cfg.train.student, demos_version()]
    base = b.cfg.feedback.rm_base or b.cfg.train.student
    base_id = b.hasher.model(Path(base)) if Path(base).is_dir() else base
    return [b.hasher.file(b.data_dir / "comparisons.jsonl"), {k: v for k, v in fb.items() if k.startswith("rm_")},
            base_id, b.hasher.file(hhh_default_path())]


def comparisons_stage(b):
    """Synthetic comparisons for every leaf (cached per leaf); fails on a teacher error or no pair."""
    from lab_tools.feedback.comparisons import generate_comparisons

    rep = generate_comparisons(b.root, b.data_dir, b.cfg, backends=b._backends, progress=b.progress)
    fresh = sum(not s["cached"] for s in rep.leaves)
    pairs = ", ".join(f"{k} {v}" for k, v in sorted(rep.card["per_config_pair"].items()))
    return (f"{rep.pairs} pairs ({pairs}); {sum(rep.card['dropped'].values())} dropped; "
            f"{fresh} leaves generated, {len(rep.leaves) - fresh} cached"), \
        {"pairs": rep.pairs, "per_config_pair": rep.card["per_config_pair"], "dropped": rep.card["dropped"],
         "generation_seconds": round(rep.generation_seconds, 1)}


def reward_model_stage(b):
    """Train the RM on ``data/comparisons.jsonl`` into ``OUT/rm`` and evaluate it (held-out leaves,
    Static HHH when the shared file is present); ``OUT/rm/rm_eval.json`` feeds the model card."""
    from lab_tools.feedback.evaluate import hhh_default_path
    from lab_tools.feedback.rm import evaluate_saved, train_reward_model

    comparisons, rm_dir = b.data_dir / "comparisons.jsonl", b.out / "rm"
    manifest = train_reward_model(comparisons, rm_dir, b.cfg, progress=b.progress)
    hhh = hhh_default_path() if hhh_default_path().is_file() else None
    res = evaluate_saved(rm_dir, comparisons, hhh_path=hhh)

    def pct(v):
        return "–" if v is None else f"{100 * v:.1f}%"

    held, static = res["heldout"], res["static_hhh"] or {}
    summary = (f"{manifest['train_pairs']} training pairs; held-out ({held['n']}): RM {pct(held['accuracy'])} vs "
               f"longer {pct(held['length_baseline'])}")
    if static:
        summary += f"; Static HHH: RM {pct(static['accuracy'])} vs longer {pct(static['length_baseline'])}"
    pv = manifest.get("post_validation")
    if pv:
        summary += f"; post-validation dropped {pv['dropped']}"
    return summary, {"train_pairs": manifest["train_pairs"], "heldout": {k: held.get(k) for k in ("n", "accuracy",
                                                                                               "length_baseline")},
                     "static_hhh": {k: static.get(k) for k in ("n", "accuracy", "length_baseline")} if static else None,
                     "post_validation_dropped": pv["dropped"] if pv else None}

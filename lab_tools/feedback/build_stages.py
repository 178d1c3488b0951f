"""The feedback stages of `lab build` that make data and the reward model (ALMoST; only with
``feedback.enabled``; :class:`lab_tools.stage.FeedbackStage`). The preference phase is a train
stage (:mod:`lab_tools.train.build_stages`), its evaluation an eval stage
(:mod:`lab_tools.eval.build_stages`).

| stage        | inputs (fingerprint)                                                          | outputs |
|--------------|-------------------------------------------------------------------------------|---------|
| comparisons  | leaves' content hashes + phase datasets + feedback settings (not ``rm_*``) + teacher + student + demonstrations + filters | ``data/comparisons.jsonl`` |
| reward_model | ``comparisons.jsonl`` + ``rm_*`` settings + RM base + Static HHH file + ``hhh_pairs`` | ``rm/config.json``, ``rm/rm_eval.json`` |
| self_play    | leaves + ``st.jsonl`` + the reward model + feedback settings + teacher + student + filters (with ``feedback.self_play``) | ``data/selfplay.jsonl`` |
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lab_tools.errors import plural
from lab_tools.eval.stats import Estimate, format_estimate
from lab_tools.feedback.comparisons import generate_comparisons
from lab_tools.feedback.evaluate import hhh_default_path
from lab_tools.feedback.rm import evaluate_saved, train_reward_model
from lab_tools.feedback.rubric import demos_version
from lab_tools.feedback.selfplay import generate_self_play
from lab_tools.stage import Context, FeedbackStage, StageResult


def rm_id(ctx: Context) -> str | None:
    """The digest of the build's trained reward model (``OUT/rm``), None before there is one."""
    rm = ctx.trained_rm()
    return ctx.hasher.model(rm) if rm else None


class ComparisonsStage(FeedbackStage):
    """Synthetic comparisons for every leaf (cached per leaf); fails on a teacher error or no pair."""

    name = "comparisons"

    def inputs(self, ctx: Context) -> list:
        fb = dataclasses.asdict(ctx.cfg.feedback)
        data = ctx.hasher.files(ctx.data_dir / f"{p}.jsonl" for p in ("kt1", "kt2", "st"))
        return [ctx.leaf_hashes, data, {k: v for k, v in fb.items() if not k.startswith("rm_")},
                ctx.cfg.generate.teacher, ctx.cfg.train.student, demos_version(),
                dataclasses.asdict(ctx.cfg.generate.filters), ctx.engine_id()]  # both sides are screened

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.data_dir / "comparisons.jsonl"]

    def run(self, ctx: Context) -> StageResult:
        rep = generate_comparisons(ctx.root, ctx.data_dir, ctx.cfg, backends=ctx.backends, progress=ctx.progress)
        fresh = sum(not s["cached"] for s in rep.leaves)
        pairs = ", ".join(f"{k} {v}" for k, v in sorted(rep.card["per_config_pair"].items()))
        return self.done(f"{plural(rep.pairs, 'pair')} ({pairs}); {sum(rep.card['dropped'].values())} dropped; "
                         f"{plural(fresh, 'leaf')} generated, {len(rep.leaves) - fresh} cached",
                         {"pairs": rep.pairs, "per_config_pair": rep.card["per_config_pair"],
                          "dropped": rep.card["dropped"], "generation_seconds": round(rep.generation_seconds, 1)})


class RewardModelStage(FeedbackStage):
    """Train the RM on ``data/comparisons.jsonl`` into ``OUT/rm`` and evaluate it (held-out leaves,
    Static HHH, the shipped file); ``OUT/rm/rm_eval.json`` feeds the model card."""

    name = "reward_model"
    trains = True

    def inputs(self, ctx: Context) -> list:
        fb = dataclasses.asdict(ctx.cfg.feedback)
        base = ctx.cfg.feedback.rm_base or ctx.cfg.train.student
        base_id = ctx.hasher.model(Path(base)) if Path(base).is_dir() else base
        return [ctx.hasher.file(ctx.data_dir / "comparisons.jsonl"), {k: v for k, v in fb.items() if k.startswith("rm_")},
                base_id, ctx.hasher.file(hhh_default_path()), fb["hhh_pairs"]]

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.out / "rm" / "config.json", ctx.out / "rm" / "rm_eval.json"]

    def run(self, ctx: Context) -> StageResult:
        comparisons, rm_dir = ctx.data_dir / "comparisons.jsonl", ctx.out / "rm"
        manifest = train_reward_model(comparisons, rm_dir, ctx.cfg, progress=ctx.progress)
        res = evaluate_saved(rm_dir, comparisons, hhh_path=hhh_default_path(), hhh_pairs=ctx.cfg.feedback.hhh_pairs)

        def fig(d: dict, key: str, interval: str) -> str:  # n and the Wilson 95% interval on every figure
            low, high = d.get(interval) or (None, None)
            return format_estimate(Estimate(d.get(key), d.get("n", 0), low, high, "wilson", proportion=True),
                                   percent=True)

        held, static = res["heldout"], res["static_hhh"] or {}
        summary = (f"{manifest['train_pairs']} training pairs; held-out: RM {fig(held, 'accuracy', 'interval')} vs "
                   f"longer {fig(held, 'length_baseline', 'length_baseline_interval')}")
        if static:
            summary += (f"; Static HHH: RM {fig(static, 'accuracy', 'interval')} vs longer "
                        f"{fig(static, 'length_baseline', 'length_baseline_interval')}")
        pv = manifest.get("post_validation")
        if pv:
            summary += f"; post-validation dropped {pv['dropped']}"
        keys = ("n", "accuracy", "length_baseline")
        return self.done(summary, {"train_pairs": manifest["train_pairs"], "heldout": {k: held.get(k) for k in keys},
                                   "static_hhh": {k: static.get(k) for k in keys} if static else None,
                                   "post_validation_dropped": pv["dropped"] if pv else None})


class SelfPlayStage(FeedbackStage):
    """RM-guided self-play for every compositional-skill leaf (cached per leaf) into
    ``data/selfplay.jsonl`` (with ``feedback.self_play``); fails on a teacher error or when no
    conversation is kept."""

    name = "self_play"

    def enabled(self, cfg) -> bool:
        return bool(cfg.feedback.enabled and cfg.feedback.self_play)

    def inputs(self, ctx: Context) -> list:
        return [ctx.leaf_hashes, ctx.hasher.file(ctx.data_dir / "st.jsonl"), rm_id(ctx),
                dataclasses.asdict(ctx.cfg.feedback), ctx.cfg.generate.teacher, ctx.cfg.train.student,
                dataclasses.asdict(ctx.cfg.generate.filters), ctx.engine_id()]  # turns are screened

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.data_dir / "selfplay.jsonl"]

    def run(self, ctx: Context) -> StageResult:
        rep = generate_self_play(ctx.root, ctx.data_dir, ctx.cfg, ctx.out / "rm", backends=ctx.backends,
                                 progress=ctx.progress)
        turns = [t for r in rep.leaves for t in r["turns"]]
        fresh = sum(not r["cached"] for r in rep.leaves)
        mean = sum(turns) / len(turns) if turns else 0
        return self.done(f"{plural(rep.kept, 'conversation')} kept ({mean:.1f} assistant turns each); "
                         f"{plural(fresh, 'leaf')} generated, {len(rep.leaves) - fresh} cached",
                         {"kept": rep.kept, "mean_turns": round(mean, 2)})

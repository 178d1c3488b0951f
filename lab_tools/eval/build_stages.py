"""The evaluation stages of `lab build` (:class:`lab_tools.stage.Stage`): ``evaluate`` (the
selected checkpoint against the student, per leaf, :func:`lab_tools.eval.evaluate.evaluate`) and
``alignment`` (base / ST / pref, :func:`lab_tools.eval.alignment.evaluate_alignment`; only with
``feedback.enabled``), both at the build's caps (:data:`lab_tools.config_sections.EVAL_CAPS`,
:data:`lab_tools.config_sections.ALIGNMENT_CAPS`) on the *test* part of the held-out items.

| stage     | inputs (fingerprint)                                                              | outputs |
|-----------|-----------------------------------------------------------------------------------|---------|
| evaluate  | selected model's weights (by content) + held-out files + judge + student + caps + ``model_judges`` | ``eval/eval.json`` |
| alignment | reward model + judge + comparisons + preset + base/ST/pref models + held-out files + Static HHH file + ``hhh_pairs`` + caps | ``eval/alignment.json`` |
"""

from __future__ import annotations

from pathlib import Path

from lab_tools.atomic import write_json_atomic, write_text_atomic
from lab_tools.config_sections import ALIGNMENT_CAPS, EVAL_CAPS
from lab_tools.eval.alignment import alignment_markdown, evaluate_alignment, run_models
from lab_tools.eval.evalset import load_eval_set
from lab_tools.eval.evaluate import evaluate
from lab_tools.eval.preference import load_static_hhh
from lab_tools.eval.report import format_total
from lab_tools.eval.stats import format_estimate
from lab_tools.feedback.evaluate import evenly_spaced, hhh_default_path
from lab_tools.stage import Context, FeedbackStage, Stage, StageResult
from lab_tools.train.build_stages import policy_parts, run_model_ids
from lab_tools.train.pref_select import capable_judge_for, pairwise_judge_dir
from lab_tools.weights import tree_digest


class EvaluateStage(Stage):
    """Knowledge and judge scores of the selected checkpoint vs the student, per leaf."""

    name = "evaluate"
    loads_models = True

    def inputs(self, ctx: Context) -> list:
        selected = ctx.selected()
        # the weights by content, never by (size, mtime) alone (lab_tools.weights.tree_digest)
        weights = tree_digest(selected, ctx.state.setdefault("weights_memo", {})) if selected else None
        return [weights, ctx.heldout_files(), ctx.judge_spec, ctx.student_id(), EVAL_CAPS,
                ctx.cfg.generate.model_judges, ctx.engine_id()]

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.eval_dir / "eval.json"]

    def run(self, ctx: Context) -> StageResult:
        cfg = ctx.cfg
        evalset = load_eval_set(data_dir=ctx.data_dir, taxonomy=ctx.root, max_mc=EVAL_CAPS["max_mc"],
                                max_prompts=EVAL_CAPS["max_prompts"])
        # A judge that cannot rate (generate.model_judges false) is not asked: its scores would all
        # be unparsed; skill leaves are then compared by held-out reference log-likelihood.
        judge = ctx.backend(ctx.judge_spec) if evalset.prompts and cfg.generate.model_judges else None
        res = evaluate(ctx.selected(), evalset, ctx.eval_dir, base_model=cfg.train.student, judge=judge,
                       max_new_tokens=EVAL_CAPS["max_new_tokens"], judge_max_tokens=EVAL_CAPS["judge_max_tokens"],
                       progress=ctx.progress, cache_dir=cfg.cache_path, engine=cfg.generate.engine,
                       compute_type=cfg.generate.engine_compute_type)
        totals = res.report.get("totals", {})
        parts = [f"{name} {format_total(name, t['base'])} → {format_total(name, t['trained'])} "
                 f"({t.get('verdict', 'n/a')})" for name, t in totals.items()]
        c = res.report["counts"]
        parts.append(f"leaves improved {c['improved']}, regressed {c['regressed']}, no measurable change "
                     f"{c['no measurable change']}, too small to decide {c['too small to decide']}")
        return self.done("; ".join(parts), {"totals": totals, "counts": c})


class AlignmentStage(FeedbackStage):
    """``eval/alignment.json``: Static HHH accuracy of base/ST/pref, pref-vs-ST win rates (judges
    that may judge, reward model), the alignment tax (:mod:`lab_tools.eval.alignment`)."""

    name = "alignment"

    def inputs(self, ctx: Context) -> list:
        return policy_parts(ctx) + [run_model_ids(ctx), ctx.heldout_files(), ctx.hasher.file(hhh_default_path()),
                                    ctx.cfg.feedback.hhh_pairs, ALIGNMENT_CAPS, ctx.engine_id()]

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.eval_dir / "alignment.json"]

    def run(self, ctx: Context) -> StageResult:
        cfg, rm = ctx.cfg, ctx.trained_rm()
        say = (lambda m: ctx.console.print(m, markup=False, highlight=False)) if ctx.progress else None
        evalset = load_eval_set(data_dir=ctx.data_dir, taxonomy=ctx.root, max_mc=ALIGNMENT_CAPS["max_mc"],
                                max_prompts=ALIGNMENT_CAPS["max_prompts"])
        hhh = evenly_spaced(load_static_hhh(hhh_default_path()), cfg.feedback.hhh_pairs)
        block = evaluate_alignment(run_models(ctx.train_dir), evalset.prompts, evalset.mc, hhh_items=hhh,
                                   judge_dir=pairwise_judge_dir(ctx.judge_spec, cfg),
                                   rm_dir=str(rm) if rm else None,
                                   capable_judge=capable_judge_for(ctx.judge_spec, cfg, backend=ctx.backend),
                                   max_new_tokens=EVAL_CAPS["max_new_tokens"], batch_size=ALIGNMENT_CAPS["batch_size"],
                                   progress=say, engine=cfg.generate.engine,
                                   compute_type=cfg.generate.engine_compute_type)
        write_json_atomic(ctx.eval_dir / "alignment.json", block, indent=1)
        write_text_atomic(ctx.eval_dir / "alignment.md", alignment_markdown(block) + "\n")
        hhh_acc = {k: v["accuracy"] for k, v in block["static_hhh"].items()}
        rates = block.get("win_rate") or {}
        wr = rates.get("judge") or rates.get("reward_model") or {}
        which = "judge" if rates.get("judge") else "reward model"
        return self.done("Static HHH " + ", ".join(f"{k} {format_estimate(v, percent=True)}"
                                                   for k, v in block["static_hhh"].items())
                         + (f"; pref vs ST win rate ({which}) {format_estimate(wr, percent=True)}" if wr else ""),
                         {"static_hhh": hhh_acc, "win_rate": wr.get("win_rate")})

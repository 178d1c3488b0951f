"""The training stages of `lab build` (:class:`lab_tools.stage.Stage`): ``train`` (LAB's phased
training KT/1 → KT/2 → ST with checkpoint selection, :func:`lab_tools.train.phases.train_phases`)
and ``pref`` (ALMoST's preference phase after ST, :func:`lab_tools.train.pref.train_pref`; only
with ``feedback.enabled``). Both load a model to train it: the recipe closes every in-process
teacher that holds the GPU first.

| stage | inputs (fingerprint)                                                                 | outputs |
|-------|--------------------------------------------------------------------------------------|---------|
| train | phase datasets (+ ``selfplay.jsonl``) + held-out files + preset (name and file) + student + judge + ``model_judges`` + engine | the selected checkpoint (``train/manifest.json`` ``selected``) |
| pref  | reward model + judge + ``comparisons.jsonl`` + preset (name and file) + the ST-selected model + engine | ``train/manifest.json`` ``phases.pref.selected`` |

A train stage interrupted with unchanged inputs resumes from its last checkpoint with
``lab build --resume``; otherwise ``train/`` is removed and training starts over.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lab_tools.engines.load import scorer_of
from lab_tools.errors import LabError, plural
from lab_tools.eval.alignment import run_models
from lab_tools.eval.stats import format_estimate
from lab_tools.stage import Context, FeedbackStage, Stage, StageResult
from lab_tools.train.config import preset_path
from lab_tools.train import phases  # as a module: tests replace train_phases
from lab_tools.train.pref import policy_reward_line, train_pref
from lab_tools.train.pref_select import capable_judge_for, pairwise_judge_dir, rm_verdicts_fn


def run_model_ids(ctx: Context) -> dict:
    """``{"base", "st", "pref"?: digest or spec}`` of the build's training run (a model directory
    by its digest), or {} before there is one (:func:`lab_tools.eval.alignment.run_models`)."""
    try:
        models = run_models(ctx.train_dir)
    except LabError:
        models = {}
    return {k: (ctx.hasher.model(Path(v)) if Path(v).is_dir() else v) for k, v in models.items()}


def policy_parts(ctx: Context) -> list:
    """What the pref and alignment fingerprints share: the reward model, the judge, the
    comparisons, the preset (name and file)."""
    rm = ctx.trained_rm()
    preset = ctx.cfg.train.preset
    return [ctx.hasher.model(rm) if rm else None, ctx.judge_spec, ctx.hasher.file(ctx.data_dir / "comparisons.jsonl"),
            preset, ctx.hasher.file(preset_path(preset))]


class TrainStage(Stage):
    """Phased training into ``OUT/train``, resumed from its checkpoints only when asked
    (``--resume``) and the inputs are those of the interrupted run."""

    name = "train"
    loads_models = True
    trains = True

    def inputs(self, ctx: Context) -> list:
        cfg, h = ctx.cfg, ctx.hasher
        data = h.files(ctx.data_dir / f"{p}.jsonl" for p in ("kt1", "kt2", "st", "selfplay"))
        return [data, ctx.heldout_files(), cfg.train.preset, h.file(preset_path(cfg.train.preset)), ctx.student_id(),
                ctx.judge_spec, cfg.generate.model_judges, ctx.engine_id()]  # selection scores on it

    def outputs(self, ctx: Context) -> list[Path]:
        selected = ctx.selected()
        return [ctx.train_dir / "manifest.json"] + ([selected / "config.json"] if selected else [])

    def present(self, ctx: Context) -> bool:
        return ctx.selected() is not None  # the manifest names a checkpoint that is there

    def run(self, ctx: Context) -> StageResult:
        previous = ctx.previous
        interrupted = previous.get("fingerprint") == self.fingerprint(ctx) and \
            previous.get("status") in ("running", "failed")
        resume = ctx.resume and interrupted and (ctx.train_dir / "manifest.json").is_file()
        if not resume and ctx.train_dir.exists():
            # inputs changed (or no resume asked): the old run is stale; start over
            shutil.rmtree(ctx.train_dir)
        judge = ctx.backends.get(ctx.judge_spec, ctx.judge_spec)
        cfg = ctx.cfg
        result = phases.train_phases(ctx.data_dir, cfg.train.student, ctx.train_dir, preset=cfg.train.preset,
                              resume=resume, judge=judge, progress=ctx.progress, cache_dir=cfg.cache_path,
                              judge_rates=cfg.generate.model_judges, report_to=cfg.train.report_to,
                              scorer=scorer_of(cfg))
        steps = {p: (e or {}).get("steps") for p, e in (result.manifest.get("phases") or {}).items()}
        return self.done(f"{'resumed, ' if resume else ''}selected {Path(result.selected).name} "
                         f"({Path(result.selected).parent.name}); steps {steps}",
                         {"selected": str(result.selected), "resumed": resume, "steps": steps})

    def failure_hint(self, ctx: Context) -> str:
        if (ctx.train_dir / "manifest.json").is_file():
            return "\nrun `lab build --resume` to continue training from its last checkpoint"
        return ""


class PrefStage(FeedbackStage):
    """The preference phase after ST of the build's training run (``train/pref``); pref replaces
    ST only with a measurable gain on the selection set, by a judge that may judge (else the
    reward model with reference log-likelihood as a guard), and no knowledge regression."""

    name = "pref"
    trains = True

    def inputs(self, ctx: Context) -> list:
        return policy_parts(ctx) + [run_model_ids(ctx).get("st"), ctx.engine_id()]  # selection scores on it

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.train_dir / "manifest.json"]

    def present(self, ctx: Context) -> bool:
        try:
            manifest = json.loads((ctx.train_dir / "manifest.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return bool(((manifest.get("phases") or {}).get("pref") or {}).get("selected"))

    def run(self, ctx: Context) -> StageResult:
        cfg, rm = ctx.cfg, ctx.trained_rm()
        rm_dir = str(rm) if rm else None
        entry = train_pref(ctx.train_dir, ctx.data_dir, preset=cfg.train.preset,
                           judge_dir=pairwise_judge_dir(ctx.judge_spec, cfg), rm_dir=rm_dir, progress=ctx.progress,
                           rm_verdicts=rm_verdicts_fn(rm_dir, cfg.feedback.rm_max_length),
                           capable_judge=capable_judge_for(ctx.judge_spec, cfg, backend=ctx.backend),
                           report_to=cfg.train.report_to, scorer=scorer_of(cfg))
        best = entry["candidates"].get(entry["candidate"], {})
        vs_st = (entry.get("decision") or {}).get("pref_vs_st") or {}
        pr = entry.get("policy_reward")
        return self.done(f"{entry['method']} on {plural(entry['comparisons'], 'comparison')}, "
                         f"{plural(entry['steps'], 'step')}; {vs_st.get('metric', 'no decision')}: "
                         f"{vs_st.get('verdict', '–')} (change {format_estimate(vs_st.get('gain'))}); "
                         f"release keeps {entry['kept']}" + (f"; policy moved: {policy_reward_line(pr)}" if pr else ""),
                         {"method": entry["method"], "kept": entry["kept"], "win_rate": best.get("win_rate"),
                          "reason": entry["reason"], "policy_reward": pr})

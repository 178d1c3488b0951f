"""The ``generate`` stage of `lab build` (:class:`lab_tools.stage.Stage`): LAB's SDG for every leaf
(:func:`lab_tools.sdg.pipeline.generate_dataset`, cached per leaf) into ``OUT/data``.

Inputs (fingerprint): all leaves' content hashes + the ``generate`` and ``documents`` settings;
with ``feedback.rm_scores_sdg`` and a reward model from a previous build, also that model, its
``comparisons.jsonl`` and the score threshold and length. Outputs: ``data/kt1.jsonl``,
``kt2.jsonl``, ``st.jsonl`` (+ held-out files and the dataset card).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from lab_tools.errors import LabError, plural
from lab_tools.feedback.scorer import rm_scorer
from lab_tools.jsonl import count_lines
from lab_tools.sdg.pipeline import generate_dataset
from lab_tools.stage import Context, Stage, StageResult

PHASE_FILES = ("kt1", "kt2", "st")


class GenerateStage(Stage):
    """SDG; fails when a leaf produced no data or nothing is left to train on."""

    name = "generate"
    loads_models = True

    def inputs(self, ctx: Context) -> list:
        cfg, h = ctx.cfg, ctx.hasher
        rm = ctx.sdg_rm()  # pair evaluation by reward: the previous build's RM and its baseline
        scoring = None if rm is None else [h.model(rm), h.file(ctx.data_dir / "comparisons.jsonl"),
                                           cfg.feedback.rm_score_threshold, cfg.feedback.rm_max_length]
        return [ctx.leaf_hashes, dataclasses.asdict(cfg.generate), dataclasses.asdict(cfg.documents),
                *([scoring] if scoring else []), ctx.engine_id()]

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.data_dir / f"{p}.jsonl" for p in PHASE_FILES]

    def run(self, ctx: Context) -> StageResult:
        scorer, rm = None, ctx.sdg_rm()
        if rm is not None:
            fb = ctx.cfg.feedback
            scorer = rm_scorer(rm, threshold=fb.rm_score_threshold, max_length=fb.rm_max_length,
                               comparisons=ctx.data_dir / "comparisons.jsonl")
        # teacher/judge None: generate_dataset builds them only if some leaf is not cached
        rep = generate_dataset(ctx.root, ctx.leaf_paths, ctx.data_dir, ctx.cfg, progress=ctx.progress,
                               scorer=scorer)
        failed = {s.leaf: s.error for s in rep.leaves if s.error}
        if failed:
            shown = "\n".join(f"  {leaf}: {err}" for leaf, err in sorted(failed.items()))
            raise LabError(f"{plural(len(failed), 'leaf')} produced no data:\n{shown}\n"
                           f"(the other leaves' data is kept in {ctx.data_dir} and in the SDG cache)")
        if rep.failure():  # no leaf failed, yet nothing to train on
            raise LabError(rep.failure())
        fresh = sorted(s.leaf for s in rep.leaves if not s.cached)
        counts = {p: count_lines(ctx.data_dir / f"{p}.jsonl") for p in PHASE_FILES}
        return self.done(f"samples kt1 {counts['kt1']}, kt2 {counts['kt2']}, st {counts['st']}; "
                         f"{plural(len(fresh), 'leaf')} generated, {len(rep.leaves) - len(fresh)} cached",
                         {"samples": counts, "generated": fresh, "teacher": rep.teacher, "judge": rep.judge,
                          "scorer": scorer.name if scorer else None})

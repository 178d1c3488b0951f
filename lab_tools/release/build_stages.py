"""The ``release`` stage of `lab build` (:class:`lab_tools.stage.Stage`): writes ``OUT/run.json``
(provenance: taxonomy commit, leaves, settings) and cuts ``OUT/release``
(:func:`lab_tools.release.release.make_release`: model, tokenizer, model card, data manifest,
checksums).

Inputs (fingerprint): ``train/manifest.json``, ``eval/eval.json``, the dataset card,
``train/loss.png``, ``rm/rm_eval.json``, ``eval/alignment.json`` and the provenance (without its
creation time). Outputs: ``release/SHA256SUMS`` and ``release/release.json``.
"""

from __future__ import annotations

from pathlib import Path

from lab_tools.release.release import make_release, provenance, write_json
from lab_tools.stage import Context, Stage, StageResult


def build_provenance(ctx: Context) -> dict:
    """The build's provenance (:func:`lab_tools.release.release.provenance`), computed once per build."""
    if "provenance" not in ctx.memo:
        ctx.memo["provenance"] = provenance(ctx.root, ctx.cfg)
    return ctx.memo["provenance"]


class ReleaseStage(Stage):
    """Cut the release directory from the run folder."""

    name = "release"

    def inputs(self, ctx: Context) -> list:
        prov = {k: v for k, v in build_provenance(ctx).items() if k != "created"}
        files = ctx.hasher.files([ctx.train_dir / "manifest.json", ctx.eval_dir / "eval.json",
                                  ctx.data_dir / "dataset_card.json", ctx.train_dir / "loss.png",
                                  ctx.out / "rm" / "rm_eval.json", ctx.eval_dir / "alignment.json"])
        return [files, prov]

    def outputs(self, ctx: Context) -> list[Path]:
        return [ctx.release_dir / "SHA256SUMS", ctx.release_dir / "release.json"]

    def run(self, ctx: Context) -> StageResult:
        write_json(ctx.out / "run.json", build_provenance(ctx))
        res = make_release(ctx.out, ctx.release_dir)
        return self.done(str(res.out_dir), {"path": str(res.out_dir), "samples": res.info["samples"]})

"""``lab generate``: synthetic data generation for the taxonomy's leaves (LAB 3.2).

torch/transformers are imported only when a transformers teacher is actually built.
"""

from __future__ import annotations

from pathlib import Path

import click

from lab_tools.config import default_root, load_config
from lab_tools.errors import LabError, plural
from lab_tools.feedback.comparisons import generate_comparisons, print_table
from lab_tools.feedback.scorer import rm_scorer
from lab_tools.feedback.selfplay import generate_self_play
from lab_tools.locks import run_folder
from lab_tools.models import require_local_model_dir
from lab_tools.progress import silence_library_bars
from lab_tools.sdg.pipeline import generate_dataset
from lab_tools.taxonomy.diff import changed_leaves


def _select(root: Path, leaves: tuple[str, ...], base: str | None) -> list[str] | None:
    if not leaves or leaves == ("all",):
        return None
    if leaves == ("changed",):
        try:
            return changed_leaves(root, base).changed
        except NotImplementedError as exc:
            raise LabError(f"--leaves changed needs the taxonomy diff, not available: {exc}") from exc
    if "changed" in leaves or "all" in leaves:
        raise LabError("--leaves takes 'changed', 'all', or leaf paths, not a mix")
    return list(leaves)


def _table(report) -> None:
    """The summary table: per leaf, quality rejections by stage (``rej STAGE``) and, apart from
    them, failed teacher/judge requests by stage (``err STAGE``: failed/sent)."""
    from rich.console import Console
    from rich.table import Table

    stages = sorted({k for s in report.leaves for k in s.rejected})
    failing = sorted({k for s in report.leaves for k, n in s.errors.items() if n})
    t = Table(title=f"lab generate: teacher {report.teacher}, judge {report.judge}")
    for col in ("leaf", "kind", "generated", "kept", *[f"rej {s}" for s in stages], "malformed",
                *[f"err {s}" for s in failing], "seconds", "cached"):
        t.add_column(col, justify="left" if col in ("leaf", "kind") else "right")
    for s in report.leaves:
        t.add_row(s.leaf, s.kind, str(s.generated), str(s.kept),
                  *[str(s.rejected.get(k, 0)) for k in stages], str(sum(s.malformed.values())),
                  *[f"{s.errors.get(k, 0)}/{s.requests_by_stage.get(k, 0)}" for k in failing],
                  f"{s.seconds:.1f}", "yes" if s.cached else ("ERROR" if s.error else "no"))
    import sys

    console = Console(width=None if sys.stdout.isatty() else 200)  # CI logs: do not truncate paths
    console.print(t)
    for s in report.leaves:
        if s.error:
            console.print(f"[red]{s.leaf}: {s.error}[/red]")
    # the outcome line is the same on a rerun that reads leaves from the cache; timing apart
    console.print(report.summary(), markup=False, highlight=False)
    console.print(report.cache_note(), markup=False, highlight=False)


def _deprecated_no_progress(ctx, param, value):
    """--no-progress still works (scripts), with a warning that it is now --quiet."""
    if value:
        click.echo("warning: --no-progress is deprecated, use --quiet", err=True)
    return value


@click.command("generate")
@click.argument("root", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--leaves", multiple=True, metavar="changed|all|PATH",
              help="Which leaves to generate: 'all' (default), 'changed' (against --base), or leaf paths "
                   "(repeatable). Other leaves are included from the cache when present.")
@click.option("--base", default=None, help="Base ref for --leaves changed (default origin/main, then main).")
@click.option("--samples", type=int, default=None, help="Samples per leaf (generate.samples).")
@click.option("--teacher", default=None,
              help="transformers:PATH|embedded, openai:URL#MODEL, vllm:MODEL or scripted:[PATH].")
@click.option("--judge", default=None, help="Judge backend spec (default: the teacher).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("runs/generate"),
              show_default=True, help="Output directory for kt1/kt2/st.jsonl and the dataset card.")
@click.option("--workers", type=int, default=None, help="Requests in flight for the openai backend.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None, help="Extra config file applied over lab.yaml.")
@click.option("--quiet", is_flag=True,
              help="No progress output (bars, CI progress lines, the libraries' bars); the summary is still printed.")
@click.option("--no-progress", is_flag=True, hidden=True, callback=_deprecated_no_progress,
              help="Deprecated name of --quiet.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: one Ray task per leaf, each worker with its own teacher "
                   "(needs the 'ray' extra and a cache dir every node sees).")
@click.option("--address", default=None,
              help="Ray cluster to join with --engine ray (e.g. ray://HEAD:10001, HEAD:6379, auto); default: a local one.")
@click.option("--self-play", "self_play", is_flag=True,
              help="Also run RM-guided self-play (ALMoST RMSP) with --reward-model: multi-turn ST "
                   "demonstrations in selfplay.jsonl [lab.yaml feedback.self_play].")
@click.option("--reward-model", "reward_model", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Reward model dir (`lab train --phase rm`) that picks the best assistant turn in self-play "
                   "and, with feedback.rm_scores_sdg, scores the SDG samples (pair evaluation by reward).")
def generate(root, leaves, base, samples, teacher, judge, out_dir, workers, config_file, no_progress,
             engine, address, self_play, reward_model, quiet):
    """Generate synthetic training data from the leaves of taxonomy ROOT (default ./taxonomy;
    skills-SDG and knowledge-SDG, LAB 3.2) into phase datasets kt1/kt2/st (LAB table 1), reusing
    cached leaves."""
    no_progress = no_progress or quiet  # --no-progress: the deprecated name of --quiet
    silence_library_bars(quiet=no_progress)
    root = root or default_root()
    if not root.is_dir():
        raise LabError(f"taxonomy root not found: {root}")
    cfg = load_config(root, config_file)
    cfg.override("generate.samples", samples)
    cfg.override("generate.teacher", teacher)
    cfg.override("generate.judge", judge)
    cfg.override("generate.workers", workers)
    if cfg.generate.samples < 1:
        raise LabError("generate.samples must be at least 1", field="generate.samples")
    selected = _select(root, tuple(leaves), base)
    if address and engine != "ray":
        raise LabError("--address is for --engine ray", field="--address")
    if reward_model is not None:  # checked before any teacher is loaded, not after the SDG
        require_local_model_dir(reward_model, "--reward-model", embedded=False)
    click.get_current_context().with_resource(run_folder(out_dir, "lab generate"))  # one writer per --out
    scorer = None
    if reward_model is not None and cfg.feedback.rm_scores_sdg:  # pair evaluation by reward
        scorer = rm_scorer(reward_model, threshold=cfg.feedback.rm_score_threshold,
                           max_length=cfg.feedback.rm_max_length, comparisons=out_dir / "comparisons.jsonl")
    report = generate_dataset(root, selected, out_dir, cfg, progress=not no_progress,
                              engine=engine, address=address, scorer=scorer)
    _table(report)
    problem = report.failure()
    if problem:
        raise LabError(f"lab generate failed: {problem}\n(nothing failed was cached as finished; "
                       "fix the cause and run `lab generate` again)")
    if cfg.feedback.enabled:  # synthetic comparisons (ALMoST), cached per leaf like the SDG shards
        print_table(generate_comparisons(root, out_dir, cfg, leaf_paths=selected, progress=not no_progress))
    if self_play:
        if reward_model is None:
            raise LabError("--self-play needs --reward-model DIR (train one with `lab train --phase rm`)",
                           field="--reward-model")
        sp = generate_self_play(root, out_dir, cfg, reward_model, leaf_paths=selected, progress=not no_progress)
        click.echo(f"self-play: {plural(sp.kept, 'conversation')} kept ({sp.path}) in {sp.seconds:.1f} s")

"""`lab evaluate`: knowledge and judge scores of a model, base vs trained per leaf.

torch/transformers are imported only when the command runs (see lab_tools/cli.py).
"""

from __future__ import annotations

from pathlib import Path

import click


def make_judge(spec: str | None, cache_dir):
    """A judge :class:`~lab_tools.sdg.backends.Teacher` from a backend spec; None for ``none``/empty."""
    if not spec or spec.lower() == "none":
        return None
    from lab_tools.sdg.backends import make_teacher

    return make_teacher(spec, cache_dir)


def _check_inputs(model, base_model, reward_model, training_run) -> None:
    """Every model directory and training run given to `lab evaluate` exists and is usable, checked
    before any judge or model is loaded (that takes tens of seconds on a CPU).

    Raises:
        LabError: naming the option and the path (see
        :func:`lab_tools.models.require_local_model_dir`; :func:`lab_tools.eval.alignment.run_models`).
    """
    from lab_tools.models import require_local_model_dir

    for value, option in ((model, "--model"), (base_model, "--base-model")):
        if value is not None:
            require_local_model_dir(value, option)
    if reward_model is not None:
        require_local_model_dir(reward_model, "--reward-model", embedded=False)
    if training_run is not None:
        from lab_tools.eval.alignment import run_models

        run_models(training_run)


@click.command("evaluate")
@click.option("--model", "model", default=None, help="Trained model directory (or 'embedded'); optional with --reward-model.")
@click.option("--base-model", default=None, help="Base model to compare against, per leaf.")
@click.option("--taxonomy", "taxonomy", type=click.Path(file_okay=False), default=None,
              help="Taxonomy root for held-out items (default: ./taxonomy or .).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False), default=None,
              help="Generated data dir holding heldout_mc.jsonl / heldout_prompts.jsonl.")
@click.option("--mmlu", "mmlu", multiple=True, type=click.Path(dir_okay=False),
              help="MMLU-format file (CSV question,A,B,C,D,answer or JSONL); repeatable.")
@click.option("--judge", "judge_spec", default=None,
              help="Judge backend spec (default: lab.yaml generate.judge, else the teacher); 'none' skips.")
@click.option("--max-mc", type=int, default=120, show_default=True, help="Cap on multiple-choice items per source.")
@click.option("--max-prompts", type=int, default=16, show_default=True, help="Cap on judge prompts.")
@click.option("--max-new-tokens", type=int, default=64, show_default=True, help="Bound on each answer.")
@click.option("--judge-max-tokens", type=int, default=48, show_default=True,
              help="Bound on the judge's explanation and rating.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/eval", show_default=True,
              help="Output directory: eval.json and the branch report (alignment.json with --training-run).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Extra config file applied over lab.yaml.")
@click.option("--quiet", is_flag=True,
              help="No progress output (bars, CI progress lines, the libraries' bars); the report is still printed.")
@click.option("--reward-model", type=click.Path(file_okay=False), default=None,
              help="Evaluate this reward model (`lab train --phase rm`) too: accuracy on its held-out leaves' "
                   "comparisons (--data DIR/comparisons.jsonl) and on Static HHH, next to 'longer answer wins'.")
@click.option("--hhh", "hhh_file", type=click.Path(dir_okay=False), default=None,
              help="Static HHH pairs for --reward-model and --training-run [the file shipped in lab_tools/evaldata].")
@click.option("--training-run", "training_run", type=click.Path(file_okay=False), default=None,
              help="Alignment evaluation of this `lab train` run: Static HHH accuracy of base / ST / pref, "
                   "pref-vs-ST win rates (pairwise judge, --reward-model, a capable --judge) and the "
                   "alignment tax, into OUT/alignment.json.")
def evaluate(model, base_model, taxonomy, data_dir, mmlu, judge_spec, max_mc, max_prompts, max_new_tokens,
             judge_max_tokens, out_dir, config_file, quiet, reward_model, hhh_file, training_run):
    """Score MODEL: multiple-choice accuracy on held-out knowledge questions and MMLU files, judge
    ratings (1-10, MT-Bench style) of answers to held-out skill prompts; with --base-model, a
    per-leaf branch report (improved / regressed only outside the 95% interval, else no measurable
    change or too small to decide) as JSON and markdown, on the held-out test items."""
    from lab_tools.progress import silence_library_bars

    silence_library_bars(quiet=quiet)
    from rich.console import Console

    from lab_tools.config import default_root, load_config
    from lab_tools.eval.evaluate import evaluate as run_eval
    from lab_tools.eval.evaluate import load_eval_set
    from lab_tools.eval.report import render_markdown

    from lab_tools.build import quiet_libraries

    root = Path(taxonomy) if taxonomy else default_root()
    cfg = load_config(root, config_file)
    _check_inputs(model, base_model, reward_model, training_run)  # before anything is loaded
    quiet_libraries()
    if model is None and reward_model is None and training_run is None:
        from lab_tools.errors import UsageError

        raise UsageError("give --model (and/or --reward-model, --training-run)")
    if reward_model is not None:
        from lab_tools.feedback.rm import evaluate_cli

        evaluate_cli(reward_model, data_dir, hhh_file, out_dir)
    if training_run is not None:
        from lab_tools.eval.alignment import alignment_cli

        alignment_cli(training_run, root, data_dir, cfg, out_dir, judge_spec=judge_spec, rm_dir=reward_model,
                      hhh_file=hhh_file, max_mc=max_mc, max_prompts=max_prompts,
                      max_new_tokens=max_new_tokens, progress=not quiet)
    if model is None:
        return
    evalset = load_eval_set(taxonomy=root, data_dir=data_dir, mmlu_files=list(mmlu),
                            max_mc=max_mc, max_prompts=max_prompts)
    if not len(evalset):  # said before the judge is loaded
        from lab_tools.errors import LabError

        where = f"no heldout_*.jsonl in --data {data_dir}, " if data_dir else ""
        raise LabError(f"nothing to evaluate: no held-out items ({where}no seed examples under the "
                       f"taxonomy {root.absolute()}) and no --mmlu file")
    judge = make_judge(judge_spec if judge_spec is not None else (cfg.generate.judge or cfg.generate.teacher),
                       cfg.cache_path)
    result = run_eval(model, evalset, out_dir, base_model=base_model, judge=judge,
                      max_new_tokens=max_new_tokens,
                      judge_max_tokens=judge_max_tokens, progress=not quiet, cache_dir=cfg.cache_path)
    console = Console()
    console.print(render_markdown(result.report), markup=False, highlight=False)
    console.print(f"wrote {', '.join(str(f) for f in result.files)}", markup=False, highlight=False)

"""`lab evaluate`: knowledge and judge scores of a model, base vs trained per leaf.

torch/transformers are imported only when the command runs (see lab_tools/cli.py).
"""

from __future__ import annotations

from pathlib import Path

import click

from lab_tools.config import default_root, load_config
from lab_tools.errors import LabError, UsageError
from lab_tools.eval.alignment import alignment_cli, run_models
from lab_tools.eval.evalset import load_eval_set
from lab_tools.eval.evaluate import evaluate as run_eval
from lab_tools.eval.judges import make_judge
from lab_tools.eval.lm_eval_run import render_lines
from lab_tools.eval.report import render_markdown
from lab_tools.feedback.rm import evaluate_cli
from lab_tools.models import require_local_model_dir
from lab_tools.progress import quiet_libraries, silence_library_bars


def _check_inputs(model, base_model, reward_model, training_run) -> None:
    """Every model directory and training run given to `lab evaluate` exists and is usable, checked
    before any judge or model is loaded (that takes tens of seconds on a CPU).

    Raises:
        LabError: naming the option and the path (see
        :func:`lab_tools.models.require_local_model_dir`; :func:`lab_tools.eval.alignment.run_models`).
    """
    for value, option in ((model, "--model"), (base_model, "--base-model")):
        if value is not None:
            require_local_model_dir(value, option)
    if reward_model is not None:
        require_local_model_dir(reward_model, "--reward-model", embedded=False)
    if training_run is not None:
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
@click.option("--lm-eval", "lm_eval_tasks", default=None, metavar="TASKS",
              help="Comma-separated lm-evaluation-harness tasks to run on --model (and --base-model), offline: "
                   "lab_heldout (the held-out items, written to OUT/lm_eval) or any task whose data are on this "
                   "machine; results in eval.json 'lm_eval'.")
def evaluate(model, base_model, taxonomy, data_dir, mmlu, judge_spec, max_mc, max_prompts, max_new_tokens,
             judge_max_tokens, out_dir, config_file, quiet, reward_model, hhh_file, training_run, lm_eval_tasks):
    """Score MODEL: multiple-choice accuracy on held-out knowledge questions and MMLU files, judge
    ratings (1-10, MT-Bench style) of answers to held-out skill prompts; with --base-model, a
    per-leaf branch report (improved / regressed only outside the 95% interval, else no measurable
    change or too small to decide) as JSON and markdown, on the held-out test items."""
    silence_library_bars(quiet=quiet)
    from rich.console import Console

    root = Path(taxonomy) if taxonomy else default_root()
    cfg = load_config(root, config_file)
    _check_inputs(model, base_model, reward_model, training_run)  # before anything is loaded
    quiet_libraries()
    if model is None and reward_model is None and training_run is None:
        raise UsageError("give --model (and/or --reward-model, --training-run)")
    if reward_model is not None:
        evaluate_cli(reward_model, data_dir, hhh_file, out_dir)
    if training_run is not None:
        alignment_cli(training_run, root, data_dir, cfg, out_dir, judge_spec=judge_spec, rm_dir=reward_model,
                      hhh_file=hhh_file, max_mc=max_mc, max_prompts=max_prompts,
                      max_new_tokens=max_new_tokens, progress=not quiet)
    if model is None:
        if lm_eval_tasks:
            raise UsageError("--lm-eval needs --model")
        return
    evalset = load_eval_set(taxonomy=root, data_dir=data_dir, mmlu_files=list(mmlu),
                            max_mc=max_mc, max_prompts=max_prompts)
    if not len(evalset):  # said before the judge is loaded
        where = f"no heldout_*.jsonl in --data {data_dir}, " if data_dir else ""
        raise LabError(f"nothing to evaluate: no held-out items ({where}no seed examples under the "
                       f"taxonomy {root.absolute()}) and no --mmlu file")
    judge = make_judge(judge_spec if judge_spec is not None else (cfg.generate.judge or cfg.generate.teacher),
                       cfg.cache_path, engine=cfg.generate.engine, compute_type=cfg.generate.engine_compute_type)
    result = run_eval(model, evalset, out_dir, base_model=base_model, judge=judge,
                      max_new_tokens=max_new_tokens,
                      judge_max_tokens=judge_max_tokens, progress=not quiet, cache_dir=cfg.cache_path,
                      engine=cfg.generate.engine, compute_type=cfg.generate.engine_compute_type,
                      lm_eval_tasks=tuple(t.strip() for t in (lm_eval_tasks or "").split(",") if t.strip()))
    console = Console()
    console.print(render_markdown(result.report), markup=False, highlight=False)
    if lm_eval_tasks:
        import json

        record = json.loads((result.out_dir / "eval.json").read_text(encoding="utf-8")).get("lm_eval")
        for line in render_lines(record):
            console.print(line, markup=False, highlight=False)
    console.print(f"wrote {', '.join(str(f) for f in result.files)}", markup=False, highlight=False)

"""`lab train`: phased training KT/1 -> KT/2 -> ST (LAB 3.3). torch is imported only when run.

Also the entry point of ``accelerate launch -m lab_tools.train ...`` (see training/accelerate/).
"""

from __future__ import annotations

import click

from lab_tools.config import load_config
from lab_tools.engines.load import scorer_of
from lab_tools.errors import UsageError
from lab_tools.feedback.rm import train_cli
from lab_tools.models import require_local_model_dir
from lab_tools.plan_cli import plan_cli, plan_options
from lab_tools.progress import silence_library_bars
from lab_tools.train.pref import pref_cli


def _check_models(cfg, model, phase, reward_model) -> None:
    """The model directories this run will use (given as flags or in lab.yaml) exist and hold a
    Hugging Face model, checked before anything is imported or loaded.

    Raises:
        LabError: naming the option or setting and the path
        (:func:`lab_tools.models.require_local_model_dir`).
    """
    if phase == "rm" and cfg.feedback.rm_base:
        require_local_model_dir(cfg.feedback.rm_base, "feedback.rm_base")
    elif phase != "pref" or model is not None:  # pref trains the run's own ST model
        require_local_model_dir(cfg.train.student, "--model" if model is not None else "train.student")
    if reward_model is not None:
        require_local_model_dir(reward_model, "--reward-model", embedded=False)


@click.command("train")
@click.option("--data", "data_dir", default=None, type=click.Path(file_okay=False),
              help="Dir written by `lab generate` (kt1/kt2/st.jsonl, heldout_*.jsonl); required unless --plan.")
@click.option("--model", default=None, help="Student: `embedded` or a local HF dir [lab.yaml train.student].")
@click.option("--preset", default=None, help="Preset name under training/presets or a YAML path [lab.yaml train.preset].")
@click.option("--out", "out_dir", default="runs/train", show_default=True, type=click.Path(file_okay=False),
              help="Run directory: phase checkpoints, manifest.json, loss.png (with --phase rm: the reward model).")
@click.option("--phases", default="kt1,kt2,st", show_default=True, help="Comma-separated subset of kt1,kt2,st.")
@click.option("--resume", is_flag=True, help="Continue a stopped run in --out (finished phases are skipped).")
@click.option("--judge", default=None, help="Judge backend spec for ST selection [lab.yaml generate.judge, else teacher].")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False),
              help="Extra config file applied over lab.yaml.")
@click.option("--quiet", is_flag=True,
              help="No progress output (bars, CI progress lines, the libraries' bars); the summary is still printed.")
@click.option("--phase", type=click.Choice(["rm", "pref"]), default=None,
              help="Train one other phase instead: 'rm' = the reward model on DATA/comparisons.jsonl "
                   "(TRL RewardTrainer; lab.yaml feedback.rm_*; --model sets its base), saved in --out; "
                   "'pref' = preference tuning after ST of the run in --out (preset section pref: "
                   "DPO, or RLOO/GRPO with --reward-model).")
@click.option("--reward-model", "reward_model", default=None, type=click.Path(file_okay=False),
              help="Reward model dir (`lab train --phase rm`) for --phase pref: RLOO/GRPO's reward, and "
                   "the reward model's win rate reported beside the judge's.")
@click.option("--allow-untrained", is_flag=True,
              help="Accept a run in which no phase has samples of its own (the base model passes through).")
@plan_options("phase")
def train(data_dir, model, preset, out_dir, phases, resume, judge, config_file, quiet, phase, reward_model,
          allow_untrained, plan, as_json, gpu_memory):
    """Train the student through KT/1 -> KT/2 -> ST with replay buffers and checkpoint selection."""
    silence_library_bars(quiet=quiet)
    from lab_tools.train.phases import train_phases

    cfg = load_config(".", config_file)
    cfg.override("train.preset", preset)
    cfg.override("train.student", model)
    if plan:  # before anything else: reads config.json files only
        plan_cli("train", cfg, as_json=as_json, gpu_memory=gpu_memory, student=model, phase=phase,
                 phases=tuple(p.strip() for p in phases.split(",") if p.strip()))
        return
    if data_dir is None:
        raise UsageError("Missing option '--data' (needed unless --plan).")
    _check_models(cfg, model, phase, reward_model)  # before anything is loaded
    if phase == "rm":
        train_cli(data_dir, out_dir, cfg, progress=not quiet)
        return
    if phase == "pref":
        pref_cli(out_dir, data_dir, cfg, reward_model=reward_model, judge=judge, progress=not quiet)
        return
    wanted = tuple(p.strip() for p in phases.split(",") if p.strip())
    if not wanted:
        raise UsageError("--phases: give at least one of kt1,kt2,st")
    result = train_phases(data_dir, cfg.train.student, out_dir, preset=cfg.train.preset,
                          phases=wanted, resume=resume,
                          judge=judge or cfg.generate.judge or cfg.generate.teacher,
                          progress=not quiet, cache_dir=cfg.cache_path, allow_untrained=allow_untrained,
                          judge_rates=bool(judge) or cfg.generate.model_judges, report_to=cfg.train.report_to,
                          scorer=scorer_of(cfg))
    click.echo(f"selected model: {result.selected}")
    click.echo(f"manifest: {result.out_dir / 'manifest.json'}")

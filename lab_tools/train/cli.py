"""`lab train`: phased training KT/1 -> KT/2 -> ST (LAB 3.3). torch is imported only when run.

Also the entry point of ``accelerate launch -m lab_tools.train ...`` (see training/accelerate/).
"""

from __future__ import annotations

import click

from lab_tools.errors import UsageError


@click.command("train")
@click.option("--data", "data_dir", required=True, type=click.Path(file_okay=False),
              help="Dir written by `lab generate` (kt1/kt2/st.jsonl, heldout_*.jsonl).")
@click.option("--model", default=None, help="Student: `embedded` or a local HF dir [lab.yaml train.student].")
@click.option("--preset", default=None, help="Preset name under training/presets or a YAML path [lab.yaml train.preset].")
@click.option("--out", "out_dir", default="out/train", show_default=True, type=click.Path(file_okay=False))
@click.option("--phases", default="kt1,kt2,st", show_default=True, help="Comma-separated subset of kt1,kt2,st.")
@click.option("--resume", is_flag=True, help="Continue a stopped run in --out (finished phases are skipped).")
@click.option("--judge", default=None, help="Judge backend spec for ST selection [lab.yaml generate.judge, else teacher].")
@click.option("--config", "config_file", default=None, type=click.Path(dir_okay=False), help="Extra config file.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
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
def train(data_dir, model, preset, out_dir, phases, resume, judge, config_file, quiet, phase, reward_model,
          allow_untrained):
    """Train the student through KT/1 -> KT/2 -> ST with replay buffers and checkpoint selection."""
    from lab_tools.config import load_config
    from lab_tools.train.phases import train_phases

    cfg = load_config(".", config_file)
    cfg.override("train.preset", preset)
    cfg.override("train.student", model)
    if phase == "rm":
        from lab_tools.feedback.rm import train_cli

        train_cli(data_dir, out_dir, cfg, progress=not quiet)
        return
    if phase == "pref":
        from lab_tools.train.pref import pref_cli

        pref_cli(out_dir, data_dir, cfg, reward_model=reward_model, judge=judge, progress=not quiet)
        return
    wanted = tuple(p.strip() for p in phases.split(",") if p.strip())
    if not wanted:
        raise UsageError("--phases: give at least one of kt1,kt2,st")
    result = train_phases(data_dir, cfg.train.student, out_dir, preset=cfg.train.preset,
                          phases=wanted, resume=resume,
                          judge=judge or cfg.generate.judge or cfg.generate.teacher,
                          progress=not quiet, cache_dir=cfg.cache_path, allow_untrained=allow_untrained,
                          judge_rates=bool(judge) or cfg.generate.model_judges)
    click.echo(f"selected model: {result.selected}")
    click.echo(f"manifest: {result.out_dir / 'manifest.json'}")

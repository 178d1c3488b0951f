"""Experiment tracking (``train.report_to``): TensorBoard event files under the run folder for a
tiny training run (our Accelerate loop) and a tiny reward model (a TRL trainer), with the same
losses as ``metrics.csv`` / the RM manifest; ``none`` writes none; a tracker that is not
installed is a clean error before anything is loaded."""

from __future__ import annotations

import csv
import json

import pytest

from lab_tools.config import Config


def _scalars(logdir, tag: str) -> list[tuple[int, float]]:
    """``(step, value)`` of scalar ``tag`` in the TensorBoard event files of ``logdir``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir))
    acc.Reload()
    assert tag in acc.Tags()["scalars"], acc.Tags()
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def test_training_phases_log_to_tensorboard_under_the_run_folder(tiny_model, phase_data, fast_preset, tmp_path):
    from lab_tools.train.phases import train_phases

    out = tmp_path / "run"
    train_phases(phase_data, tiny_model, out, preset=fast_preset, phases=("kt1",), progress=False,
                 judge_rates=False, report_to="tensorboard")
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert rows and (out / "loss.png").is_file()  # the CSV and the plot stay
    logged = _scalars(out / "tensorboard" / "kt1", "train/loss")
    assert [s for s, _ in logged] == [int(r["step"]) for r in rows]
    assert [v for _, v in logged] == pytest.approx([float(r["loss"]) for r in rows], rel=1e-5)
    lrs = _scalars(out / "tensorboard" / "kt1", "train/lr")
    assert [v for _, v in lrs] == pytest.approx([float(r["lr"]) for r in rows], rel=1e-5)
    hparams = list((out / "tensorboard" / "kt1").rglob("hparams.yml"))
    assert hparams and "phase_config/learning_rate" in hparams[0].read_text()


def test_report_to_none_writes_no_event_files(tiny_model, phase_data, fast_preset, tmp_path):
    from lab_tools.train.phases import train_phases

    out = tmp_path / "run"
    train_phases(phase_data, tiny_model, out, preset=fast_preset, phases=("kt1",), progress=False,
                 judge_rates=False, report_to="none")
    assert (out / "metrics.csv").is_file() and not (out / "tensorboard").exists()


def test_reward_model_logs_through_the_trl_trainer(tiny_model, tmp_path):
    from lab_tools.feedback.rm import train_reward_model

    rows = []
    for leaf in range(3):
        for k in range(4):
            rows.append({"prompt": [{"role": "user", "content": f"Question {k}?"}],
                         "chosen": [{"role": "assistant", "content": f"a good answer {k} yes."}],
                         "rejected": [{"role": "assistant", "content": f"a bad answer {k} no."}],
                         "metadata": {"leaf": f"compositional_skills/leaf{leaf}"}})
    path = tmp_path / "comparisons.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = Config(cache_dir=str(tmp_path / "cache"))
    cfg.train.student = str(tiny_model)
    cfg.feedback.rm_epochs, cfg.feedback.rm_batch_size, cfg.feedback.rm_max_length = 1.0, 4, 64
    manifest = train_reward_model(path, tmp_path / "run" / "rm", cfg, progress=False)
    logged = _scalars(tmp_path / "run" / "tensorboard" / "rm", "train/loss")
    assert [v for _, v in logged] == pytest.approx(manifest["losses"], rel=1e-5)
    assert not (tmp_path / "run" / "rm" / "runs").exists()  # not in the model folder


def test_a_tracker_that_is_not_installed_is_a_clean_error(tiny_model, phase_data, fast_preset, tmp_path,
                                                           monkeypatch, run_lab):
    from lab_tools.train import tracking

    monkeypatch.setattr(tracking, "installed", lambda name: name != "wandb")
    monkeypatch.setenv("LAB_TRAIN__REPORT_TO", "wandb")
    monkeypatch.chdir(tmp_path)
    import lab_tools.models as models

    def no_models(*a, **k):
        raise AssertionError("the tracker is checked before a model is loaded")

    monkeypatch.setattr(models, "load_tokenizer", no_models)
    code, out = run_lab(["train", "--data", str(phase_data), "--model", str(tiny_model), "--preset",
                         str(fast_preset), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 1 and "Traceback" not in out.err
    assert "train.report_to: wandb is not installed: `pip install wandb`" in out.err
    assert not (tmp_path / "o").exists()

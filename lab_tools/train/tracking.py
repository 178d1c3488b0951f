"""Experiment tracking of the training phases, the preference phase and the reward model
(``train.report_to`` in ``lab.yaml``): TensorBoard by default, trackio or Weights & Biases when
installed and chosen, or none. ``metrics.csv`` and ``loss.png`` are written in every case.

- Our own loop (KT/1, KT/2, ST: :func:`lab_tools.train.loop.train_phase`) logs through
  Accelerate's trackers: :func:`accelerate_tracker` gives the tracker object for
  ``Accelerator(log_with=[...])``, :func:`start_tracking` / ``accelerator.log`` /
  :func:`finish_tracking` drive it. ``Accelerator.end_training`` is not used: it also destroys
  the process group, which the next phase and checkpoint selection still need.
- TRL trainers (``RewardTrainer``, ``DPOTrainer``, ``RLOOTrainer``/``GRPOTrainer``) log through
  transformers' callbacks: :func:`trainer_tracking` gives the ``report_to`` / ``run_name``
  arguments and callbacks. For TensorBoard the callback gets a writer on our folder (the
  ``report_to="tensorboard"`` default, ``OUTPUT_DIR/runs/<time>_<host>``, would land among the
  checkpoints, which the preference phase cleans up).

Where: TensorBoard writes offline event files under the run folder, ``RUN/tensorboard/<name>``
(``tensorboard --logdir RUN``), one folder per phase (``kt1``, ``kt2``, ``st``, ``pref``; the reward
model beside its folder, ``OUT/tensorboard/rm``). trackio keeps its local database (its own
default location), project ``lab-tools``, one run per phase. W&B follows its own settings
(``WANDB_MODE=offline`` keeps it local): project ``lab-tools`` for our loop, ``WANDB_PROJECT``
for the TRL trainers (transformers' W&B callback reads only that), one run per phase.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lab_tools.errors import LabError

TRACKERS = ("tensorboard", "trackio", "wandb", "none")
PROJECT = "lab-tools"  # trackio / W&B project of every run
TB_DIR = "tensorboard"  # under the run folder
_INSTALL = {"tensorboard": "tensorboard", "trackio": "trackio", "wandb": "wandb"}


def check_tracker(kind: str, field: str = "train.report_to") -> str:
    """``kind`` when it is a known tracker whose package is importable (TensorBoard: ``tensorboard``
    or ``tensorboardX``); checked before any model is loaded.

    Raises:
        LabError: an unknown tracker, or its package is not installed (naming ``field``, the
        package to install and ``none`` as the way out).
    """
    if kind not in TRACKERS:
        raise LabError(f"unknown tracker {kind!r}; expected one of {', '.join(TRACKERS)}", field=field)
    if kind == "none":
        return kind
    names = ("tensorboard", "tensorboardX") if kind == "tensorboard" else (kind,)
    if not any(installed(n) for n in names):
        raise LabError(f"{kind} is not installed: `pip install {_INSTALL[kind]}`, or set {field} "
                       f"to another tracker or none (metrics.csv and loss.png are written anyway)",
                       field=field)
    return kind


def installed(package: str) -> bool:
    """Whether ``package`` can be imported here (without importing it)."""
    return importlib.util.find_spec(package) is not None


def tensorboard_dir(run_dir: str | Path) -> Path:
    """Where TensorBoard event files of run ``run_dir`` go: ``run_dir/tensorboard``."""
    return Path(run_dir) / TB_DIR


def flat_config(data: dict, prefix: str = "") -> dict:
    """``data`` (nested dicts) as one level of ``a/b`` keys with bool/int/float/str values (lists
    and None as text): what TensorBoard's hparams and the trackers' configs accept."""
    out = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat_config(v, key + "/"))
        elif isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def accelerate_tracker(kind: str, run_dir: str | Path, name: str):
    """An Accelerate tracker (``accelerate.tracking``) for ``Accelerator(log_with=[...])``, or None
    for ``none``: TensorBoard into ``run_dir/tensorboard/<name>``, trackio / W&B as run ``name``
    of project :data:`PROJECT`.

    Raises:
        LabError: see :func:`check_tracker`.
    """
    check_tracker(kind)
    if kind == "none":
        return None
    from accelerate.tracking import TensorBoardTracker, TrackioTracker, WandBTracker

    if kind == "tensorboard":
        return TensorBoardTracker(name, tensorboard_dir(run_dir))
    if kind == "trackio":
        return TrackioTracker(PROJECT, name=name)
    return WandBTracker(PROJECT, name=name, dir=str(run_dir))


def start_tracking(accelerator, name: str, config: dict) -> None:
    """Start the accelerator's trackers (if any) with the run's hyper-parameters ``config``
    (flattened: :func:`flat_config`)."""
    if accelerator.log_with:
        accelerator.init_trackers(name, config=flat_config(config))


def finish_tracking(accelerator) -> None:
    """Close the accelerator's trackers (flushes TensorBoard's event file), leaving the process
    group alone (see the module doc)."""
    if accelerator.is_main_process:
        for tracker in accelerator.trackers:
            tracker.finish()
    accelerator.trackers = []


def step_values(row: dict) -> dict:
    """The scalars of one optimizer step's metric row, as tracker keys (``train/loss`` ...)."""
    keys = ("loss", "lr", "tokens_per_s", "real_token_fraction", "samples", "tokens", "epoch")
    return {f"train/{k}": row[k] for k in keys if isinstance(row.get(k), (int, float))}


def trainer_tracking(kind: str, run_dir: str | Path, name: str) -> tuple[dict, list]:
    """``(TrainingArguments keywords, callbacks)`` for a TRL trainer of run ``run_dir``: for
    TensorBoard ``report_to="none"`` and a ``TensorBoardCallback`` writing to
    ``run_dir/tensorboard/<name>``; for trackio / W&B ``report_to`` = the tracker, ``run_name`` =
    ``name`` (project :data:`PROJECT` through ``project`` / ``WANDB_PROJECT`` defaults); for
    ``none`` nothing.

    Raises:
        LabError: see :func:`check_tracker`.
    """
    check_tracker(kind)
    if kind == "none":
        return {"report_to": "none"}, []
    if kind == "tensorboard":
        from transformers.integrations import TensorBoardCallback

        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboardX only
            from tensorboardX import SummaryWriter
        writer = SummaryWriter(log_dir=str(tensorboard_dir(run_dir) / name))
        return {"report_to": "none"}, [TensorBoardCallback(tb_writer=writer)]
    args = {"report_to": kind, "run_name": name}
    if kind == "trackio":
        args["project"] = PROJECT
    return args, []

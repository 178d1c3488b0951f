"""Training presets: one typed YAML file per model family under ``training/presets/``.

A preset holds the hyper-parameters shared by all phases (default context length, dtype, optimizer
settings, selection caps, optional LoRA), one :class:`PhaseConfig` per phase (LAB 3.3, table 2:
learning rate, effective batch size, context length, warm-up, epochs; plus the replay fraction)
and a :class:`PlanConfig` (what ``--plan`` assumes: model configs, FSDP GPU count).
Unknown keys, wrong types and values outside a field's range (each section's ``RANGES`` table,
:class:`lab_tools.config_rules.Range`) are errors, all reported together (:class:`ConfigError`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab_tools.config_rules import fill_dataclass, NON_NEGATIVE, POSITIVE, Range
from lab_tools.errors import ConfigError, LabError

PHASES = ("kt1", "kt2", "st")
PREF_METHODS = ("dpo", "dpo_onpolicy", "rloo", "grpo")  # PrefConfig.method
PRESETS_DIR = Path(__file__).resolve().parents[2] / "training" / "presets"


@dataclass
class PhaseConfig:
    """Hyper-parameters of one phase.

    ``learning_rate``: peak LR reached after ``warmup_steps`` optimizer steps, then constant
    (LAB: no cosine decay). ``effective_batch_size``: samples per optimizer step (gradient
    accumulation reaches it, across all processes). ``epochs``: one checkpoint per epoch.
    ``replay_fraction``: replay samples drawn from earlier phases' data, as a fraction of this
    phase's own sample count (LAB table 1; ignored for KT/1). ``max_seq_len``: this phase's
    context length in tokens (LAB table 2: 2048 for KT/1, 4096 for KT/2 and ST); 0 in the YAML
    means the preset's top-level ``max_seq_len``, filled in on load, so a loaded preset's
    ``preset.phase(name).max_seq_len`` is always the phase's own value.
    """
    learning_rate: float = 2e-5
    effective_batch_size: int = 3840
    warmup_steps: int = 0
    epochs: int = 1
    replay_fraction: float = 0.0
    max_seq_len: int = 0
    RANGES = {"learning_rate": Range(gt=0), "effective_batch_size": POSITIVE, "warmup_steps": NON_NEGATIVE,
              "epochs": POSITIVE, "replay_fraction": Range(ge=0, le=10), "max_seq_len": NON_NEGATIVE}


@dataclass
class SelectionConfig:
    """Checkpoint-selection caps (LAB 3.3): held-out items scored per checkpoint, generated tokens
    per student answer, judge tokens, and how many of the last epochs' checkpoints are scored.
    ``score_single``: also score a phase's only candidate (no choice to make; costs time, but
    records its score in the manifest)."""
    max_mc_items: int = 200
    max_prompts: int = 80
    max_new_tokens: int = 512
    judge_max_tokens: int = 512
    max_checkpoints: int = 10
    batch_size: int = 8
    score_single: bool = True
    RANGES = {"max_mc_items": NON_NEGATIVE, "max_prompts": NON_NEGATIVE, "max_new_tokens": POSITIVE,
              "judge_max_tokens": POSITIVE, "max_checkpoints": POSITIVE, "batch_size": POSITIVE}


@dataclass
class LoraConfig:
    """Optional LoRA through peft (small GPUs). ``r`` 0 disables it."""
    r: int = 0
    alpha: int = 16
    dropout: float = 0.0
    RANGES = {"r": NON_NEGATIVE, "alpha": POSITIVE, "dropout": Range(ge=0, lt=1)}
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class PlanConfig:
    """What ``lab build --plan`` / ``lab train --plan`` assume (:mod:`lab_tools.plan`); training
    itself never reads it. ``model``: the student's model config for planning (a directory with
    ``config.json``, or a name under ``training/model-configs/``; empty: ``train.student``).
    ``teacher``: the teacher's model config, served by vLLM on ``teacher_gpus`` GPUs of its own
    (tensor parallelism; ``lab.yaml`` ``generate.teacher: openai:URL#MODEL``); empty:
    ``generate.teacher``. ``fsdp_gpus``: GPUs the training stages are sharded over with FSDP
    FULL_SHARD (launch with ``training/accelerate/fsdp.yaml`` and the same ``num_processes``);
    0 or 1: no sharding (one GPU)."""
    model: str = ""
    teacher: str = ""
    teacher_gpus: int = 1
    fsdp_gpus: int = 0
    RANGES = {"teacher_gpus": Range(ge=1, le=64), "fsdp_gpus": Range(ge=0, le=4096)}


@dataclass
class PrefConfig:
    """The preference phase after ST (:mod:`lab_tools.train.pref`; ALMoST's RL from synthetic
    feedback). ``method``: ``dpo`` (TRL DPOTrainer on the synthetic comparisons, offline),
    ``dpo_onpolicy`` (DPO on the ST policy's own samples: ``onpolicy_samples`` answers per
    comparison prompt scored by the reward model, best vs worst, prompts whose reward gap is below
    ``onpolicy_min_gap`` dropped; :mod:`lab_tools.train.onpolicy`), ``rloo`` or ``grpo`` (TRL
    RLOO/GRPO with the reward model as ``reward_funcs``). ``beta``: DPO's beta, or
    the KL coefficient to the ST model for RLOO/GRPO. ``effective_batch_size``: pairs (DPO) or
    completions (RL) per optimizer step; ``micro_batch_size``: pairs per forward pass (DPO; RL
    uses ``num_generations`` completions per prompt). ``max_pairs``: comparisons used (0 = all).
    ``max_steps``: optimizer steps of the RL methods (DPO runs ``epochs``). ``checkpoints``:
    candidates saved evenly over the phase for selection by win rate against ST.
    ``reward_shift_prompts``: pref prompts on which the reward model scores the policy's greedy
    answers before (ST) and after (the pref candidate), the manifest's ``policy_reward``: how far
    the method moved the policy (0 = not measured). On-policy pairs and that measure have the
    reward model read at most ``max_length`` tokens per conversation."""
    method: str = "dpo"
    learning_rate: float = 5e-7
    beta: float = 0.1
    effective_batch_size: int = 8
    micro_batch_size: int = 2
    warmup_steps: int = 0
    epochs: int = 1
    max_steps: int = 20
    max_pairs: int = 0
    max_length: int = 512
    num_generations: int = 4
    max_completion_length: int = 64
    temperature: float = 1.0
    checkpoints: int = 2
    onpolicy_samples: int = 4
    onpolicy_min_gap: float = 0.0
    reward_shift_prompts: int = 16
    RANGES = {"onpolicy_samples": Range(ge=2, le=1024), "onpolicy_min_gap": Range(ge=0),
              "reward_shift_prompts": Range(ge=0, le=100_000),
              "learning_rate": Range(gt=0), "beta": Range(ge=0), "effective_batch_size": POSITIVE,
              "micro_batch_size": POSITIVE, "warmup_steps": NON_NEGATIVE, "epochs": POSITIVE,
              "max_steps": POSITIVE, "max_pairs": NON_NEGATIVE, "max_length": Range(ge=8),
              "num_generations": Range(ge=2), "max_completion_length": POSITIVE,
              "temperature": Range(gt=0), "checkpoints": POSITIVE}


@dataclass
class Preset:
    """A training preset.

    ``max_seq_len``: samples longer than this (in tokens) are dropped and counted, never truncated;
    the default of every phase that sets no ``max_seq_len`` of its own (read a phase's value with
    ``preset.phase(name).max_seq_len``). ``micro_batch_tokens``: token budget of one packed
    micro-batch (padding-free packing; must be >= every phase's ``max_seq_len``). ``dtype``:
    weights as loaded (``auto`` = float32; with mixed precision the master weights stay float32).
    ``mixed_precision``: ``auto`` (bf16 on CUDA, none on CPU), ``no``, ``bf16``, ``fp16``.
    ``save_dtype``: dtype of the epoch checkpoints (``auto`` = bfloat16 under bf16 mixed
    precision, else the training dtype; ``float32``, ``bfloat16``). ``save_state_steps``: also
    save resumable state every N optimizer steps (0: only at the end of each epoch).
    """
    name: str = "custom"
    description: str = ""
    max_seq_len: int = 2048
    micro_batch_tokens: int = 8192
    dtype: str = "auto"
    mixed_precision: str = "auto"
    save_dtype: str = "auto"
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1e-8
    max_grad_norm: float = 1.0
    seed: int = 42
    save_state_steps: int = 0
    gradient_checkpointing: bool = False
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    kt1: PhaseConfig = field(default_factory=PhaseConfig)
    kt2: PhaseConfig = field(default_factory=PhaseConfig)
    st: PhaseConfig = field(default_factory=PhaseConfig)
    pref: PrefConfig = field(default_factory=PrefConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    # AdamW: betas in [0, 1), eps > 0 (torch.optim.AdamW); max_grad_norm 0 turns clipping off
    RANGES = {"max_seq_len": Range(ge=8), "micro_batch_tokens": POSITIVE, "weight_decay": NON_NEGATIVE,
              "adam_beta1": Range(ge=0, lt=1), "adam_beta2": Range(ge=0, lt=1), "adam_epsilon": Range(gt=0),
              "max_grad_norm": NON_NEGATIVE, "seed": NON_NEGATIVE, "save_state_steps": NON_NEGATIVE}

    def phase(self, name: str) -> PhaseConfig:
        """The :class:`PhaseConfig` of ``kt1``, ``kt2`` or ``st`` (its ``max_seq_len`` resolved)."""
        cfg = getattr(self, name)
        if not cfg.max_seq_len:  # a Preset built in code, not loaded: the top-level default
            cfg.max_seq_len = self.max_seq_len
        return cfg

    def to_dict(self) -> dict:
        """Plain dict (recorded in the training manifest)."""
        return dataclasses.asdict(self)


def _validate(p: Preset, errors: list[str]) -> None:
    """Choices and rules between fields (single-field ranges are checked when a field is set)."""
    for name in PHASES:  # a phase without its own context length takes the top-level one
        ph = getattr(p, name)
        if 0 < ph.max_seq_len < 8:
            errors.append(f"{name}.max_seq_len: expected 0 (the top-level max_seq_len) or >= 8, got {ph.max_seq_len}")
        ph.max_seq_len = ph.max_seq_len or p.max_seq_len
    longest = max([p.max_seq_len] + [getattr(p, n).max_seq_len for n in PHASES])
    if p.micro_batch_tokens < longest:
        errors.append(f"micro_batch_tokens: must be >= every max_seq_len ({longest}; one sample must fit "
                      "a micro-batch)")
    if p.dtype not in ("auto", "float32", "bfloat16", "float16"):
        errors.append(f"dtype: expected auto|float32|bfloat16|float16, got {p.dtype!r}")
    if p.save_dtype not in ("auto", "float32", "bfloat16", "float16"):
        errors.append(f"save_dtype: expected auto|float32|bfloat16|float16, got {p.save_dtype!r}")
    if p.pref.method not in PREF_METHODS:
        errors.append(f"pref.method: expected {'|'.join(PREF_METHODS)}, got {p.pref.method!r}")
    if p.mixed_precision not in ("auto", "no", "bf16", "fp16"):
        errors.append(f"mixed_precision: expected auto|no|bf16|fp16, got {p.mixed_precision!r}")


def preset_from_dict(data: dict, *, file: str | None = None, name: str = "custom") -> Preset:
    """Build and validate a :class:`Preset` from a mapping.

    Raises:
        ConfigError: every unknown key, wrong type and out-of-range value, all at once.
    """
    if not isinstance(data, dict):
        raise ConfigError(["top level must be a mapping"], file=file)
    preset = Preset(name=name)
    errors: list[str] = []
    fill_dataclass(preset, data, "", errors)
    _validate(preset, errors)
    if errors:
        raise ConfigError([f"{file}: {e}" if file else e for e in errors], file=file)
    return preset


def preset_path(spec: str | Path) -> Path:
    """The YAML file of preset ``spec``: a name without suffix is ``training/presets/<name>.yaml``,
    anything else is a path (as given; it may not exist)."""
    path = Path(spec)
    return PRESETS_DIR / f"{spec}.yaml" if not path.suffix else path


def load_preset(spec: str | Path | Preset) -> Preset:
    """Load a preset by name (``training/presets/<name>.yaml``) or by YAML path; a
    :class:`Preset` is returned as is.

    Raises:
        LabError: no such preset; ConfigError: invalid content.
    """
    if isinstance(spec, Preset):
        return spec
    path = preset_path(spec)
    if not path.is_file():
        known = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
        raise LabError(f"no such preset {str(spec)!r} (known: {', '.join(known)})", field="preset")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise LabError(f"cannot read preset: {exc}", file=str(path)) from exc
    return preset_from_dict(data or {}, file=str(path), name=path.stem)

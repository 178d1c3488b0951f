"""`lab.yaml`: one typed configuration for every stage (see DESIGN.md, Configuration).

Precedence: defaults < ``<root>/lab.yaml`` < ``--config FILE`` < ``LAB_SECTION__KEY`` environment
variables < command-line flags (applied by each command through :func:`Config.override`).
Unknown keys are errors (with a did-you-mean); all errors are collected and raised together as
:class:`ConfigError`, each naming its source: ``FILE:LINE: section.key: problem`` for a file (the
line of the key), ``$VARIABLE (section.key): problem`` for a variable, ``section.key: problem``
for a flag.

Environment variables: only the form ``LAB_<SECTION>__<KEY>`` (upper case, ``__`` between levels,
nested further with more ``__``) is a setting: ``LAB_GENERATE__SAMPLES=4`` sets
``generate.samples``, ``LAB_GENERATE__FILTERS__ENABLED=false`` sets ``generate.filters.enabled``;
values are parsed as YAML scalars. Other ``LAB_*`` variables (no ``__``: ``LAB_CACHE_DIR``,
``LAB_PROGRESS_INTERVAL``, ``LAB_USER``, the install scripts' ``LAB_TORCH``...) are not settings
and are ignored here; a misspelled section or key of the settings form is an error.

Ranges: every numeric field has its allowed range in its section's ``RANGES`` table
(``{field: Range(...)}``); every integer field also has an upper bound (generous: :data:`COUNT`
100 000, :data:`TOKENS` 1 000 000, ...). A value outside it, a NaN or an infinity (``.nan``,
``.inf``) is an error when it is set (file, env variable or flag), reported with the others.
``tests/test_config_ranges.py`` checks that no numeric field lacks one. :func:`config_json_schema`
gives the same rules as a JSON Schema for editors (``schemas/lab.yaml.schema.json``).

Why not pydantic-settings (env prefix, ``__`` delimiter, ``extra="forbid"``, constraints): the
sections are plain mutable dataclasses that many modules build, mutate and pass between stages,
and the training presets reuse :func:`fill_dataclass` and :class:`Range`, so a switch would touch
all of them; its validation errors carry no YAML file line, and its env source reads only variables
whose section matches a field (a misspelled ``LAB_GENERTE__SAMPLES`` would be silently ignored).

Each stage owns its section dataclass below; add fields there (with a default), never elsewhere.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import operator
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lab_tools.errors import ConfigError


@dataclass(frozen=True)
class Range:
    """Allowed interval of a numeric setting: ``ge``/``gt`` lower bound (inclusive/exclusive),
    ``le``/``lt`` upper bound; None = unbounded. For a list setting every element is checked.
    NaN and infinities are never inside."""
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __str__(self) -> str:
        return " and ".join(f"{sym} {_num(getattr(self, attr))}" for sym, attr, _ in _BOUNDS
                            if getattr(self, attr) is not None)

    def problem(self, value) -> str | None:
        """``"must be <bound it breaks>, got X"`` when ``value`` (a number or a list of numbers) is
        outside (``"must be a finite number, ..."`` for NaN or an infinity), else None."""
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                continue  # the type check reports it
            if isinstance(v, float) and not math.isfinite(v):
                return _NOT_FINITE.format(v)
            for sym, attr, ok in _BOUNDS:
                bound = getattr(self, attr)
                if bound is not None and not ok(v, bound):
                    return f"must be {sym} {_num(bound)}, got {v!r}"
        return None


_BOUNDS = ((">=", "ge", operator.ge), (">", "gt", operator.gt), ("<=", "le", operator.le), ("<", "lt", operator.lt))
_NOT_FINITE = "must be a finite number, got {!r} (.nan and .inf are not allowed)"


def _num(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


# Integer settings use the bounded ranges; POSITIVE and NON_NEGATIVE (no upper bound) remain for
# the training presets (lab_tools/train/config.py) and float settings.
POSITIVE = Range(ge=1)
NON_NEGATIVE = Range(ge=0)
FRACTION = Range(ge=0, le=1)
COUNT = Range(ge=1, le=100_000)  # samples, batch sizes, workers, prompts, candidates, turns
COUNT0 = Range(ge=0, le=100_000)  # a count where 0 means none (or, where documented, all)
TOKENS = Range(ge=1, le=1_000_000)  # token limits and sizes
TOKENS0 = Range(ge=0, le=1_000_000)
SEED = Range(ge=0, le=2**32 - 1)  # numpy's seed range


def range_of(cls, name: str) -> Range | None:
    """The :class:`Range` of field ``name`` of dataclass ``cls`` (its ``RANGES`` table), or None."""
    return (getattr(cls, "RANGES", None) or {}).get(name)


DEFAULT_LICENSES = ["CC0-1.0", "CDLA-Permissive-2.0", "CC-BY-4.0", "CC-BY-SA-4.0", "Apache-2.0", "MIT"]


def default_cache_dir() -> Path:
    """The user's cache directory for lab-tools (``$LAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/lab-tools``)."""
    if os.environ.get("LAB_CACHE_DIR"):
        return Path(os.environ["LAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "lab-tools"


@dataclass
class LicensesConfig:
    """License allowlist (SPDX ids) for knowledge documents."""
    allowlist: list[str] = field(default_factory=lambda: list(DEFAULT_LICENSES))


@dataclass
class DocumentsConfig:
    """Knowledge document fetching (DESIGN.md, Trust boundary; the rules are in
    :mod:`lab_tools.taxonomy.documents`). ``allow_local``: permit ``file://`` URLs and local paths
    outside the taxonomy's repository (a local mirror). ``allowed_schemes``: URL schemes a remote
    ``document.repo`` may use, a subset of ``https`` and ``http`` (``http`` is unauthenticated:
    only for a mirror on a trusted network; ssh, git:// and other transports are never used).
    ``allowed_hosts``: host names (exact, lower-case; ``host:port`` for a non-default port) a
    remote may name. ``max_bytes_per_leaf``: total size of the files one leaf's patterns select,
    checked before any is read. ``fetch_timeout``: seconds one fetch may take in all (git also
    gives up on a transfer slower than 1 KB/s for 30 s)."""
    allow_local: bool = False
    allowed_schemes: list[str] = field(default_factory=lambda: ["https"])
    allowed_hosts: list[str] = field(default_factory=lambda: [
        "github.com", "gitlab.com", "codeberg.org", "huggingface.co", "bitbucket.org", "git.sr.ht",
        "gitea.com"])
    max_bytes_per_leaf: int = 64 * 1024 * 1024
    fetch_timeout: float = 300.0
    RANGES = {"max_bytes_per_leaf": Range(ge=1, le=16 * 2**30), "fetch_timeout": Range(gt=0)}


@dataclass
class FiltersConfig:
    """Rule-based quality filters of generated samples, run for every teacher
    (:mod:`lab_tools.sdg.filters`); defaults measured on the InstructLab corpus seed answers
    (``bench/filter_thresholds.py``, ``bench/results/filters-thresholds.md``). ``enabled``: run them.
    ``seed_threshold``: a generated instruction whose normalized text is at least this similar to a
    seed example's (or one word edit from it) is dropped (seed examples are the held-out set;
    stricter than ``generate.dedup_threshold``). ``oversample``: responses are generated for
    ``ceil(samples * oversample)`` instructions (knowledge: Q&A requests) so that the best
    ``samples`` by score are kept. ``max_dup_line_frac``, ``max_dup_line_char_frac``,
    ``max_top_ngram_frac`` (2-, 3-, 4-grams), ``max_dup_ngram_frac`` (5- to 10-grams): Gopher's
    repetition rules (arXiv 2112.11446 table A1; its web-text values reject short human answers,
    so the defaults are the corpus maxima rounded up), for answers of at least
    ``repetition_min_words`` words (Gopher's own minimum document length is 50); ``max_dup_sentence_frac``, ``max_trigram_repeat``,
    ``min_compression_ratio``: further loop detectors. ``max_question_similarity``: an answer this
    similar to its question restates it. ``min_context_overlap`` / ``min_knowledge_overlap``:
    least fraction of a grounded-skill / knowledge answer's content words found in its context,
    checked for answers of at least ``overlap_min_words`` content words.
    ``extraction_min_shared``: content words an extraction answer must share with its context.
    ``reject_truncated``/``reject_leakage``/``reject_refusals``: the cut-at-the-limit, role or
    template leakage and refusal rules."""
    enabled: bool = True
    seed_threshold: float = 0.75
    oversample: float = 1.5
    repetition_min_words: int = 50
    max_dup_line_frac: float = 0.3
    max_dup_line_char_frac: float = 0.3
    max_top_ngram_frac: list[float] = field(default_factory=lambda: [0.3, 0.3, 0.3])
    max_dup_ngram_frac: list[float] = field(default_factory=lambda: [0.4, 0.4, 0.4, 0.4, 0.4, 0.4])
    max_dup_sentence_frac: float = 0.3
    max_trigram_repeat: float = 0.5
    min_compression_ratio: float = 0.2
    max_question_similarity: float = 0.9
    min_context_overlap: float = 0.05
    min_knowledge_overlap: float = 0.2
    overlap_min_words: int = 8
    extraction_min_shared: int = 1
    reject_truncated: bool = True
    reject_leakage: bool = True
    reject_refusals: bool = True
    RANGES = {"seed_threshold": FRACTION, "oversample": Range(ge=1), "repetition_min_words": COUNT0,
              "max_dup_line_frac": FRACTION, "max_dup_line_char_frac": FRACTION,
              "max_top_ngram_frac": FRACTION, "max_dup_ngram_frac": FRACTION,
              "max_dup_sentence_frac": FRACTION, "max_trigram_repeat": FRACTION,
              "min_compression_ratio": NON_NEGATIVE, "max_question_similarity": FRACTION,
              "min_context_overlap": FRACTION, "min_knowledge_overlap": FRACTION,
              "overlap_min_words": COUNT0, "extraction_min_shared": COUNT0}


@dataclass
class GenerateConfig:
    """Synthetic data generation settings (LAB 3.2). ``teacher``/``judge``: backend specs
    (``transformers:PATH|embedded``, ``openai:URL#MODEL``, ``vllm:MODEL``, ``scripted:[PATH]``);
    judge ``None`` = teacher. ``samples``: samples kept per leaf, the best by score (skills: at
    most ``ceil(samples * filters.oversample)`` questions go on to responses, out of
    ``samples * question_factor`` generated; knowledge: ``ceil(samples * filters.oversample)`` Q&A
    requests per leaf). ``questions_per_request``: new instructions the teacher lists per request
    (LAB 3.2.1 asks for a list; a grounded skill's request carries one new context of up to
    ``context_tokens`` and as many questions as fit beside it in ``max_new_tokens``). ``*_tokens``: max new tokens per stage, capped by ``max_new_tokens``.
    ``eval_tokens`` (judge replies) is 64: LAB figure 4's pair evaluation writes an explanation
    before its score (read from the end), which 4 tokens cut off.
    ``workers``: requests in flight (openai backend); ``batch_size``: sequences per forward pass
    (transformers backend). ``pair_threshold``: keep pairs scoring at least this on LAB's 3-point
    scale. ``kt_split_tokens``: knowledge answers shorter than this go to KT/1, others to KT/2.
    ``chunk_tokens``/``chunk_overlap``: knowledge chunk size and overlap in teacher tokens.
    ``model_judges``: run the model-judged filters (instruction evaluation, pair evaluation,
    faithfulness, self-contained); ``false`` skips them openly (scores recorded as null, the card
    says so) for teachers too small to judge; rule-based filters always run (``filters``: their
    thresholds, :class:`FiltersConfig`).
    ``max_request_error_fraction`` (0..1): a leaf fails, and is not cached as finished, when more
    than this fraction of one stage's teacher/judge requests failed; ``max_retries`` (>= 0) and
    ``request_timeout`` (seconds, > 0): the openai client's retries and per-request timeout.
    ``vllm_tensor_parallel_size`` (GPUs, 1..64), ``vllm_gpu_memory_utilization`` (fraction of
    each GPU's memory the engine may take, weights and KV cache, (0, 1]) and
    ``vllm_max_model_len`` (tokens of prompt + reply; 0 = the model's own context length): the
    in-process ``vllm:`` teacher/judge's engine (vLLM ``LLM(...)`` arguments of the same names).
    An in-process engine shares the GPU with the stages that train: ``lab build`` closes it
    before reward_model, train and pref (docs/multi-node.md: serve the teacher instead)."""
    teacher: str = "transformers:embedded"
    judge: str | None = None
    samples: int = 8
    question_factor: int = 2
    questions_per_request: int = 5
    workers: int = 8
    batch_size: int = 32
    max_new_tokens: int = 256
    question_tokens: int = 48
    context_tokens: int = 112
    answer_tokens: int = 96
    qa_tokens: int = 128
    eval_tokens: int = 64
    max_examples: int = 3
    temperature: float = 0.7
    seed: int = 0
    pair_threshold: int = 3
    model_judges: bool = True
    dedup_threshold: float = 0.9
    kt_split_tokens: int = 64
    chunk_tokens: int = 256
    chunk_overlap: int = 32
    filters: FiltersConfig = field(default_factory=FiltersConfig)
    max_request_error_fraction: float = 0.2
    max_retries: int = 3
    request_timeout: float = 120.0
    vllm_tensor_parallel_size: int = 1
    vllm_gpu_memory_utilization: float = 0.9
    vllm_max_model_len: int = 0
    # temperature: the OpenAI chat-completions range (0..2); pair_threshold: LAB's 3-point scale
    RANGES = {**{k: COUNT for k in ("samples", "question_factor", "questions_per_request", "workers",
                                    "batch_size", "max_examples")},
              **{k: TOKENS for k in ("max_new_tokens", "question_tokens", "context_tokens", "answer_tokens",
                                     "qa_tokens", "eval_tokens", "kt_split_tokens", "chunk_tokens")},
              "temperature": Range(ge=0, le=2), "seed": SEED, "pair_threshold": Range(ge=0, le=3),
              "dedup_threshold": FRACTION, "chunk_overlap": TOKENS0,
              "max_request_error_fraction": FRACTION, "max_retries": Range(ge=0, le=1000),
              "request_timeout": Range(gt=0), "vllm_tensor_parallel_size": Range(ge=1, le=64),
              "vllm_gpu_memory_utilization": Range(gt=0, le=1), "vllm_max_model_len": TOKENS0}


@dataclass
class TrainConfig:
    """Phased training (LAB 3.3): which preset under ``training/`` and the student model."""
    preset: str = "tiny-cpu"
    student: str = "embedded"


@dataclass
class FeedbackConfig:
    """Synthetic comparisons and the reward model (ALMoST, arXiv 2305.13735; see
    :mod:`lab_tools.feedback`). ``enabled``: ``lab build`` runs the comparison stage and trains the
    reward model. ``preset``: ``cpu`` (one model; demonstrations and shots axes) or ``gpu`` (adds
    the size axis: teacher vs student base), used when ``configurations`` is empty.
    ``configurations``: ``[{name, model, demonstrations: leaf|hhh|none, shots, system, format:
    chat|raw, license}]``; ``rubric``: configuration names best first, a nested list for ties
    (empty: the listed order). ``prompts_per_leaf``: generated instructions per leaf that get
    responses; ``max_new_tokens``/``temperature``: response sampling; ``min_chars``: shorter
    responses are invalid. ``rm_*``: reward-model training (TRL ``RewardTrainer``): ``rm_base``
    (None: ``train.student``), epochs, learning rate, batch size, max tokens per sequence,
    ``rm_heldout_leaves`` (fraction of leaves whose comparisons are held out), and
    ``rm_post_validation`` (ALMoST: retrain without the pairs a first RM ranks the wrong way),
    cross-fitted over ``rm_post_validation_folds`` folds of leaves (>= 2: each pair is scored by an
    RM trained on the other folds, never by one that trained on it; :mod:`lab_tools.feedback.postval`).
    ``rm_lora_r``: LoRA rank of the RM (peft, ``task_type`` SEQ_CLS, every linear layer, the
    score head trained in full); 0 = full fine-tuning; ``rm_lora_alpha``: its scaling numerator.
    ``rm_gradient_checkpointing``: recompute activations in the backward pass (memory for ~20%
    time). ``rm_score_batch_size``: conversations per forward pass when the RM scores (held-out
    accuracy, Static HHH). The RM trains in bf16 mixed precision on CUDA (float32 on CPU);
    pairs longer than ``rm_max_length`` tokens are dropped by TRL and counted in the RM manifest.
    ``request_chunk``: requests per teacher ``generate`` call of the comparison stage (whole
    leaves, at least this many); 0 = all of a configuration's requests at once for a server or
    vLLM teacher (its queue never runs empty between chunks), ``2 * batch_size`` for an
    in-process transformers teacher (checkpoints and progress after each chunk).
    ``self_play``: ``lab build`` also runs RM-guided self-play (:mod:`lab_tools.feedback.selfplay`):
    ``sp_prompts_per_leaf`` conversations per compositional-skill leaf, ``sp_candidates``
    responses per assistant turn (the reward model keeps the best), up to ``sp_turns`` assistant
    turns, kept when the worst turn's reward (relative to the RM's mean reward of a rejected
    response in the comparisons) is at least ``sp_threshold``. ``rm_scores_sdg``: where no model
    judge grades SDG samples, the reward model (``lab generate --reward-model DIR``; in ``lab build``
    the previous build's ``OUT/rm``) scores them and the best ``generate.samples`` per leaf are kept
    (:mod:`lab_tools.feedback.scorer`); samples whose relative reward is below
    ``rm_score_threshold`` (None: no threshold) are rejected. ``hhh_pairs``: Static HHH pairs
    the build's reward_model and alignment stages score (0 = all 221; an evenly spaced subset otherwise)."""
    enabled: bool = False
    preset: str = "cpu"
    configurations: list[dict] = field(default_factory=list)
    rubric: list[str | list[str]] = field(default_factory=list)
    prompts_per_leaf: int = 8
    max_new_tokens: int = 96
    temperature: float = 0.7
    min_chars: int = 50
    seed: int = 0
    batch_size: int = 16
    rm_base: str | None = None
    rm_epochs: float = 2.0
    rm_learning_rate: float = 2e-5
    rm_batch_size: int = 4
    rm_max_length: int = 384
    rm_heldout_leaves: float = 0.25
    rm_post_validation: bool = False
    rm_post_validation_folds: int = 2
    rm_seed: int = 0
    rm_lora_r: int = 0
    rm_lora_alpha: int = 16
    rm_gradient_checkpointing: bool = False
    rm_score_batch_size: int = 8
    request_chunk: int = 0
    self_play: bool = False
    sp_prompts_per_leaf: int = 4
    sp_candidates: int = 4
    sp_turns: int = 2
    sp_threshold: float = 0.0
    rm_scores_sdg: bool = False
    rm_score_threshold: float | None = None
    hhh_pairs: int = 0
    RANGES = {"hhh_pairs": COUNT0, "rm_score_threshold": Range(),  # a relative reward: any finite number
              "sp_prompts_per_leaf": COUNT, "sp_candidates": COUNT, "sp_turns": COUNT, "sp_threshold": Range(),
              "prompts_per_leaf": COUNT, "max_new_tokens": TOKENS, "temperature": Range(ge=0, le=2),
              "min_chars": Range(ge=0, le=1_000_000), "seed": SEED, "batch_size": COUNT,
              "rm_epochs": Range(gt=0, le=1000), "rm_learning_rate": Range(gt=0), "rm_batch_size": COUNT,
              "rm_max_length": TOKENS, "rm_heldout_leaves": Range(ge=0, lt=1), "rm_seed": SEED,
              "rm_post_validation_folds": Range(ge=2, le=100),
              "rm_lora_r": Range(ge=0, le=4096), "rm_lora_alpha": Range(ge=1, le=65536),
              "rm_score_batch_size": COUNT, "request_chunk": COUNT0}


@dataclass
class BotConfig:
    """Contribution bot settings. ``samples``: samples per leaf in a preview; ``write_team``:
    ``ORG/SLUG`` whose members may run comment commands besides users with write permission;
    ``runner``: documentation of the preview runner label (the workflow reads the repository
    variable ``LAB_PREVIEW_RUNNER``); ``login``: the account the bot comments as (None: any
    Bot-type account, e.g. ``github-actions[bot]``)."""
    samples: int = 2
    write_team: str | None = None
    runner: str = "self-hosted, lab-bot"
    login: str | None = None
    RANGES = {"samples": COUNT}


@dataclass
class Config:
    """The whole ``lab.yaml``. ``cache_dir``: models, documents and SDG shards (default: user cache)."""
    cache_dir: str | None = None
    licenses: LicensesConfig = field(default_factory=LicensesConfig)
    documents: DocumentsConfig = field(default_factory=DocumentsConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    bot: BotConfig = field(default_factory=BotConfig)
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)

    @property
    def cache_path(self) -> Path:
        """Resolved cache directory."""
        return Path(self.cache_dir).expanduser() if self.cache_dir else default_cache_dir()

    def override(self, dotted: str, value) -> None:
        """Set ``section.key`` to ``value`` unless ``value`` is None (a flag left unset).

        Raises:
            ConfigError: unknown key, wrong type, NaN/infinity or value out of range (the setting
            is then left as it was).
        """
        if value is None:
            return
        errors: list[str] = []
        _apply(self, dotted.split("."), value, (), _Origin(), errors)
        if errors:
            raise ConfigError(errors)


def _type_ok(tp, value) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(t, value) for t in typing.get_args(tp))
    if tp is type(None):
        return value is None
    if origin is list:
        (inner,) = typing.get_args(tp)
        return isinstance(value, list) and all(_type_ok(inner, v) for v in value)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, tp)


@dataclass
class _Origin:
    """Where values come from, to name it in errors: a file (with the line of each key path), an
    environment variable, or neither (a flag, or a preset's own prefix). ``record``: when given,
    each setting applied from here is recorded as ``{"section.key": where}``."""
    file: str | None = None
    lines: dict[tuple[str, ...], int] = field(default_factory=dict)
    var: str | None = None
    prefix: str = ""
    record: dict[str, str] | None = None

    def where(self, path: tuple[str, ...]) -> str:
        """``FILE:LINE`` (the line of the key, else of its nearest parent), ``$VAR`` or ``""``."""
        if self.file is not None:
            for i in range(len(path), 0, -1):
                if path[:i] in self.lines:
                    return f"{self.file}:{self.lines[path[:i]]}"
            return self.file
        return f"${self.var}" if self.var else ""

    def label(self, path: tuple[str, ...]) -> str:
        """How an error names the setting at key ``path``."""
        if self.var is not None:
            return f"${self.var} ({self.var[4:].lower().replace('__', '.')})"
        dotted = ".".join(p for p in (self.prefix, *path) if p)
        return f"{self.where(path)}: {dotted}" if self.file is not None else dotted

    def unknown(self, path: tuple[str, ...], known) -> str:
        """The message for the unknown last key of ``path``, with a did-you-mean when one is close."""
        key = path[-1]
        close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.6)
        hint = ""
        if close:
            hint = f"; did you mean {close[0]!r}"
            if self.var is not None:
                parts = self.var[4:].split("__")
                parts[len(path) - 1] = close[0].upper()
                hint += f" ($LAB_{'__'.join(parts)})"
            hint += "?"
        return f"unknown key {key!r}{hint} (known: {', '.join(sorted(known))})"


def _problem(cls, key: str, tp, value) -> str | None:
    """What is wrong with ``value`` for field ``key`` (type ``tp``) of dataclass ``cls``, or None."""
    if not _type_ok(tp, value):
        return f"expected {getattr(tp, '__name__', tp)}, got {value!r}"
    for v in value if isinstance(value, list) else [value]:
        if isinstance(v, float) and not math.isfinite(v):
            return _NOT_FINITE.format(v)
    rng = range_of(cls, key)
    return rng.problem(value) if rng is not None else None


def _apply(obj, keys: list[str], value, path: tuple[str, ...], origin: _Origin, errors: list[str]) -> None:
    """Set ``keys`` (a key path below ``obj``, which sits at ``path``) to ``value``, or append the
    problem to ``errors``; a mapping given for a section sets its keys one by one."""
    hints = typing.get_type_hints(type(obj))
    key = keys[0]
    here = (*path, key)
    if key not in hints:
        errors.append(f"{origin.label(here)}: {origin.unknown(here, hints)}")
        return
    tp = hints[key]
    if len(keys) > 1:
        if not dataclasses.is_dataclass(tp):
            errors.append(f"{origin.label(here)}: {key!r} is a setting, not a section")
            return
        _apply(getattr(obj, key), keys[1:], value, here, origin, errors)
        return
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            errors.append(f"{origin.label(here)}: expected a mapping")
            return
        for k, v in value.items():
            _apply(getattr(obj, key), [str(k)], v, here, origin, errors)
        return
    problem = _problem(type(obj), key, tp, value)
    if problem:
        errors.append(f"{origin.label(here)}: {problem}")
        return
    setattr(obj, key, float(value) if tp is float else value)
    if origin.record is not None:
        origin.record[".".join(here)] = origin.where(here)


def fill_dataclass(obj, data: dict, where: str, errors: list[str]) -> None:
    """Set the fields of dataclass ``obj`` from the mapping ``data``, recursing into nested
    dataclasses. Each unknown key (with a did-you-mean), wrong type, NaN/infinity or value outside
    the field's :class:`Range` appends ``"<where>.<key>: <problem>"`` to ``errors`` (so callers can
    report every problem at once); valid keys are still applied. Raises nothing."""
    origin = _Origin(prefix=where)
    for k, v in data.items():
        _apply(obj, [str(k)], v, (), origin, errors)


_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _key_lines(node, path: tuple[str, ...], lines: dict, where: str, errors: list[str]) -> None:
    """Record the 1-based line of every mapping key below ``node``; a repeated key is an error."""
    if isinstance(node, yaml.MappingNode):
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge" or not isinstance(knode, yaml.ScalarNode):
                continue
            here, line = (*path, str(knode.value)), knode.start_mark.line + 1
            if here in lines:
                errors.append(f"{where}:{line}: {'.'.join(here)}: duplicate key (first at line {lines[here]})")
            lines[here] = line
            _key_lines(vnode, here, lines, where, errors)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _key_lines(item, path, {}, where, errors)  # keys inside list items: checked, not located


def _merge_file(cfg: Config, path: Path, errors: list[str], record: dict[str, str]) -> None:
    """Apply the settings of the YAML file ``path``; its errors name the file and the line of the key."""
    where = str(path)
    try:
        loader = _Loader(path.read_text(encoding="utf-8"))
        try:
            node = loader.get_single_node()
            if node is None:
                return
            lines: dict[tuple[str, ...], int] = {}
            _key_lines(node, (), lines, where, errors)
            data = loader.construct_document(node)
        finally:
            loader.dispose()
    except (OSError, UnicodeDecodeError) as exc:
        errors.append(f"{where}: cannot read: {exc}")
        return
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        text = " ".join(str(t) for t in (getattr(exc, "context", None), getattr(exc, "problem", None)) if t)
        errors.append(f"{where}{f':{mark.line + 1}' if mark else ''}: invalid YAML: {text or exc}")
        return
    if not isinstance(data, dict):
        errors.append(f"{where}:{node.start_mark.line + 1}: top level must be a mapping")
        return
    origin = _Origin(file=where, lines=lines, record=record)
    for k, v in data.items():
        _apply(cfg, [str(k)], v, (), origin, errors)


def _merge_env(cfg: Config, env, errors: list[str], record: dict[str, str]) -> None:
    """Apply the ``LAB_SECTION__KEY`` variables of ``env``; other ``LAB_*`` variables are not settings."""
    for name, raw in sorted(env.items()):
        if not name.startswith("LAB_") or "__" not in name[4:]:
            continue
        parts = name[4:].lower().split("__")
        if not all(parts):
            errors.append(f"${name}: expected LAB_SECTION__KEY (upper case, '__' between levels)")
            continue
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        _apply(cfg, parts, value, (), _Origin(var=name, record=record), errors)


def default_root() -> Path:
    """The taxonomy root used when a command is given none: ``./taxonomy`` if it exists, else ``.``."""
    return Path("taxonomy") if Path("taxonomy").is_dir() else Path(".")


def find_lab_yaml(root: str | Path) -> Path | None:
    """``lab.yaml`` in the taxonomy ``root`` or its nearest parent up to the git work tree top."""
    here = Path(root).resolve()
    for d in [here, *here.parents]:
        if (d / "lab.yaml").is_file():
            return d / "lab.yaml"
        if (d / ".git").exists():
            return None
    return None


def load_config(root: str | Path | None = None, config_file: str | Path | None = None,
                environ: dict[str, str] | None = None) -> Config:
    """Load defaults < ``lab.yaml`` (see :func:`find_lab_yaml`) < ``config_file`` <
    ``LAB_SECTION__KEY`` variables of ``environ`` (default: ``os.environ``).

    Raises:
        ConfigError: every unknown key (with a did-you-mean), wrong type, NaN/infinity, value out of
        range, duplicate key, unreadable or invalid file and misspelled ``LAB_SECTION__KEY``
        variable, all at once; file errors name the file and the key's line.
    """
    cfg = Config()
    errors: list[str] = []
    record: dict[str, str] = {}
    found = find_lab_yaml(root) if root is not None else None
    if found is not None:
        _merge_file(cfg, found, errors, record)
    if config_file is not None:
        _merge_file(cfg, Path(config_file), errors, record)
    _merge_env(cfg, os.environ if environ is None else environ, errors, record)
    _cross_field(cfg, errors, record)
    if errors:
        raise ConfigError(errors)
    return cfg


def _cross_field(cfg: Config, errors: list[str], record: dict[str, str]) -> None:
    """Rules between two settings (each one alone is range-checked when set); ``record``: where
    each setting was set, named in the message."""
    g = cfg.generate
    if g.chunk_overlap >= g.chunk_tokens:
        keys = ("generate.chunk_overlap", "generate.chunk_tokens")
        where = "; ".join(f"{k}: {record[k]}" for k in keys if k in record)
        errors.append(f"generate.chunk_overlap: must be < generate.chunk_tokens ({g.chunk_tokens}), "
                      f"got {g.chunk_overlap}" + (f" ({where})" if where else ""))


def config_json_schema() -> dict:
    """A JSON Schema (draft 2020-12) of ``lab.yaml`` for editors, built from the section
    dataclasses, their defaults and ``RANGES`` (:mod:`lab_tools.config_schema`); the committed copy
    is ``schemas/lab.yaml.schema.json``. Raises nothing."""
    from lab_tools.config_schema import build_schema

    return build_schema()

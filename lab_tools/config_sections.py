"""The section tables of ``lab.yaml`` (DESIGN.md, Configuration): one dataclass per section with
its defaults, docstring (the meaning of each key), ``RANGES`` and ``CHOICES``; and the fixed
evaluation caps of ``lab build``. The root :class:`lab_tools.config.Config` holds one of each;
:func:`lab_tools.config.load_config` fills them.

Each stage owns its section dataclass below; add fields there (with a default and a range),
never elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lab_tools.config_rules import COUNT, COUNT0, FRACTION, NON_NEGATIVE, SEED, TOKENS, TOKENS0, Range


DEFAULT_LICENSES = ["CC0-1.0", "CDLA-Permissive-2.0", "CC-BY-4.0", "CC-BY-SA-4.0", "Apache-2.0", "MIT"]


@dataclass
class LicensesConfig:
    """License allowlist (SPDX ids) for knowledge documents. ``allowlist``: the SPDX ids a knowledge
    leaf's ``attribution.txt`` license may be (:mod:`lab_tools.taxonomy.licenses`)."""
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
    checked before any is read; also the most bytes one download may bring (it is stopped there).
    ``fetch_timeout``: seconds one fetch may take in all (git also gives up on a transfer slower
    than 1 KB/s for 30 s). ``cache_max_bytes``: the most the documents cache
    (``<cache>/documents``) may hold; least recently used entries are removed past it.
    ``match_timeout``: seconds one leaf's patterns may take to match the files of its document
    tree (a pattern slower than that is an error naming it; :mod:`lab_tools.taxonomy.patterns`)."""
    allow_local: bool = False
    allowed_schemes: list[str] = field(default_factory=lambda: ["https"])
    allowed_hosts: list[str] = field(default_factory=lambda: [
        "github.com", "gitlab.com", "codeberg.org", "huggingface.co", "bitbucket.org", "git.sr.ht",
        "gitea.com"])
    max_bytes_per_leaf: int = 64 * 1024 * 1024
    fetch_timeout: float = 300.0
    cache_max_bytes: int = 4 * 2**30
    match_timeout: float = 10.0
    RANGES = {"max_bytes_per_leaf": Range(ge=1, le=16 * 2**30), "fetch_timeout": Range(gt=0),
              "cache_max_bytes": Range(ge=1, le=2**50), "match_timeout": Range(gt=0, le=3600)}


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
    ``question_factor``: instructions generated per kept sample (see ``samples``).
    ``max_examples``: seed examples shown to the teacher per request.
    ``temperature``: the teacher's sampling temperature; ``seed``: base of the per-request seeds
    (:mod:`lab_tools.sdg.stages`). ``dedup_threshold``: a generated instruction at least this
    similar (ROUGE-L style, 0..1) to one already kept is a near-duplicate and dropped.
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
    before reward_model, train and pref (docs/multi-node.md: serve the teacher instead).
    ``max_prompt_tokens`` (0 = no cap of our own): every teacher/judge prompt is cut to at most
    this many tokens and, for in-process models, to the model's context less the request's
    ``max_tokens`` (:func:`lab_tools.sdg.truncation.fit_requests`: few-shot turns go first, then
    the middle of the longest message); each cut prompt is counted (``truncated_prompts``).
    ``engine``: what runs an in-process local model (a ``transformers:`` teacher or judge, the
    comparisons' and self-play's policies, the evaluation's answers, scores and pairwise judge):
    ``transformers`` (the reference), ``ctranslate2`` (CTranslate2 on CPU, int8; about 2x the
    tokens/s on 2 cores, ``bench/results/engine-cpu.md``) or ``auto`` (ctranslate2 on a CPU when
    it is installed and converts the model, else transformers; one warning line when it is not
    installed). ``engine_compute_type``: ``int8`` (default), ``int8_float32`` or ``float32``;
    ``engine_threads``: CPU threads (0 = all). The engine, its version and compute type are part
    of every cache key that holds the teacher's identity.
    ``teacher_license``: the terms of the teacher's output, an SPDX license id or expression
    (e.g. ``Apache-2.0``), stated in the dataset card's license next to the documents' licenses;
    unset = the embedded model's (apache-2.0) for ``transformers:embedded``, else ``other`` with a
    note that the terms are unknown."""
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
    max_prompt_tokens: int = 0
    # The engine of in-process local models (transformers:PATH|embedded teachers, judges, policies and
    # scorers): auto | transformers | ctranslate2 (lab_tools/engines/); compute type int8 |
    # int8_float32 | float32 (ctranslate2 weights and GEMMs); threads 0 = every CPU of the process.
    engine: str = "auto"
    engine_compute_type: str = "int8"
    engine_threads: int = 0
    # The terms of the teacher's output, stated in the dataset card's `license` (with the
    # documents' licenses): an SPDX expression, e.g. Apache-2.0; unset = the embedded model's
    # (apache-2.0) for transformers:embedded, else "other" with a note that the terms are unknown.
    teacher_license: str | None = None
    # temperature: the OpenAI chat-completions range (0..2); pair_threshold: LAB's 3-point scale
    RANGES = {**{k: COUNT for k in ("samples", "question_factor", "questions_per_request", "workers",
                                    "batch_size", "max_examples")},
              **{k: TOKENS for k in ("max_new_tokens", "question_tokens", "context_tokens", "answer_tokens",
                                     "qa_tokens", "eval_tokens", "kt_split_tokens", "chunk_tokens")},
              "temperature": Range(ge=0, le=2), "seed": SEED, "pair_threshold": Range(ge=0, le=3),
              "dedup_threshold": FRACTION, "chunk_overlap": TOKENS0,
              "max_request_error_fraction": FRACTION, "max_retries": Range(ge=0, le=1000),
              "request_timeout": Range(gt=0), "vllm_tensor_parallel_size": Range(ge=1, le=64),
              "vllm_gpu_memory_utilization": Range(gt=0, le=1), "vllm_max_model_len": TOKENS0,
              "engine_threads": Range(ge=0, le=1024), "max_prompt_tokens": TOKENS0}


@dataclass
class TrainConfig:
    """Phased training (LAB 3.3). ``preset``: the hyper-parameter preset, a name under
    ``training/presets`` or a YAML path. ``student``: the model trained, ``embedded`` or a local
    Hugging Face model dir. ``report_to``: experiment tracker of the training phases, the
    preference phase and the reward model (:mod:`lab_tools.train.tracking`): ``tensorboard``
    (offline event files under the run folder's ``tensorboard/``), ``trackio`` or ``wandb`` (when
    installed), ``none``; ``metrics.csv`` and ``loss.png`` are written in every case."""
    preset: str = "tiny-cpu"
    student: str = "embedded"
    report_to: str = "tensorboard"
    CHOICES = {"report_to": ("tensorboard", "trackio", "wandb", "none")}


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
    responses are invalid. ``seed``: base of the per-request sampling seeds; ``batch_size``:
    sequences per forward pass of an in-process teacher. ``rm_*``: reward-model training (TRL ``RewardTrainer``): ``rm_base``
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
    variable ``LAB_PREVIEW_RUNNER``); ``login``: the account the bot comments as, used only when
    the API cannot say (the token's own login, ``GET /user`` or GraphQL ``viewer``, always wins;
    :meth:`lab_tools.bot.github.GitHubClient.login`).

    Work per pull request is bounded (DESIGN.md, Trust boundary): ``max_leaves``: changed leaves
    generated in one preview (all are validated; the comment lists the ones skipped);
    ``time_budget``: seconds the preview's generation may take in all, oversampling included
    (the comment says what it cut); ``max_attempts``: generation rounds per leaf, each with new
    request seeds, to reach ``samples`` kept samples when filters drop candidates (issue 27.3);
    ``max_prompt_tokens``: the preview teacher's prompts are cut to this many tokens (the count of
    cut prompts is shown; 0: ``generate.max_prompt_tokens`` applies)."""
    samples: int = 2
    write_team: str | None = None
    runner: str = "self-hosted, lab-bot"
    login: str | None = None
    max_leaves: int = 20
    time_budget: float = 1200.0
    max_attempts: int = 3
    max_prompt_tokens: int = 2048
    RANGES = {"samples": COUNT, "max_leaves": COUNT, "time_budget": Range(gt=0, le=86_400),
              "max_attempts": Range(ge=1, le=20), "max_prompt_tokens": TOKENS0}


@dataclass
class ReleaseConfig:
    """Release (``lab release`` / the build's release stage). ``dataset``: the Hugging Face Hub id
    (``owner/name``) the run's dataset card and phase files are published under; recorded in
    ``run.json`` and ``release.json`` and named in the model card's front matter (``datasets``),
    so the Hub links the model to its training data; empty: no dataset named. Checked to be a
    valid Hub repository id when set (:func:`huggingface_hub.utils.validate_repo_id`)."""
    dataset: str = ""


# Evaluation caps of `lab build` (not settings: a build must stay within minutes on a CPU;
# `lab evaluate` takes its own, larger caps as options). The judge's prompt (MT-Bench template +
# question, context, reference and answer) is long, so judging dominates: on 2 CPU cores the
# 135M judge takes ~5-10 s per answer, most of it prefill. 10 prompts give each skill leaf of a
# ten-leaf taxonomy one prompt (round-robin over leaves). Part of the evaluate stage's fingerprint.
EVAL_CAPS = {"max_mc": 60, "max_prompts": 10, "max_new_tokens": 64, "judge_max_tokens": 48}
# Held-out items the build's alignment stage scores per policy (ST, pref; Static HHH for base too):
# the knowledge score on 16 MC items, the win rate on 8 prompts (both from the held-out test part);
# ``batch_size`` 8 answers the 8 prompts in one batch (on a CPU a decode step costs little more for
# 8 sequences than for 4). ``lab evaluate --training-run`` has its own, larger defaults. Part of
# the alignment stage's fingerprint.
ALIGNMENT_CAPS = {"max_mc": 16, "max_prompts": 8, "batch_size": 8}

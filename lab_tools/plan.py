"""``lab build --plan`` / ``lab train --plan``: each stage's models and peak memory per GPU, before
renting GPUs. Models are read from ``config.json`` only (:func:`lab_tools.train.plan.read_shape`,
meta device): no weights are loaded, nothing runs on a GPU.

Which models: the student is ``--model``/``--student``, else the preset's ``plan.model``, else
``train.student``; the teacher is ``--teacher``, else the preset's ``plan.teacher`` (served by
vLLM on ``plan.teacher_gpus`` GPUs of its own), else ``generate.teacher`` (``transformers:`` and
``vllm:`` run in-process on GPU 0, ``openai:`` elsewhere). ``embedded`` plans the shipped
SmolLM2-135M config; a bare name is a folder of ``training/model-configs/``. Each stage reports
the models resident, their dtype and parameters, the bytes per GPU by component (weights,
gradients, optimizer, activations, KV cache, ...; formulas in :mod:`lab_tools.train.plan`), the
GPUs it runs on as configured (FSDP: the preset's ``plan.fsdp_gpus``), the fewest GPUs on which it
would fit, and the verdict against ``--gpu-memory`` (GiB per GPU). The text form and the
``--plan`` options are in :mod:`lab_tools.plan_cli`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path


from lab_tools.errors import ConfigError, LabError
from lab_tools.feedback.rubric import resolve_configurations
from lab_tools.train.config import PHASES, load_preset, preset_path
from lab_tools.train.plan import (DTYPE_BYTES, FORMULAS, SHARDINGS, GiB, ModelShape, TrainJob, generate_parts,
                                  read_shape, reward_parts, smallest_fit, train_parts, vllm_plan, with_allowance)

MODEL_CONFIGS = Path(__file__).resolve().parents[1] / "training" / "model-configs"
PROMPT_TOKENS = 2048  #: assumed prompt of one teacher/feedback request (principles, <= 3 examples, a chunk)
SERVED = "vllm-server"


@dataclass
class StagePlan:
    """One stage: ``models`` resident (role, name, dtype, parameters, trainable, mode), ``gpus`` it
    runs on as configured, ``per_gpu`` bytes by component, ``fits`` against the GPU memory,
    ``min_gpus`` the fewest GPUs on which it fits (None: none tried), ``notes``."""
    stage: str
    models: list[dict]
    gpus: int
    per_gpu: dict[str, int]
    fits: bool
    min_gpus: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def peak(self) -> int:
        """Estimated peak bytes per GPU."""
        return sum(self.per_gpu.values())

    def as_dict(self) -> dict:
        return {**asdict(self), "peak_bytes": self.peak, "peak_gib": round(self.peak / GiB, 1)}


def config_dir(spec: str, option: str) -> Path:
    """The directory holding the ``config.json`` of model ``spec``: ``embedded`` (the shipped
    SmolLM2-135M config), a directory with ``config.json``, or a name under ``training/model-configs``."""
    if str(spec) == "embedded":
        return MODEL_CONFIGS / "smollm2-135m"
    path = Path(spec).expanduser()
    if (path / "config.json").is_file():
        return path
    named = MODEL_CONFIGS / str(spec)
    if "/" not in str(spec) and (named / "config.json").is_file():
        return named
    known = ", ".join(sorted(p.name for p in MODEL_CONFIGS.iterdir() if (p / "config.json").is_file()))
    raise LabError(f"{spec}: no config.json there; give a model directory (config.json is enough), "
                   f"'embedded' or one of {known}", field=option)


@lru_cache(maxsize=16)
def shape_of(path: str, head: str = "causal_lm") -> ModelShape:
    """:func:`read_shape`, memoized per directory and head."""
    return read_shape(path, head=head)


def _model(role: str, shape: ModelShape, dtype: str, mode: str, trainable: int | None = None) -> dict:
    return {"role": role, "model": shape.name, "path": shape.path, "architecture": shape.architecture,
            "dtype": dtype, "params": shape.params, "trainable": trainable, "mode": mode}


@dataclass
class Setup:
    """What every stage needs: the preset, the ``lab.yaml`` config, the student (dir, source),
    the teacher (engine, dir or None, source, GPUs), the GPU memory in bytes, and whether the
    stages run inside one ``lab build`` process (which keeps an in-process teacher loaded)."""
    preset: object
    cfg: object
    student: Path
    student_source: str
    teacher_engine: str
    teacher: Path | None
    teacher_source: str
    teacher_gpus: int
    gpu_bytes: int
    build: bool = True

    @property
    def fsdp(self) -> int:
        return max(1, self.preset.plan.fsdp_gpus)


def make_setup(cfg, *, student: str | None, teacher: str | None, gpu_memory: float, build: bool = True) -> Setup:
    """Resolve the preset (``cfg.train.preset``), student and teacher (module doc: precedence;
    ``lab train`` runs no teacher: ``build`` False leaves it out)."""
    preset = load_preset(cfg.train.preset)
    here = preset_path(cfg.train.preset).parent

    def rel(spec: str) -> str:  # a preset's relative path is relative to the preset file
        return str(here / spec) if "/" in spec and not Path(spec).is_absolute() else spec

    if student:
        s_spec, s_src = student, "--model"
    elif preset.plan.model:
        s_spec, s_src = rel(preset.plan.model), "preset plan.model"
    else:
        s_spec, s_src = cfg.train.student, "train.student"
    engine, t_dir, t_src, tp = "none", None, "lab train runs no teacher", 1
    spec = teacher or cfg.generate.teacher
    scheme, _, rest = str(spec).partition(":")
    if build and preset.plan.teacher and (not teacher or scheme == "openai"):
        engine, t_dir, t_src = SERVED, config_dir(rel(preset.plan.teacher), "plan.teacher"), "preset plan.teacher"
        tp = preset.plan.teacher_gpus
    elif build and scheme in ("transformers", "vllm"):
        engine, t_src = scheme, ("--teacher" if teacher else "generate.teacher")
        t_dir = config_dir(rest or "embedded", t_src)
    elif build:
        engine, t_src = ("scripted" if scheme == "scripted" else "external"), str(spec)
    return Setup(preset, cfg, config_dir(s_spec, s_src), s_src, engine, t_dir, t_src, tp,
                 int(gpu_memory * GiB), build)


def _verdict(stage: str, models: list, gpus: int, parts_at, gpu_bytes: int, notes: list, tries=(1,)) -> StagePlan:
    parts = with_allowance(parts_at(gpus))
    need = smallest_fit(lambda n: sum(with_allowance(parts_at(n)).values()), gpu_bytes, tries)
    return StagePlan(stage, models, gpus, parts, sum(parts.values()) <= gpu_bytes, need, notes)


def _teacher_resident(s: Setup, batch: int, new_tokens: int) -> tuple[list, dict, list]:
    """The in-process teacher on GPU 0: ``(models, parts, notes)``; nothing for a served one."""
    if s.teacher is None or s.teacher_engine == SERVED:
        return [], {}, []
    shape = shape_of(str(s.teacher))
    if s.teacher_engine == "vllm":  # vLLM takes its share of the GPU whatever the model's size
        v = vllm_plan(shape, tp=1, gpu_bytes=s.gpu_bytes, seq_tokens=PROMPT_TOKENS + new_tokens)
        return ([_model("teacher", shape, "bfloat16", "vllm in-process, GPU 0")],
                {"teacher_vllm_reserved": v.reserved},
                ["in-process vllm: reserves gpu_memory_utilization 0.9 of GPU 0 while loaded"])
    parts = generate_parts(shape, batch=batch, prompt_tokens=PROMPT_TOKENS, new_tokens=new_tokens)
    return ([_model("teacher", shape, "bfloat16", "transformers in-process, GPU 0")],
            {f"teacher_{k}": v for k, v in parts.items()}, [])


def plan_generate(s: Setup) -> StagePlan:
    """SDG: the teacher (and judge, the same model unless ``generate.judge`` differs)."""
    g = s.cfg.generate
    notes = [] if not g.judge or g.judge == g.teacher else [f"judge {g.judge} not planned (a second model)"]
    if s.teacher_engine in ("external", "scripted"):
        return StagePlan("generate", [], 0, {}, True, 0, notes + [f"teacher {s.teacher_source}: not on these GPUs"])
    shape = shape_of(str(s.teacher))
    if s.teacher_engine in (SERVED, "vllm"):
        tp = s.teacher_gpus if s.teacher_engine == SERVED else 1
        seq = PROMPT_TOKENS + g.max_new_tokens
        v = vllm_plan(shape, tp=tp, gpu_bytes=s.gpu_bytes, seq_tokens=seq)
        tries = [n for n in (1, 2, 4, 8) if shape.heads % n == 0]
        need = next((n for n in tries if vllm_plan(shape, tp=n, gpu_bytes=s.gpu_bytes, seq_tokens=seq).fits), None)
        notes.append(f"vLLM KV pool {v.kv_pool / GiB:.1f} GiB per GPU: {v.sequences} sequences of {seq} tokens "
                     f"at once (max_model_len {v.max_model_len} needs {v.min_kv / GiB:.1f} GiB)")
        if s.teacher_engine == SERVED:
            notes.append(f"served on {tp} GPU(s) of its own: `vllm serve MODEL --tensor-parallel-size {tp}`, "
                         "generate.teacher openai:URL#MODEL")
        elif need and need > 1:
            notes.append(f"in-process vllm runs on one GPU (no tensor_parallel_size); serve it on {need} GPUs instead")
        parts = {"weights": v.weights, "kv_pool": v.kv_pool, "vllm_overhead": v.overhead}
        models = [_model("teacher", shape, "bfloat16", f"vllm, tensor parallel {tp}")]
        return StagePlan("generate", models, tp, parts, v.fits, need, notes)
    models, parts, extra = _teacher_resident(s, g.batch_size, g.max_new_tokens)
    return _verdict("generate", models, 1, lambda n: parts, s.gpu_bytes, notes + extra)


def _inproc(s: Setup, specs: list[str], batch: int, new_tokens: int) -> tuple[list, dict, list]:
    """In-process generation models of ``specs`` (teacher backend specs) on GPU 0: all weights,
    and the KV cache / prefill of the largest (they generate one after another)."""
    models, parts, notes, peaks = [], {}, [], []
    t_models, t_parts, t_notes = _teacher_resident(s, batch, new_tokens)
    if any(sp == "teacher" for sp in specs):
        models, notes = t_models, t_notes
        if not t_models:
            notes = [f"teacher ({s.teacher_engine}): not on these GPUs"]
        parts.update({k: v for k, v in t_parts.items() if k.endswith(("weights", "reserved"))})
        peaks.append({k: v for k, v in t_parts.items() if not k.endswith(("weights", "reserved"))})
    for sp in sorted({sp for sp in specs if sp != "teacher"}):
        scheme, _, rest = sp.partition(":")
        if scheme != "transformers":
            notes.append(f"{sp}: not in-process, not planned")
            continue
        shape = shape_of(str(config_dir(rest or "embedded", sp)))
        g = generate_parts(shape, batch=batch, prompt_tokens=PROMPT_TOKENS, new_tokens=new_tokens)
        models.append(_model("responder", shape, "bfloat16", "transformers in-process, GPU 0"))
        parts[f"weights_{shape.name}"] = g.pop("weights")
        peaks.append(g)
    best = max(peaks, key=lambda p: sum(p.values()), default={})
    parts.update({k.removeprefix("teacher_"): v for k, v in best.items()})
    return models, parts, notes


def _configurations(s: Setup) -> list[str]:
    """The model spec of each comparison configuration, best first (``teacher`` for the teacher),
    resolved as the build does (an invalid rubric raises as it would there)."""
    teacher = {"transformers": f"transformers:{s.teacher}", "vllm": f"vllm:{s.teacher}",
               "scripted": "scripted:"}.get(s.teacher_engine, "openai:http://teacher/v1#served")
    confs = resolve_configurations(s.cfg.feedback, teacher, str(s.student))
    return ["teacher" if c.model == teacher else c.model for c in confs]


def _stopped(stage: str, exc: Exception) -> StagePlan:
    """A stage the build would refuse to run (an invalid feedback rubric for this teacher)."""
    errors = getattr(exc, "errors", None) or [str(exc)]
    return StagePlan(stage, [], 1, {}, False, None, [f"the build would stop: {e}" for e in errors])


def plan_comparisons(s: Setup) -> StagePlan:
    """ALMoST's synthetic comparisons: every configuration's model generates responses."""
    fb = s.cfg.feedback
    try:
        specs = _configurations(s)
    except (ConfigError, LabError) as exc:
        return _stopped("comparisons", exc)
    models, parts, notes = _inproc(s, specs, fb.batch_size, fb.max_new_tokens)
    return _verdict("comparisons", models, 1, lambda n: parts, s.gpu_bytes, notes)


def _rm_shape(s: Setup) -> ModelShape:
    base = s.cfg.feedback.rm_base
    return shape_of(str(config_dir(base, "feedback.rm_base") if base else s.student), "seq_cls")


def plan_reward_model(s: Setup) -> StagePlan:
    """TRL RewardTrainer (lab_tools.feedback.rm) on CUDA: bf16 compute; full fine-tuning keeps
    float32 master weights, LoRA (``feedback.rm_lora_r`` > 0, adapters on every linear layer) a
    frozen bf16 base; gradient checkpointing per ``feedback.rm_gradient_checkpointing``;
    ``rm_batch_size`` pairs of ``rm_max_length`` tokens, chosen and rejected."""
    fb, shape = s.cfg.feedback, _rm_shape(s)
    tokens = fb.rm_batch_size * 2 * fb.rm_max_length
    lora = fb.rm_lora_r > 0
    trainable = shape.lora_params(fb.rm_lora_r, list(shape.linear_io)) if lora else shape.params
    job = TrainJob(shape, 2 if lora else 4, 2, trainable, checkpointing=fb.rm_gradient_checkpointing,
                   tokens=tokens, mask_bytes=2 * fb.rm_batch_size * fb.rm_max_length ** 2)
    mode = f"train, LoRA r={fb.rm_lora_r}" if lora else "train, full"
    models = [_model("reward_model", shape, "bfloat16" if lora else "float32 (bf16 compute)", mode, trainable)]
    notes = [f"settings from lab.yaml feedback.rm_* ({mode}, gradient checkpointing "
             f"{'on' if fb.rm_gradient_checkpointing else 'off'})"]
    return _verdict("reward_model", models, s.fsdp, lambda n: train_parts(job.with_fsdp(n)), s.gpu_bytes,
                    notes + _fsdp_note(s), tries=SHARDINGS)


def plan_self_play(s: Setup) -> StagePlan:
    """RM-guided self-play: the assistant (the rubric's best configuration), the teacher as user
    simulator, and the reward model scoring candidates (float32)."""
    fb = s.cfg.feedback
    try:
        specs = _configurations(s)[:1] + ["teacher"]
    except (ConfigError, LabError) as exc:
        return _stopped("self_play", exc)
    models, parts, notes = _inproc(s, specs, fb.batch_size, fb.max_new_tokens * fb.sp_turns)
    rm = _rm_shape(s)
    models.append(_model("reward_model", rm, "float32", "score"))
    parts.update({f"reward_model_{k}": v for k, v in reward_parts(rm, batch=8, max_length=fb.rm_max_length).items()})
    return _verdict("self_play", models, 1, lambda n: parts, s.gpu_bytes, notes)


def _fsdp_note(s: Setup) -> list[str]:
    if s.fsdp == 1:
        return []
    return [f"FSDP FULL_SHARD over {s.fsdp} GPUs: `accelerate launch --config_file training/accelerate/fsdp.yaml "
            f"--num_processes {s.fsdp}` (a single-process run shards nothing)"]


def plan_phase(s: Setup, phase: str) -> StagePlan:
    """One of KT/1, KT/2, ST (lab_tools.train.loop): the preset's dtype, mixed precision (bf16 on
    CUDA), LoRA or full, gradient checkpointing; a packed micro-batch of ``micro_batch_tokens``."""
    p, shape = s.preset, shape_of(str(s.student))
    w = DTYPE_BYTES.get(p.dtype, 4)  # auto: float32 master weights
    c = 2 if p.mixed_precision in ("auto", "bf16", "fp16") else w
    lora = p.lora.r > 0
    trainable = shape.lora_params(p.lora.r, p.lora.target_modules) if lora else shape.params
    t = p.micro_batch_tokens
    job = TrainJob(shape, w, c, trainable, checkpointing=p.gradient_checkpointing, tokens=t, logit_tokens=t,
                   mask_bytes=t * t)
    dtype = {4: "float32", 2: "bfloat16"}[w] + (" (bf16 compute)" if c < w else "")
    models = [_model("student", shape, dtype, f"train, {'LoRA r=%d' % p.lora.r if lora else 'full'}", trainable)]
    r_models, resident, notes = _judge_resident(s)
    notes = [f"context {p.phase(phase).max_seq_len} tokens; packed micro-batch {t} tokens"
             f"{', gradient checkpointing' if p.gradient_checkpointing else ''}"] + notes + _fsdp_note(s)
    return _verdict(phase, models + r_models, s.fsdp, lambda n: {**train_parts(job.with_fsdp(n)), **resident},
                    s.gpu_bytes, notes, tries=SHARDINGS)


def _judge_resident(s: Setup) -> tuple[list, dict, list]:
    """With feedback on, the build keeps an in-process teacher loaded from the comparisons on; it
    is the selection judge (``generate.judge`` unset), so it stays on GPU 0 while training."""
    if not (s.build and s.cfg.feedback.enabled) or s.cfg.generate.judge not in (None, s.cfg.generate.teacher):
        return [], {}, []
    models, parts, notes = _teacher_resident(s, 1, 0)
    parts = {k: v for k, v in parts.items() if k.endswith(("weights", "reserved"))}
    return models, parts, notes + (["the in-process teacher (judge) stays loaded on GPU 0"] if models else [])


def plan_pref(s: Setup) -> StagePlan:
    """The preference phase (lab_tools.train.pref, TRL): float32 weights (TRL's default), bf16
    compute, no gradient checkpointing, full fine-tuning; DPO adds a frozen float32 reference,
    RLOO/GRPO the reference (beta > 0) and the reward model."""
    pc, shape = s.preset.pref, shape_of(str(s.student))
    dpo = pc.method == "dpo"
    seqs = 2 * pc.micro_batch_size if dpo else pc.num_generations
    tokens = seqs * pc.max_length
    job = TrainJob(shape, 4, 2, shape.params, tokens=tokens, logit_tokens=tokens, mask_bytes=seqs * pc.max_length ** 2,
                   frozen=shape.params if (dpo or pc.beta > 0) else 0)
    models = [_model("policy", shape, "float32 (bf16 compute)", f"train, full ({pc.method})", shape.params)]
    if job.frozen:
        models.append(_model("reference", shape, "float32", "frozen"))
    extra = {}
    if not dpo:
        rm = _rm_shape(s)
        models.append(_model("reward_model", rm, "float32", "score"))
        extra["reward_model_weights"] = rm.params * 4
    r_models, resident, notes = _judge_resident(s)
    notes = [f"{seqs} sequences of <= {pc.max_length} tokens per forward pass (pref.micro_batch_size)"] + notes
    return _verdict("pref", models + r_models, s.fsdp, lambda n: {**train_parts(job.with_fsdp(n)), **extra, **resident},
                    s.gpu_bytes, notes + _fsdp_note(s), tries=SHARDINGS)


def build_stages(s: Setup) -> tuple[list[StagePlan], list[str]]:
    """The GPU stages ``lab build`` would run, in order, and those it would skip (with why)."""
    fb, skipped = s.cfg.feedback, []
    out = [plan_generate(s)]
    if fb.enabled:
        out += [plan_comparisons(s), plan_reward_model(s)]
        if fb.self_play:
            out.append(plan_self_play(s))
        else:
            skipped.append("self_play (feedback.self_play false)")
    else:
        skipped.append("comparisons, reward_model, self_play, pref (feedback.enabled false)")
    out += [plan_phase(s, p) for p in PHASES]
    if fb.enabled:
        out.append(plan_pref(s))
    return out, skipped


def make_plan(command: str, cfg, *, student: str | None = None, teacher: str | None = None,
              gpu_memory: float = 80.0, phases=PHASES, phase: str | None = None) -> dict:
    """The plan of ``lab build`` (``command`` "build") or ``lab train`` ("train": ``phases``, or
    the one ``phase`` rm/pref) as a JSON-ready dict; sizes in bytes, ``*_gib`` in GiB."""
    s = make_setup(cfg, student=student, teacher=teacher, gpu_memory=gpu_memory, build=command == "build")
    if command == "build":
        stages, skipped = build_stages(s)
    elif phase == "rm":
        stages, skipped = [plan_reward_model(s)], []
    elif phase == "pref":
        stages, skipped = [plan_pref(s)], []
    else:
        stages, skipped = [plan_phase(s, p) for p in PHASES if p in phases], []
    served = s.teacher_gpus if s.teacher_engine == SERVED else 0
    node = max([st.gpus for st in stages if not (served and st.stage == "generate")] or [0])
    return {
        "command": f"lab {command}", "preset": s.preset.name, "gpu_memory_gib": gpu_memory,
        "student": {"path": str(s.student), "source": s.student_source},
        "teacher": {"engine": s.teacher_engine, "path": str(s.teacher) if s.teacher else None,
                    "source": s.teacher_source},
        "fits": all(st.fits for st in stages),
        "gpus": {"training_node": node, "teacher_server": served},
        "stages": [st.as_dict() for st in stages], "not_run": skipped,
        "assumptions": [f"prompt of a generation request: {PROMPT_TOKENS} tokens",
                        "mixed precision 'auto' = bf16 (CUDA); attention SDPA/FlashAttention (no s x s scores kept)",
                        "GiB = 2**30 bytes; sources: lab_tools/train/plan.py, docs/plan.md"],
        "formulas": FORMULAS,
    }

"""Memory arithmetic of one job on one GPU: training (full or LoRA, optionally FSDP-sharded),
in-process generation (transformers) and a vLLM engine. No weights are loaded: a model is its
``config.json`` instantiated on the meta device (``accelerate.init_empty_weights``).

Every figure is bytes per GPU. Sources and counts:

- Weights, gradients, AdamW: ``torch.optim.AdamW`` keeps two states (``exp_avg``,
  ``exp_avg_sq``) shaped and typed like each trainable parameter; gradients take the parameter's
  dtype. The trainers here load float32 weights under bf16 mixed precision, so the weights *are*
  the float32 master copy: 4 + 4 + 8 = 16 B per trainable parameter, the same 16 B as ZeRO's
  mixed-precision Adam (2 + 2 + 12; Rajbhandari et al. 2020, arXiv 1910.02054, section 3.1).
  Without FSDP, autocast keeps a bf16 copy of the weights it casts (2 B per parameter) until the
  forward ends. FSDP FULL_SHARD divides weights, gradients and optimizer states by the number of
  GPUs and, with bf16 mixed precision, all-gathers one wrapped unit (a decoder layer) at a time in
  bf16 (Zhao et al. 2023, arXiv 2304.11277, section 3); we count three units live (current,
  prefetched, and one unit's unsharded gradients).
- Activations: Korthikanti et al. 2022 (arXiv 2205.05198, section 4.1, eq. 1) count every tensor a
  GPT layer keeps for backward: ``s*b*h*(34 + 5*a*s/h)`` bytes, the ``5*a*s/h`` part being the
  attention scores; with full recomputation only each layer's input (``2*s*b*h``) is kept.
  The same count for a Llama/Mistral block (RMSNorm, attention without dropout, SwiGLU), per
  token and layer, with ``c`` the compute dtype's bytes, ``r`` the residual stream's (4 when
  float32 weights meet autocast: the embedding output stays float32) and ``I`` the MLP width:
  ``2*(4 + r)*h`` (two RMSNorms: float32 input and normalized output) + ``c*(6*h + 4*I)`` (QKV
  input, Q, K and V expanded to all heads, attention output; MLP input, gate, up, SiLU(gate),
  product). Attention is SDPA/FlashAttention (transformers' default): no ``s x s`` scores are kept,
  which removes Korthikanti's ``5*a*s/h`` term; eager attention is not modelled. A packed
  micro-batch carries one block-diagonal boolean mask of ``T*T`` bytes. With gradient
  checkpointing (one checkpoint per decoder layer): ``L*r*h*T`` + one layer recomputed.
- Logits: only loss positions reach the LM head (``logits_to_keep``): ``T*V*(c + 4 + 4)`` (logits,
  their float32 copy for the loss, float32 log-softmax kept for backward); an upper bound.
- KV cache: ``2*L*kv_heads*head_dim*c`` bytes per token (K and V of every layer).
- Allowance: :data:`CONTEXT_BYTES` for the CUDA context, cuBLAS and NCCL workspaces, plus
  :data:`FRAGMENTATION` of the tensors for the caching allocator (our allowance, not measured).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.errors import LabError

GiB = 2 ** 30
CONTEXT_BYTES = 2 * GiB  #: CUDA context + cuBLAS/NCCL workspaces per GPU (allowance)
FRAGMENTATION = 0.05  #: caching-allocator fragmentation, a fraction of the counted tensors (allowance)
VLLM_UTILIZATION = 0.9  #: vLLM's default ``gpu_memory_utilization``: the share of a GPU it reserves
VLLM_OVERHEAD = 4 * GiB  #: vLLM's profiled activation peak + CUDA graphs (allowance)
VLLM_MAX_SEQS = 256  #: vLLM's default ``max_num_seqs``
SHARDINGS = (1, 2, 4, 8, 16, 32, 64)  #: GPU counts tried for the smallest that fits
DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


#: One line per component of a plan: how it is counted, and where the count comes from.
#: T tokens per forward pass, L layers, h hidden, I MLP width, V vocabulary, c compute-dtype bytes,
#: r residual-stream bytes, N FSDP GPUs.
FORMULAS = {
    "weights": "params x weight bytes / N (float32 here: the weights are AdamW's master copy)",
    "gradients": "trainable params x weight bytes / N (gradients take the parameter's dtype)",
    "optimizer": "AdamW exp_avg + exp_avg_sq: 2 x trainable params x weight bytes / N (torch.optim.AdamW; "
                 "16 B/param in all with weights and gradients, as ZeRO's mixed-precision Adam, "
                 "Rajbhandari et al. 2020, arXiv 1910.02054, 3.1)",
    "reference_model": "frozen copy (DPO reference): params x weight bytes / N",
    "autocast_weight_copies": "no FSDP, float32 weights under autocast: 2 B x params cast to bf16 "
                              "(trainable + one layer with gradient checkpointing)",
    "fsdp_unsharded_units": "FSDP FULL_SHARD: 3 x largest unit (decoder layer) x c: current, prefetched, "
                            "its unsharded gradients (Zhao et al. 2023, arXiv 2304.11277, 3)",
    "activations": "per token and layer 2(4+r)h + c(6h+4I) (Korthikanti et al. 2022, arXiv 2205.05198, 4.1, "
                   "counted for RMSNorm/GQA/SwiGLU, SDPA: no s x s scores); x T x L without checkpointing, "
                   "T x (L r h + one layer) with it",
    "logits": "T x V x (c + 4 + 4): logits, float32 copy, float32 log-softmax",
    "attention_mask": "packed micro-batch: T x T bool (block-diagonal); padded: sequences x s x s",
    "kv_cache": "sequences x (prompt + new tokens) x 2 L kv_heads head_dim x 2 B",
    "prefill_activations": "prompt tokens x 2 B x (4h + 3I): one layer's live tensors (our count)",
    "kv_pool": "vLLM: 0.9 x GPU - weights / tensor-parallel - overhead (vLLM's gpu_memory_utilization)",
    "allowance": "2 GiB (CUDA context, cuBLAS/NCCL workspaces) + 5% of the rest (allocator; our allowance)",
}


@dataclass
class ModelShape:
    """What the arithmetic needs of a model, read from its ``config.json`` on the meta device.
    ``params``: all parameters; ``unit_params``: the largest FSDP unit (a decoder layer, or the
    embeddings + head left at the root); ``linear_io``: per linear-module name suffix (``q_proj``,
    ...), the sum of ``in + out`` features over the model (LoRA adds ``r*(in + out)`` per module)."""
    name: str
    path: str
    architecture: str
    params: int
    unit_params: int
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_position: int
    experts: int = 1
    linear_io: dict = field(default_factory=dict)

    def kv_bytes_per_token(self, c: int = 2) -> int:
        """K and V of every layer for one token, in bytes (``c``: bytes per element)."""
        return 2 * self.layers * self.kv_heads * self.head_dim * c

    def lora_params(self, r: int, targets) -> int:
        """Trainable parameters LoRA adds with rank ``r`` on the modules named ``targets``."""
        return sum(r * self.linear_io.get(t, 0) for t in targets)


def read_shape(path: str | Path, *, head: str = "causal_lm", name: str | None = None) -> ModelShape:
    """The :class:`ModelShape` of the model whose ``config.json`` is in directory ``path``; the
    model is built on the meta device (no weights read, no memory). ``head``: ``causal_lm`` or
    ``seq_cls`` (one-label sequence classification: a reward model).

    Raises:
        LabError: no ``config.json``, or transformers cannot build the architecture.
    """
    import torch
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

    path = Path(path)
    if not (path / "config.json").is_file():
        raise LabError("no config.json in the model directory", file=str(path), field="model")
    try:
        config = AutoConfig.from_pretrained(str(path))
        if head == "seq_cls":
            config.num_labels = 1
        with init_empty_weights():
            auto = AutoModelForSequenceClassification if head == "seq_cls" else AutoModelForCausalLM
            model = auto.from_config(config)
        model.tie_weights()  # tied embeddings: init_empty_weights skips the tying from_config does
    except (ValueError, KeyError, OSError) as exc:
        raise LabError(f"cannot build the model from its config: {exc}", file=str(path / "config.json")) from exc
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    params = sum(p.numel() for p in model.parameters())
    layers = [m for n, m in model.named_modules() if n.endswith(".layers") or n == "layers"]
    layer_sizes = [sum(p.numel() for p in blk.parameters()) for blk in (layers[0] if layers else [])]
    unit = max(layer_sizes or [0])
    unit = max(unit, params - sum(layer_sizes))  # the root unit: embeddings, final norm, head
    io: dict[str, int] = {}
    for n, m in model.named_modules():
        if isinstance(m, torch.nn.Linear):
            suffix = n.rsplit(".", 1)[-1]
            io[suffix] = io.get(suffix, 0) + m.in_features + m.out_features
    heads = text.num_attention_heads
    return ModelShape(
        name=name or path.name, path=str(path), architecture=type(model).__name__, params=params,
        unit_params=unit, hidden=text.hidden_size, layers=text.num_hidden_layers, heads=heads,
        kv_heads=getattr(text, "num_key_value_heads", None) or heads,
        head_dim=getattr(text, "head_dim", None) or text.hidden_size // heads,
        intermediate=text.intermediate_size, vocab=text.vocab_size,
        max_position=getattr(text, "max_position_embeddings", 0) or 0,
        experts=getattr(text, "num_local_experts", 1) or 1, linear_io=io)


@dataclass
class TrainJob:
    """One training job as one GPU sees it. ``weight_bytes``: the weights' dtype as loaded (4 for
    float32); ``compute_bytes``: 2 under bf16/fp16 mixed precision, else ``weight_bytes``;
    ``trainable``: trainable parameters (all, or LoRA's); ``fsdp``: GPUs FULL_SHARD spreads the
    model over (1: no sharding); ``tokens``: tokens per forward pass on this GPU (a packed
    micro-batch, or sequences x length); ``logit_tokens``: positions reaching the LM head (0 for a
    reward model); ``mask_bytes``: the attention mask; ``frozen``: parameters of frozen copies
    (a DPO reference model) in ``weight_bytes``, sharded like the policy."""
    shape: ModelShape
    weight_bytes: int
    compute_bytes: int
    trainable: int
    fsdp: int = 1
    checkpointing: bool = False
    tokens: int = 0
    logit_tokens: int = 0
    mask_bytes: int = 0
    frozen: int = 0

    def with_fsdp(self, n: int) -> "TrainJob":
        return dataclasses.replace(self, fsdp=n)


def layer_activation_bytes(shape: ModelShape, c: int, r: int) -> int:
    """Bytes one decoder layer keeps for backward per token: ``2*(4 + r)*h + c*(6*h + 4*I)``
    (module doc; after Korthikanti et al. 2022, section 4.1)."""
    h, inter = shape.hidden, shape.intermediate
    return 2 * (4 + r) * h + c * (6 * h + 4 * inter)


def train_parts(job: TrainJob) -> dict[str, int]:
    """Bytes per GPU of ``job`` by component, before :func:`with_allowance` (the module doc gives
    each count and its source)."""
    s, n = job.shape, max(1, job.fsdp)
    w, c = job.weight_bytes, job.compute_bytes
    mixed = c < w
    # the residual stream: float32 when float32 weights meet autocast; bf16 under FSDP mixed precision
    r = c if (n > 1 and mixed) else w
    parts = {
        "weights": math.ceil(s.params * w / n),
        "gradients": math.ceil(job.trainable * w / n),
        "optimizer": math.ceil(2 * job.trainable * w / n),  # AdamW exp_avg + exp_avg_sq, param dtype
    }
    if job.frozen:
        parts["reference_model"] = math.ceil(job.frozen * w / n)
    if mixed and n == 1:  # autocast's bf16 copies of the weights it casts
        parts["autocast_weight_copies"] = c * (job.trainable + s.unit_params if job.checkpointing else s.params)
    if n > 1:  # all-gathered units (current + prefetched) and one unit's unsharded gradients
        parts["fsdp_unsharded_units"] = 3 * s.unit_params * c
    per_layer = layer_activation_bytes(s, c, r)
    if job.checkpointing:
        parts["activations"] = job.tokens * (s.layers * r * s.hidden + per_layer)
    else:
        parts["activations"] = job.tokens * s.layers * per_layer
    parts["logits"] = job.logit_tokens * s.vocab * (c + 4 + 4)
    if job.mask_bytes:
        parts["attention_mask"] = job.mask_bytes
    return parts


def with_allowance(parts: dict[str, int]) -> dict[str, int]:
    """``parts`` plus ``allowance``: :data:`CONTEXT_BYTES` + :data:`FRAGMENTATION` of the rest."""
    return {**parts, "allowance": CONTEXT_BYTES + math.ceil(FRAGMENTATION * sum(parts.values()))}


def generate_parts(shape: ModelShape, *, batch: int, prompt_tokens: int, new_tokens: int,
                   weight_bytes: int = 2) -> dict[str, int]:
    """Bytes of in-process generation with transformers (``generate``, bf16 weights on CUDA):
    weights, the KV cache of ``batch`` sequences of ``prompt_tokens + new_tokens``, and the prefill
    peak of one layer (``c*(4*h + 3*I)`` per prompt token: hidden in/out, Q/K/V and attention
    output, the MLP's gate, up and product; our count)."""
    c = weight_bytes
    tokens = batch * (prompt_tokens + new_tokens)
    return {
        "weights": shape.params * weight_bytes,
        "kv_cache": tokens * shape.kv_bytes_per_token(c),
        "prefill_activations": batch * prompt_tokens * c * (4 * shape.hidden + 3 * shape.intermediate),
    }


def reward_parts(shape: ModelShape, *, batch: int, max_length: int) -> dict[str, int]:
    """Bytes of reward-model scoring (float32 weights, ``batch`` sequences of ``max_length``; the
    activation peak counted like :func:`generate_parts`' prefill)."""
    return {
        "weights": shape.params * 4,
        "activations": batch * max_length * 4 * (4 * shape.hidden + 3 * shape.intermediate),
    }


@dataclass
class VllmPlan:
    """A vLLM engine over ``tp`` GPUs (tensor parallelism): per GPU ``weights`` and ``overhead``
    (:data:`VLLM_OVERHEAD`); ``reserved``: what vLLM takes of each GPU (``gpu_memory_utilization``
    times its memory), the rest of which becomes the KV pool; ``kv_pool``; ``min_kv``: the KV of
    one sequence of ``max_model_len`` (vLLM refuses to start without it); ``sequences``: how many
    sequences of ``seq_tokens`` the pool holds at once (capped at ``max_num_seqs``)."""
    tp: int
    weights: int
    overhead: int
    reserved: int
    kv_pool: int
    min_kv: int
    max_model_len: int
    seq_tokens: int
    sequences: int

    @property
    def fits(self) -> bool:
        return self.kv_pool >= self.min_kv


def vllm_plan(shape: ModelShape, *, tp: int, gpu_bytes: int, seq_tokens: int) -> VllmPlan:
    """Per-GPU arithmetic of ``vllm.LLM(model)`` / ``vllm serve`` at their defaults: bf16 weights
    split over ``tp`` GPUs, ``gpu_memory_utilization`` 0.9, ``max_model_len`` = the config's
    ``max_position_embeddings``; KV heads split over the ``tp`` ranks (replicated when fewer)."""
    weights = math.ceil(shape.params * 2 / tp)
    reserved = int(VLLM_UTILIZATION * gpu_bytes)
    pool = max(0, reserved - weights - VLLM_OVERHEAD)
    kv_tok = math.ceil(shape.kv_bytes_per_token(2) / min(tp, shape.kv_heads))
    mml = shape.max_position or seq_tokens
    seqs = min(VLLM_MAX_SEQS, pool // max(1, kv_tok * seq_tokens))
    return VllmPlan(tp=tp, weights=weights, overhead=VLLM_OVERHEAD, reserved=reserved, kv_pool=pool,
                    min_kv=kv_tok * mml, max_model_len=mml, seq_tokens=seq_tokens, sequences=int(seqs))


def smallest_fit(total_at, gpu_bytes: int, choices=SHARDINGS) -> int | None:
    """The smallest GPU count in ``choices`` for which ``total_at(n)`` (bytes per GPU) fits
    ``gpu_bytes``, or None."""
    for n in choices:
        if total_at(n) <= gpu_bytes:
            return n
    return None

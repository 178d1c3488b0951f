"""What every SDG stage shares: the per-leaf context, the stage record, seeds and rejections.

A leaf's generation is a list of :class:`Stage` objects run in order. Each stage turns the leaf's
state (a JSON-serializable dict, checkpointed after every stage) into chat requests, and the
completions back into a new state. Keeping the state plain JSON is what makes kill -9 resume exact:
the pipeline restarts each leaf from its last checkpoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from lab_tools.config_sections import GenerateConfig
from lab_tools.sdg import quality
from lab_tools.sdg.backends import ChatRequest, Completion
from lab_tools.sdg.filters import REWARD_REJECTION, select_top
from lab_tools.taxonomy.leaf import Leaf


@dataclass
class LeafContext:
    """Inputs of one leaf's generation. ``documents``: resolved knowledge documents (empty for
    skills); ``count_tokens``: the teacher's tokenizer; ``chunks``: filled by knowledge-SDG;
    ``scorer``: an optional reward-model hook ``scorer(prompts, answers) -> [float]`` (lists of
    str, one float per pair; higher is better) that ranks kept samples when no model judge
    grades them (see :func:`lab_tools.sdg.filters.select_top`)."""
    leaf: Leaf
    cfg: GenerateConfig
    count_tokens: Callable[[str], int]
    documents: list = field(default_factory=list)
    chunks: list[dict] = field(default_factory=list)
    scorer: Callable[[list[str], list[str]], list[float]] | None = None


@dataclass
class Stage:
    """One SDG stage. ``model``: ``teacher`` or ``judge`` (LAB lets the judge differ).
    ``build(ctx, state) -> [ChatRequest]``; ``consume(ctx, state, completions)`` updates ``state``."""
    name: str
    model: str
    build: Callable[[LeafContext, dict], list[ChatRequest]]
    consume: Callable[[LeafContext, dict, list[Completion]], None]


def new_state() -> dict:
    """Initial leaf state: candidates, rejected records and counters. ``rejected_by_stage``:
    quality rejections; ``lost``: candidates dropped because their request failed; ``errors`` /
    ``requests_by_stage``: failed / sent requests per pipeline stage (counted by the pipeline);
    ``first_error``: the first request error's message. ``truncated_prompts`` (requests whose
    prompt the backend cut to fit) is added by the pipeline when a cut happens, so checkpoints
    of the earlier shape stay valid."""
    return {"candidates": [], "rejected": [], "generated": 0, "unused": 0,
            "rejected_by_stage": {}, "malformed": {}, "lost": {}, "errors": {},
            "requests_by_stage": {}, "first_error": None, "seconds": 0.0,
            "requests": 0, "completion_tokens": 0}


def request_seed(cfg: GenerateConfig, leaf: Leaf, stage: str, i: int) -> int:
    """A per-request seed derived from the global seed, the leaf content and the position."""
    src = f"{cfg.seed}:{leaf.content_hash}:{stage}:{i}"
    return int(hashlib.sha256(src.encode()).hexdigest()[:8], 16)


def reject(state: dict, cand: dict, stage: str, reason: str, *, malformed: bool = False,
           raw: str | None = None, teacher_error: bool = False, detail: str | None = None) -> None:
    """Move ``cand`` to the state's rejected list with ``stage`` and ``reason``. A quality
    rejection counts in ``rejected_by_stage``; with ``teacher_error`` (its request failed, the
    candidate was never judged) it counts in ``lost`` instead and the record says so.
    ``detail``: the measured value behind ``reason`` (``reason`` stays a stable category)."""
    rec = {"stage": stage, "reason": reason,
           **{k: cand[k] for k in ("question", "answer", "context", "scores", "source") if cand.get(k)}}
    if detail:
        rec["detail"] = detail
    if raw is not None:
        rec["raw"] = raw[:500]
    if teacher_error:
        rec["teacher_error"] = True
    state["rejected"].append(rec)
    counter = state.setdefault("lost", {}) if teacher_error else state["rejected_by_stage"]
    counter[stage] = counter.get(stage, 0) + 1
    if malformed:
        state["malformed"][stage] = state["malformed"].get(stage, 0) + 1


def keep_top(ctx: LeafContext, state: dict, kept: list[dict], stage: str, judge_key: str | None = None) -> None:
    """Make the best ``ctx.cfg.samples`` of ``kept`` by score the state's candidates
    (:func:`lab_tools.sdg.filters.select_top` with ``ctx.scorer``); candidates below the reward
    scorer's threshold are rejected at ``stage`` (reason ``pair evaluation by reward``), the
    others not kept count as unused."""
    dropped = []

    def on_reject(cand: dict, detail: str) -> None:
        dropped.append(cand)
        reject(state, cand, stage, REWARD_REJECTION, detail=detail)

    state["candidates"], _ = select_top(kept, ctx.cfg.samples, judge_key=judge_key, scorer=ctx.scorer,
                                        on_reject=on_reject)
    state["unused"] += len(kept) - len(state["candidates"]) - len(dropped)


def novel(state: dict, cand: dict, seeds: list[str], kept: list[dict], threshold: float, *,
          seed_threshold: float, key: Callable[[dict], str] = lambda c: c["question"]) -> bool:
    """Near-duplicate filter (quality control, LAB 3.2): reject ``cand`` (stage ``dedup``) and
    return False when ``key(cand)`` copies a seed text (seed examples are the held-out set, so a
    copy must never become a training sample: :func:`lab_tools.sdg.quality.seed_copy`, normalized
    text, the stricter ``seed_threshold`` or one word edit) or is a near-duplicate of ``key`` of a
    candidate already in ``kept`` (``threshold``). ``key`` defaults to the question; grounded
    skills pass context + question, since their seed examples often share one question over
    different contexts. Thresholds are ROUGE-L-style similarities in 0..1 (quality.similarity)."""
    text = key(cand)
    if quality.seed_copy(text, seeds, seed_threshold):
        reject(state, cand, "dedup", "near-duplicate of a seed example")
        return False
    if quality.near_duplicate(text, [key(k) for k in kept], threshold):
        reject(state, cand, "dedup", "near-duplicate of another generated question")
        return False
    return True


def judge_filter(state: dict, stage: str, comps: list[Completion], score_key: str,
                 parse: Callable[[str], object], *, accept: Callable[[object], bool],
                 reason: Callable[[object], str], model_judges: bool = True) -> list[dict]:
    """One model-judged filter over ``state["candidates"]`` (LAB 3.2.1 instruction and pair
    evaluation): ``comps[i]`` is the judge's reply for candidate ``i``; ``parse`` turns it into a
    value (None = malformed, rejected and counted); the value is stored in
    ``cand["scores"][score_key]``; candidates whose value fails ``accept`` are rejected with
    ``reason(value)``. With ``model_judges`` off the filter is skipped openly: every score is
    None and every candidate is kept. Returns the kept candidates (``state`` is not reassigned)."""
    if not model_judges:
        for cand in state["candidates"]:
            cand["scores"][score_key] = None
        return list(state["candidates"])
    kept = []
    for cand, comp in zip(state["candidates"], comps):
        if failed(state, cand, stage, comp):
            continue
        value = parse(comp.text)
        if value is None:
            reject(state, cand, stage, "malformed evaluation", malformed=True, raw=comp.text)
            continue
        cand["scores"][score_key] = value
        if not accept(value):
            reject(state, cand, stage, reason(value), raw=comp.text)
            continue
        kept.append(cand)
    return kept


def failed(state: dict, cand: dict, stage: str, comp: Completion) -> bool:
    """Drop ``cand`` as lost (not a quality rejection) when the backend gave up on its request;
    True if it did. The request error itself is counted by the pipeline, per stage."""
    if comp.error:
        reject(state, cand, stage, f"teacher error: {comp.error}"[:300], teacher_error=True)
        return True
    return False


def trim_truncated(text: str, comp: Completion, max_tokens: int) -> str:
    """A reply cut by ``max_tokens`` ends mid-sentence: keep it up to the last sentence end when
    that keeps at least half of it (otherwise return it unchanged)."""
    text = text.strip()
    if comp.completion_tokens < max_tokens:
        return text
    cut = max(text.rfind(". "), text.rfind(".\n"), text.rfind("! "), text.rfind("? "))
    if text.endswith((".", "!", "?")):
        return text
    return text[:cut + 1].strip() if cut >= len(text) // 2 else text

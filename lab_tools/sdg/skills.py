"""Skills-SDG: four stages per leaf (LAB 3.2.1).

1. instruction generation from this leaf's seed examples only (taxonomy-driven sampling);
   grounded skills also generate a new context with each question;
2. near-duplicate removal (against the seeds and each other), then instruction evaluation
   (on task, safe, answerable in text);
3. response generation with a persona chosen from the leaf (precise or creative), then the
   rule-based filters (:mod:`lab_tools.sdg.filters`, stage ``filters``) on every answer, an
   answer that near-copies a seed question or answer included;
4. pair evaluation on LAB's 3-point scale (figure 4: 1 wrong, irrelevant, unsafe or cut; 2 correct
   but brief; 3 complete, well explained, expert and safe), the judge explaining before it scores
   and the score read from the end of its reply (:func:`lab_tools.sdg.quality.parse_score`);
   pairs below ``cfg.pair_threshold`` are rejected; then the best ``cfg.samples`` by score are
   kept (:func:`lab_tools.sdg.filters.select_top`).
"""

from __future__ import annotations

import itertools
import math
import re

from lab_tools.sdg import filters, quality
from lab_tools.sdg.backends import ChatRequest, Completion
from lab_tools.sdg.stages import (LeafContext, Stage, failed, judge_filter, keep_top, novel, reject, request_seed,
                                   trim_truncated)
from lab_tools.sdg.templates import chat, fewshot, judge_messages, load_prompts
from lab_tools.taxonomy.leaf import Leaf

# Persona choice (LAB 3.2.1: a precise persona for STEM, extraction and reasoning; a creative one
# for writing and role-play). Path words decide first, the task description second.
PRECISE_WORDS = ("math", "arithmetic", "reasoning", "logic", "extraction", "extract", "coding",
                 "code", "stem", "science", "summar", "table", "grounded", "classification",
                 "sql", "json", "grammar", "unit", "conversion", "spelling", "analysis")
CREATIVE_WORDS = ("writing", "creative", "poem", "poetry", "haiku", "story", "stories", "role",
                  "roleplay", "song", "lyrics", "joke", "humor", "limerick", "freeform", "fiction",
                  "slogan", "brainstorm")


GROUNDED_CONTEXT_CHARS = 500


def persona(leaf: Leaf) -> str:
    """``precise`` or ``creative`` for ``leaf``: a precise word in the path wins, then a creative
    word in the path, then a creative word in the task description; default ``precise``."""
    path = leaf.path.lower()
    if any(w in path for w in PRECISE_WORDS):
        return "precise"
    if any(w in path for w in CREATIVE_WORDS):
        return "creative"
    desc = leaf.task_description.lower()
    if any(re.search(rf"\b{w}", desc) for w in CREATIVE_WORDS):
        return "creative"
    return "precise"


def _task(leaf: Leaf) -> str:
    return leaf.task_description or leaf.path.rsplit("/", 1)[-1].replace("_", " ")


def _seeds(leaf: Leaf):
    return [s for s in leaf.seed_examples if s.question]


def per_request(ctx: LeafContext) -> int:
    """Instructions asked for per request: ``questions_per_request``; a grounded skill's request
    also carries its new context, so no more questions than fit beside it in ``max_new_tokens``
    at ``question_tokens`` each (at least 1)."""
    cfg = ctx.cfg
    n = max(1, cfg.questions_per_request)
    if ctx.leaf.grounded:
        n = min(n, max(1, (cfg.max_new_tokens - cfg.context_tokens) // max(1, cfg.question_tokens)))
    return n


def _bound(ctx: LeafContext) -> int:
    """The token bound of one question request."""
    cfg = ctx.cfg
    listed = cfg.question_tokens * per_request(ctx)
    return min(listed + (cfg.context_tokens if ctx.leaf.grounded else 0), cfg.max_new_tokens)


def _numbered(items: list[str]) -> str:
    return "\n".join(f"{k + 1}. {' '.join(item.split())}" for k, item in enumerate(items))


def _build_questions(ctx: LeafContext, state: dict) -> list[ChatRequest]:
    """Instruction generation (LAB 3.2.1): each request shows this leaf's seed examples only, as an
    earlier turn in which the assistant lists them, then asks for a numbered list of
    ``per_request(ctx)`` new ones; ``ceil(samples * question_factor / per_request)`` requests.
    The system prompt states the principles of LAB's figure 3 (``principles`` in skills.yaml).
    Grounded skills: the turn shows one seed context with its questions and asks for a new
    context with a list of questions about it (as InstructLab's grounded pipeline does: context
    first, then several questions per context)."""
    p, cfg, leaf = load_prompts()["skills"], ctx.cfg, ctx.leaf
    seeds = _seeds(leaf)
    if not seeds:  # nothing to learn from (validation reports it); generate nothing
        return []
    n = per_request(ctx)
    spec = p["grounded_question"] if leaf.grounded else p["question"]
    system = spec["system"].format(principles=p["principles"])  # LAB figure 3's principles
    out = []
    for i in range(-(-cfg.samples * cfg.question_factor // n)):
        # rotate which seed examples are shown so that the requests differ
        if leaf.grounded:
            first = seeds[i % len(seeds)]
            # the questions the seeds ask about this context (corpus leaves often share one context)
            asked = [s.question for s in seeds if s.context == first.context][:cfg.max_examples]
            answer = spec["example"].format(context=(first.context or "")[:GROUNDED_CONTEXT_CHARS],
                                            questions=_numbered(asked))
        else:
            asked = [seeds[(i + k) % len(seeds)].question for k in range(min(cfg.max_examples, len(seeds)))]
            answer = _numbered(asked)
        example = (spec["user"].format(task=_task(leaf), n=len(asked)), answer)
        out.append(ChatRequest(fewshot(system, [example], spec["user"].format(task=_task(leaf), n=n)),
                               max_tokens=_bound(ctx), temperature=cfg.temperature,
                               seed=request_seed(cfg, leaf, "questions", i), tag="skill_question"))
    return out


def _consume_questions(ctx: LeafContext, state: dict, comps: list[Completion]) -> None:
    cfg, grounded = ctx.cfg, ctx.leaf.grounded
    key = _grounded_text if grounded else (lambda c: c["question"])
    seeds = [key({"question": s.question, "context": s.context}) for s in _seeds(ctx.leaf)]
    seed_contexts = [s.context for s in _seeds(ctx.leaf) if s.context]
    bound = _bound(ctx)
    kept: list[dict] = []
    ids = itertools.count()  # candidate ids, unique within the leaf (they seed the response requests)
    for comp in comps:
        if failed(state, {"id": None, "scores": {}}, "questions", comp):
            state["generated"] += 1
            continue
        truncated = comp.completion_tokens >= bound
        if grounded:
            context, qs, bad = quality.parse_grounded(comp.text, truncated=truncated)
            found = [{"context": context, "question": q} for q in qs]
        else:
            qs, bad = quality.parse_questions(comp.text, truncated=truncated)
            found = [{"question": q} for q in qs]
        state["generated"] += len(found) + bad
        for _ in range(bad):
            reject(state, {"id": next(ids)}, "questions", "malformed output", malformed=True, raw=comp.text)
        for item in found:
            cand = {"id": next(ids), "scores": {}, **item}
            if quality.repetitive(cand["question"]):
                reject(state, cand, "questions", "degenerate repetition")
            elif grounded and quality.seed_copy(cand["context"], seed_contexts, cfg.filters.seed_threshold):
                # a seed's context with another question still trains on the held-out example
                reject(state, cand, "dedup", "near-duplicate of a seed example")
            elif novel(state, cand, seeds, kept, cfg.dedup_threshold, seed_threshold=cfg.filters.seed_threshold,
                       key=key):
                kept.append(cand)
    state["candidates"] = kept


def _grounded_text(cand: dict) -> str:
    """What makes a grounded sample distinct: its context and its question together."""
    return f"{cand.get('context') or ''}\n\n{cand['question']}"


def _build_question_eval(ctx: LeafContext, state: dict) -> list[ChatRequest]:
    p, cfg = load_prompts()["skills"]["question_eval"], ctx.cfg
    if not cfg.model_judges:
        return []
    return [ChatRequest(judge_messages(p, c["id"], task=_task(ctx.leaf), question=c["question"]),
                        max_tokens=cfg.eval_tokens, temperature=0.0, tag="question_eval")
            for c in state["candidates"]]


def _consume_question_eval(ctx: LeafContext, state: dict, comps: list[Completion]) -> None:
    cfg = ctx.cfg
    kept = judge_filter(state, "question_eval", comps, "question_ok", quality.parse_yes_no,
                        accept=bool, reason=lambda _: "failed instruction evaluation",
                        model_judges=cfg.model_judges)
    cap = math.ceil(cfg.samples * max(1.0, cfg.filters.oversample))  # the best `samples` are chosen last
    state["unused"] += max(0, len(kept) - cap)
    state["candidates"] = kept[:cap]


def _build_responses(ctx: LeafContext, state: dict) -> list[ChatRequest]:
    p, cfg = load_prompts()["skills"]["response"], ctx.cfg
    system = p[persona(ctx.leaf)]
    out = []
    for c in state["candidates"]:
        user = p["grounded_user"] if c.get("context") else p["user"]
        out.append(ChatRequest(chat(system, user, question=c["question"], context=c.get("context", "")),
                               max_tokens=min(cfg.answer_tokens, cfg.max_new_tokens),
                               temperature=cfg.temperature,
                               seed=request_seed(cfg, ctx.leaf, "responses", c["id"]), tag="response"))
    return out


def _consume_responses(ctx: LeafContext, state: dict, comps: list[Completion]) -> None:
    cfg, leaf = ctx.cfg, ctx.leaf
    bound = min(cfg.answer_tokens, cfg.max_new_tokens)
    extraction = filters.is_extraction(leaf)
    seeds = filters.seed_texts(leaf)  # an answer that copies a held-out seed never trains
    kept = []
    for cand, comp in zip(state["candidates"], comps):
        if failed(state, cand, "responses", comp):
            continue
        answer = trim_truncated(quality.clean(comp.text), comp, bound)
        if len(answer) < 2:
            reject(state, cand, "responses", "empty response", malformed=True, raw=comp.text)
            continue
        verdict = filters.check(cand["question"], answer, cfg.filters, context=cand.get("context"),
                                hit_limit=comp.completion_tokens >= bound, grounded=bool(cand.get("context")),
                                extraction=extraction, seeds=seeds)
        if verdict.reason:
            reject(state, {**cand, "answer": answer}, "filters", verdict.reason, detail=verdict.detail,
                   raw=comp.text)
            continue
        cand["scores"]["rules"] = filters.rule_score(verdict.margins)
        cand["answer"] = answer
        cand["response_tokens"] = ctx.count_tokens(answer)  # decides the phase (LAB table 1)
        cand["persona"] = persona(ctx.leaf)
        kept.append(cand)
    state["candidates"] = kept


def _build_pair_eval(ctx: LeafContext, state: dict) -> list[ChatRequest]:
    p, cfg = load_prompts()["skills"]["pair_eval"], ctx.cfg
    out = []
    if not cfg.model_judges:
        return out
    for c in state["candidates"]:
        q = f"{c['question']}\n\n{c['context']}" if c.get("context") else c["question"]
        out.append(ChatRequest(judge_messages(p, c["id"], question=q, answer=c["answer"]),
                               max_tokens=cfg.eval_tokens, temperature=0.0, tag="pair_eval"))
    return out


def _consume_pair_eval(ctx: LeafContext, state: dict, comps: list[Completion]) -> None:
    threshold = ctx.cfg.pair_threshold
    kept = judge_filter(
        state, "pair_eval", comps, "pair", quality.parse_score, accept=lambda v: v >= threshold,
        reason=lambda v: f"pair score {v} < threshold {threshold}", model_judges=ctx.cfg.model_judges)
    keep_top(ctx, state, kept, "pair_eval", judge_key="pair")


STAGES = [
    Stage("questions", "teacher", _build_questions, _consume_questions),
    Stage("question_eval", "judge", _build_question_eval, _consume_question_eval),
    Stage("responses", "teacher", _build_responses, _consume_responses),
    Stage("pair_eval", "judge", _build_pair_eval, _consume_pair_eval),
]

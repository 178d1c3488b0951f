"""Knowledge-SDG (LAB 3.2.2): questions and answers grounded in a leaf's documents.

Documents are resolved at their pinned commit (:func:`lab_tools.taxonomy.documents.resolve_documents`),
chunked to fit the teacher's context (:mod:`lab_tools.sdg.chunking`), and each chunk yields
question/answer pairs with the leaf's seed examples as in-context examples. The teacher then acts
as judge twice per pair: faithfulness (is the answer supported by the chunk?) and the question
check (is the question self-contained?); a rule also rejects questions that point at "the
passage" or "the text above". Before the judge, every pair goes through the rule-based filters
(:mod:`lab_tools.sdg.filters`: repetition, leakage, refusal, cut answers, restated questions,
answers that share too little with their chunk); at the end the best ``samples`` pairs by score
are kept out of ``ceil(samples * filters.oversample)`` requests. Rejected pairs are kept with
their reason.
"""

from __future__ import annotations

import math

from lab_tools.sdg import filters, quality
from lab_tools.sdg.backends import ChatRequest, Completion
from lab_tools.sdg.chunking import chunk_text
from lab_tools.sdg.stages import LeafContext, Stage, failed, keep_top, novel, reject, request_seed, trim_truncated
from lab_tools.sdg.templates import fewshot, judge_messages, load_prompts

# in-context seed examples per request: each carries its own context, so keep prompts short
KNOWLEDGE_EXAMPLES = 2
SEED_CONTEXT_CHARS = 600


def prepare_chunks(ctx: LeafContext) -> list[dict]:
    """Chunk every resolved document: ``[{"text", "path", "commit", "index"}]`` (cached on ctx)."""
    if not ctx.chunks:
        for doc in ctx.documents:
            for i, text in enumerate(chunk_text(doc.text, ctx.count_tokens, ctx.cfg.chunk_tokens,
                                                ctx.cfg.chunk_overlap)):
                ctx.chunks.append({"text": text, "path": doc.path, "commit": doc.commit, "index": i})
    return ctx.chunks


def _seed_examples(ctx: LeafContext) -> list[tuple[str, str, str]]:
    """(context, question, answer) for every seed Q&A; contexts cut to ``SEED_CONTEXT_CHARS``."""
    return [((s.context or "")[:SEED_CONTEXT_CHARS], q, a)
            for s in ctx.leaf.seed_examples for q, a in s.qna if q and a]


def _build_qa(ctx: LeafContext, state: dict) -> list[ChatRequest]:
    p, cfg = load_prompts()["knowledge"]["qa"], ctx.cfg
    chunks, seeds = prepare_chunks(ctx), _seed_examples(ctx)
    out = []
    if not chunks:
        return out
    n_shown = min(cfg.max_examples, len(seeds), KNOWLEDGE_EXAMPLES)
    for i in range(math.ceil(cfg.samples * max(1.0, cfg.filters.oversample))):
        chunk = chunks[i % len(chunks)]
        # rotate through the seed Q&A, stepping by a prime so that different contexts show up
        shown = [seeds[(i * 7 + k * 3) % len(seeds)] for k in range(n_shown)]
        turns = [(p["user"].format(chunk=c), p["assistant"].format(question=q, answer=a)) for c, q, a in shown]
        out.append(ChatRequest(fewshot(p["system"], turns, p["user"].format(chunk=chunk["text"])),
                               max_tokens=min(cfg.qa_tokens, cfg.max_new_tokens),
                               temperature=cfg.temperature,
                               seed=request_seed(cfg, ctx.leaf, "qa", i), tag="knowledge_qa"))
    return out


def _consume_qa(ctx: LeafContext, state: dict, comps: list[Completion]) -> None:
    chunks, cfg = prepare_chunks(ctx), ctx.cfg
    bound = min(cfg.qa_tokens, cfg.max_new_tokens)
    seeds = [q for _, q, _ in _seed_examples(ctx)]
    kept: list[dict] = []
    state["generated"] = len(comps)
    for i, comp in enumerate(comps):
        ch = chunks[i % len(chunks)]
        cand = {"id": i, "scores": {}, "chunk": chunks.index(ch),
                "source": {"path": ch["path"], "commit": ch["commit"], "chunk": ch["index"]}}
        if failed(state, cand, "qa", comp):
            continue
        parsed = quality.parse_qa(comp.text)
        if not parsed:
            reject(state, cand, "qa", "malformed output", malformed=True, raw=comp.text)
            continue
        cand["question"], answer = parsed
        cand["answer"] = trim_truncated(answer, comp, bound)
        verdict = filters.check(cand["question"], cand["answer"], cfg.filters, context=ch["text"],
                                hit_limit=comp.completion_tokens >= bound, knowledge=True)
        if verdict.reason:
            reject(state, cand, "filters", verdict.reason, detail=verdict.detail, raw=comp.text)
            continue
        cand["scores"]["rules"] = filters.rule_score(verdict.margins)
        cand["response_tokens"] = ctx.count_tokens(cand["answer"])  # KT/1 vs KT/2 (LAB table 1)
        if novel(state, cand, seeds, kept, cfg.dedup_threshold, seed_threshold=cfg.filters.seed_threshold):
            kept.append(cand)
    state["candidates"] = kept


def _build_checks(ctx: LeafContext, state: dict) -> list[ChatRequest]:
    p, cfg = load_prompts()["knowledge"], ctx.cfg
    chunks = prepare_chunks(ctx)
    out = []
    if not cfg.model_judges:
        return out
    for c in state["candidates"]:  # two requests per pair: faithfulness, then self-contained
        out.append(ChatRequest(judge_messages(p["faithfulness"], c["id"], chunk=chunks[c["chunk"]]["text"],
                                              question=c["question"], answer=c["answer"]),
                               max_tokens=cfg.eval_tokens, temperature=0.0, tag="faithfulness"))
        out.append(ChatRequest(judge_messages(p["self_contained"], c["id"], question=c["question"]),
                               max_tokens=cfg.eval_tokens, temperature=0.0, tag="self_contained"))
    return out


def _keep_best(ctx: LeafContext, state: dict, kept: list[dict]) -> None:
    """Keep the best ``samples`` of ``kept`` by score (the knowledge judges answer yes/no, so they
    filter and do not rank: the reward-model hook or the rule score ranks; see
    :func:`lab_tools.sdg.filters.select_top`); the rest count as unused."""
    keep_top(ctx, state, kept, "checks")


def _consume_checks(ctx: LeafContext, state: dict, comps: list[Completion]) -> None:
    kept = []
    if not ctx.cfg.model_judges:  # judges skipped openly; the rule-based check still runs
        for cand in state["candidates"]:
            cand["scores"].update(faithful=None, self_contained=None)
            if quality.refers_to_document(cand["question"]):
                reject(state, cand, "self_contained", "question is not self-contained")
            else:
                kept.append(cand)
        _keep_best(ctx, state, kept)
        return
    for k, cand in enumerate(state["candidates"]):
        faith, selfc = comps[2 * k], comps[2 * k + 1]
        if failed(state, cand, "faithfulness", faith) or failed(state, cand, "self_contained", selfc):
            continue
        ok = quality.parse_yes_no(faith.text)
        if ok is None:
            reject(state, cand, "faithfulness", "malformed evaluation", malformed=True, raw=faith.text)
            continue
        cand["scores"]["faithful"] = ok
        if not ok:
            reject(state, cand, "faithfulness", "answer not supported by the document")
            continue
        ok = quality.parse_yes_no(selfc.text)
        if ok is None:
            reject(state, cand, "self_contained", "malformed evaluation", malformed=True, raw=selfc.text)
            continue
        if ok and quality.refers_to_document(cand["question"]):
            ok = False  # the rule overrides a lenient judge
        cand["scores"]["self_contained"] = ok
        if not ok:
            reject(state, cand, "self_contained", "question is not self-contained")
            continue
        kept.append(cand)
    _keep_best(ctx, state, kept)


STAGES = [
    Stage("qa", "teacher", _build_qa, _consume_qa),
    Stage("checks", "judge", _build_checks, _consume_checks),
]

"""Scores used by checkpoint selection (LAB 3.3) and reused by ``lab evaluate``.

- :func:`mc_accuracy`: MMLU-style multiple choice by log-likelihood. For each choice we compute
  the log-probability of the choice's tokens given the question (rendered with the chat
  template as the user turn, the choice as the assistant's answer) and pick the highest
  **length-normalized** score (mean log-probability per choice token). Normalizing matters here
  because the choices are whole free-text answers of very different lengths (distractors are
  other seed answers), and a raw sum would favour the shortest choice.
- :func:`answer_prompts`: batched greedy generation with the chat template.
- :func:`judge_scores`: MT-Bench single-answer grading on a 1-10 scale (Zheng et al. 2023,
  "single-v1", and "single-ref-v1" when a reference answer exists); the judge's explanation is
  kept. One change from MT-Bench: the rating comes first, then the explanation, because our
  judge outputs are bounded (presets cap them at ~100 tokens to fit CPU budgets) and an
  explanation-first reply would be cut before its rating; the rating is parsed tolerantly ("[[7]]", "Rating: 7", "7/10"); unparseable ones are
  counted and excluded from the mean.
"""

from __future__ import annotations

import math
import re

from lab_tools.engines.ct2 import ANSWER_BATCH, CT2Model
from lab_tools.progress import TokenStreamer, report_tokens, token_budget
from lab_tools.sdg.backends import ChatRequest

JUDGE_SYSTEM = "You are a helpful assistant."

JUDGE_TEMPLATE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response "
    "provided by an AI assistant to the user question displayed below. Your evaluation should "
    "consider factors such as the helpfulness, relevance, accuracy, depth, creativity, and level "
    "of detail of the response. {ref_hint}Be as objective as possible. Begin your reply with "
    "your rating of the response on a scale of 1 to 10, strictly in this format: \"Rating: "
    "[[rating]]\", for example: \"Rating: [[5]]\", then give a short explanation.\n\n[Question]\n{question}\n\n{reference}[The Start of Assistant's Answer]\n"
    "{answer}\n[The End of Assistant's Answer]"
)

_RATING_PATTERNS = [
    re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]"),
    re.compile(r"rating\s*[:=]?\s*\[?\s*(\d+(?:\.\d+)?)", re.I),
    re.compile(r"(\d+(?:\.\d+)?)\s*/\s*10\b"),
    re.compile(r"score\s*[:=]?\s*(\d+(?:\.\d+)?)", re.I),
]


def parse_rating(text: str) -> float | None:
    """The 1-10 rating in a judge's reply, or None. The first pattern that yields a value within
    1..10 wins, in the order ``[[x]]``, ``Rating: x``, ``x/10``, ``Score: x``."""
    for pat in _RATING_PATTERNS:
        for m in pat.finditer(text or ""):
            value = float(m.group(1))
            if 1 <= value <= 10:
                return value
    return None


def _question_ids(tokenizer, question: str) -> list[int]:
    text = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False,
                                         add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _choice_rows(tokenizer, items: list[dict]) -> list[tuple[int, int, list[int], int]]:
    """``(item index, choice index, ids, number of choice tokens)`` per choice: the question as
    the chat template's user turn, the choice's tokens after it (EOS for an empty choice)."""
    rows = []
    for i, it in enumerate(items):
        q = _question_ids(tokenizer, it["question"])
        for c, choice in enumerate(it["choices"]):
            a = tokenizer(choice, add_special_tokens=False)["input_ids"] or [tokenizer.eos_token_id]
            rows.append((i, c, q + a, len(a)))
    return rows


def mc_token_count(tokenizer, items: list[dict]) -> int:
    """Tokens :func:`mc_accuracy` runs through for ``items`` (question + choice, summed over every
    choice): the size of a token budget (:func:`lab_tools.progress.token_budget`) that a caller
    scoring ``items`` in several calls opens once, so the ETA covers them all."""
    return sum(len(r[2]) for r in _choice_rows(tokenizer, items))


def mc_accuracy(model, tokenizer, items: list[dict], batch_size: int = 8, *, progress=None,
                task: str = "multiple choice") -> tuple[float, list[dict]]:
    """Multiple-choice accuracy by length-normalized log-likelihood (see module doc).

    ``items``: ``{"leaf", "question", "choices": [str], "answer": int}`` (heldout_mc.jsonl).
    Returns ``(accuracy in 0..1, per-item dicts {"leaf", "question", "answer", "pred", "correct",
    "scores": [mean log-prob per choice], "tokens": [choice tokens scored]})``; accuracy is 0.0
    for no items. ``scores * tokens`` is each choice's summed log-likelihood, whose argmax is
    lm-evaluation-harness's ``acc`` (:mod:`lab_tools.eval.lm_eval_task`). ``model``: a PyTorch
    causal LM or a :class:`~lab_tools.engines.ct2.CT2Model` (``score_batch``: the same
    log-probabilities, int8 weights unless loaded in float32).

    Progress: the tokens of each forward pass (``batch_size`` rows) are reported
    (:func:`lab_tools.progress.report_tokens`) into the budget the caller opened, or, with
    ``progress`` (a :class:`lab_tools.progress.Progress`), into one of all rows' tokens opened
    here as the task ``<task> tokens``.
    """
    rows = _choice_rows(tokenizer, items)
    with token_budget(progress, task, sum(len(r[2]) for r in rows)):
        if isinstance(model, CT2Model):
            scores = _ct2_choice_scores(model, rows, batch_size)
        else:
            scores = _torch_choice_scores(model, tokenizer, rows, batch_size)
    n_tokens = {(i, c): n for i, c, _, n in rows}
    per_item, correct = [], 0
    for i, it in enumerate(items):
        s = [scores[(i, c)] for c in range(len(it["choices"]))]
        pred = max(range(len(s)), key=lambda c: s[c])
        ok = pred == it["answer"]
        correct += ok
        per_item.append({"leaf": it.get("leaf"), "question": it["question"], "answer": it["answer"],
                         "pred": pred, "correct": ok, "scores": s,
                         "tokens": [n_tokens[(i, c)] for c in range(len(it["choices"]))]})
    return (correct / len(items) if items else 0.0), per_item


def _ct2_choice_scores(model, rows: list[tuple], batch_size: int) -> dict[tuple[int, int], float]:
    """:func:`_torch_choice_scores` by a :class:`~lab_tools.engines.ct2.CT2Model`: rows sorted by
    length (little padding), ``batch_size`` per ``score`` call, which reports its tokens, so
    progress moves per batch rather than once per call."""
    order = sorted(range(len(rows)), key=lambda k: len(rows[k][2]))
    scores: dict[tuple[int, int], float] = {}
    for start in range(0, len(order), batch_size):
        chunk = [rows[k] for k in order[start:start + batch_size]]
        for (i, c, _, n_ans), lp in zip(chunk, model.score([r[2] for r in chunk], batch_size=batch_size)):
            scores[(i, c)] = sum(lp[-n_ans:]) / n_ans
    return scores


def _torch_choice_scores(model, tokenizer, rows: list[tuple], batch_size: int) -> dict[tuple[int, int], float]:
    """Mean log-probability of each row's last ``n`` tokens (rows: ``(item, choice, ids, n)``)
    by a PyTorch causal LM, ``batch_size`` right-padded rows per forward pass; each pass's real
    tokens are reported to :func:`lab_tools.progress.report_tokens`."""
    import torch

    device = next(model.parameters()).device
    scores: dict[tuple[int, int], float] = {}
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            width = max(len(r[2]) for r in chunk)
            ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for k, r in enumerate(chunk):  # right padding: positions stay 0..n-1
                ids[k, :len(r[2])] = torch.tensor(r[2])
                mask[k, :len(r[2])] = 1
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
            logp = torch.log_softmax(logits, dim=-1)
            for k, (i, c, seq, n_ans) in enumerate(chunk):
                n = len(seq)
                targets = torch.tensor(seq[n - n_ans:], device=device)
                lp = logp[k, n - n_ans - 1:n - 1].gather(-1, targets[:, None]).squeeze(-1)
                scores[(i, c)] = float(lp.mean())
            report_tokens(sum(len(r[2]) for r in chunk))  # progress inside the call
    return scores


def reference_logprob(model, tokenizer, prompts: list[dict], batch_size: int = 8, *, progress=None,
                      task: str = "reference") -> list[float | None]:
    """Mean log-probability per token (nats) of each prompt's ``reference`` answer given its last
    user turn: the held-out likelihood of the seed answer (higher is better). It needs no judge,
    so it still compares base and trained models when the judge is too small to grade (the
    embedded 135M model gives no parseable ratings). Prompts without a reference give None.
    Computed with :func:`mc_accuracy`'s scorer (one "choice": the reference), which reports its
    forward passes' tokens; ``progress``/``task`` as there."""
    idx = [i for i, p in enumerate(prompts) if (p.get("reference") or "").strip()]
    items = []
    for i in idx:
        users = [m["content"] for m in prompts[i]["messages"] if m.get("role") == "user"]
        items.append({"question": users[-1] if users else "", "choices": [prompts[i]["reference"]],
                      "answer": 0})
    out: list[float | None] = [None] * len(prompts)
    if items:
        _, per_item = mc_accuracy(model, tokenizer, items, batch_size=batch_size, progress=progress, task=task)
        for i, row in zip(idx, per_item):
            out[i] = row["scores"][0]
    return out


def answer_prompts(model, tokenizer, prompts: list[dict], max_new_tokens: int = 256,
                   batch_size: int = 8) -> list[str]:
    """Greedy answers to chat prompts (``{"messages": [...]}`` as in heldout_prompts.jsonl),
    batched with left padding. Returns one decoded string per prompt (special tokens removed).
    ``model``: a PyTorch causal LM or a :class:`~lab_tools.engines.ct2.CT2Model` (greedy there too,
    stopped at the same end tokens, at least :data:`~lab_tools.engines.ct2.ANSWER_BATCH` prompts a
    batch: ``batch_size`` sizes PyTorch's memory, while a CPU decode step of many sequences costs
    little more than one of a few)."""
    if isinstance(model, CT2Model):
        ids = [tokenizer(tokenizer.apply_chat_template(p["messages"], tokenize=False, add_generation_prompt=True),
                         add_special_tokens=False)["input_ids"] for p in prompts]
        new = model.generate(ids, max_new_tokens=max_new_tokens, temperature=0.0,
                             batch_size=max(batch_size, ANSWER_BATCH))
        return [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    import torch

    device = next(model.parameters()).device
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    out: list[str] = []
    model.eval()
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [tokenizer.apply_chat_template(p["messages"], tokenize=False,
                                                   add_generation_prompt=True)
                     for p in prompts[start:start + batch_size]]
            enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
            with torch.no_grad():  # the streamer reports decode steps x batch to the progress
                gen = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                     pad_token_id=tokenizer.pad_token_id, streamer=TokenStreamer())
            new = gen[:, enc["input_ids"].shape[1]:]
            out += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = side
    return out


def judge_request_messages(prompt: dict, answer: str) -> list[dict]:
    """The MT-Bench single-answer grading messages for one prompt and the student's answer.
    Multi-turn prompts: the last user turn is the question; earlier turns are shown before it
    as the conversation so far (the answer graded is the one to the last turn)."""
    msgs = [m for m in prompt["messages"] if m["role"] in ("user", "assistant")]
    last = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=-1)
    question = msgs[last]["content"] if last >= 0 else ""
    if last > 0:
        history = "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in msgs[:last])
        question = f"(Conversation so far)\n{history}\n\n(Current question)\n{question}"
    ref = prompt.get("reference") or ""
    reference = f"[The Start of Reference Answer]\n{ref}\n[The End of Reference Answer]\n\n" if ref else ""
    hint = ("Your evaluation should consider correctness and helpfulness. You will be given a "
            "reference answer and the assistant's answer. Compare the assistant's answer with the "
            "reference answer. " if ref else "")
    return [{"role": "system", "content": JUDGE_SYSTEM},
            {"role": "user", "content": JUDGE_TEMPLATE.format(ref_hint=hint, question=question,
                                                              reference=reference, answer=answer)}]


def judge_scores(judge, prompts: list[dict], answers: list[str], max_tokens: int = 512
                 ) -> tuple[float, list[dict]]:
    """Rate each answer 1-10 with ``judge`` (a Teacher: ``generate(list[ChatRequest])``), greedy.

    Returns ``(mean rating over parsed ratings, per-item dicts {"leaf", "rating" (None if
    unparseable or the judge failed), "explanation", "error"})``. The mean is ``nan`` when no
    rating could be parsed; callers must treat it as the worst score.
    """
    reqs = [ChatRequest(messages=judge_request_messages(p, a), max_tokens=max_tokens,
                        temperature=0.0, seed=0) for p, a in zip(prompts, answers)]
    comps = judge.generate(reqs) if reqs else []
    per_item, ratings = [], []
    for p, a, c in zip(prompts, answers, comps):
        rating = None if c.error else parse_rating(c.text)
        if rating is not None:
            ratings.append(rating)
        per_item.append({"leaf": p.get("leaf"), "answer": a, "rating": rating,
                         "explanation": c.text, "error": c.error or (
                             None if rating is not None else "unparseable rating")})
    mean = sum(ratings) / len(ratings) if ratings else math.nan
    return mean, per_item

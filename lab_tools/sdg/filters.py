"""Rule-based quality filters for generated samples: they need no judge and run for every teacher.

LAB 3.2.1 filters synthetic data with the teacher acting as judge; a small teacher cannot judge
(``generate.model_judges: false``), so these rules are what stands between its output and the
student. Each filter rejects with a stable ``reason`` (the dataset card groups by it) and a
``detail`` with the measured value; kept samples get ``margins`` (how far each measured value is
from its threshold, 0..1) that :func:`rule_score` combines into the rule-based score.

Filters, in order (thresholds: :class:`lab_tools.config_sections.FiltersConfig`, ``generate.filters`` in
``lab.yaml``; defaults measured on the InstructLab corpus seed answers by
``bench/filter_thresholds.py``):

- ``cut at the token limit``: the reply hit its token bound and does not end a sentence;
- ``role or template leakage``: chat-role residue (``A:``, ``User:``, ``Assistant:``), template
  tokens (``<|im_start|>``, ``[INST]``) or assistant small talk ("How can I help you");
- ``refusal``: the answer opens with an apology or a refusal ("I'm sorry", "As an AI");
- ``degenerate repetition``: Gopher's repetition rules (Rae et al. 2021, arXiv 2112.11446,
  table A1: duplicate lines, most frequent 2-4-gram, duplicated 5-10-grams, by character
  fraction; computed with datatrove's implementation), duplicate sentences, repeated word
  trigrams, and a low zlib compression ratio;
- ``restates the question``: the answer is (nearly) the question again;
- ``answer not grounded in its context``: a grounded skill's (or knowledge) answer whose content
  words are mostly absent from its context;
- ``extraction names nothing from the context``: an extraction answer sharing no content word
  or number with its context;
- ``near-duplicate of a seed example`` (when the caller passes the leaf's seed texts, see
  :func:`seed_texts`): the text near-copies a held-out seed question or answer
  (:func:`lab_tools.sdg.quality.seed_copy`, the rule SDG applies to generated instructions).

The same filters run wherever a model writes training data outside SDG (ALMoST synthetic
comparisons, both sides; every RM-guided self-play turn, the simulated user's included):
:func:`screen_turn` adds ``too short`` to :func:`check` for them.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field

from lab_tools.errors import plural
from lab_tools.sdg.quality import normalize, seed_copy, similarity, trigram_repeat_rate

#: characters a complete reply may end with (sentence end, closing quote/bracket, code fence, emphasis)
TERMINAL = ".!?…\"'”’)]}`*>|"
# a role label at a line start or right after a sentence that ends in a word (not "4. Human:", a list item)
_ROLE = re.compile(r"(?:^|(?<=[^\W\d_][.!?]))[ \t]*\**(?:user|assistant|a|q|system)\s*\**\s*:\s",
                   re.IGNORECASE | re.MULTILINE)
_TEMPLATE = re.compile(r"<\|(?:im_start|im_end|user|assistant|system|endoftext|eot_id)\|>|\[/?INST\]|"
                       r"^#{2,}\s*(?:instruction|response)\b", re.IGNORECASE | re.MULTILINE)
_SMALL_TALK = re.compile(r"\bhow (?:can|may) i (?:help|assist)(?: you)?\b|\bwhat can i do for you\b|"
                         r"\bis there anything else i can\b", re.IGNORECASE)
_REFUSAL = re.compile(r"^\W*(?:i'?m sorry|i am sorry|sorry\b|i apologi[sz]e|my apologies|i can'?t\b|"
                      r"i cannot\b|i can not\b|i'?m (?:not able|unable)\b|i am (?:not able|unable)\b|"
                      r"as an ai\b|as a language model\b|i do(?: not|n'?t) have (?:the ability|access)\b)",
                      re.IGNORECASE)
_AS_AN_AI = re.compile(r"\bas an ai(?: language)? model\b", re.IGNORECASE)
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
_WORD = re.compile(r"\w+")
STOPWORDS = frozenset("""a an the and or but if then than so of to in on at by for with from into onto
about as is are was were be been being am do does did done have has had having it its it's this that
these those there here which who whom whose what when where why how i you he she we they me him her
us them my your his our their mine yours not no yes can could will would shall should may might must
also very just only more most some any all each other such same own too out up down over under again
further once both few off per via""".split())


#: the ``reason`` of a sample whose reward is below the reward scorer's threshold (:func:`select_top`)
REWARD_REJECTION = "pair evaluation by reward"
#: the ``reason`` of a text that near-copies a seed example of its leaf (the held-out evaluation set)
SEED_COPY = "near-duplicate of a seed example"
#: seed answers shorter than this (normalized words) are not checked for copies (:func:`seed_texts`)
SEED_ANSWER_MIN_WORDS = 5


@dataclass
class Verdict:
    """One sample's outcome: ``reason`` (None = kept) with ``detail`` (the measured value against
    its threshold) and ``margins`` (filter name -> 0..1, how far the sample is from that
    filter's threshold; 1 = far)."""
    reason: str | None = None
    detail: str = ""
    margins: dict[str, float] = field(default_factory=dict)


def words(text: str) -> list[str]:
    """Lower-cased word tokens of ``text`` (``\\w+`` runs; punctuation dropped)."""
    return _WORD.findall(text.lower())


def content_words(text: str) -> set[str]:
    """Words of ``text`` that carry content (not in :data:`STOPWORDS`; at least 3 characters, or
    a number), each cut to its first 5 characters: a crude stem, so that "processing" and
    "processed" match."""
    return {w[:5] for w in words(text) if w not in STOPWORDS and (len(w) > 2 or w.isdigit())}


def gopher_repetition(text: str) -> dict[str, float]:
    """Gopher's repetition measures of ``text`` (arXiv 2112.11446 table A1), by character fraction
    of the text: ``dup_line_frac`` (duplicate lines / lines), ``dup_line_char_frac``,
    ``top_{2,3,4}_gram`` (characters of the most frequent n-gram, counted only when it occurs more
    than once: a short answer's single bigram is no repetition), ``dup_{5..10}_gram`` (characters
    in duplicated n-grams), plus ``dup_sentence_frac`` (duplicate sentences / sentences). Uses
    datatrove's functions (imported here: it is a heavy import) on our own word split, since
    datatrove's English word tokenizer needs NLTK data that cannot be downloaded offline."""
    from datatrove.pipeline.filters.gopher_repetition_filter import (find_all_duplicate, find_duplicates,
                                                                     get_n_grams)

    text = text.strip()
    n_chars = max(1, len(text))
    out: dict[str, float] = {}
    lines = [ln for ln in re.split(r"\n+", text) if ln.strip()]
    dup_lines, dup_line_chars = find_duplicates(lines) if lines else (0, 0)
    out["dup_line_frac"] = dup_lines / max(1, len(lines))
    out["dup_line_char_frac"] = dup_line_chars / n_chars
    sentences = [normalize(s) for s in _SENTENCE.split(text) if len(s.split()) >= 3]
    out["dup_sentence_frac"] = find_duplicates(sentences)[0] / len(sentences) if sentences else 0.0
    ws = words(text)
    for n in (2, 3, 4):
        grams = get_n_grams(ws, n)
        top = 0
        if grams:
            counts: dict[str, int] = {}
            for g in grams:
                counts[g] = counts.get(g, 0) + 1
            gram, count = max(counts.items(), key=lambda kv: (kv[1], len(kv[0])))
            top = len(gram) * count if count > 1 else 0
        out[f"top_{n}_gram"] = top / n_chars
    for n in range(5, 11):
        out[f"dup_{n}_gram"] = (find_all_duplicate(ws, n) if len(ws) >= n else 0) / n_chars
    return out


def compression_ratio(text: str) -> float:
    """zlib-compressed size over raw size of ``text`` (UTF-8); looping text compresses far below
    natural prose. Texts under 64 bytes give 1.0 (too short to tell)."""
    raw = text.strip().encode("utf-8")
    if len(raw) < 64:
        return 1.0
    return len(zlib.compress(raw, 9)) / len(raw)


def truncated_mid_sentence(answer: str, hit_limit: bool) -> bool:
    """True when the reply hit its token bound and does not end with a :data:`TERMINAL` character."""
    return hit_limit and not answer.rstrip().endswith(tuple(TERMINAL))


def leakage(answer: str) -> str | None:
    """The chat-role, template or small-talk residue found in ``answer`` (the matched text), else None."""
    for pattern in (_TEMPLATE, _ROLE, _SMALL_TALK):
        m = pattern.search(answer)
        if m:
            return m.group(0).strip()
    return None


def refusal(answer: str) -> str | None:
    """The opening apology or refusal of ``answer`` ("I'm sorry", "I cannot"), or "as an AI
    (language) model" anywhere in it, else None."""
    text = answer.replace("’", "'")
    m = _REFUSAL.search(text) or _AS_AN_AI.search(text)
    return m.group(0).strip() if m else None


def context_overlap(answer: str, context: str) -> float:
    """Fraction of the answer's content words (:func:`content_words`) that occur in ``context``
    (1.0 when the answer has none)."""
    ans = content_words(answer)
    if not ans:
        return 1.0
    return len(ans & content_words(context)) / len(ans)


def _below(value: float, limit: float) -> float:
    """Margin of a value that must stay at or below ``limit``: 1 at 0, 0 at the limit."""
    return max(0.0, min(1.0, 1 - value / limit)) if limit > 0 else 1.0


def _above(value: float, limit: float, top: float = 1.0) -> float:
    """Margin of a value that must stay at or above ``limit``: 0 at the limit, 1 at ``top``."""
    return max(0.0, min(1.0, (value - limit) / (top - limit))) if top > limit else 1.0


def _repetition(answer: str, cfg, v: Verdict) -> Verdict | None:
    """The degenerate-repetition rules of :func:`check` (a rejecting Verdict, or None with the
    margins recorded in ``v``)."""
    n_words = len(words(answer))
    rep = gopher_repetition(answer)
    rep["trigram_repeat"] = trigram_repeat_rate(answer, numbers=True) if n_words >= 12 else 0.0
    limits = {"dup_sentence_frac": cfg.max_dup_sentence_frac, "trigram_repeat": cfg.max_trigram_repeat}
    if n_words >= cfg.repetition_min_words:  # Gopher's rules are for texts, not one-line answers
        limits.update({"dup_line_frac": cfg.max_dup_line_frac, "dup_line_char_frac": cfg.max_dup_line_char_frac,
                       **{f"top_{n}_gram": lim for n, lim in zip((2, 3, 4), cfg.max_top_ngram_frac)},
                       **{f"dup_{n}_gram": lim for n, lim in zip(range(5, 11), cfg.max_dup_ngram_frac)}})
    for name, limit in limits.items():
        if rep[name] > limit:
            return Verdict("degenerate repetition", f"{name} {rep[name]:.2f} > {limit}")
    ratio = compression_ratio(answer)
    if ratio < cfg.min_compression_ratio:
        return Verdict("degenerate repetition", f"compression ratio {ratio:.2f} < {cfg.min_compression_ratio}")
    v.margins["repetition"] = min(_below(rep[k], lim) for k, lim in limits.items())
    v.margins["compression"] = _above(ratio, cfg.min_compression_ratio, 0.6)
    return None


def check(question: str, answer: str, cfg, *, context: str | None = None, hit_limit: bool = False,
          grounded: bool = False, extraction: bool = False, knowledge: bool = False,
          seeds: list[str] | None = None) -> Verdict:
    """Run every rule-based filter on one sample and return its :class:`Verdict`.

    ``question``/``answer``: the sample's texts; ``context``: a grounded skill's context or the
    knowledge chunk (None otherwise); ``hit_limit``: the answer used its whole token bound;
    ``grounded``/``extraction``/``knowledge``: which context rules apply; ``seeds``: the leaf's
    seed texts (:func:`seed_texts`), when given an answer that near-copies one is rejected
    (:data:`SEED_COPY`, ``cfg.seed_threshold``; this rule runs even with ``cfg.enabled`` off,
    since it guards the held-out set, not quality); ``cfg``: a
    :class:`lab_tools.config_sections.FiltersConfig`. The first failing filter gives the reason (order:
    seed copy, leakage, refusal, repetition, cut at the limit, restated question, grounding,
    extraction); a kept sample's ``margins`` hold one entry per measured filter (see
    :func:`rule_score`)."""
    v = Verdict()
    copied = seed_copy(answer, seeds, cfg.seed_threshold) if seeds else None
    if copied is not None:
        return Verdict(SEED_COPY, f"copies {copied[:60]!r}")
    if not cfg.enabled:
        return v
    found = leakage(answer) if cfg.reject_leakage else None
    if found:
        return Verdict("role or template leakage", f"found {found[:40]!r}")
    found = refusal(answer) if cfg.reject_refusals else None
    if found:
        return Verdict("refusal", f"opens with {found[:40]!r}")
    bad = _repetition(answer, cfg, v)
    if bad:
        return bad
    if cfg.reject_truncated and truncated_mid_sentence(answer, hit_limit):
        return Verdict("cut at the token limit", f"ends with {answer.rstrip()[-30:]!r}")
    sim = similarity(answer, question)
    if sim >= cfg.max_question_similarity:
        return Verdict("restates the question", f"similarity {sim:.2f} >= {cfg.max_question_similarity}")
    v.margins["restate"] = _below(sim, cfg.max_question_similarity)
    if context and (grounded or knowledge) and len(content_words(answer)) >= cfg.overlap_min_words:
        limit = cfg.min_knowledge_overlap if knowledge else cfg.min_context_overlap
        ov = context_overlap(answer, f"{context}\n{question}")
        if ov < limit:
            return Verdict("answer not grounded in its context", f"overlap {ov:.2f} < {limit}")
        v.margins["grounding"] = _above(ov, limit)
    if extraction and cfg.extraction_min_shared > 0:
        shared = len(content_words(answer) & content_words(context or question))
        if shared < cfg.extraction_min_shared:
            return Verdict("extraction names nothing from the context",
                           f"{shared} content words shared < {cfg.extraction_min_shared}")
    return v


def screen_turn(prompt: str, text: str, cfg, *, seeds: list[str], hit_limit: bool = False,
                min_chars: int = 0) -> Verdict:
    """The SDG filters for a turn a model wrote outside SDG that will train: either side of a
    synthetic comparison (ALMoST, arXiv 2305.13735, 3.1) or a self-play turn of the assistant or
    the simulated user (RMSP, 3.2). Quality controls of LAB 3.2 applied to them, one
    implementation: ``too short`` (fewer than ``min_chars`` characters), then :func:`check` with
    ``prompt`` as the question (the turn it answers) and the leaf's ``seeds`` (seed copies
    rejected). No context rules: the prompt carries its context. ``cfg``: a
    :class:`lab_tools.config_sections.FiltersConfig`."""
    t = text.strip()
    if len(t) < min_chars:
        return Verdict("too short", f"{plural(len(t), 'character')} < {min_chars}")
    return check(prompt, t, cfg, hit_limit=hit_limit, seeds=seeds)


def seed_texts(leaf) -> list[str]:
    """Every held-out text of ``leaf`` (a :class:`lab_tools.taxonomy.leaf.Leaf`) that generated
    training data must not near-copy (:mod:`lab_tools.eval.heldout` builds the evaluation set from
    them): skills: each seed question, its answer, and a grounded seed's question with its
    context (the held-out prompt); knowledge: each seed question and answer (the contexts are
    document excerpts, which knowledge data rightly quotes). Answers of fewer than
    :data:`SEED_ANSWER_MIN_WORDS` words are left out: a label ("Positive."), a date or a number is
    what a right answer to another request says too, not a copy of the example."""
    out: list[str] = []

    def answer(a: str | None) -> None:
        if a and len(normalize(a).split()) >= SEED_ANSWER_MIN_WORDS:
            out.append(a)

    for s in leaf.seed_examples:
        if s.question:
            out.append(s.question)
            if s.context and leaf.kind != "knowledge":
                out.append(f"{s.question}\n\n{s.context}")
        answer(s.answer)
        for q, a in s.qna:
            if q:
                out.append(q)
            answer(a)
    return list(dict.fromkeys(out))


def rule_score(margins: dict[str, float]) -> float:
    """The rule-based score of a kept sample, 0..1: the mean of its filter margins (each 0 at the
    filter's threshold and 1 far from it; see :func:`check`), so a sample that passed every
    filter with room to spare outranks one that barely passed. 1.0 when nothing was measured."""
    return round(sum(margins.values()) / len(margins), 4) if margins else 1.0


def is_extraction(leaf) -> bool:
    """True for an extraction leaf: ``extract`` in its path or its task description starting a
    word with it ("Extract the event name ...")."""
    return "extract" in leaf.path.lower() or bool(re.search(r"\bextract", leaf.task_description.lower()))


def prompt_of(cand: dict) -> str:
    """The user turn a sample will have: the question, then the context when it has one."""
    return f"{cand['question']}\n\n{cand['context']}" if cand.get("context") else cand["question"]


def select_top(cands: list[dict], n: int, *, judge_key: str | None = None, scorer=None,
               on_reject=None) -> tuple[list[dict], str]:
    """Score every candidate and keep the best ``n``: ``(kept, scorer_name)``.

    Each candidate gets ``score`` (higher is better) and ``scorer`` (which one ran), from the
    first available of: the model judge's graded score ``cand["scores"][judge_key]`` on LAB's
    3-point scale (3.2.1 pair evaluation), mapped to 0..1 as ``(v - 1) / 2`` (``judge``; None when
    judges were off); else ``scorer(prompts, answers) -> [float]``, a reward model (``reward``;
    the pair evaluation by reward of ALMoST, arXiv 2305.13735; ``scorer.name`` is recorded when
    set); else the rule-based score ``cand["scores"]["rules"]`` (:func:`rule_score`, ``rules``).
    Ties (common on a 3-point scale) are broken by the rule score, then by candidate id (earlier
    first), so the choice is deterministic. ``kept`` is in descending score order. When the
    reward scorer ran and has a ``threshold`` (not None), candidates scoring below it are not
    ranked (dropped) and ``on_reject(cand, detail)`` receives each: pair evaluation by reward
    with a threshold, as RM-guided self-play keeps only turns above its reward threshold.

    Raises:
        ValueError: ``scorer`` returned a number of scores other than one per candidate.
    """
    if not cands:
        return [], "none"
    graded = judge_key is not None and all(isinstance(c["scores"].get(judge_key), (int, float))
                                           and not isinstance(c["scores"].get(judge_key), bool)
                                           for c in cands)
    if graded:
        name, values = "judge", [(c["scores"][judge_key] - 1) / 2 for c in cands]
    elif scorer is not None:
        values = [float(v) for v in scorer([prompt_of(c) for c in cands], [c["answer"] for c in cands])]
        if len(values) != len(cands):
            raise ValueError(f"scorer returned {len(values)} scores for {len(cands)} samples")
        name = f"reward:{scorer.name}" if getattr(scorer, "name", None) else "reward"
        threshold = getattr(scorer, "threshold", None)
        if threshold is not None:
            for c, v in zip(cands, values):
                if v < threshold and on_reject is not None:
                    c["scores"]["reward"] = round(v, 4)
                    on_reject(c, f"reward {v:.3f} < threshold {threshold:g}")
            cands, values = [c for c, v in zip(cands, values) if v >= threshold], [v for v in values if v >= threshold]
    else:
        name, values = "rules", [c["scores"].get("rules", 1.0) for c in cands]
    for c, v in zip(cands, values):
        c["score"], c["scorer"] = round(float(v), 4), name
    ranked = sorted(cands, key=lambda c: (-c["score"], -c["scores"].get("rules", 1.0), c["id"]))
    return ranked[:max(0, n)], name

"""What the ranked teacher configurations answer, and how (ALMoST, arXiv 2305.13735, section 3.1;
shared by the comparisons, :mod:`lab_tools.feedback.comparisons`, and self-play,
:mod:`lab_tools.feedback.selfplay`): each leaf's prompts (its generated, accepted instructions,
:func:`leaf_prompts`) less those that near-copy a seed example (:func:`select_prompts`); the
teacher backends, built once per spec (:class:`Backends`); and the sampling of every
configuration's responses, whole leaves per ``generate`` call, each leaf checkpointed after each
configuration, a leaf failed when too many of its requests failed (:func:`answer_jobs`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.feedback import rubric
from lab_tools.feedback.raw import cut_at_next_turn, raw_view
from lab_tools.jsonl import read_jsonl
from lab_tools.progress import token_budget
from lab_tools.sdg import filters, quality
from lab_tools.sdg.backends import ChatRequest, make_teacher, teacher_identity, teacher_name, teacher_options
from lab_tools.sdg.cache import LeafCache


PHASE_FILES = ("kt1.jsonl", "kt2.jsonl", "st.jsonl")


def leaf_prompts(data_dir: str | Path, files: tuple[str, ...] = PHASE_FILES) -> dict[str, list[str]]:
    """``{leaf: [instruction, ...]}`` from the phase datasets ``files`` in ``data_dir`` (file
    order): the first user turn of each generated sample, duplicates removed."""
    out: dict[str, list[str]] = {}
    for name in files:
        path = Path(data_dir) / name
        if not path.is_file():
            continue
        for s in read_jsonl(path):
            user = next((m["content"] for m in s.get("messages", []) if m.get("role") == "user"), None)
            leaf = (s.get("metadata") or {}).get("leaf")
            if user and leaf and user not in out.setdefault(leaf, []):
                out[leaf].append(user)
    return out


def select_prompts(leaf, prompts: list[str], n: int, seed_threshold: float,
                   stage: str) -> tuple[list[str], list[dict]]:
    """``(chosen, dropped)``: the first ``n`` of ``prompts`` that do not near-copy a seed example
    of ``leaf`` (:func:`lab_tools.sdg.quality.seed_copy` over :func:`lab_tools.sdg.filters.seed_texts`,
    the rule SDG applies to its instructions, ``generate.filters.seed_threshold``), and a rejected
    row (``stage``, step ``prompts``, reason) for each one passed over."""
    seeds, chosen, dropped = filters.seed_texts(leaf), [], []
    for p in prompts:
        if len(chosen) >= n:
            break
        copied = quality.seed_copy(p, seeds, seed_threshold)
        if copied is None:
            chosen.append(p)
        else:
            dropped.append({"leaf": leaf.path, "prompt": p, "stage": stage, "step": "prompts",
                            "reason": filters.SEED_COPY, "detail": f"copies {copied[:60]!r}"})
    return chosen, dropped


def _seed(fb, leaf, conf, i: int) -> int:
    src = f"{fb.seed}:{leaf.content_hash}:{conf.name}:{i}"
    return int(hashlib.sha256(src.encode()).hexdigest()[:8], 16)


def _request(fb, leaf, conf, prompt: str, i: int) -> ChatRequest:
    msgs = rubric.messages(conf, leaf, prompt)
    if conf.format == "raw":
        msgs = [{"role": "user", "content": rubric.raw_prompt(msgs)}]
    return ChatRequest(msgs, max_tokens=fb.max_new_tokens, temperature=fb.temperature,
                       seed=_seed(fb, leaf, conf, i), tag="feedback")


@dataclass
class LeafJob:
    """One leaf's pending work: its ``prompts`` (in order), its :class:`~lab_tools.sdg.cache.LeafCache`,
    ``state`` (``{"responses": [{"config", "answers"}, ...], "seconds"}``: one entry per finished
    configuration, in rubric order, checkpointed after each), the ``error`` that failed it, and the
    rejected rows of the prompts passed over."""
    leaf: object
    prompts: list[str]
    cache: LeafCache
    state: dict
    error: str | None = None
    dropped_prompts: list = field(default_factory=list)


class Backends:
    """Teacher backends by spec, built once (``known``: a dict of already loaded ones, e.g. the
    build's, which new ones are added to); a raw-format configuration gets a raw view of the same
    loaded model."""

    def __init__(self, cfg, known: dict | None = None):
        self.cfg, self.known = cfg, known if known is not None else {}

    def name(self, conf) -> str:
        """The configuration's model as recorded in metadata (e.g. ``transformers:SmolLM2-135M-Instruct+raw``)."""
        return teacher_name(conf.model, self.cfg.cache_path, engine=self.cfg.generate.engine) + (
            "+raw" if conf.format == "raw" else "")

    def identity(self, conf) -> str:
        """The model's full identity (weights digest, server URL) for the cache key."""
        g = self.cfg.generate
        return teacher_identity(conf.model, self.cfg.cache_path, engine=g.engine,
                                compute_type=g.engine_compute_type) + ("+raw" if conf.format == "raw" else "")

    def get(self, conf):
        if conf.model not in self.known:
            self.known[conf.model] = make_teacher(conf.model, self.cfg.cache_path, **teacher_options(
                self.cfg.generate, batch_size=self.cfg.feedback.batch_size))
        model = self.known[conf.model]
        if conf.format == "raw":
            key = conf.model + "+raw"
            if key not in self.known and (view := raw_view(model)) is not None:
                self.known[key] = view
            if key in self.known:
                return self.known[key]
        return model


def _answers(comps, conf, max_tokens: int) -> list[dict]:
    """Completions as stored answers; ``truncated``: stopped by the token bound (a raw reply cut
    at the model's next turn is complete)."""
    out = []
    for c in comps:
        text, cut = cut_at_next_turn(c.text) if conf.format == "raw" else (c.text.strip(), False)
        out.append({"text": text, "tokens": c.completion_tokens, "error": c.error,
                    "truncated": (not cut) and c.completion_tokens >= max_tokens})
    return out


def request_chunk(model, fb) -> float:
    """Requests per ``generate`` call for teacher ``model`` (whole leaves: a leaf's prompts are
    never split, so a call carries at least this many, unless fewer are left):
    ``feedback.request_chunk`` when > 0; else every request of the configuration at once
    (``inf``) for a teacher that keeps its own queue (a server: ``concurrent``; vLLM:
    ``schedules_batches``), so the queue never runs empty between calls, or
    ``2 * feedback.batch_size`` for an in-process batching teacher (transformers: nothing is
    lost by chunking, and each chunk checkpoints and advances the progress bar).
    Smaller chunks lose less to a crash: a leaf's responses are checkpointed after its call."""
    if fb.request_chunk > 0:
        return fb.request_chunk
    if getattr(model, "concurrent", False) or getattr(model, "schedules_batches", False):
        return float("inf")
    return max(1, fb.batch_size) * 2


def answer_jobs(jobs: list[LeafJob], confs, fb, backends: Backends, progress, max_error_fraction: float) -> float:
    """Answer every job's prompts with each configuration it still lacks (checkpoint after each
    configuration); returns the seconds spent in the backends' ``generate``. A leaf fails (no
    checkpoint, ``error`` set) when more than ``max_error_fraction`` of one configuration's
    requests failed (``generate.max_request_error_fraction``, as SDG); fewer failed requests
    are invalid responses (``teacher error``), never pair members."""
    gen_seconds = 0.0
    max_errors = max_error_fraction
    for i, conf in enumerate(confs):
        todo = [j for j in jobs if j.error is None and len(j.state["responses"]) == i]
        if not todo:
            continue
        model = backends.get(conf)
        piece = request_chunk(model, fb)
        progress.add(f"responses {conf.name}", sum(len(j.prompts) for j in todo))
        group: list[LeafJob] = []
        for n, job in enumerate(todo):
            group.append(job)
            if sum(len(j.prompts) for j in group) < piece and n < len(todo) - 1:
                continue
            reqs = [_request(fb, j.leaf, conf, p, k) for j in group for k, p in enumerate(j.prompts)]
            t = time.monotonic()
            with token_budget(getattr(progress, "view", None), f"responses {conf.name}",
                              sum(r.max_tokens for r in reqs)):  # tokens move the progress mid-call
                comps = model.generate(reqs)
            gen_seconds += time.monotonic() - t
            at = 0
            for j in group:
                answers = _answers(comps[at:at + len(j.prompts)], conf, fb.max_new_tokens)
                at += len(j.prompts)
                errors = [a["error"] for a in answers if a["error"]]
                if len(errors) > max_errors * len(answers) or len(errors) == len(answers):
                    j.error = f"teacher error ({conf.name}, {len(errors)} of {len(answers)}): {errors[0]}"[:400]
                    continue
                j.state["responses"].append({"config": conf.name, "answers": answers})
                j.state["seconds"] += (time.monotonic() - t) * len(j.prompts) / max(1, len(reqs))
                j.cache.write_checkpoint(i, j.state)
            progress.advance(f"responses {conf.name}", len(reqs))
            group = []
    return gen_seconds

"""RM-guided self-play (RMSP; ALMoST, arXiv 2305.13735, section 3.2): multi-turn demonstrations.

A user simulator (the teacher prompted to play the user) and the assistant (the rubric's best
configuration: the leaf's own seed examples in context) talk, starting from one of the leaf's
generated instructions (never a held-out seed example). At each assistant turn the assistant
samples ``feedback.sp_candidates`` responses; the reward model scores each conversation so far
plus the candidate and the best one is kept (rejection sampling; ties keep the first). Candidates
that ALMoST's filter calls invalid (:func:`lab_tools.feedback.pairing.bad_reason`, after cutting
a length-stopped reply to its last sentence), or that fail the SDG quality filters or near-copy
a seed question or answer of the leaf (:func:`lab_tools.sdg.filters.screen_turn`: the ``leaf``
demonstrations put the seeds, the held-out evaluation set, in the assistant's context), are
never scored nor kept. Every simulated user turn goes through the same filters (a looping,
leaking, refusing, cut or seed-copying user turn ends the conversation before it). Each drop is
recorded with its reason. A conversation ends after
``feedback.sp_turns`` assistant turns or when the simulator gives no usable user turn; it is kept
when its worst kept turn's reward is at least ``feedback.sp_threshold``, rewards being measured
from the reward model's mean reward of a *rejected* response in the synthetic comparisons (so the
default threshold 0 keeps conversations whose every turn beats an average rejected answer).

Output: ``selfplay.jsonl`` in the data dir, samples in the ``messages`` format with metadata
(``source: rmsp``, ``turn_rewards``), which ST trains on as its own source
(:mod:`lab_tools.train.phases`), ``selfplay_rejected.jsonl`` (one row per dropped prompt,
candidate, user turn or conversation: ``stage: self_play``, ``step``, ``turn``, ``reason``,
``detail``) and a ``self_play`` block in ``dataset_card.json``. Cached per
leaf like SDG shards (key: leaf content, prompts, teacher identity, reward-model digest,
settings), checkpointed after every turn, so a killed run resumes from the last turn. All leaves
to play advance turn by turn in one batch (:func:`lab_tools.feedback.play.play_leaves`).
ALMoST's repository left RMSP "TBA"; N, T and the simulator prompt are ours.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lab_tools.atomic import write_jsonl_atomic
from lab_tools.config_sections import FiltersConfig
from lab_tools.errors import LabError, plural
from lab_tools.feedback import rubric
from lab_tools.feedback.play import PlayJob, play_leaves
from lab_tools.feedback.sampling import Backends, leaf_prompts, select_prompts
from lab_tools.feedback.scorer import baseline_record, relative_reward, rm_digest
from lab_tools.markdown import code
from lab_tools.progress import Progress, token_budget
from lab_tools.sdg import filters, quality
from lab_tools.sdg.cache import LeafCache, cache_key
from lab_tools.sdg.datacard import set_card_section
from lab_tools.taxonomy.leaf import load_leaf

# 2: SDG quality filters and the seed-copy rule on every turn, rejected turns recorded
CACHE_FORMAT = "selfplay-2"
STAGE = "self_play"
SETTINGS = ("sp_prompts_per_leaf", "sp_candidates", "sp_turns", "sp_threshold", "max_new_tokens",
            "temperature", "min_chars", "seed")


@dataclass
class SelfPlayReport:
    """What :func:`generate_self_play` did: per-leaf records (``leaf``, ``prompts``, ``kept``,
    ``dropped`` {reason: n}, ``turns`` (assistant turns of kept conversations), ``cached``),
    total ``kept`` conversations and wall ``seconds``."""
    leaves: list[dict]
    kept: int
    seconds: float
    path: Path


def kept_samples(leaf, convs: list[dict], fb, teacher_name: str, *, seed_threshold: float | None = None,
                 rejected: list | None = None) -> tuple[list[dict], dict]:
    """The kept conversations as samples, and drops by reason. A conversation ends on its last
    assistant turn (a trailing simulated user turn is removed) and is kept when its worst turn
    reward clears ``fb.sp_threshold`` and none of its turns near-copies a seed question or answer
    of ``leaf`` (the last guard before ``selfplay.jsonl``: turns were screened as they were made;
    ``seed_threshold``: ``generate.filters.seed_threshold``, default settings when None).
    ``rejected``: when given, receives a row (``stage: self_play``) per dropped candidate and user
    turn (from the conversations' ``rejected``) and per dropped conversation."""
    samples, dropped = [], {}
    seeds = filters.seed_texts(leaf)
    threshold = FiltersConfig().seed_threshold if seed_threshold is None else seed_threshold
    for c in convs:
        msgs = list(c["messages"])
        while msgs and msgs[-1]["role"] == "user":
            msgs.pop()
        first = c["messages"][0]["content"] if c["messages"] else ""
        if rejected is not None:
            rejected += [{"leaf": leaf.path, "stage": STAGE, "step": f"{r['role']} turn", "prompt": first, **r}
                         for r in c.get("rejected", [])]
        copied = next((m["content"] for m in msgs if quality.seed_copy(m["content"], seeds, threshold)), None)
        if not c["rewards"] or not msgs:
            why = c["why"] or "no assistant turn"
        elif copied is not None:
            why = filters.SEED_COPY
        elif min(c["rewards"]) < fb.sp_threshold:
            why = "below reward threshold"
        else:
            samples.append({"messages": msgs, "metadata": {
                "leaf": leaf.path, "leaf_hash": leaf.content_hash, "kind": leaf.kind, "phase": "st",
                "source": "rmsp", "teacher": teacher_name, "turn_rewards": c["rewards"],
                "candidates": fb.sp_candidates, "score": min(c["rewards"])}})
            continue
        dropped[why] = dropped.get(why, 0) + 1
        if rejected is not None:
            rejected.append({"leaf": leaf.path, "stage": STAGE, "step": "conversation", "prompt": first,
                             "reason": why, "detail": f"turn rewards {c['rewards']}", "text": (copied or "")[:500]})
    return samples, dropped


def _write_card(data_dir: Path, block: dict) -> None:
    """Set the ``self_play`` block of ``dataset_card.json`` and its section of the dataset card
    ``README.md`` (front matter: the ``self_play`` config; :func:`lab_tools.sdg.datacard.set_card_section`)."""
    lines = ["## RM-guided self-play", "",
             f"{plural(block['kept'], 'conversation')} kept (best of {plural(block['candidates'], 'candidate')} "
             f"per assistant turn by the reward model, up to {plural(block['max_turns'], 'turn')}, worst turn reward >= "
             f"{block['threshold']}); assistant {code(block['assistant'])}.", "",
             *([f"Rewards are measured from the RM's mean reward ({block['reward_baseline']:.3f}) of the rejected "
                f"responses of {plural(sample['n'], 'comparison')} ({sample['source']}, "
                f"{plural(len(sample['leaves']), 'leaf')}; rows {sample['rows']} of `comparisons.jsonl`).", ""]
              if (sample := block.get("reward_baseline_sample")) else []),
             "Every candidate and simulated user turn passed the SDG quality filters and the seed-copy rule; "
             "the turns they rejected are counted below and listed in `selfplay_rejected.jsonl`.", "",
             "| leaf | prompts | kept | turns per kept conversation | dropped | turns rejected |",
             "|---|---:|---:|---|---|---|"]
    for r in block["leaves"]:
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items())) or "-"
        turned = ", ".join(f"{k} {v}" for k, v in sorted(r.get("turns_rejected", {}).items())) or "-"
        lines.append(f"| {code(r['leaf'])} | {r['prompts']} | {r['kept']} | {r['turns'] or '-'} | {dropped} | {turned} |")
    set_card_section(data_dir, "self_play", block, "RM-guided self-play", "\n".join(lines) + "\n")


def generate_self_play(root, data_dir, cfg, rm_dir, *, leaf_paths: list[str] | None = None,
                       backends: dict | None = None, reward=None, progress: bool = True) -> SelfPlayReport:
    """RMSP for the compositional-skill leaves with generated instructions in ``data_dir/st.jsonl``
    (``leaf_paths``: only these are (re)generated; others come from the cache when present);
    writes ``selfplay.jsonl``, ``selfplay_rejected.jsonl`` (every drop with ``stage: self_play``
    and its ``reason``) and the ``self_play`` block of ``dataset_card.json``.

    ``rm_dir``: the reward model (``lab train --phase rm``); ``reward``: optional scorer
    ``f(conversations) -> list[float]`` instead of loading it (tests).

    Raises:
        LabError: no reward model, a failing teacher (the leaf is not cached), or no conversation
            kept at all (ST would gain nothing; lower ``feedback.sp_threshold``).
    """
    t0 = time.monotonic()
    fb, fcfg, data_dir, rm_dir = cfg.feedback, cfg.generate.filters, Path(data_dir), Path(rm_dir)
    if not (rm_dir / "config.json").is_file():
        raise LabError("self-play needs the reward model: run `lab train --phase rm` first", file=str(rm_dir))
    baseline, sample = 0.0, None
    if reward is None:
        # rewards are relative to the RM's mean reward of a rejected response in the synthetic
        # comparisons (held out from RM training, across all leaves: scorer.baseline_sample), so
        # sp_threshold 0 means "better than an average rejected answer"
        reward, baseline = relative_reward(rm_dir, data_dir / "comparisons.jsonl", max_length=fb.rm_max_length)
        sample = baseline_record(rm_dir, data_dir / "comparisons.jsonl")
    conf = rubric.resolve_configurations(fb, cfg.generate.teacher, cfg.train.student)[0]
    pool = Backends(cfg, backends)
    assistant = pool.get(conf)
    user_sim = pool.get(rubric.Configuration("user-simulator", cfg.generate.teacher))
    identity = {"assistant": pool.identity(conf), "user": pool.identity(rubric.Configuration("u", cfg.generate.teacher)),
                "rm": rm_digest(rm_dir, data_dir / "comparisons.jsonl"), "conf": conf.as_dict()}
    prompts = leaf_prompts(data_dir, files=("st.jsonl",))
    wanted = None if leaf_paths is None else {p.removesuffix("/qna.yaml").strip("/") for p in leaf_paths}
    entries = []  # one per leaf with prompts; the leaves to play go in one batch
    for path in sorted(prompts):
        leaf = load_leaf(root, path)
        chosen, skipped = select_prompts(leaf, prompts[path], fb.sp_prompts_per_leaf, fcfg.seed_threshold, STAGE)
        if not chosen:
            continue
        cache = LeafCache(cfg.cache_path / "selfplay", cache_key({
            "format": CACHE_FORMAT, "leaf": leaf.path, "leaf_hash": leaf.content_hash, "prompts": chosen,
            "identity": identity, "settings": {k: getattr(fb, k) for k in SETTINGS},
            "filters": dataclasses.asdict(fcfg)}))
        entries.append({"path": path, "leaf": leaf, "prompts": chosen, "cache": cache, "shard": cache.shard(),
                        "cached": True, "skipped": skipped})
    todo = [e for e in entries if e["shard"] is None and (wanted is None or e["path"] in wanted)]
    if todo:
        if progress:
            print(f"[self-play] {plural(len(todo), 'leaf')}, "
                  f"{plural(sum(len(e['prompts']) for e in todo), 'conversation')}, up to "
                  f"{plural(fb.sp_turns, 'assistant turn')} of {plural(fb.sp_candidates, 'candidate')}", flush=True)
        jobs = []
        for e in todo:
            ck = e["cache"].checkpoint()
            jobs.append(PlayJob(e["leaf"], e["prompts"], ck[1] if ck else {},
                                lambda s, c=e["cache"]: c.write_checkpoint(s["turn"], s)))
        # tokens of every assistant candidate and simulated user turn, at most: the progress moves
        # while a turn's batch is decoded (lab_tools.progress.token_budget)
        budget = sum(len(e["prompts"]) for e in todo) * fb.sp_turns * (fb.sp_candidates + 1) * fb.max_new_tokens
        with Progress(progress, stage="self-play") as bar, token_budget(bar, "turns", budget):
            states = play_leaves(jobs, assistant, user_sim, reward, fb, conf,
                                 cfg.generate.max_request_error_fraction, fcfg)
        for e, state in zip(todo, states):
            rejected = list(e["skipped"])
            kept, dropped = kept_samples(e["leaf"], state["convs"], fb, pool.name(conf),
                                         seed_threshold=fcfg.seed_threshold, rejected=rejected)
            e["shard"] = {"key": e["cache"].key, "leaf": e["path"], "samples": kept, "dropped": dropped,
                          "rejected": rejected}
            e["cached"] = False
            e["cache"].write_shard(e["shard"])
    samples, leaves, rejected = [], [], []
    for e in entries:
        shard = e["shard"]
        if shard is None:
            continue
        samples += shard["samples"]
        rejected += shard.get("rejected", [])
        turns = [sum(m["role"] == "assistant" for m in s["messages"]) for s in shard["samples"]]
        filtered = Counter(r["reason"] for r in shard.get("rejected", []) if r["step"] != "conversation")
        leaves.append({"leaf": e["path"], "prompts": len(e["prompts"]), "kept": len(shard["samples"]),
                       "dropped": shard["dropped"], "turns_rejected": dict(filtered), "turns": turns,
                       "cached": e["cached"]})
        if progress:
            print(f"[self-play] {e['path']}: kept {len(shard['samples'])}/{len(e['prompts'])}"
                  f"{' (cached)' if e['cached'] else ''}", flush=True)
    out = write_jsonl_atomic(data_dir / "selfplay.jsonl", samples)
    write_jsonl_atomic(data_dir / "selfplay_rejected.jsonl", rejected)
    all_turns = [t for r in leaves for t in r["turns"]]
    _write_card(data_dir, {
        "kept": len(samples), "candidates": fb.sp_candidates, "max_turns": fb.sp_turns,
        "threshold": fb.sp_threshold, "reward_baseline": baseline, "reward_baseline_sample": sample,
        "mean_turns": sum(all_turns) / len(all_turns) if all_turns else None,
        "assistant": pool.name(conf), "leaves": leaves})
    if leaves and not samples:
        raise LabError("self-play kept no conversation (every worst turn was below feedback.sp_threshold "
                       f"or had no valid candidate; see dataset_card.json in {data_dir})")
    return SelfPlayReport(leaves=leaves, kept=len(samples), seconds=time.monotonic() - t0, path=out)

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
to play advance turn by turn in one batch (:func:`play_leaves`).
ALMoST's repository left RMSP "TBA"; N, T and the simulator prompt are ours.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from lab_tools.atomic import write_json_atomic, write_jsonl_atomic, write_text_atomic
from lab_tools.config import FiltersConfig
from lab_tools.errors import LabError, plural
from lab_tools.feedback import pairing, rubric
from lab_tools.feedback.scorer import rm_digest
from lab_tools.sdg import filters, quality
from lab_tools.sdg.backends import ChatRequest
from lab_tools.sdg.cache import LeafCache, cache_key

# 2: SDG quality filters and the seed-copy rule on every turn, rejected turns recorded
CACHE_FORMAT = "selfplay-2"
STAGE = "self_play"
_STOPS = ("\nAssistant:", "\nAI:", "Assistant:")
SETTINGS = ("sp_prompts_per_leaf", "sp_candidates", "sp_turns", "sp_threshold", "max_new_tokens",
            "temperature", "min_chars", "seed")
USER_SIMULATOR = (
    "You are role-playing the user in the conversation below, which a person is having with an AI "
    "assistant. Write the user's next message: one natural follow-up question or request that "
    "continues the conversation. Write only that message, nothing else.\n\n[Conversation]\n{transcript}"
)


@dataclass
class SelfPlayReport:
    """What :func:`generate_self_play` did: per-leaf records (``leaf``, ``prompts``, ``kept``,
    ``dropped`` {reason: n}, ``turns`` (assistant turns of kept conversations), ``cached``),
    total ``kept`` conversations and wall ``seconds``."""
    leaves: list[dict]
    kept: int
    seconds: float
    path: Path


def best_candidate(rewards: list[float | None]) -> int | None:
    """Index of the highest reward (the first on a tie), skipping None (invalid candidates);
    None when no candidate is valid."""
    best = None
    for i, r in enumerate(rewards):
        if r is not None and (best is None or r > rewards[best]):
            best = i
    return best


def user_turn(text: str) -> str | None:
    """The simulator's reply as a user message: a leading ``User:``/``Human:`` label removed, cut
    at an ``Assistant:`` turn it went on to write; None when nothing usable is left."""
    t = (text or "").strip()
    for label in ("User:", "Human:", "user:"):
        if t.startswith(label):
            t = t[len(label):].strip()
    for stop in _STOPS:
        t = t.split(stop, 1)[0].strip()
    return t if len(t) >= 8 else None


def _reject(conv: dict, turn: int, role: str, reason: str, detail: str = "", text: str = "") -> None:
    """Record a dropped ``role`` turn (a candidate or a simulated user turn) of assistant turn
    ``turn`` (1-based) in the conversation's state (checkpointed with it)."""
    conv.setdefault("rejected", []).append({"turn": turn, "role": role, "reason": reason, "detail": detail,
                                            "text": text[:500]})


def _transcript(conv: list[dict]) -> str:
    return "\n".join(f"{'User' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in conv)


def _seed(fb, leaf, i: int, turn: int, k: int) -> int:
    src = f"{fb.seed}:{leaf.content_hash}:rmsp:{i}:{turn}:{k}"
    return int(hashlib.sha256(src.encode()).hexdigest()[:8], 16)


def _fail_if_errors(comps, what: str, leaves, max_fraction: float) -> None:
    """Raise when more than ``max_fraction`` of one leaf's requests in ``comps`` failed;
    ``leaves[j]`` is the leaf of ``comps[j]``."""
    by_leaf: dict[str, list] = {}
    for c, leaf in zip(comps, leaves):
        by_leaf.setdefault(leaf.path, []).append(c)
    for path, cs in by_leaf.items():
        errors = [c.error for c in cs if c.error]
        if errors and len(errors) / len(cs) > max_fraction:
            raise LabError(f"self-play: {what} requests failed for {path} ({len(errors)}/{len(cs)}): {errors[0]}")


@dataclass
class PlayJob:
    """One leaf's self-play: its ``prompts``, the ``state`` to resume from (``{"turn", "convs"}``,
    ``{}`` for a fresh start) and ``checkpoint(state)``, called after each of its turns."""
    leaf: object
    prompts: list[str]
    state: dict
    checkpoint: object


def play_leaves(jobs: list[PlayJob], assistant, user_sim, reward, fb, conf,
                max_error_fraction: float = 0.2, fcfg: FiltersConfig | None = None) -> list[dict]:
    """Run self-play for several leaves at once and return each job's finished state.

    Every turn sends the assistant candidates of all live conversations of all leaves as one
    batch, and then all simulated user turns as one (on a CPU a batched step costs little more
    than one sequence's, so leaf by leaf would pay the decode steps once per leaf). A job resumed
    at turn ``t`` joins from turn ``t``. ``assistant``/``user_sim``: teachers
    (``generate(list[ChatRequest])``); ``reward``: ``f(list of message lists) -> list[float]``
    (the reward model); ``conf``: the assistant's configuration (its demonstrations precede the
    conversation); ``fcfg``: the SDG filters' settings (``generate.filters``; default settings
    when None), which screen every candidate and every simulated user turn together with the
    seed-copy rule against the job's leaf (:func:`lab_tools.sdg.filters.screen_turn`). Each
    conversation ``{"messages", "rewards", "done", "why", "rejected"}``; ``rejected`` lists the
    dropped candidates and user turns (``turn``, ``role``, ``reason``, ``detail``, ``text``).

    Raises:
        LabError: more than ``max_error_fraction`` of one leaf's requests in a turn failed.
    """
    n, fcfg = fb.sp_candidates, fcfg or FiltersConfig()
    convs, start = [], []
    for job in jobs:
        convs.append(job.state.get("convs") or [{"messages": [{"role": "user", "content": p}], "rewards": [],
                                                  "done": False, "why": None, "rejected": []} for p in job.prompts])
        start.append(job.state.get("turn", 0))
    demos = [rubric.messages(conf, job.leaf, "")[:-1] for job in jobs]
    seeds = [filters.seed_texts(job.leaf) for job in jobs]
    for turn in range(min(start, default=fb.sp_turns), fb.sp_turns):
        live = [(a, i) for a, job in enumerate(jobs) if start[a] <= turn
                for i, c in enumerate(convs[a]) if not c["done"]]
        if not live:
            break
        reqs = [ChatRequest(demos[a] + convs[a][i]["messages"], max_tokens=fb.max_new_tokens,
                            temperature=fb.temperature, seed=_seed(fb, jobs[a].leaf, i, turn, k), tag="rmsp")
                for a, i in live for k in range(n)]
        comps = assistant.generate(reqs)
        _fail_if_errors(comps, "assistant", [jobs[a].leaf for a, _ in live for _ in range(n)], max_error_fraction)
        texts, to_score = [], []
        for j, c in enumerate(comps):
            a, i = live[j // n]
            conv = convs[a][i]
            if c.error:
                texts.append(None)
                _reject(conv, turn + 1, "assistant", "teacher error", str(c.error)[:300])
                continue
            prompt = conv["messages"][-1]["content"]
            r = pairing.prepare(pairing.Response(config=conf.name, rank=0, text=c.text or "",
                                                 truncated=c.completion_tokens >= fb.max_new_tokens), fb.min_chars,
                                screen=lambda r, p=prompt, s=seeds[a]: filters.screen_turn(p, r.text, fcfg, seeds=s,
                                                                                          hit_limit=r.truncated))
            texts.append(None if r.bad else r.text)
            if r.bad:
                _reject(conv, turn + 1, "assistant", r.bad, r.detail, r.text)
            else:
                to_score.append((j, conv["messages"] + [{"role": "assistant", "content": r.text}]))
        scores = dict(zip([j for j, _ in to_score], reward([m for _, m in to_score]))) if to_score else {}
        for x, (a, i) in enumerate(live):
            rewards = [scores.get(x * n + k) for k in range(n)]
            k = best_candidate(rewards)
            c = convs[a][i]
            if k is None:
                c["done"], c["why"] = True, "no valid candidate"
                continue
            c["messages"].append({"role": "assistant", "content": texts[x * n + k]})
            c["rewards"].append(rewards[k])
        if turn + 1 < fb.sp_turns:
            live = [(a, i) for a, i in live if not convs[a][i]["done"]]
            sims = user_sim.generate([ChatRequest(
                [{"role": "user", "content": USER_SIMULATOR.format(transcript=_transcript(convs[a][i]["messages"]))}],
                max_tokens=fb.max_new_tokens, temperature=fb.temperature, seed=_seed(fb, jobs[a].leaf, i, turn, n),
                tag="rmsp-user") for a, i in live])
            _fail_if_errors(sims, "user-simulator", [jobs[a].leaf for a, _ in live], max_error_fraction)
            for (a, i), sim in zip(live, sims):
                msg = None if sim.error else user_turn(sim.text)
                c = convs[a][i]
                if msg is None:
                    c["done"], c["why"] = True, c["why"] or "simulator gave no user turn"
                    _reject(c, turn + 1, "user", "teacher error" if sim.error else "simulator gave no user turn",
                            str(sim.error or "")[:300], sim.text or "")
                    continue
                # cut by the token bound only when the simulator did not go on to an assistant turn
                hit = sim.completion_tokens >= fb.max_new_tokens and not any(x in sim.text for x in _STOPS)
                v = filters.screen_turn(c["messages"][-1]["content"], msg, fcfg, seeds=seeds[a], hit_limit=hit)
                if v.reason:
                    c["done"], c["why"] = True, c["why"] or f"user turn rejected: {v.reason}"
                    _reject(c, turn + 1, "user", v.reason, v.detail, msg)
                else:
                    c["messages"].append({"role": "user", "content": msg})
        for a, job in enumerate(jobs):
            if start[a] <= turn:
                job.checkpoint({"turn": turn + 1, "convs": convs[a]})
    return [{"turn": fb.sp_turns, "convs": c} for c in convs]


def play_leaf(leaf, prompts: list[str], assistant, user_sim, reward, fb, conf, state: dict,
              checkpoint, max_error_fraction: float = 0.2, fcfg: FiltersConfig | None = None) -> dict:
    """:func:`play_leaves` for one leaf: run its self-play from ``state`` (``{"turn", "convs"}``;
    a fresh one has turn 0 and one conversation per prompt), ``checkpoint(state)`` after every
    turn; returns the finished state.

    Raises:
        LabError: more than ``max_error_fraction`` of a turn's requests failed.
    """
    return play_leaves([PlayJob(leaf, prompts, state, checkpoint)], assistant, user_sim, reward, fb, conf,
                       max_error_fraction, fcfg)[0]


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
    """Set the ``self_play`` block of ``dataset_card.json`` and its section of ``dataset_card.md``."""
    import json

    jpath, mpath = data_dir / "dataset_card.json", data_dir / "dataset_card.md"
    card = json.loads(jpath.read_text(encoding="utf-8")) if jpath.is_file() else {}
    card["self_play"] = block
    write_json_atomic(jpath, card, indent=2)
    lines = ["## RM-guided self-play", "",
             f"{plural(block['kept'], 'conversation')} kept (best of {plural(block['candidates'], 'candidate')} "
             f"per assistant turn by the reward model, up to {plural(block['max_turns'], 'turn')}, worst turn reward >= "
             f"{block['threshold']}); assistant `{block['assistant']}`.", "",
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
        lines.append(f"| `{r['leaf']}` | {r['prompts']} | {r['kept']} | {r['turns'] or '-'} | {dropped} | {turned} |")
    md = mpath.read_text(encoding="utf-8") if mpath.is_file() else "# Dataset card\n"
    write_text_atomic(mpath, md.split("\n## RM-guided self-play", 1)[0].rstrip("\n") + "\n\n" + "\n".join(lines) + "\n")


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
    from lab_tools.feedback.comparisons import Backends, leaf_prompts, select_prompts
    from lab_tools.taxonomy.leaf import load_leaf

    t0 = time.monotonic()
    fb, fcfg, data_dir, rm_dir = cfg.feedback, cfg.generate.filters, Path(data_dir), Path(rm_dir)
    if not (rm_dir / "config.json").is_file():
        raise LabError("self-play needs the reward model: run `lab train --phase rm` first", file=str(rm_dir))
    baseline, sample = 0.0, None
    if reward is None:
        from lab_tools.feedback.scorer import baseline_record, relative_reward

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
        states = play_leaves(jobs, assistant, user_sim, reward, fb, conf, cfg.generate.max_request_error_fraction,
                             fcfg)
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

"""The conversations of RM-guided self-play (RMSP; ALMoST, arXiv 2305.13735, section 3.2), turn by
turn (:func:`play_leaves`; the stage around it: :mod:`lab_tools.feedback.selfplay`). At each
assistant turn every live conversation gets ``feedback.sp_candidates`` candidates; those that
ALMoST's filter calls invalid or that fail the SDG quality filters and the seed-copy rule
(:func:`lab_tools.sdg.filters.screen_turn`) are recorded and never scored; the reward model scores
the rest and the best is kept (:func:`best_candidate`). Then the teacher, prompted to play the
user (:data:`USER_SIMULATOR`), writes the next user turn (:func:`user_turn`), screened the same
way. All conversations of all leaves advance in one batch per turn; each leaf is checkpointed
after each turn. N, T and the simulator prompt are ours (ALMoST's repository left RMSP "TBA").
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from lab_tools.config_sections import FiltersConfig
from lab_tools.errors import LabError
from lab_tools.feedback import pairing, rubric
from lab_tools.sdg import filters
from lab_tools.sdg.backends import ChatRequest

_STOPS = ("\nAssistant:", "\nAI:", "Assistant:")
USER_SIMULATOR = (
    "You are role-playing the user in the conversation below, which a person is having with an AI "
    "assistant. Write the user's next message: one natural follow-up question or request that "
    "continues the conversation. Write only that message, nothing else.\n\n[Conversation]\n{transcript}"
)



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

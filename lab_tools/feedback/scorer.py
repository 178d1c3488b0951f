"""The reward model as an SDG scorer: pair evaluation by reward (ALMoST, arXiv 2305.13735).

Where the teacher cannot judge (``generate.model_judges: false``), the reward model trained on the
synthetic comparisons (``lab train --phase rm``) scores each kept SDG sample: the conversation
(user prompt, assistant answer) rendered with the RM's chat template, as TRL's RewardTrainer
saw it. :func:`lab_tools.sdg.filters.select_top` keeps the best ``generate.samples`` per leaf by
that reward; with ``feedback.rm_score_threshold`` set, samples whose reward is below it are
rejected (``pair evaluation by reward`` in ``rejected.jsonl``). Rewards are relative to the RM's
mean reward of a *rejected* response in the synthetic comparisons (:func:`relative_reward`, also
used by RM-guided self-play), so threshold 0 means "better than an average rejected answer"; those
comparisons are held out from RM training when the RM held any out, and are spread over every
leaf (:func:`baseline_sample`).

torch/transformers are imported only when the scorer is first called (all leaves cached: never).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.feedback.evaluate import evenly_spaced, load_rm, rewards
from lab_tools.jsonl import read_jsonl

#: rejected responses that set the reward baseline, at most
BASELINE_ROWS = 64


def rm_heldout_leaves(rm_dir: Path | None) -> list[str]:
    """The leaves whose comparisons the reward model at ``rm_dir`` never trained on
    (``heldout_leaves.json``, written by :func:`lab_tools.feedback.rm.train_reward_model`); empty
    when there is no such file."""
    path = Path(rm_dir) / "heldout_leaves.json" if rm_dir is not None else None
    if path is None or not path.is_file():
        return []
    try:
        leaves = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(x) for x in leaves] if isinstance(leaves, list) else []


def baseline_sample(comparisons: Path | None, heldout_leaves: list[str] | None = None,
                    limit: int = BASELINE_ROWS) -> dict:
    """The comparisons whose *rejected* responses set the reward baseline (ALMoST, arXiv
    2305.13735, section 3.2: RMSP keeps turns by reward, here measured from an average rejected
    answer). Drawn from the pairs held out from RM training (rows of ``heldout_leaves``, the RM's
    held-out leaves) when there are any, else from all rows; in both cases stratified by leaf:
    the ``limit`` rows are shared round-robin over the leaves (over ``limit`` evenly spaced leaves
    when there are more), evenly spaced within each leaf, so every leaf counts and never only the
    head of a leaf-sorted file. Returns ``{"source": "heldout leaves" | "all leaves" | "none",
    "n", "rows" (0-based row numbers in the file), "leaves", "conversations" (``prompt +
    rejected`` messages, in row order)}``."""
    rows = []
    if comparisons is not None and Path(comparisons).is_file():
        rows = [(i, r) for i, r in enumerate(read_jsonl(Path(comparisons)))
                if isinstance(r, dict) and r.get("prompt") and r.get("rejected")]
    leaf = lambda r: str((r.get("metadata") or {}).get("leaf", ""))  # noqa: E731
    held = set(heldout_leaves or [])
    pool = [(i, r) for i, r in rows if leaf(r) in held]
    source = "heldout leaves" if pool else "all leaves" if rows else "none"
    pool = pool or rows
    groups: dict[str, list] = {}
    for i, r in pool:
        groups.setdefault(leaf(r), []).append((i, r))
    leaves = evenly_spaced(sorted(groups), limit)
    quota, left = dict.fromkeys(leaves, 0), limit
    while left > 0 and any(quota[lf] < len(groups[lf]) for lf in leaves):
        for lf in leaves:
            if left > 0 and quota[lf] < len(groups[lf]):
                quota[lf], left = quota[lf] + 1, left - 1
    chosen = sorted((x for lf in leaves for x in evenly_spaced(groups[lf], quota[lf])), key=lambda x: x[0])
    return {"source": source, "n": len(chosen), "rows": [i for i, _ in chosen], "leaves": leaves,
            "conversations": [r["prompt"] + r["rejected"] for _, r in chosen]}


def baseline_record(rm_dir: Path | None, comparisons: Path | None) -> dict:
    """:func:`baseline_sample` of the reward model at ``rm_dir`` without the conversations: what a
    card records (``source``, ``n``, ``rows``, ``leaves``)."""
    sample = baseline_sample(comparisons, rm_heldout_leaves(rm_dir))
    return {k: v for k, v in sample.items() if k != "conversations"}


def baseline_conversations(comparisons: Path | None, limit: int = BASELINE_ROWS,
                           heldout_leaves: list[str] | None = None) -> list[list[dict]]:
    """The rejected conversations (``prompt + rejected`` messages) of :func:`baseline_sample`;
    empty when the file is absent or None."""
    return baseline_sample(comparisons, heldout_leaves, limit)["conversations"]


def relative_reward(rm_dir: Path, comparisons: Path | None, *, max_length: int):
    """Load the reward model at ``rm_dir`` and return ``(reward, baseline)``: ``reward(list of
    message lists) -> list[float]``, each the RM's reward minus ``baseline``, the mean reward of
    the rejected responses of :func:`baseline_sample` (pairs of the RM's held-out leaves, else
    of all leaves; 0.0 when there are none).
    ``max_length``: tokens per conversation (its last ones are kept)."""
    model, tok = load_rm(rm_dir)
    rejected = baseline_conversations(comparisons, heldout_leaves=rm_heldout_leaves(rm_dir))
    scores = rewards(model, tok, rejected, max_length=max_length) if rejected else []
    baseline = sum(scores) / len(scores) if scores else 0.0
    return (lambda convs: [r - baseline for r in rewards(model, tok, convs, max_length=max_length)]), baseline


def rm_digest(rm_dir: Path, comparisons: Path | None = None) -> str:
    """16 hex digits of sha256 over the reward model's weights (``*.safetensors``, ``*.bin``)
    and ``config.json`` bytes, and the baseline conversations (:func:`baseline_conversations`),
    so that a retrained RM or a new baseline changes the SDG cache key.

    Raises:
        LabError: ``rm_dir`` holds no ``config.json`` (not a model directory)."""
    rm_dir = Path(rm_dir)
    if not (rm_dir / "config.json").is_file():
        raise LabError("not a reward model directory (no config.json): train one with `lab train --phase rm`",
                       file=str(rm_dir))
    h = hashlib.sha256()
    for p in sorted([*rm_dir.glob("*.safetensors"), *rm_dir.glob("*.bin")]) + [rm_dir / "config.json"]:
        h.update(p.name.encode())
        with p.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    h.update(json.dumps(baseline_conversations(comparisons, heldout_leaves=rm_heldout_leaves(rm_dir)),
                        sort_keys=True).encode())
    return h.hexdigest()[:16]


class RewardScorer:
    """``scorer(prompts, answers) -> [float]``: the reward of each (user prompt, assistant answer)
    pair relative to the baseline (:func:`relative_reward`); the model loads on the first call.
    ``name``: ``reward-model:<digest>`` (:func:`rm_digest`); ``threshold``: rewards below it are
    rejected by :func:`lab_tools.sdg.filters.select_top` (None: rank only); ``baseline``: set
    once loaded."""

    def __init__(self, rm_dir: Path, *, threshold: float | None, max_length: int, comparisons: Path | None = None):
        self.rm_dir, self.threshold, self.max_length, self.comparisons = Path(rm_dir), threshold, max_length, comparisons
        self.name = f"reward-model:{rm_digest(self.rm_dir, comparisons)}"
        self.baseline: float | None = None
        self._reward = None

    def __call__(self, prompts: list[str], answers: list[str]) -> list[float]:
        if self._reward is None:
            self._reward, self.baseline = relative_reward(self.rm_dir, self.comparisons, max_length=self.max_length)
        return self._reward([[{"role": "user", "content": p}, {"role": "assistant", "content": a}]
                             for p, a in zip(prompts, answers)])


def rm_scorer(rm_dir, *, threshold: float | None, max_length: int, comparisons=None) -> RewardScorer:
    """The SDG scorer of the reward model at ``rm_dir`` (:class:`RewardScorer`); ``comparisons``:
    the ``comparisons.jsonl`` whose rejected responses set the baseline (None or absent: 0).

    Raises:
        LabError: ``rm_dir`` is not a model directory."""
    return RewardScorer(Path(rm_dir), threshold=threshold, max_length=max_length,
                        comparisons=None if comparisons is None else Path(comparisons))

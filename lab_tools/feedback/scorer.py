"""The reward model as an SDG scorer: pair evaluation by reward (ALMoST, arXiv 2305.13735).

Where the teacher cannot judge (``generate.model_judges: false``), the reward model trained on the
synthetic comparisons (``lab train --phase rm``) scores each kept SDG sample: the conversation
(user prompt, assistant answer) rendered with the RM's chat template, as TRL's RewardTrainer
saw it. :func:`lab_tools.sdg.filters.select_top` keeps the best ``generate.samples`` per leaf by
that reward; with ``feedback.rm_score_threshold`` set, samples whose reward is below it are
rejected (``pair evaluation by reward`` in ``rejected.jsonl``). Rewards are relative to the RM's
mean reward of a *rejected* response in the synthetic comparisons (:func:`relative_reward`, also
used by RM-guided self-play), so threshold 0 means "better than an average rejected answer".

torch/transformers are imported only when the scorer is first called (all leaves cached: never).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from lab_tools.errors import LabError

#: comparisons whose rejected response sets the reward baseline (the first ones of the file)
BASELINE_ROWS = 64


def baseline_conversations(comparisons: Path | None, limit: int = BASELINE_ROWS) -> list[list[dict]]:
    """The first ``limit`` rejected conversations (``prompt + rejected`` messages) of a
    ``comparisons.jsonl`` file; empty when the file is absent or None."""
    if comparisons is None or not Path(comparisons).is_file():
        return []
    from lab_tools.jsonl import read_jsonl

    return [r["prompt"] + r["rejected"] for r in read_jsonl(Path(comparisons))[:limit]
            if isinstance(r, dict) and r.get("prompt") and r.get("rejected")]


def relative_reward(rm_dir: Path, comparisons: Path | None, *, max_length: int):
    """Load the reward model at ``rm_dir`` and return ``(reward, baseline)``: ``reward(list of
    message lists) -> list[float]``, each the RM's reward minus ``baseline``, the mean reward of
    the rejected responses of :func:`baseline_conversations` (0.0 when there are none).
    ``max_length``: tokens per conversation (its last ones are kept)."""
    from lab_tools.feedback.evaluate import load_rm, rewards

    model, tok = load_rm(rm_dir)
    rejected = baseline_conversations(comparisons)
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
    h.update(json.dumps(baseline_conversations(comparisons), sort_keys=True).encode())
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

"""Reward-model evaluation: accuracy on comparisons, next to the "longer answer wins" baseline.

- Synthetic comparisons held out **by leaf** (the RM never saw those leaves), overall and per leaf.
- Static HHH (``lab_tools/evaldata/hhh_eval.json``, shipped with the package: 221 pairs from BIG-bench's HHH task
  as distributed with ALMoST's evaluation code), per type. Chance is 50%; "longer wins" is
  62.9% on that file (139 of 221 pairs, ties counted as wrong).

Accuracy is the share of pairs with ``reward(chosen) > reward(rejected)`` (a tie is wrong), as
TRL's RewardTrainer reports it and as ALMoST scores a reward model. The baseline scores a pair
correct when the chosen final response has strictly more characters than the rejected one.
Sequences are tokenized with the RM's chat template exactly as TRL's RewardTrainer does
(``apply_chat_template`` over prompt + response), so training and evaluation see the same text.
Scoring runs in bfloat16 on a CUDA GPU that supports it (float32 elsewhere: :func:`rm_dtype`),
``batch_size`` conversations per forward pass (``feedback.rm_score_batch_size``).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.eval.stats import wilson
from lab_tools.evaldata import static_hhh_path
from lab_tools.progress import report_tokens, token_budget

_TURN = re.compile(r"\n\nHuman: |\n\nAssistant: ")


def hhh_default_path() -> Path:
    """The Static HHH file shipped with the package (:func:`lab_tools.evaldata.static_hhh_path`).

    Raises:
        LabError: the shipped file is missing or was modified (named)."""
    return static_hhh_path()


def parse_dialogue(text: str) -> list[dict]:
    """``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` as chat messages (user/assistant turns).

    Raises:
        ValueError: the text does not start with a ``Human:`` turn."""
    if not text.startswith("\n\nHuman: "):
        raise ValueError("expected the dialogue to start with '\\n\\nHuman: '")
    roles = [("user" if m.group(0).strip() == "Human:" else "assistant") for m in _TURN.finditer(text)]
    parts = _TURN.split(text)[1:]
    return [{"role": r, "content": p.strip()} for r, p in zip(roles, parts)]


def load_hhh(path: str | Path) -> list[dict]:
    """Static HHH pairs as comparisons ``{"prompt", "chosen", "rejected", "type"}`` (messages).

    Raises:
        LabError: the file is missing or malformed (naming the pair index and field)."""
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LabError(f"cannot read the Static HHH file: {exc}", file=str(p)) from exc
    out = []
    for i, row in enumerate(data if isinstance(data, list) else []):
        try:
            chosen, rejected = parse_dialogue(row["chosen"]), parse_dialogue(row["rejected"])
        except (KeyError, TypeError, ValueError) as exc:
            raise LabError(f"not a Static HHH pair: {exc}", file=str(p), field=f"{i}.chosen") from exc
        if chosen[:-1] != rejected[:-1] or chosen[-1]["role"] != "assistant":
            raise LabError("chosen and rejected do not share the dialogue before the last assistant turn",
                           file=str(p), field=str(i))
        out.append({"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:],
                    "type": str(row.get("type", "other"))})
    if not out:
        raise LabError("no pairs in the Static HHH file (expected a JSON list)", file=str(p))
    return out


def longer_wins(pair: dict) -> bool:
    """The length baseline: the chosen final response is strictly longer (characters)."""
    return len(pair["chosen"][-1]["content"]) > len(pair["rejected"][-1]["content"])


def rm_dtype(device: str | None = None):
    """The dtype a reward model is scored in: ``torch.bfloat16`` on a CUDA device that supports
    it (half the memory of float32; what a 7B/13B RM needs to fit beside a policy), else
    ``torch.float32`` (CPU: bf16 matmuls are slow there and the CPU tests compare in float32)."""
    import torch

    cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    return torch.bfloat16 if cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported() \
        else torch.float32


def load_rm(path: str | Path, device: str | None = None, dtype=None):
    """``(model, tokenizer)`` of a reward model directory, or of a causal-LM base to train one
    from (AutoModelForSequenceClassification with one label: the base gets a new score head),
    eval mode, on ``device`` (default: CUDA when available), in ``dtype`` (default
    :func:`rm_dtype`: bfloat16 on CUDA, float32 on CPU)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1,
                                                               dtype=dtype or rm_dtype(device))
    model = model.to(device).eval()
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    model.config.pad_token_id = tok.pad_token_id
    return model, tok


def rewards(model, tok, conversations: list[list[dict]], *, batch_size: int = 8, max_length: int = 1024,
            progress=None, task: str = "reward model") -> list[float]:
    """One scalar reward per conversation (messages), right-padded batches of ``batch_size``
    conversations (sorted by length); a conversation over ``max_length`` tokens keeps its last
    ``max_length`` (the response end, where the reward is read). With ``progress`` (a
    :class:`lab_tools.progress.Progress`), a token budget of all conversations' tokens is opened
    here (``<task> tokens``) and each forward pass reports its tokens into it; without, nothing is
    reported, so the reward model scoring inside a generation budget (self-play's best-of-N, the
    SDG scorer) does not count its tokens as decoded ones."""
    ids = [tok.apply_chat_template(c, tokenize=True, return_dict=True)["input_ids"][-max_length:]
           for c in conversations]
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    scores: dict[int, float] = {}
    with token_budget(progress, task, sum(len(i) for i in ids)) as budget:
        _reward_passes(model, tok, ids, order, batch_size, scores, report=budget is not None)
    return [scores[i] for i in range(len(ids))]


def _reward_passes(model, tok, ids: list[list[int]], order: list[int], batch_size: int,
                   scores: dict[int, float], *, report: bool) -> None:
    """:func:`rewards`' forward passes: ``scores[i]`` for every conversation ``i`` of ``order``;
    ``report``: each pass's real tokens to :func:`lab_tools.progress.report_tokens`."""
    import torch

    for start in range(0, len(order), batch_size):
        batch = order[start:start + batch_size]
        width = max(len(ids[i]) for i in batch)
        x = torch.full((len(batch), width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(x)
        for row, i in enumerate(batch):
            x[row, :len(ids[i])] = torch.tensor(ids[i])
            mask[row, :len(ids[i])] = 1
        with torch.no_grad():
            logits = model(input_ids=x.to(model.device), attention_mask=mask.to(model.device)).logits
        for row, i in enumerate(batch):
            scores[i] = float(logits[row, 0])  # the model reads it at the last non-pad token
        if report:
            report_tokens(int(mask.sum()))  # progress inside the call


def score_pairs(model, tok, pairs: list[dict], **kw) -> list[float]:
    """``reward(chosen) - reward(rejected)`` per pair (``prompt``/``chosen``/``rejected`` messages)."""
    convs = [p["prompt"] + p["chosen"] for p in pairs] + [p["prompt"] + p["rejected"] for p in pairs]
    r = rewards(model, tok, convs, **kw)
    n = len(pairs)
    return [r[i] - r[n + i] for i in range(n)]


def _summary(pairs: list[dict], margins: list[float], group, key: str) -> dict:
    def acc(idx):
        right, longer = sum(margins[i] > 0 for i in idx), sum(longer_wins(pairs[i]) for i in idx)
        return {"n": len(idx), "accuracy": right / len(idx) if idx else None,
                "length_baseline": longer / len(idx) if idx else None,
                "interval": wilson(right, len(idx)).to_dict()["interval"],
                "length_baseline_interval": wilson(longer, len(idx)).to_dict()["interval"]}

    out = acc(list(range(len(pairs))))
    groups: dict[str, list[int]] = {}
    for i, p in enumerate(pairs):
        groups.setdefault(str(group(p)), []).append(i)
    out[key] = {k: acc(v) for k, v in sorted(groups.items())}
    return out


def evenly_spaced(items: list, n: int) -> list:
    """``n`` of ``items`` at evenly spaced positions (all of them when ``n`` is 0 or not smaller),
    so that every type of an ordered file such as Static HHH keeps its share."""
    if not n or n >= len(items):
        return list(items)
    return [items[i * len(items) // n] for i in range(n)]


def evaluate_rm(rm_dir: str | Path, heldout: list[dict], *, hhh_path: str | Path | None = None,
                max_length: int = 1024, hhh_pairs: int = 0, batch_size: int = 8) -> dict:
    """Accuracy of the RM at ``rm_dir`` and of the length baseline on the ``heldout`` synthetic
    comparisons (rows of ``comparisons.jsonl``; overall and ``per_leaf``) and, when
    ``hhh_path`` is given, on Static HHH (overall and ``per_type``; ``hhh_pairs`` > 0 scores an
    evenly spaced subset of that many pairs). Fractions 0..1 (None: no pairs), each with its
    Wilson 95% ``interval`` / ``length_baseline_interval`` (:mod:`lab_tools.eval.stats`).
    ``batch_size``: conversations per forward pass.

    Returns ``{"heldout": {...}, "static_hhh": {...} | None}``."""
    model, tok = load_rm(rm_dir)
    out = {"heldout": _summary(heldout, score_pairs(model, tok, heldout, max_length=max_length, batch_size=batch_size),
                               lambda p: p["metadata"]["leaf"], "per_leaf")
           if heldout else {"n": 0, "accuracy": None, "length_baseline": None, "per_leaf": {}},
           "static_hhh": None}
    if hhh_path is not None:
        hhh = evenly_spaced(load_hhh(hhh_path), hhh_pairs)
        out["static_hhh"] = _summary(hhh, score_pairs(model, tok, hhh, max_length=max_length, batch_size=batch_size),
                                     lambda p: p["type"], "per_type")
        out["static_hhh"]["file"] = str(hhh_path)
    return out

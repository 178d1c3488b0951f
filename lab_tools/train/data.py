"""Phase datasets -> token ids with an assistant-only loss mask -> packed, padding-free batches.

- Tokenization renders the model's own chat template; labels are -100 everywhere except on the
  assistant turns (content and end-of-turn token), unless a sample's metadata says
  ``"loss_on": "all"`` (knowledge samples may opt in to loss on the whole text).
- Samples longer than ``max_seq_len`` tokens are dropped and counted (never truncated silently).
- Packing: the samples of one micro-batch are concatenated into one row with ``position_ids``
  restarting at 0 for each sample; transformers derives a block-diagonal causal mask from them,
  so samples never attend to each other and there is no padding at all (real-token fraction 1.0).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lab_tools.errors import LabError
from lab_tools.jsonl import iter_jsonl

IGNORE = -100


class Samples(list):
    """The samples of one phase dataset (a list of dicts), with the ``file`` they came from and
    each one's 1-based ``lines`` in it, so later errors about a sample can name its line."""

    def __init__(self, rows=(), file: str | None = None, lines: list[int] | None = None):
        super().__init__(rows)
        self.file = file
        self.lines = list(lines or [])


def read_samples(path: str | Path) -> Samples:
    """Read a phase dataset (JSONL of ``{"messages": [...], "metadata": {...}}``); missing file =
    an empty :class:`Samples`.

    Raises:
        LabError: a line that is not JSON or has no non-empty ``messages`` list (file and line named).
    """
    p = Path(path)
    out = Samples(file=str(p))
    if not p.is_file():
        return out
    for lineno, row in iter_jsonl(p):
        msgs = row.get("messages") if isinstance(row, dict) else None
        if not isinstance(msgs, list) or not msgs or not all(
                isinstance(m, dict) and isinstance(m.get("role"), str)
                and isinstance(m.get("content"), str) for m in msgs):
            raise LabError("expected a non-empty list of {role, content}", file=str(p),
                           line=lineno, field="messages")
        if not any(m["role"] == "assistant" for m in msgs):
            raise LabError("no assistant message to learn from", file=str(p), line=lineno,
                           field="messages")
        row.setdefault("metadata", {})
        out.append(row)
        out.lines.append(lineno)
    return out


@dataclass
class Tokenized:
    """One sample as ``input_ids`` and ``labels`` (same length; -100 = no loss)."""
    input_ids: list[int]
    labels: list[int]
    source: str = ""

    @property
    def n_loss(self) -> int:
        """Tokens that carry loss (after the causal shift, the first token never does)."""
        return sum(1 for x in self.labels[1:] if x != IGNORE)


def _render(tok, messages, add_generation_prompt=False) -> str:
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def tokenize_sample(tok, messages: list[dict], *, loss_on_all: bool = False) -> Tokenized:
    """Tokenize with the tokenizer's chat template; loss only on assistant turns.

    The assistant span of turn ``i`` is the text between the rendering of ``messages[:i]`` with a
    generation prompt and the rendering of ``messages[:i+1]`` (so it covers the content and the
    end-of-turn token). Tokens are mapped to spans through the tokenizer's offset mapping.

    Raises:
        LabError: the template is not prefix-consistent (each rendering must extend the previous).
    """
    full = _render(tok, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tok, messages[:i], add_generation_prompt=True) if i else ""
        upto = _render(tok, messages[: i + 1])
        if not full.startswith(upto) or not upto.startswith(before):
            raise LabError("the chat template is not prefix-consistent; cannot locate assistant "
                           "tokens", field="chat_template")
        spans.append((len(before), len(upto)))
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = enc["input_ids"]
    if loss_on_all:
        return Tokenized(list(ids), list(ids))
    labels = [IGNORE] * len(ids)
    for k, (start, end) in enumerate(enc["offset_mapping"]):
        if end > start and any(s <= start < e for s, e in spans):
            labels[k] = ids[k]
    return Tokenized(list(ids), labels)


def tokenize_dataset(tok, samples: list[dict], max_seq_len: int, source: str = ""
                     ) -> tuple[list[Tokenized], int]:
    """Tokenize samples; returns ``(kept, dropped_too_long)``. Samples with no loss token are
    dropped too (counted with the long ones: nothing to learn from them).

    Raises:
        LabError: the chat template fails on a sample (raises, or is not prefix-consistent),
        naming the sample's file and line when ``samples`` is a :class:`Samples`.
    """
    from jinja2 import TemplateError

    kept, dropped = [], 0
    lines = getattr(samples, "lines", None)
    for i, s in enumerate(samples):
        where = {"file": getattr(samples, "file", None), "line": lines[i] if lines else None}
        try:
            t = tokenize_sample(tok, s["messages"],
                                loss_on_all=s.get("metadata", {}).get("loss_on") == "all")
        except LabError as err:
            raise LabError(err.message, field=err.field, **where) from None
        except (TemplateError, ValueError, TypeError, KeyError, IndexError) as exc:
            raise LabError(f"the model's chat template failed on this sample: {type(exc).__name__}: {exc}",
                           field="messages", **where) from None
        t.source = source or s.get("metadata", {}).get("phase", "")
        if len(t.input_ids) > max_seq_len or t.n_loss == 0:
            dropped += 1
            continue
        kept.append(t)
    return kept, dropped


def pack(samples: list[Tokenized], max_tokens: int) -> list[list[Tokenized]]:
    """Group samples into micro-batches of at most ``max_tokens`` tokens (first-fit decreasing,
    which keeps the number of forward passes small). Each sample must fit on its own."""
    bins: list[tuple[int, list[Tokenized]]] = []
    for s in sorted(samples, key=lambda t: -len(t.input_ids)):
        n = len(s.input_ids)
        for i, (used, group) in enumerate(bins):
            if used + n <= max_tokens:
                group.append(s)
                bins[i] = (used + n, group)
                break
        else:
            bins.append((n, [s]))
    return [g for _, g in bins]


def collate_packed(group: list[Tokenized]) -> dict:
    """One packed row: ``input_ids``, ``labels``, ``position_ids`` as LongTensors of shape
    ``(1, total_tokens)``. The first label of each sample is masked so no sample learns to predict
    its neighbour's first token."""
    import torch

    ids, labels, pos = [], [], []
    for t in group:
        ids += t.input_ids
        labels += [IGNORE] + t.labels[1:]
        pos += list(range(len(t.input_ids)))
    as_t = lambda x: torch.tensor([x], dtype=torch.long)  # noqa: E731
    return {"input_ids": as_t(ids), "labels": as_t(labels), "position_ids": as_t(pos)}

"""Whether a judge may decide: identity checks and a calibration set (DESIGN.md Decisions).

- **Identity** (:func:`refusal`): a judge is never the model under test nor its base. An
  in-process judge's model directory (:func:`judge_model_dir`) is compared with each of them by
  resolved path and, when the weight files' names and sizes match, by a sha256 over the weights
  (:func:`lab_tools.models.model_digest`), so a copy of the base elsewhere is caught too.
  A server judge (``openai:``/``vllm:`` by name) cannot be inspected and is taken as configured.
- **Calibration** (:func:`calibrate_rating`, :func:`calibrate_pairwise`, :func:`calibrate_capable`):
  up to :data:`CALIBRATION_ITEMS` held-out prompts, each with its own reference answer against a
  poor one (another prompt's reference, or :data:`POOR_ANSWER` when there is none). A verdict is
  a tie when the judge does not separate the two (equal ratings, equal A/B probabilities, a split
  or unparseable written verdict) and unparseable when no rating can be read. A judge whose ties
  and unparseable verdicts exceed :data:`UNABLE_SHARE` (50%) of the set is unable to judge and is
  not used; its share of calibration pairs won by the reference is recorded with its Wilson
  interval (reported, not a gate).

Every function returns a status dict ``{"used": bool, "reason": str, ...}`` that decision
records and cards quote.
"""

from __future__ import annotations

from pathlib import Path

from lab_tools.eval import preference, scoring  # as modules: tests replace their functions
from lab_tools.eval.stats import proportion
from lab_tools.models import embedded_model_dir, model_digest
from lab_tools.sdg.backends import make_teacher

CALIBRATION_ITEMS = 8
UNABLE_SHARE = 0.5
POOR_ANSWER = "I don't know."


def judge_model_dir(judge, cache_dir=None) -> Path | None:
    """The local model directory behind ``judge``: a spec ``transformers:PATH|embedded`` or
    ``vllm:DIR`` (resolved), a path, or a loaded backend whose ``model.name_or_path`` (PyTorch) or
    ``model_dir`` (CTranslate2) is a directory; None for a server or scripted judge (nothing to inspect)."""
    if judge is None:
        return None
    if isinstance(judge, (str, Path)):
        scheme, sep, rest = str(judge).partition(":")
        if not sep:
            rest = str(judge)
        elif scheme == "transformers":
            rest = rest or "embedded"
        elif scheme != "vllm":
            return None
        if rest == "embedded":
            return embedded_model_dir(cache_dir)
        p = Path(rest).expanduser()
        return p.resolve() if (p / "config.json").is_file() else None
    name = getattr(getattr(judge, "model", None), "name_or_path", None) or getattr(judge, "model_dir", None)
    return Path(name).resolve() if name and (Path(name) / "config.json").is_file() else None


def _weights(d: Path) -> list[tuple[str, int]]:
    return sorted((f.name, f.stat().st_size) for f in d.iterdir()
                  if f.is_file() and f.name.endswith((".safetensors", ".bin")))


def same_model(a, b) -> bool:
    """Whether two model directories hold the same model: the same resolved path, or equal
    weight digests (checked only when the weight files' names and sizes agree)."""
    if a is None or b is None:
        return False
    pa, pb = Path(a).expanduser().resolve(), Path(b).expanduser().resolve()
    if pa == pb:
        return True
    if not (pa / "config.json").is_file() or not (pb / "config.json").is_file():
        return False
    wa = _weights(pa)
    if not wa or wa != _weights(pb):
        return False
    return model_digest(pa) == model_digest(pb)


def refusal(judge_dir, models: dict[str, str | None]) -> str | None:
    """Why the judge at ``judge_dir`` may not judge ``models`` (``{role: dir}``, e.g. ``{"base":
    ..., "ST": ..., "candidate epoch-2": ...}``), or None when it may."""
    for role, path in models.items():
        if path is not None and same_model(judge_dir, path):
            return (f"the judge ({judge_dir}) is the {role} model ({path}): a judge is never the model "
                    "under test nor its base")
    return None


def calibration_pairs(prompts: list[dict], k: int = CALIBRATION_ITEMS) -> list[tuple[dict, str, str]]:
    """Up to ``k`` ``(prompt, good, poor)`` triples: a prompt with a reference answer, that
    reference, and another prompt's different reference (else :data:`POOR_ANSWER`)."""
    refs = [p for p in prompts if (p.get("reference") or "").strip()]
    out = []
    for i, p in enumerate(refs[:k]):
        good = p["reference"].strip()
        poor = next((q["reference"].strip() for q in refs[i + 1:] + refs[:i]
                     if q["reference"].strip() != good), POOR_ANSWER)
        out.append((p, good, poor if poor != good else POOR_ANSWER))
    return out


def status(verdicts: list[float | None], *, judge: str) -> dict:
    """A calibration status from per-pair verdicts (1 the reference won, 0 lost, 0.5 tie, None
    unparseable): ``{"judge", "used", "reason", "calibration": {"n", "ties", "unparsed",
    "reference_wins": Estimate dict}}``."""
    n = len(verdicts)
    ties = sum(v == 0.5 for v in verdicts)
    unparsed = sum(v is None for v in verdicts)
    cal = {"n": n, "ties": ties, "unparsed": unparsed,
           "reference_wins": proportion([v for v in verdicts if v is not None]).to_dict()}
    if not n:
        return {"judge": judge, "used": False, "calibration": cal,
                "reason": "no calibration items (held-out prompts with a reference answer)"}
    if ties + unparsed > UNABLE_SHARE * n:
        return {"judge": judge, "used": False, "calibration": cal,
                "reason": f"unable to judge: {ties} ties and {unparsed} unparseable verdicts on {n} "
                          f"calibration pairs (more than {UNABLE_SHARE:.0%})"}
    return {"judge": judge, "used": True, "calibration": cal,
            "reason": f"calibrated on {n} pairs ({ties} ties, {unparsed} unparseable)"}


def calibrate_rating(judge, prompts: list[dict], max_tokens: int = 512) -> dict:
    """:func:`status` of a 1-10 rating judge (a Teacher, :func:`lab_tools.eval.scoring.judge_scores`):
    the reference wins when it is rated above the poor answer."""
    pairs = calibration_pairs(prompts)
    if not pairs:
        return status([], judge=getattr(judge, "name", str(judge)))
    ps = [p for p, _, _ in pairs]
    _, rated = scoring.judge_scores(judge, ps + ps, [g for _, g, _ in pairs] + [b for _, _, b in pairs],
                            max_tokens=max_tokens)
    verdicts = []
    for good, poor in zip(rated[:len(pairs)], rated[len(pairs):]):
        g, b = good["rating"], poor["rating"]
        verdicts.append(None if g is None or b is None else 1.0 if g > b else 0.0 if g < b else 0.5)
    return status(verdicts, judge=getattr(judge, "name", str(judge)))


def calibrate_pairwise(model, tok, prompts: list[dict], *, name: str, batch_size: int = 4,
                       progress=None) -> dict:
    """:func:`status` of the next-token A/B judge (:func:`lab_tools.eval.preference.ab_preferences`,
    both orders): a tie is an exactly even preference (a judge that ignores its input).
    ``progress`` (a :class:`lab_tools.progress.Progress`, or None): moves its task
    ``judge calibration tokens`` per forward pass."""
    pairs = calibration_pairs(prompts)
    items = [preference.ABItem(context=preference.render_context([m for m in p["messages"]
                                                                  if m["role"] in ("user", "assistant")]),
                               a=good, b=poor) for p, good, poor in pairs]
    prefs = preference.ab_preferences(model, tok, items, batch_size=batch_size, progress=progress,
                                      task="judge calibration") if items else []
    verdicts = [0.5 if abs(p - 0.5) < 1e-9 else 1.0 if p > 0.5 else 0.0 for p in prefs]
    return status(verdicts, judge=name)


def calibrate_capable(judge, prompts: list[dict]) -> dict:
    """:func:`status` of a judge that answers A/B in words
    (:func:`lab_tools.eval.preference.capable_judge_win_rate`, both orders): a split or an
    unparseable reply is a tie."""
    pairs = calibration_pairs(prompts)
    if not pairs:
        return status([], judge=getattr(judge, "name", str(judge)))
    out = preference.capable_judge_win_rate(judge, [p for p, _, _ in pairs], [g for _, g, _ in pairs],
                                 [b for _, _, b in pairs])
    return status(out["verdicts"], judge=getattr(judge, "name", str(judge)))


def make_judge(spec: str | None, cache_dir, **engine):
    """A judge :class:`~lab_tools.sdg.backends.Teacher` from a backend spec; None for ``none``/empty.
    ``engine``: ``engine`` / ``compute_type`` of :func:`~lab_tools.sdg.backends.make_teacher`."""
    if not spec or spec.lower() == "none":
        return None
    return make_teacher(spec, cache_dir, **engine)

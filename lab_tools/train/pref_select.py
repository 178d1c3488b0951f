"""Which preference-phase candidate is kept, and whether it replaces ST (ALMoST's preference phase:
:mod:`lab_tools.train.pref`): each model measured once on the *selection* part of the held-out
items (:mod:`lab_tools.eval.sets`: answers, reference log-likelihood, MC accuracy), the judge that
may decide (a capable judge answering A/B in words, else the position-debiased pairwise judge;
never the base, ST or a candidate, never one unable on a calibration set:
:mod:`lab_tools.eval.judges`), else the reward model's win rate with reference log-likelihood as a
guard, else reference log-likelihood alone (:func:`select_pref`). Every figure has n and a 95%
interval; a later candidate replaces an earlier one, and pref replaces ST, only with a measurable
gain, and never with a measurable knowledge regression (:mod:`lab_tools.eval.decisions`).
"""

from __future__ import annotations

from pathlib import Path

from lab_tools.engines.load import REFERENCE_SCORER, Scorer
from lab_tools.errors import plural
from lab_tools.eval.decisions import choose, compare, GAIN, LOSS, TOO_SMALL, win_rate
from lab_tools.eval.judges import calibrate_capable, calibrate_pairwise, refusal
from lab_tools.eval.preference import capable_judge_win_rate
from lab_tools.eval.sets import describe, selection_sets
from lab_tools.eval.stats import bootstrap_mean, format_estimate
from lab_tools.feedback.evaluate import load_rm, rewards
from lab_tools.models import resolve_model
from lab_tools.progress import Progress, token_budget
from lab_tools.sdg.backends import make_teacher


def _measure(model_dir: str, prompts: list[dict], items: list[dict], sel, *, answers: bool,
             progress: Progress | None = None, scorer: Scorer = REFERENCE_SCORER) -> dict:
    """One load of ``model_dir``: ``{"answers": [str] | None (greedy, ``sel.max_new_tokens``),
    "reference": [nats/token | None per prompt], "mc": [1.0 | 0.0 per item]}``. With ``progress``,
    each part moves as tokens are decoded or scored (tasks ``<dir name> answers|reference|knowledge
    tokens``: :func:`lab_tools.progress.token_budget`). ``scorer``: the engine it runs on."""
    from lab_tools.eval.scoring import answer_prompts, mc_accuracy, reference_logprob

    name = Path(model_dir).name
    model, tok = scorer.load(model_dir)
    out: dict = {"answers": None, "reference": [], "mc": []}
    if answers and prompts:
        with token_budget(progress, f"{name} answers", len(prompts) * sel.max_new_tokens):
            out["answers"] = answer_prompts(model, tok, prompts, sel.max_new_tokens, batch_size=sel.batch_size)
    if prompts:
        out["reference"] = reference_logprob(model, tok, prompts, batch_size=sel.batch_size, progress=progress,
                                             task=f"{name} reference")
    if items:
        out["mc"] = [float(r["correct"]) for r in mc_accuracy(model, tok, items, batch_size=sel.batch_size,
                                                              progress=progress, task=f"{name} knowledge")[1]]
    return out


def _pick_judge(capable_judge, judge_dir, prompts, models: dict, sel, say,
                progress: Progress | None = None,
                scorer: Scorer = REFERENCE_SCORER) -> tuple[str | None, object, list]:
    """``(kind, judge, statuses)``: the judge that decides (``"capable"`` a Teacher, ``"pairwise"``
    the judge's model dir, loaded again when the answers are in, so it never shares memory with
    a candidate), or ``(None, None, statuses)`` when none may (never the base, ST or a candidate;
    never one unable on the calibration set: :mod:`lab_tools.eval.judges`)."""
    statuses = []
    if capable_judge is not None:
        st = calibrate_capable(capable_judge, prompts)
        statuses.append({"kind": "capable", **st})
        if st["used"]:
            return "capable", capable_judge, statuses
    if judge_dir is None:
        statuses.append({"kind": "pairwise", "used": False,
                         "reason": "no in-process pairwise judge (the judge is a server or scripted)"})
        return None, None, statuses
    why = refusal(judge_dir, models)
    if why:
        statuses.append({"kind": "pairwise", "judge": str(judge_dir), "used": False, "reason": why})
        return None, None, statuses
    model, tok = scorer.load(judge_dir)
    st = calibrate_pairwise(model, tok, prompts, name=str(judge_dir), batch_size=sel.batch_size, progress=progress)
    del model
    statuses.append({"kind": "pairwise", **st})
    if st["used"]:
        return "pairwise", judge_dir, statuses
    say(f"[pref] pairwise judge not used: {st['reason']}")
    return None, None, statuses


def select_pref(st_dir: str, candidates: list[str], data_dir: Path, judge_dir: str | None, sel, *,
                base: str | None = None, rm_verdicts=None, capable_judge=None, console=None,
                progress: Progress | None = None, scorer: Scorer = REFERENCE_SCORER) -> dict:
    """Choose among preference-phase ``candidates`` (checkpoint dirs, in training order) and decide
    whether the chosen one replaces ST (the incumbent).

    Sets: the *selection* parts of the held-out prompts and MC items (:mod:`lab_tools.eval.sets`).
    The deciding figure, in this order of preference: win rate vs ST's answers by a judge that may
    judge (``capable_judge``, a Teacher answering A/B in words; else the next-token pairwise judge
    at ``judge_dir``), never the base, ST or a candidate and never one unable on the calibration
    set (:mod:`lab_tools.eval.judges`); without one, the reward model's win rate
    (``rm_verdicts(prompts, answers_x, answers_y, progress=None) -> [1 | 0.5 | 0]``) with held-out reference
    log-likelihood as a guard; without a reward model, reference log-likelihood alone.
    Candidates: the earliest is the incumbent, a later one replaces it only with a measurable gain
    (:func:`lab_tools.eval.decisions.choose`). Pref vs ST: pref replaces ST only when its gain is
    measurable and neither the knowledge score (MC accuracy) nor, with the reward model deciding,
    reference log-likelihood regresses measurably or is too small to tell; a tie keeps ST.
    ``progress`` (a :class:`lab_tools.progress.Progress`, or None): answers, reference and MC
    scoring, the judges and the reward model move it as they decode or score tokens. ``scorer``:
    the engine the models and the pairwise judge run on (:class:`lab_tools.engines.load.Scorer`).

    Returns ``{"selected", "candidate", "kept": "pref"|"st", "reason", "candidates": {dir:
    {"win_rate", "wins", "ties", "losses", "n", "interval", "rm_win_rate", "reference",
    "mean_length"}}, "knowledge": {"st", "pref"}, "st_mean_length", "judges": [status],
    "decision": {"metric", "candidates" (choose record), "pref_vs_st", "guards"}}``.
    """
    say = console.print if console else (lambda *_: None)
    mc, prompts = selection_sets(data_dir, sel.max_mc_items, sel.max_prompts)
    if not prompts:
        reason = "no held-out selection prompts to decide on: the release keeps ST (the incumbent)"
        return {"selected": st_dir, "candidate": candidates[0], "kept": "st", "reason": reason, "candidates": {},
                "knowledge": {"st": None, "pref": None}, "st_mean_length": None, "judges": [],
                "decision": {"verdict": reason, "items": []}}
    models = {"base": base, "ST": st_dir, **{f"candidate {Path(c).name}": c for c in candidates}}
    kind, judge, statuses = _pick_judge(capable_judge, judge_dir, prompts, models, sel, say, progress, scorer)
    need_answers = kind is not None or rm_verdicts is not None
    st = _measure(st_dir, prompts, mc, sel, answers=need_answers, progress=progress, scorer=scorer)
    got = {c: _measure(c, prompts, [], sel, answers=need_answers, progress=progress, scorer=scorer)
           for c in candidates}
    table, verdicts, rm = {}, {}, {}
    if kind == "pairwise":
        judge = scorer.load(judge)
    for c in candidates:
        row = {"reference": bootstrap_mean(got[c]["reference"]).to_dict()}
        if kind == "capable":  # two A/B replies of at most 8 tokens per prompt
            with token_budget(progress, f"{Path(c).name} capable judge", 2 * 8 * len(prompts)):
                verdicts[c] = capable_judge_win_rate(judge, prompts, got[c]["answers"], st["answers"])["verdicts"]
        elif kind == "pairwise":
            from lab_tools.eval.preference import pairwise_win_rate

            verdicts[c] = pairwise_win_rate(*judge, prompts, got[c]["answers"], st["answers"],
                                            batch_size=sel.batch_size, progress=progress,
                                            task=f"{Path(c).name} pairwise judge")["verdicts"]
        if c in verdicts:
            row.update(win_rate(verdicts[c]))
        if rm_verdicts is not None:
            rm[c] = rm_verdicts(prompts, got[c]["answers"], st["answers"], progress=progress)
            row["rm_win_rate"] = win_rate(rm[c])["win_rate"]
            row["rm"] = win_rate(rm[c])
        if got[c]["answers"] is not None:
            row["mean_length"] = sum(len(a) for a in got[c]["answers"]) / len(got[c]["answers"])
        table[c] = row
        if c in verdicts:
            say(f"[pref] {Path(c).name}: win rate vs ST {row['win_rate']:.3f} "
                f"({row['wins']}-{row['ties']}-{row['losses']}, n {row['n']})")
        else:
            say(f"[pref] {Path(c).name}: reference log-likelihood {format_estimate(row['reference'])}")
    judge = None  # an in-process judge's memory is freed before the knowledge check
    if kind is not None:
        metric, scores, st_scores, prop = "win rate vs ST (judge)", verdicts, [0.5] * len(prompts), True
        by = ("capable judge (written A/B, both orders)" if kind == "capable" else
              "pairwise judge (next-token A/B, both orders)")
        how = f"win rate vs ST on {plural(len(prompts), 'held-out selection prompt')} by the {by}"
    else:
        why = "; ".join(s["reason"] for s in statuses) or "no judge configured"
        if rm:
            metric, scores, st_scores, prop = "win rate vs ST (reward model)", rm, [0.5] * len(prompts), True
            how = (f"no capable judge was used ({why}); decided by the reward model's win rate vs ST on "
                   f"{plural(len(prompts), 'held-out selection prompt')}, held-out reference log-likelihood as a guard")
        else:
            metric, prop = "reference log-likelihood (nats/token)", False
            scores, st_scores = {c: got[c]["reference"] for c in candidates}, st["reference"]
            how = (f"no capable judge was used ({why}) and no reward model; decided by held-out reference "
                   f"log-likelihood on {plural(len(prompts), 'selection prompt')}")
    picked = choose(candidates, scores, metric=metric, is_proportion=prop, items=describe(prompts))
    best = picked["chosen"]
    vs_st = {"metric": metric, **compare(st_scores, scores[best], is_proportion=prop, fixed_a=prop)}
    guards, blocked = {}, []
    knowledge = {"st": None, "pref": None}
    if mc:
        best_mc = _measure(best, [], mc, sel, answers=False, progress=progress, scorer=scorer)["mc"]
        knowledge = {"st": sum(st["mc"]) / len(mc), "pref": sum(best_mc) / len(mc)}
        guards["knowledge"] = {"metric": "MC accuracy", "items": describe(mc),
                               **compare(st["mc"], best_mc, is_proportion=True)}
    if metric.endswith("(reward model)"):
        guards["reference"] = {"metric": "reference log-likelihood (nats/token)",
                               **compare(st["reference"], got[best]["reference"], is_proportion=False)}
    for name, g in guards.items():
        if g["verdict"] == LOSS:
            blocked.append(f"the preference phase regressed the {'knowledge score' if name == 'knowledge' else name} "
                           f"(change {format_estimate(g['gain'])})")
        elif g["verdict"] == TOO_SMALL:
            blocked.append(f"the {name} set is too small to tell whether pref regresses it "
                           f"(change {format_estimate(g['gain'])})")
    if vs_st["verdict"] != GAIN:
        blocked.insert(0, f"pref's gain over ST: {vs_st['verdict']} (change {format_estimate(vs_st['gain'])})")
    kept = "st" if blocked else "pref"
    reason = how + ("; " + "; ".join(blocked) + ", so the release keeps ST (the incumbent)" if blocked else
                    f"; pref's gain over ST is measurable (change {format_estimate(vs_st['gain'])})")
    st_len = (sum(len(a) for a in st["answers"]) / len(st["answers"])) if st["answers"] else None
    return {"selected": best if kept == "pref" else st_dir, "candidate": best, "kept": kept, "reason": reason,
            "candidates": table, "knowledge": knowledge, "st_mean_length": st_len, "judges": statuses,
            "decision": {"metric": metric, "candidates": picked, "pref_vs_st": vs_st, "guards": guards,
                         "chosen": "pref" if kept == "pref" else "st"}}


def pairwise_judge_dir(spec: str | None, cfg) -> str | None:
    """The local causal LM that judges pairs by next-token probability: the judge spec's model
    when it is in-process (``transformers:PATH|embedded``), else None (a server judge gives no
    next-token probabilities through the chat API; it judges as the capable judge instead, see
    :func:`capable_judge_for`). Never the student base by default: a judge is never the base of
    the models it compares (:mod:`lab_tools.eval.judges` refuses one that is)."""
    spec = spec or cfg.generate.judge or cfg.generate.teacher
    scheme, _, rest = str(spec).partition(":")
    return str(resolve_model(rest or "embedded", cfg.cache_path)) if scheme == "transformers" else None


def capable_judge_for(spec: str | None, cfg, backend=None):
    """The judge that answers A/B in words: a Teacher for an ``openai:``/``vllm:`` judge spec
    (``backend(spec)`` when given, e.g. the build's loaded backends), else None."""
    spec = spec or cfg.generate.judge or cfg.generate.teacher
    if str(spec).split(":", 1)[0] not in ("openai", "vllm"):
        return None
    if backend is not None:
        return backend(spec)
    return make_teacher(spec, cfg.cache_path)


def rm_verdicts_fn(rm_dir: str | None, max_length: int = 1024):
    """``f(prompts, answers_x, answers_y, progress=None) -> [1 | 0.5 | 0 per prompt]``: whether the
    reward model at ``rm_dir`` scores x above y (0.5 for equal rewards), or None without one.
    Summarise with :func:`lab_tools.eval.decisions.win_rate`. The RM is loaded on the first call,
    so it takes no GPU memory while the policy trains. ``progress`` (a
    :class:`lab_tools.progress.Progress`): the scored tokens move its task ``reward model tokens``."""
    if not rm_dir:
        return None
    loaded: list = []

    def verdicts(prompts, xs, ys, progress=None):
        if not loaded:
            loaded.extend(load_rm(rm_dir))
        model, tok = loaded
        convs = [[m for m in p["messages"] if m["role"] != "system"] for p in prompts]
        rx = rewards(model, tok, [c + [{"role": "assistant", "content": x}] for c, x in zip(convs, xs)],
                     max_length=max_length, progress=progress)
        ry = rewards(model, tok, [c + [{"role": "assistant", "content": y}] for c, y in zip(convs, ys)],
                     max_length=max_length, progress=progress)
        return [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in zip(rx, ry)]
    return verdicts

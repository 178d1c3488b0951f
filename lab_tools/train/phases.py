"""Phased training KT/1 -> KT/2 -> ST with replay buffers and checkpoint selection (LAB 3.3, table 1).

| phase | own data  | replay buffer     | checkpoint selection (selection part of the held-out items)      |
|-------|-----------|-------------------|------------------------------------------------------------------|
| kt1   | kt1.jsonl | none              | knowledge score: MC accuracy on heldout_mc                       |
| kt2   | kt2.jsonl | kt1               | knowledge score: MC accuracy on heldout_mc                       |
| st    | st.jsonl  | kt1 and kt2       | judge score (MT-Bench 1-10) on heldout_prompts, or held-out      |
|       |           |                   | reference log-likelihood when no judge may rate                  |

Each phase starts from the checkpoint selected after the previous one. The sets are the
*selection* part of the held-out items, every leaf drawn in turn (:mod:`lab_tools.eval.sets`);
the earliest checkpoint is the incumbent and a later one replaces it only when its gain's 95%
interval lies above 0 (:mod:`lab_tools.eval.decisions`; LAB: avoid overtraining). The manifest
records each decision: item ids and leaves, each candidate's score with n and interval, the
comparisons and the choice. Everything is written under ``out_dir``:
``manifest.json`` (rewritten atomically after every phase, so a resumed run skips finished
phases), ``metrics.csv``, ``loss.png``, and ``<phase>/epoch-N`` checkpoints. The manifest names
checkpoints relative to its own folder (``st/epoch-1``: :mod:`lab_tools.runpaths`), so the run
folder can be copied or moved, and records under ``weights`` each checkpoint's file digests taken
when it was written (:mod:`lab_tools.weights`), which ``lab release`` verifies.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

from lab_tools.atomic import atomic_open
from lab_tools.config import load_config
from lab_tools.engines.load import REFERENCE_SCORER, Scorer
from lab_tools.errors import LabError, plural
from lab_tools.eval.decisions import choose
from lab_tools.eval.heldout import read_mc_items, read_prompts
from lab_tools.eval.judges import calibrate_rating, judge_model_dir, refusal
from lab_tools.eval.sets import describe, selection_sets
from lab_tools.runpaths import portable, record, resolve
from lab_tools.sdg.backends import make_teacher
from lab_tools.train.config import PHASES, Preset, load_preset
from lab_tools.train.data import read_samples, tokenize_dataset
from lab_tools.train.launch import process_group
from lab_tools.train.loop import train_phase, write_json
from lab_tools.train.plot import plot_losses
from lab_tools.train.tracking import check_tracker
from lab_tools.weights import file_digests

REPLAY_SOURCES = {"kt1": (), "kt2": ("kt1",), "st": ("kt1", "kt2")}
SELF_PLAY_FILE = "selfplay.jsonl"  # RM-guided self-play demonstrations, trained in ST
METRIC_FIELDS = ["phase", "epoch", "step", "loss", "lr", "tokens_per_s", "real_token_fraction", "samples"]


@dataclass
class TrainResult:
    """Outcome of :func:`train_phases`: the output dir, the selected final model (HF dir) and the
    manifest written to ``out_dir/manifest.json``."""
    out_dir: Path
    selected: Path
    manifest: dict


def draw_replay(own_count: int, fraction: float, sources: dict[str, list], seed: int) -> dict[str, list]:
    """Replay buffer: ``round(fraction * own_count)`` samples drawn from earlier phases' data,
    split across sources in proportion to their sizes, without replacement while a source lasts
    (then cycling through it again). Deterministic for a given ``seed``."""
    want = round(fraction * own_count)
    total = sum(len(v) for v in sources.values())
    out: dict[str, list] = {name: [] for name in sources}
    if want <= 0 or total == 0:
        return out
    rng = random.Random(seed)
    names = [n for n in sources if sources[n]]
    shares = {n: want * len(sources[n]) // total for n in names}
    # largest remainder first, so a small source is not rounded away
    by_rest = sorted(names, key=lambda n: -(want * len(sources[n]) % total))
    for n in by_rest[: want - sum(shares.values())]:
        shares[n] += 1
    for n in names:
        pool = list(sources[n])
        picked = []
        while len(picked) < shares[n]:
            rng.shuffle(pool)
            picked += pool[: shares[n] - len(picked)]
        out[n] = picked
    return out


def stage_console(progress: bool):
    """The console a training stage prints its progress lines to: stderr, silent unless
    ``progress``, no markup (contributor text is printed as is)."""
    from rich.console import Console

    return Console(stderr=True, quiet=not progress, markup=False, highlight=False)


def _cached(phase_dir: Path, key: str) -> dict:
    """The per-checkpoint scores of ``phase_dir/scores.json`` when they were made on the set
    ``key`` (item ids + what was scored), else an empty cache for that key."""
    f = phase_dir / "scores.json"
    try:
        cache = json.loads(f.read_text(encoding="utf-8")) if f.is_file() else {}
    except (OSError, ValueError):
        cache = {}
    return cache if cache.get("key") == key else {"key": key, "per_item": {}}


def _st_judge(judge_factory, items: list[dict], base: str | None, candidates: list[str], sel, cache: dict):
    """``(judge or None, status)``: the rating judge ST selection may use, after the identity check
    and the calibration of :mod:`lab_tools.eval.judges` (its status is cached with the scores)."""
    if judge_factory is None:
        return None, {"used": False, "reason": "the judge cannot rate (generate.model_judges is false)"}
    where = getattr(judge_factory, "model_dir", None)
    why = refusal(where() if where else None,
                  {"base": base, **{f"candidate {Path(c).name}": c for c in candidates}})
    if why:
        return None, {"used": False, "reason": why}
    judge = judge_factory()
    name = getattr(judge, "name", str(judge))
    old = cache.get("judge") or {}
    judge_status = old if old.get("calibration") and old.get("judge") == name else \
        calibrate_rating(judge, items, max_tokens=sel.judge_max_tokens)
    return (judge if judge_status["used"] else None), judge_status


def _select(phase: str, checkpoints: list[str], preset: Preset, data_dir: Path, phase_dir: Path,
            judge_factory, console, base: str | None = None,
            scorer: Scorer = REFERENCE_SCORER) -> tuple[str, dict, str, dict]:
    """Choose a phase's checkpoint; returns ``(selected, {checkpoint: score}, method, decision)``.

    The set is the *selection* part of the held-out items (:mod:`lab_tools.eval.sets`: every
    leaf, round-robin, fixed seed; never the test part that released figures use). KT/1 and KT/2:
    MC accuracy (per item right/wrong); ST: the judge's 1-10 rating when a judge may rate (not
    the base nor a candidate, and not unable on the calibration set: :mod:`lab_tools.eval.judges`),
    else held-out reference log-likelihood (nats/token). The earliest candidate is the incumbent; a
    later one replaces it only with a measurable gain (:func:`lab_tools.eval.decisions.choose`).
    ``decision`` is the record the manifest keeps (item ids and leaves, every candidate's score
    with n and 95% interval, each comparison, the choice). Per-item scores are cached in
    ``phase_dir/scores.json`` (keyed by the set) so a resumed run does not redo them.
    ``judge_factory`` None: the judge cannot rate (``generate.model_judges`` false). ``scorer``:
    the engine the candidates are scored on (:class:`lab_tools.engines.load.Scorer`; the cache
    key names it)."""
    from lab_tools.eval.scoring import answer_prompts, judge_scores, mc_accuracy, reference_logprob

    sel = preset.selection
    knowledge = phase in ("kt1", "kt2")
    mc, prompts = selection_sets(data_dir, sel.max_mc_items, sel.max_prompts)
    items = mc if knowledge else prompts
    if not items:
        what = "multiple-choice items" if knowledge else "skill prompts"
        reason = f"last epoch (no held-out {what} to select on)"
        return checkpoints[-1], {}, reason, {"chosen": checkpoints[-1], "verdict": reason, "items": []}
    candidates = checkpoints[-sel.max_checkpoints:]
    if len(candidates) == 1 and not sel.score_single:
        reason = "only candidate (not scored: selection.score_single is false)"
        return candidates[0], {}, reason, {"chosen": candidates[0], "verdict": reason, "items": describe(items)}
    ids = describe(items)
    tag = scorer.tag(candidates[0])
    cache = _cached(phase_dir, json.dumps([phase, ids, tag] if tag else [phase, ids]))
    judge, judge_status = (None, None) if knowledge else _st_judge(judge_factory, items, base, candidates,
                                                                   sel, cache)
    if judge_status is not None:
        cache["judge"] = judge_status
    metric = "mc_accuracy" if knowledge else ("judge" if judge is not None else "reference")
    for ckpt in candidates:
        got = cache["per_item"].setdefault(ckpt, {})
        if metric in got:
            continue
        model, tok = scorer.load(ckpt)
        if knowledge:
            got["mc_accuracy"] = [float(r["correct"]) for r in mc_accuracy(model, tok, items,
                                                                            batch_size=sel.batch_size)[1]]
        else:
            if "reference" not in got:
                got["reference"] = reference_logprob(model, tok, items, batch_size=sel.batch_size)
            if judge is not None:
                answers = answer_prompts(model, tok, items, sel.max_new_tokens, batch_size=sel.batch_size)
                del model  # the judge may be an in-process model too
                got["judge"] = [r["rating"] for r in judge_scores(judge, items, answers,
                                                                  max_tokens=sel.judge_max_tokens)[1]]
        write_json(phase_dir / "scores.json", cache)
    decision = choose(candidates, {c: cache["per_item"][c][metric] for c in candidates}, metric=metric,
                      is_proportion=knowledge, items=ids)
    if judge_status is not None:
        decision["judge"] = judge_status
    for c in candidates:
        console.print(f"[{phase}] {Path(c).name}: {metric} {decision['candidates'][c]['value']}")
    leaves = len({i["leaf"] for i in ids})
    rule = ("; a later checkpoint replaces an earlier one only when its gain's 95% interval lies "
            f"above 0 ({decision['verdict']})")
    if knowledge:
        method = (f"knowledge score: MC accuracy on {plural(len(items), 'held-out selection item')} of "
                  f"{plural(leaves, 'leaf')}")
    elif judge is not None:
        method = (f"judge score (1-10) on {plural(len(items), 'held-out selection prompt')} of "
                  f"{plural(leaves, 'leaf')}")
    else:
        method = (f"held-out reference log-likelihood (nats/token) on {plural(len(items), 'selection prompt')} of "
                  f"{plural(leaves, 'leaf')}; no judge was used: {judge_status['reason']}")
    return decision["chosen"], {c: decision["candidates"][c]["value"] for c in candidates}, method + rule, decision


class _JudgeFactory:
    """Builds the ST judge on first use (a Teacher, a backend spec, or None: the ``lab.yaml``
    judge, else the teacher) and names its local model directory for the identity check
    (:func:`lab_tools.eval.judges.judge_model_dir`) without loading it."""

    def __init__(self, judge, cache_dir):
        self.judge, self.cache_dir = judge, cache_dir

    def spec(self):
        if self.judge is not None:
            return self.judge
        cfg = load_config(Path("."))
        return cfg.generate.judge or cfg.generate.teacher

    def model_dir(self):
        return judge_model_dir(self.spec(), self.cache_dir)

    def __call__(self):
        spec = self.spec()
        if not isinstance(spec, str):
            return spec
        return make_teacher(spec, self.cache_dir)


def _default_judge_factory(judge, cache_dir):
    return _JudgeFactory(judge, cache_dir)


def write_metrics(out: Path, rows: list[dict]) -> Path:
    """Write ``metrics.csv`` atomically (one row per optimizer step of every phase)."""
    path = out / "metrics.csv"
    with atomic_open(path, newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=METRIC_FIELDS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def trained_phases(manifest: dict) -> list[str]:
    """The phases a training manifest records as trained (an entry with optimizer steps). Empty
    when every phase was skipped: the manifest's ``selected`` model is then the untrained base."""
    return [p for p, e in (manifest.get("phases") or {}).items() if (e or {}).get("steps")]


def train_phases(data_dir, model, out_dir, *, preset: str | Path | Preset = "tiny-cpu",
                 phases=PHASES, resume: bool = False, judge=None, progress: bool = True,
                 cache_dir=None, allow_untrained: bool = False, judge_rates: bool = True,
                 report_to: str = "none", scorer: Scorer = REFERENCE_SCORER) -> TrainResult:
    """Run the phases in order (LAB 3.3) and return a :class:`TrainResult`.

    ``data_dir``: a dir written by ``lab generate`` (kt1/kt2/st.jsonl, heldout_mc.jsonl,
    heldout_prompts.jsonl). ``model``: ``embedded`` or a local HF dir. ``preset``: a name under
    ``training/presets``, a YAML path or a :class:`Preset`. ``judge``: a Teacher, a backend spec,
    or None (the ``lab.yaml`` judge, else the teacher), built only if ST selection needs it;
    ``judge_rates`` False (``generate.model_judges`` off): no judge, ST is selected by held-out
    reference log-likelihood. ``report_to``: experiment tracker of every phase (``train.report_to``:
    ``tensorboard`` writes ``out_dir/tensorboard/<phase>``; :mod:`lab_tools.train.tracking`).
    ``scorer``: the engine checkpoint selection scores on (:func:`lab_tools.engines.load.scorer_of`
    gives ``generate.engine``'s; default transformers).
    A phase with no samples of its own is skipped (recorded) and the model passes through; when
    no phase would train (a run that learned nothing, DESIGN.md Trust boundary) it is refused
    unless ``allow_untrained``.

    Raises:
        LabError: unknown phase, out_dir holding a run without ``resume``, a resumed run with
        different hyper-parameters, unreadable data, no phase with samples of its own (checked
        before anything is written) or none trained, without ``allow_untrained``.
    """
    from accelerate.utils import broadcast_object_list
    from lab_tools.models import load_tokenizer, resolve_model
    preset = load_preset(preset)
    check_tracker(report_to)  # a tracker that is not installed fails before anything loads
    phases = tuple(phases)
    bad = [p for p in phases if p not in PHASES]
    if bad or not phases:
        raise LabError(f"unknown phase(s) {bad} (expected some of {', '.join(PHASES)})", field="phases")
    phases = tuple(p for p in PHASES if p in phases)  # always in LAB order
    # absolute while running; the manifest records paths relative to out (lab_tools.runpaths)
    data_dir, out = Path(data_dir), Path(os.path.abspath(out_dir))
    if not data_dir.is_dir():
        raise LabError(f"data dir not found: {data_dir}", field="data")
    if not allow_untrained and not any(read_samples(data_dir / f"{p}.jsonl") for p in phases):
        raise LabError(f"no phase has samples of its own ({', '.join(f'{p}.jsonl' for p in phases)} are "
                       "empty or missing): training would only pass the untrained base model on. Check "
                       "what `lab generate` reported (teacher errors, dataset_card.json), or pass "
                       "--allow-untrained", file=str(data_dir))
    state = process_group()  # before the manifest check below, which every rank makes
    mpath = out / "manifest.json"
    base = str(resolve_model(model, cache_dir))
    # every input is checked (tokenizer, held-out rows, chat template on each sample) before any
    # manifest is written, and before a phase trains for minutes only to fail at selection
    tok = load_tokenizer(base)
    read_mc_items(data_dir / "heldout_mc.jsonl")
    read_prompts(data_dir / "heldout_prompts.jsonl")
    data, dropped = {}, {}
    for name in PHASES:
        data[name], dropped[name] = tokenize_dataset(
            tok, read_samples(data_dir / f"{name}.jsonl"), preset.phase(name).max_seq_len, source=name)
    # RM-guided self-play demonstrations (multi-turn) are ST data of their own source (ALMoST 3.2)
    selfplay, dropped_selfplay = tokenize_dataset(tok, read_samples(data_dir / SELF_PLAY_FILE),
                                                  preset.phase("st").max_seq_len, source="selfplay")
    data["st"] += selfplay
    dropped["st"] += dropped_selfplay
    manifest = {"base_model": base, "data": record(data_dir, out), "preset": preset.name,
                "hyperparameters": preset.to_dict(), "phases": {}, "selected": None, "weights": {}}
    if mpath.is_file():
        if not resume:
            raise LabError(f"{out} already holds a training run; pass --resume to continue it "
                           "or choose another --out", field="out")
        old = json.loads(mpath.read_text(encoding="utf-8"))
        if old.get("hyperparameters") != manifest["hyperparameters"] or old.get("base_model") != base:
            raise LabError("cannot resume: the preset or base model differs from the saved run",
                           file=str(mpath))
        manifest = old
        manifest.setdefault("weights", {})
    out.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()  # no rank may find the manifest rank 0 is about to write
    manifest["world_size"] = state.num_processes
    if state.is_main_process:  # written first, so a second run without --resume is refused
        write_json(mpath, manifest)
    console = stage_console(progress and state.is_main_process)
    console.print(f"world size {state.num_processes} ({state.distributed_type})")
    judge_factory = _default_judge_factory(judge, cache_dir) if judge_rates else None

    current, all_rows = base, []
    for phase in phases:
        entry = manifest["phases"].get(phase)
        if entry and entry.get("selected"):
            current = str(resolve(entry["selected"], out))
            all_rows += _rows_of(out / phase)
            continue
        if entry and entry.get("skipped"):
            continue
        cfg = preset.phase(phase)
        own = data[phase]
        if not own:
            manifest["phases"][phase] = {"skipped": "no samples", "dropped_too_long": dropped[phase]}
            console.print(f"[{phase}] skipped: no samples")
            continue
        replay = draw_replay(len(own), cfg.replay_fraction,
                             {s: data[s] for s in REPLAY_SOURCES[phase]}, preset.seed + PHASES.index(phase))
        samples = own + [t for src in replay.values() for t in src]
        extra = {"selfplay": len(selfplay)} if phase == "st" and selfplay else {}
        used = {phase: len(own) - sum(extra.values()), **extra,
                **{f"replay_{s}": len(v) for s, v in replay.items()}}
        console.print(f"[{phase}] samples {used}; dropped too long: {dropped[phase]}")
        phase_dir = out / phase
        t0 = time.perf_counter()
        run = train_phase(current, samples, phase, cfg, preset, phase_dir, resume=True,
                          progress=progress and state.is_main_process, report_to=report_to)
        t1 = time.perf_counter()
        choice, failure = [None], None
        if state.is_main_process:  # the other ranks wait in broadcast_object_list
            try:
                choice = [_select(phase, run.checkpoints, preset, data_dir, phase_dir, judge_factory, console,
                              base=base, scorer=scorer)]
            except Exception as exc:  # the waiting ranks must stop too, not wait forever
                failure, choice = exc, [f"checkpoint selection failed on rank 0: {exc}"]
        broadcast_object_list(choice)
        if failure is not None:
            raise failure
        if isinstance(choice[0], str):
            raise LabError(choice[0], field="selection")
        selected, scores, method, decision = choice[0]
        manifest["phases"][phase] = portable({
            "samples": used, "dropped_too_long": dropped[phase], "steps": run.steps,
            "epochs": cfg.epochs, "world_size": run.world_size, "checkpoints": run.checkpoints,
            "scores": scores,
            "selection": method, "decision": decision, "selected": selected,
            "seconds": {"train": round(t1 - t0, 2), "selection": round(time.perf_counter() - t1, 2)}}, out)
        # the digests taken when each checkpoint was written (a run.json of an older version has
        # none: taken now); lab release verifies the selected one (lab_tools.weights)
        if state.is_main_process:
            manifest["weights"].update(portable({c: run.digests.get(c) or file_digests(c)
                                                 for c in run.checkpoints}, out))
        current = selected
        all_rows += run.rows
        if state.is_main_process:
            write_json(mpath, manifest)
            console.print(f"[{phase}] selected {selected} ({method})")
    if not allow_untrained and not trained_phases(manifest):
        raise LabError("no phase trained (every phase was skipped, see its 'skipped' entry): the "
                       "result would be the untrained base model; pass --allow-untrained to accept it",
                       file=str(mpath))
    manifest["selected"] = record(current, out)
    if state.is_main_process:
        write_json(mpath, manifest)
        write_metrics(out, all_rows)
        plot_losses(all_rows, out / "loss.png")
    return TrainResult(out_dir=out, selected=Path(current), manifest=manifest)


def _rows_of(phase_dir: Path) -> list[dict]:
    run = phase_dir / "run.json"
    return json.loads(run.read_text(encoding="utf-8"))["rows"] if run.is_file() else []

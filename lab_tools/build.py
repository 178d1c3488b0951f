"""`lab build`: the main job, validate → licenses → generate → train → evaluate → release; with
``feedback.enabled`` also comparisons → reward_model → self_play (before train) and pref (after
train), alignment (after evaluate): ALMoST's synthetic feedback.

Incremental: each stage records a fingerprint of its inputs in ``OUT/build_state.json`` and is
skipped when the fingerprint and its outputs are unchanged since the last successful run:

| stage    | fingerprint (sha256 over)                                                    |
|----------|------------------------------------------------------------------------------|
| validate | every file under the taxonomy root (names + bytes)                           |
| licenses | knowledge leaves' content hashes + license allowlist                          |
| generate | all leaves' content hashes + generate settings (teacher, judge, counts, ...) (+ the previous build's reward model, comparisons and threshold with feedback.rm_scores_sdg) |
| comparisons | (feedback.enabled) leaves + phase datasets + feedback settings, see feedback/stages.py |
| reward_model | (feedback.enabled) comparisons.jsonl + rm_* settings + RM base + Static HHH file |
| self_play | (feedback.self_play) st.jsonl + reward model + teacher + sp_* settings          |
| train    | phase datasets (+ selfplay.jsonl) + held-out files + preset (name and file) + student + judge |
| pref     | (feedback.enabled) ST-selected model + comparisons + preset + reward model + judge |
| evaluate | selected model files + held-out files + judge + evaluation caps + student     |
| alignment | (feedback.enabled) base/ST/pref models + held-out files + reward model + Static HHH + judge |
| release  | training manifest + eval.json + dataset card + provenance (commit, leaves)    |

A skipped stage loads no model, so a build with nothing changed takes seconds. ``lab generate``
is incremental by itself (content-addressed per-leaf cache), so after editing one leaf only that
leaf is regenerated. Large files are hashed once per (size, mtime) and memoized in the state.

Resumable: a train stage interrupted with unchanged inputs continues from its last checkpoint with
``--resume`` (otherwise it starts over). A failed stage stops the build with a clear message; all
outputs produced so far are kept, and the traceback of an unexpected error goes to
``OUT/build.log``.

Layout of OUT: ``run.json`` (provenance), ``data/`` (generate; ``comparisons.jsonl`` and
``selfplay.jsonl`` when feedback is on), ``rm/`` (the reward model), ``train/`` (``pref/`` inside), ``eval/``,
``release/``, ``build_state.json``, ``build.log``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import click

from lab_tools.atomic import write_json_atomic
from lab_tools.errors import LabError, plural
from lab_tools.plan import plan_options

STAGES = ("validate", "licenses", "generate", "comparisons", "reward_model", "self_play", "train", "pref",
          "evaluate", "alignment", "release")
# run only when lab.yaml enables feedback (ALMoST: synthetic comparisons, the reward model,
# RM-guided self-play when feedback.self_play, the preference phase and its evaluation)
FEEDBACK_STAGES = ("comparisons", "reward_model", "self_play", "pref", "alignment")
# stages that load a model to train it: no in-process teacher may hold the GPU then (one GPU
# owner at a time, lab_tools/sdg/backends.py); _Build.release_gpu_backends runs before each
TRAINING_STAGES = ("reward_model", "train", "pref")
STATE_FILE = "build_state.json"
# Evaluation caps of the build: a CPU run must stay within minutes (`lab evaluate` can go further).
# The judge's prompt (MT-Bench template + question, context, reference and answer) is long, so
# judging dominates: on 2 CPU cores the 135M judge takes ~5-10 s per answer, most of it prefill.
# 10 prompts give each skill leaf of a ten-leaf taxonomy one prompt (round-robin over leaves).
EVAL_CAPS = {"max_mc": 60, "max_prompts": 10, "max_new_tokens": 64, "judge_max_tokens": 48}
_SKIP_DIRS = {".git", "__pycache__", ".venv"}


@dataclass
class StageResult:
    """One stage of one build: ``status`` ``ran`` / ``skipped`` / ``failed`` / ``not run``;
    ``seconds`` wall time; ``summary`` one line for the table; ``data`` stage facts kept in the state."""
    name: str
    status: str = "not run"
    seconds: float = 0.0
    summary: str = ""
    data: dict = field(default_factory=dict)


@dataclass
class BuildResult:
    """A finished build: per-stage results, the release directory and the total wall time (s)."""
    out_dir: Path
    stages: list[StageResult]
    release_dir: Path | None
    seconds: float


# ----------------------------------------------------------------------------- fingerprints

def _sha(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class Hasher:
    """sha256 of files, memoized by (path, size, mtime_ns) across builds (kept in the state)."""

    def __init__(self, memo: dict | None = None):
        self.memo = memo or {}

    def file(self, path: Path) -> str | None:
        """sha256 hex of ``path``, or None when it does not exist."""
        if not path.is_file():
            return None
        st = path.stat()
        key = str(path.resolve())
        hit = self.memo.get(key)
        if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
            return hit[2]
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        self.memo[key] = [st.st_size, st.st_mtime_ns, h.hexdigest()]
        return h.hexdigest()

    def files(self, paths) -> dict[str, str | None]:
        """``{name: sha256 or None}`` for each path."""
        return {Path(p).name: self.file(Path(p)) for p in paths}

    def tree(self, root: Path, tops=None) -> str:
        """One digest over every file under ``root`` (or only its ``tops`` sub-folders): relative
        names + bytes, .git and virtual environments excluded."""
        rows = []
        for top in (tops or ["."]):
            for dirpath, dirnames, filenames in os.walk(root / top):
                dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
                for f in sorted(filenames):
                    p = Path(dirpath) / f
                    rows.append((p.relative_to(root).as_posix(), self.file(p)))
        return _sha(rows)

    def model(self, path: Path) -> str:
        """Digest of a model directory's files (weights, config, tokenizer)."""
        return _sha(sorted(self.files(p for p in path.iterdir() if p.is_file()).items()))


# ----------------------------------------------------------------------------- state

def _write_json(path: Path, data) -> None:
    write_json_atomic(path, data, indent=1, default=str, newline=True)


def load_state(out: Path) -> dict:
    """``OUT/build_state.json`` (``{"stages": {name: {...}}, "hash_memo": {...}}``), empty when absent
    or unreadable (a torn state only costs a rebuild)."""
    try:
        state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
        if isinstance(state, dict) and isinstance(state.get("stages"), dict):
            return state
    except (OSError, ValueError):
        pass
    return {"stages": {}, "hash_memo": {}}


# ----------------------------------------------------------------------------- the build

class _Build:
    """The state of one `lab build` run; one method per stage returning ``(summary, data)``."""

    def __init__(self, root: Path, out: Path, cfg, *, resume: bool, progress: bool, console):
        self.root, self.out, self.cfg = root, out, cfg
        self.resume, self.progress, self.console = resume, progress, console
        self.data_dir, self.train_dir = out / "data", out / "train"
        self.eval_dir, self.release_dir = out / "eval", out / "release"
        self.state = load_state(out)
        self.hasher = Hasher(self.state.get("hash_memo"))
        self._backends: dict[str, object] = {}
        from lab_tools.taxonomy.leaf import iter_leaf_paths, leaf_hash

        self.leaf_paths = iter_leaf_paths(root)
        self.leaf_hashes = {p: leaf_hash(root / p) for p in self.leaf_paths}
        self.judge_spec = cfg.generate.judge or cfg.generate.teacher

    def backend(self, spec: str):
        """A teacher/judge backend, built once per build (loading a model is the slow part) with
        the ``generate`` settings (:func:`lab_tools.sdg.backends.teacher_options`); an in-process
        ``vllm:`` one is a :class:`~lab_tools.sdg.backends.LazyTeacher`, its engine started on
        first use (e.g. the pref stage's judge after the policy has trained, not before)."""
        if spec not in self._backends:
            from lab_tools.sdg.backends import LazyTeacher, make_teacher, teacher_options

            opts, cache = teacher_options(self.cfg.generate), self.cfg.cache_path
            self._backends[spec] = LazyTeacher(spec, lambda: make_teacher(spec, cache, **opts), cache) \
                if str(spec).startswith("vllm:") else make_teacher(spec, cache, **opts)
        return self._backends[spec]

    def release_gpu_backends(self) -> list[str]:
        """Close every loaded teacher that holds a GPU (in-process vLLM, a transformers model on
        CUDA: :func:`lab_tools.sdg.backends.release_gpu_teachers`) before a stage that trains
        loads its model; a later stage that needs one builds it again. Returns the specs closed."""
        from lab_tools.sdg.backends import release_gpu_teachers

        gone = release_gpu_teachers(self._backends)
        if gone:
            self.console.print(f"closed {', '.join(gone)}: the GPU is the training stage's", style="dim",
                               markup=False, highlight=False)
        return gone

    def save(self) -> None:
        self.state["hash_memo"] = self.hasher.memo
        _write_json(self.out / STATE_FILE, self.state)

    # --- fingerprints and output checks, per stage

    def fingerprint(self, name: str) -> str:
        h, cfg = self.hasher, self.cfg
        heldout = h.files([self.data_dir / "heldout_mc.jsonl", self.data_dir / "heldout_prompts.jsonl"])
        if name == "validate":
            from lab_tools.taxonomy.leaf import KINDS

            return _sha(name, h.tree(self.root, [k for k in KINDS if (self.root / k).is_dir()]))
        if name == "licenses":
            return _sha(name, self.leaf_hashes, sorted(cfg.licenses.allowlist))
        if name == "generate":
            rm = self._sdg_rm()  # pair evaluation by reward: the previous build's RM and its baseline
            scoring = None if rm is None else [h.model(rm), h.file(self.data_dir / "comparisons.jsonl"),
                                               cfg.feedback.rm_score_threshold, cfg.feedback.rm_max_length]
            return _sha(name, self.leaf_hashes, dataclasses.asdict(cfg.generate), dataclasses.asdict(cfg.documents),
                        *([scoring] if scoring else []))
        if name == "train":
            from lab_tools.train.config import preset_path

            preset_file = preset_path(cfg.train.preset)
            data = h.files(self.data_dir / f"{p}.jsonl" for p in ("kt1", "kt2", "st", "selfplay"))
            return _sha(name, data, heldout, cfg.train.preset, h.file(preset_file), self._student_id(),
                        self.judge_spec, cfg.generate.model_judges)
        if name == "evaluate":
            selected = self._selected()
            return _sha(name, h.model(selected) if selected else None, heldout, self.judge_spec,
                        self._student_id(), EVAL_CAPS, cfg.generate.model_judges)
        if name in FEEDBACK_STAGES:
            from lab_tools.feedback.stages import fingerprint_parts

            return _sha(name, fingerprint_parts(self, name))
        if name == "release":
            prov = {k: v for k, v in self._provenance().items() if k != "created"}
            files = h.files([self.train_dir / "manifest.json", self.eval_dir / "eval.json",
                             self.data_dir / "dataset_card.json", self.train_dir / "loss.png",
                             self.out / "rm" / "rm_eval.json", self.eval_dir / "alignment.json"])
            return _sha(name, files, prov)
        raise ValueError(name)

    def outputs_present(self, name: str) -> bool:
        if name in ("validate", "licenses"):
            return True
        if name == "generate":
            return all((self.data_dir / f"{p}.jsonl").is_file() for p in ("kt1", "kt2", "st"))
        if name == "train":
            return self._selected() is not None
        if name == "comparisons":
            return (self.data_dir / "comparisons.jsonl").is_file()
        if name == "reward_model":
            return (self.out / "rm" / "config.json").is_file() and (self.out / "rm" / "rm_eval.json").is_file()
        if name in ("self_play", "pref", "alignment"):
            from lab_tools.feedback.stages import outputs_present

            return outputs_present(self, name)
        if name == "evaluate":
            return (self.eval_dir / "eval.json").is_file()
        return (self.release_dir / "SHA256SUMS").is_file() and (self.release_dir / "release.json").is_file()

    def trained_rm(self) -> Path | None:
        """``OUT/rm`` when it holds a trained reward model (``config.json``), else None."""
        rm = self.out / "rm"
        return rm if (rm / "config.json").is_file() else None

    def _sdg_rm(self) -> Path | None:
        """The reward model that scores SDG samples: ``OUT/rm`` from a previous build when
        ``feedback.rm_scores_sdg`` is on (None on the first build: the rule score ranks)."""
        return self.trained_rm() if self.cfg.feedback.rm_scores_sdg else None

    def _student_id(self) -> str:
        spec = self.cfg.train.student
        if spec == "embedded":
            return spec
        p = Path(spec)
        return self.hasher.model(p) if p.is_dir() else spec

    def _selected(self) -> Path | None:
        try:
            sel = json.loads((self.train_dir / "manifest.json").read_text(encoding="utf-8")).get("selected")
        except (OSError, ValueError):
            return None
        return Path(sel) if sel and (Path(sel) / "config.json").is_file() else None

    def _provenance(self) -> dict:
        if not hasattr(self, "_prov"):
            from lab_tools.release.release import provenance

            self._prov = provenance(self.root, self.cfg)
        return self._prov

    # --- the stages

    def validate(self):
        from lab_tools.taxonomy.validate import render, validate_tree

        findings = validate_tree(self.root)
        errors = [f for f in findings if f.is_error]
        if errors:
            shown = render(errors[:20]) + ("\n..." if len(errors) > 20 else "")
            raise LabError(f"{plural(len(errors), 'validation error')} (run `lab taxonomy validate`):\n{shown}")
        warnings = len(findings)
        return f"{plural(len(self.leaf_paths), 'leaf')}, {plural(warnings, 'warning')}", {"leaves": len(self.leaf_paths),
                                                                       "warnings": warnings}

    def licenses(self):
        from lab_tools.taxonomy.licenses import check_licenses
        from lab_tools.taxonomy.validate import render

        findings = check_licenses(self.root, self.leaf_paths, list(self.cfg.licenses.allowlist))
        errors = [f for f in findings if f.is_error]
        if errors:
            raise LabError(f"{plural(len(errors), 'license error')} (run `lab taxonomy licenses`):\n{render(errors)}")
        n = sum(p.startswith("knowledge/") for p in self.leaf_paths)
        return f"{plural(n, 'knowledge document')} allowed, {plural(len(findings), 'warning')}", {"warnings": len(findings)}

    def generate(self):
        from lab_tools.sdg.pipeline import generate_dataset

        scorer, rm = None, self._sdg_rm()
        if rm is not None:
            from lab_tools.feedback.scorer import rm_scorer

            fb = self.cfg.feedback
            scorer = rm_scorer(rm, threshold=fb.rm_score_threshold, max_length=fb.rm_max_length,
                               comparisons=self.data_dir / "comparisons.jsonl")
        # teacher/judge None: generate_dataset builds them only if some leaf is not cached
        rep = generate_dataset(self.root, self.leaf_paths, self.data_dir, self.cfg, progress=self.progress,
                               scorer=scorer)
        failed = {s.leaf: s.error for s in rep.leaves if s.error}
        if failed:
            shown = "\n".join(f"  {leaf}: {err}" for leaf, err in sorted(failed.items()))
            raise LabError(f"{plural(len(failed), 'leaf')} produced no data:\n{shown}\n"
                           f"(the other leaves' data is kept in {self.data_dir} and in the SDG cache)")
        if rep.failure():  # no leaf failed, yet nothing to train on
            raise LabError(rep.failure())
        fresh = sorted(s.leaf for s in rep.leaves if not s.cached)
        counts = {p: _count_lines(self.data_dir / f"{p}.jsonl") for p in ("kt1", "kt2", "st")}
        return (f"samples kt1 {counts['kt1']}, kt2 {counts['kt2']}, st {counts['st']}; "
                f"{plural(len(fresh), 'leaf')} generated, {len(rep.leaves) - len(fresh)} cached"), \
            {"samples": counts, "generated": fresh, "teacher": rep.teacher, "judge": rep.judge,
             "scorer": scorer.name if scorer else None}

    def train(self, previous: dict):
        from lab_tools.train.phases import train_phases

        fp = self.fingerprint("train")
        interrupted = previous.get("fingerprint") == fp and previous.get("status") in ("running", "failed")
        resume = self.resume and interrupted and (self.train_dir / "manifest.json").is_file()
        if not resume and self.train_dir.exists():
            # inputs changed (or no resume asked): the old run is stale; start over
            shutil.rmtree(self.train_dir)
        judge = self._backends.get(self.judge_spec, self.judge_spec)
        result = train_phases(self.data_dir, self.cfg.train.student, self.train_dir, preset=self.cfg.train.preset,
                              resume=resume, judge=judge, progress=self.progress, cache_dir=self.cfg.cache_path,
                              judge_rates=self.cfg.generate.model_judges)
        phases = result.manifest.get("phases") or {}
        steps = {p: (e or {}).get("steps") for p, e in phases.items()}
        return (f"{'resumed, ' if resume else ''}selected {Path(result.selected).name} "
                f"({Path(result.selected).parent.name}); steps {steps}"), {"selected": str(result.selected),
                                                                           "resumed": resume, "steps": steps}

    def evaluate(self):
        from lab_tools.eval.evaluate import evaluate, load_eval_set
        from lab_tools.eval.report import format_total

        selected = self._selected()
        evalset = load_eval_set(data_dir=self.data_dir, taxonomy=self.root, max_mc=EVAL_CAPS["max_mc"],
                                max_prompts=EVAL_CAPS["max_prompts"])
        # A judge that cannot rate (generate.model_judges false) is not asked: its scores would all
        # be unparsed; skill leaves are then compared by held-out reference log-likelihood.
        judge = self.backend(self.judge_spec) if evalset.prompts and self.cfg.generate.model_judges else None
        res = evaluate(selected, evalset, self.eval_dir, base_model=self.cfg.train.student, judge=judge,
                       max_new_tokens=EVAL_CAPS["max_new_tokens"], judge_max_tokens=EVAL_CAPS["judge_max_tokens"],
                       progress=self.progress, cache_dir=self.cfg.cache_path)
        totals = res.report.get("totals", {})
        parts = []
        for name, t in totals.items():
            parts.append(f"{name} {format_total(name, t['base'])} → {format_total(name, t['trained'])} "
                         f"({t.get('verdict', 'n/a')})")
        c = res.report["counts"]
        parts.append(f"leaves improved {c['improved']}, regressed {c['regressed']}, no measurable change "
                     f"{c['no measurable change']}, too small to decide {c['too small to decide']}")
        return "; ".join(parts), {"totals": totals, "counts": c}

    def comparisons(self):
        from lab_tools.feedback.stages import comparisons_stage

        return comparisons_stage(self)

    def reward_model(self):
        from lab_tools.feedback.stages import reward_model_stage

        return reward_model_stage(self)

    def self_play(self):
        from lab_tools.feedback.stages import self_play_stage

        return self_play_stage(self)

    def pref(self):
        from lab_tools.feedback.stages import pref_stage

        return pref_stage(self)

    def alignment(self):
        from lab_tools.feedback.stages import alignment_stage

        return alignment_stage(self)

    def release(self):
        from lab_tools.release.release import make_release, write_json

        write_json(self.out / "run.json", self._provenance())
        res = make_release(self.out, self.release_dir)
        return str(res.out_dir), {"path": str(res.out_dir), "samples": res.info["samples"]}


def quiet_libraries() -> None:
    """One progress view: silence transformers' own bars and warnings (weights loading, shard
    writing) that would interleave with ours. Called only before a stage that loads models, and by
    `lab evaluate` and `lab chat`."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as fh:
        return sum(1 for line in fh if line.strip())


def run_build(root: str | Path, out: str | Path, cfg, *, resume: bool = False, progress: bool = True,
              console=None) -> BuildResult:
    """Run the main job over taxonomy ``root`` into ``out`` with settings ``cfg`` (a loaded
    :class:`lab_tools.config.Config`, flags already applied). Returns a :class:`BuildResult`.

    Raises:
        LabError: the first failing stage, naming it (``build stopped at <stage>: <message>``); the
        state records it and every output produced so far stays on disk.
    """
    from rich.console import Console

    console = console or Console(stderr=True, quiet=not progress)
    root, out = Path(root), Path(out)
    if not root.is_dir():
        raise LabError("taxonomy root not found", file=str(root))
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    b = _Build(root, out, cfg, resume=resume, progress=progress, console=console)
    stages = [n for n in STAGES if (cfg.feedback.enabled or n not in FEEDBACK_STAGES)
              and (n != "self_play" or cfg.feedback.self_play)]
    results = [StageResult(n) for n in stages]
    for i, (name, res) in enumerate(zip(stages, results), 1):
        previous = b.state["stages"].get(name, {})
        t0 = time.monotonic()
        try:
            fp = b.fingerprint(name)
            if previous.get("fingerprint") == fp and previous.get("status") == "done" and b.outputs_present(name):
                res.status, res.summary, res.data = "skipped", "unchanged: " + previous.get("summary", ""), \
                    previous.get("data", {})
                console.print(f"[dim][{i}/{len(stages)}] {name}: unchanged, skipped[/]")
                continue
            console.rule(f"[bold][{i}/{len(stages)}] {name}")
            b.state["stages"][name] = {"fingerprint": fp, "status": "running", "started": time.time()}
            b.save()
            if name in ("generate", "train", "evaluate", *FEEDBACK_STAGES):
                quiet_libraries()
            if name in TRAINING_STAGES:
                b.release_gpu_backends()
            summary, data = b.train(previous) if name == "train" else getattr(b, name)()
            res.status, res.summary, res.data = "ran", summary, data
            res.seconds = time.monotonic() - t0
            b.state["stages"][name] = {"fingerprint": fp, "status": "done", "seconds": round(res.seconds, 2),
                                       "summary": summary, "data": data, "finished": time.time()}
            b.save()
        except KeyboardInterrupt:
            b.state["stages"].setdefault(name, {})["status"] = "running"
            b.save()
            raise
        except Exception as exc:  # noqa: BLE001  (a stage failure becomes a clear message, not a traceback)
            res.status, res.seconds = "failed", time.monotonic() - t0
            msg = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
            res.summary = msg.splitlines()[0] if msg else type(exc).__name__
            with (out / "build.log").open("a", encoding="utf-8") as log:
                log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} stage {name} failed\n")
                log.write("".join(traceback.format_exception(exc)))
            b.state["stages"][name] = {**b.state["stages"].get(name, {}), "status": "failed", "error": msg}
            b.save()
            print_summary(console, BuildResult(out, results, None, time.monotonic() - start), force=True)
            hint = "" if isinstance(exc, LabError) else f" (traceback in {out / 'build.log'})"
            if name == "train" and (out / "train" / "manifest.json").is_file():
                hint += "\nrun `lab build --resume` to continue training from its last checkpoint"
            raise LabError(f"build stopped at stage '{name}': {msg}{hint}\n"
                           f"outputs so far are kept in {out}; fix the cause and run `lab build` again") from exc
        finally:
            if res.status in ("ran", "failed"):
                res.seconds = time.monotonic() - t0
    release = out / "release" if (out / "release" / "release.json").is_file() else None
    result = BuildResult(out, results, release, time.monotonic() - start)
    b.state["last_build"] = {"seconds": round(result.seconds, 2), "finished": time.time(),
                             "stages": {r.name: {"status": r.status, "seconds": round(r.seconds, 2)} for r in results}}
    b.save()
    return result


def print_summary(console, result: BuildResult, force: bool = False) -> None:
    """The final table: stage, status, time, what it produced; then the release path."""
    from rich.console import Console
    from rich.table import Table

    if force and console.quiet:
        console = Console(stderr=True)
    table = Table(title="lab build", show_lines=False)
    table.add_column("stage")
    table.add_column("status")
    table.add_column("time", justify="right")
    table.add_column("result", overflow="fold")
    style = {"ran": "green", "skipped": "dim", "failed": "bold red", "not run": "dim"}
    for r in result.stages:
        table.add_row(r.name, f"[{style[r.status]}]{r.status}[/]", f"{r.seconds:.1f}s" if r.status != "not run" else "",
                      r.summary, )
    console.print(table)
    console.print(f"total {result.seconds:.1f}s" + (f"; release: {result.release_dir}" if result.release_dir else ""))


@click.command("build")
@click.argument("root", required=False, type=click.Path(file_okay=False))
@click.option("--preset", default=None, help="Training preset (default: lab.yaml train.preset).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="runs/main", show_default=True,
              help="Run directory: data/, train/, eval/, release/, build_state.json, build.log.")
@click.option("--resume", is_flag=True, help="Continue an interrupted training stage from its checkpoints.")
@click.option("--teacher", default=None, help="Teacher backend spec (default: lab.yaml generate.teacher).")
@click.option("--judge", default=None, help="Judge backend spec (default: lab.yaml generate.judge, else the teacher).")
@click.option("--student", default=None, help="Student model: 'embedded' or a local model dir.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False), default=None,
              help="Extra config file applied over lab.yaml.")
@click.option("--quiet", is_flag=True,
              help="No progress output (bars, CI progress lines, the libraries' bars); the summary table is still printed.")
@plan_options("GPU stage")
def build(root, preset, out_dir, resume, teacher, judge, student, config_file, quiet, plan, as_json, gpu_memory):
    """The main job on taxonomy ROOT: validate → licenses → generate → train → evaluate → release,
    skipping every stage whose inputs have not changed since the last build."""
    from lab_tools.progress import silence_library_bars

    silence_library_bars(quiet=quiet)
    from rich.console import Console

    from lab_tools.config import default_root, load_config

    root = Path(root) if root else default_root()
    cfg = load_config(root, config_file)
    cfg.override("train.preset", preset)
    cfg.override("generate.teacher", teacher)
    cfg.override("generate.judge", judge)
    cfg.override("train.student", student)
    if plan:  # before anything else: reads config.json files only
        from lab_tools.plan import plan_cli

        plan_cli("build", cfg, as_json=as_json, gpu_memory=gpu_memory, student=student, teacher=teacher)
        return
    from lab_tools.models import require_local_model_dir  # model paths before any stage runs

    require_local_model_dir(cfg.train.student, "--student" if student is not None else "train.student")
    if cfg.feedback.enabled and cfg.feedback.rm_base:
        require_local_model_dir(cfg.feedback.rm_base, "feedback.rm_base")
    console = Console(stderr=True, quiet=quiet)
    result = run_build(root, out_dir, cfg, resume=resume, progress=not quiet, console=console)
    print_summary(Console(), result)

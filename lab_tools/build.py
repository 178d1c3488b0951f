"""`lab build`: the main job, validate → licenses → generate → train → evaluate → release; with
``feedback.enabled`` also comparisons → reward_model → self_play (before train) and pref (after
train), alignment (after evaluate): ALMoST's synthetic feedback.

This module is the recipe only: it orders the stages (:data:`PIPELINE`), skips a stage whose
fingerprint and outputs are unchanged since its last successful run, runs the others, records
state and prints the table. Each stage is one :class:`lab_tools.stage.Stage` in the subpackage
that owns it, with its inputs (fingerprint), its outputs and ``run(context) -> StageResult``:

| stage        | owner                                   | outputs                                  |
|--------------|-----------------------------------------|------------------------------------------|
| validate     | :mod:`lab_tools.taxonomy.build_stages`  | none                                     |
| licenses     | :mod:`lab_tools.taxonomy.build_stages`  | none                                     |
| generate     | :mod:`lab_tools.sdg.build_stages`       | ``data/kt1|kt2|st.jsonl``                |
| comparisons  | :mod:`lab_tools.feedback.build_stages`  | ``data/comparisons.jsonl``               |
| reward_model | :mod:`lab_tools.feedback.build_stages`  | ``rm/``                                  |
| self_play    | :mod:`lab_tools.feedback.build_stages`  | ``data/selfplay.jsonl``                  |
| train        | :mod:`lab_tools.train.build_stages`     | ``train/`` (selected checkpoint)         |
| pref         | :mod:`lab_tools.train.build_stages`     | ``train/pref``                           |
| evaluate     | :mod:`lab_tools.eval.build_stages`      | ``eval/eval.json``                       |
| alignment    | :mod:`lab_tools.eval.build_stages`      | ``eval/alignment.json``                  |
| release      | :mod:`lab_tools.release.build_stages`   | ``release/``, ``run.json``               |

What each fingerprint covers is in the owner's module doc. A skipped stage loads no model, so a
build with nothing changed takes seconds. ``lab generate`` is incremental by itself
(content-addressed per-leaf cache), so after editing one leaf only that leaf is regenerated.
Large files are hashed once per (size, mtime) and memoized in the state; model weights only once
per (size, mtime, ctime, inode) (:func:`lab_tools.weights.tree_digest`), so weights rewritten
with the same size and a restored mtime are evaluated again.

Resumable: a train stage interrupted with unchanged inputs continues from its last checkpoint with
``--resume`` (otherwise it starts over). A failed stage stops the build with a clear message; all
outputs produced so far are kept, and the traceback of an unexpected error goes to
``OUT/build.log``.

Layout of OUT: ``run.json`` (provenance), ``data/`` (generate; ``comparisons.jsonl`` and
``selfplay.jsonl`` when feedback is on), ``rm/`` (the reward model), ``train/`` (``pref/`` inside), ``eval/``,
``release/``, ``build_state.json``, ``build.log``.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import click

from lab_tools.atomic import write_json_atomic
from lab_tools.config import default_root, load_config
from lab_tools.errors import LabError
from lab_tools.eval.build_stages import AlignmentStage, EvaluateStage
from lab_tools.feedback.build_stages import ComparisonsStage, RewardModelStage, SelfPlayStage
from lab_tools.locks import run_folder
from lab_tools.models import require_local_model_dir
from lab_tools.plan_cli import plan_cli, plan_options
from lab_tools.progress import quiet_libraries, silence_library_bars
from lab_tools.release.build_stages import ReleaseStage
from lab_tools.sdg.build_stages import GenerateStage
from lab_tools.stage import Context, Stage, StageResult
from lab_tools.taxonomy.build_stages import LicensesStage, ValidateStage
from lab_tools.train.build_stages import PrefStage, TrainStage

# the order of `lab build`; a stage runs when ``enabled(cfg)`` (the feedback stages with
# feedback.enabled, self_play also with feedback.self_play)
PIPELINE: tuple[Stage, ...] = (ValidateStage(), LicensesStage(), GenerateStage(), ComparisonsStage(),
                               RewardModelStage(), SelfPlayStage(), TrainStage(), PrefStage(), EvaluateStage(),
                               AlignmentStage(), ReleaseStage())
STAGES = tuple(s.name for s in PIPELINE)
STATE_FILE = "build_state.json"


@dataclass
class BuildResult:
    """A finished build: per-stage results, the release directory and the total wall time (s)."""
    out_dir: Path
    stages: list[StageResult]
    release_dir: Path | None
    seconds: float


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


def save_state(ctx: Context) -> None:
    """Write the build state (with the hasher's memo) to ``OUT/build_state.json``, atomically."""
    ctx.state["hash_memo"] = ctx.hasher.memo
    write_json_atomic(ctx.out / STATE_FILE, ctx.state, indent=1, default=str, newline=True)


def _failed(ctx: Context, stage: Stage, res: StageResult, exc: Exception, results, start: float) -> LabError:
    """Record a failed stage (state, ``build.log``, the table so far) and the error that stops the build."""
    msg = str(exc) if isinstance(exc, LabError) else f"{type(exc).__name__}: {exc}"
    res.summary = msg.splitlines()[0] if msg else type(exc).__name__
    with (ctx.out / "build.log").open("a", encoding="utf-8") as log:
        log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} stage {stage.name} failed\n")
        log.write("".join(traceback.format_exception(exc)))
    ctx.state["stages"][stage.name] = {**ctx.state["stages"].get(stage.name, {}), "status": "failed", "error": msg}
    save_state(ctx)
    print_summary(ctx.console, BuildResult(ctx.out, results, None, time.monotonic() - start), force=True)
    hint = "" if isinstance(exc, LabError) else f" (traceback in {ctx.out / 'build.log'})"
    hint += stage.failure_hint(ctx)
    return LabError(f"build stopped at stage '{stage.name}': {msg}{hint}\n"
                    f"outputs so far are kept in {ctx.out}; fix the cause and run `lab build` again")


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
    ctx = Context(root, out, cfg, load_state(out), resume=resume, progress=progress, console=console)
    stages = [s for s in PIPELINE if s.enabled(cfg)]
    results = [StageResult(s.name) for s in stages]
    for i, (stage, res) in enumerate(zip(stages, results), 1):
        name, previous = stage.name, ctx.state["stages"].get(stage.name, {})
        t0 = time.monotonic()
        try:
            fp = stage.fingerprint(ctx)
            if previous.get("fingerprint") == fp and previous.get("status") == "done" and stage.present(ctx):
                res.status, res.summary, res.data = "skipped", "unchanged: " + previous.get("summary", ""), \
                    previous.get("data", {})
                console.print(f"[dim][{i}/{len(stages)}] {name}: unchanged, skipped[/]")
                continue
            console.rule(f"[bold][{i}/{len(stages)}] {name}")
            ctx.state["stages"][name] = {"fingerprint": fp, "status": "running", "started": time.time()}
            save_state(ctx)
            if stage.loads_models:
                quiet_libraries()
            if stage.trains:
                ctx.release_gpu_backends()
            ctx.previous = previous
            ran = stage.run(ctx)
            res.status, res.summary, res.data = "ran", ran.summary, ran.data
            res.seconds = time.monotonic() - t0
            ctx.state["stages"][name] = {"fingerprint": fp, "status": "done", "seconds": round(res.seconds, 2),
                                         "summary": ran.summary, "data": ran.data, "finished": time.time()}
            save_state(ctx)
        except KeyboardInterrupt:
            ctx.state["stages"].setdefault(name, {})["status"] = "running"
            save_state(ctx)
            raise
        except Exception as exc:  # noqa: BLE001  (a stage failure becomes a clear message, not a traceback)
            res.status, res.seconds = "failed", time.monotonic() - t0
            raise _failed(ctx, stage, res, exc, results, start) from exc
        finally:
            if res.status in ("ran", "failed"):
                res.seconds = time.monotonic() - t0
    release = out / "release" if (out / "release" / "release.json").is_file() else None
    result = BuildResult(out, results, release, time.monotonic() - start)
    ctx.state["last_build"] = {"seconds": round(result.seconds, 2), "finished": time.time(),
                               "stages": {r.name: {"status": r.status, "seconds": round(r.seconds, 2)} for r in results}}
    save_state(ctx)
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
    silence_library_bars(quiet=quiet)
    from rich.console import Console

    root = Path(root) if root else default_root()
    cfg = load_config(root, config_file)
    cfg.override("train.preset", preset)
    cfg.override("generate.teacher", teacher)
    cfg.override("generate.judge", judge)
    cfg.override("train.student", student)
    if plan:  # before anything else: reads config.json files only
        plan_cli("build", cfg, as_json=as_json, gpu_memory=gpu_memory, student=student, teacher=teacher)
        return
    require_local_model_dir(cfg.train.student, "--student" if student is not None else "train.student")
    if cfg.feedback.enabled and cfg.feedback.rm_base:
        require_local_model_dir(cfg.feedback.rm_base, "feedback.rm_base")
    console = Console(stderr=True, quiet=quiet)
    click.get_current_context().with_resource(run_folder(out_dir, "lab build"))  # one writer per --out
    result = run_build(root, out_dir, cfg, resume=resume, progress=not quiet, console=console)
    print_summary(Console(), result)

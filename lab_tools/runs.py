"""`lab runs list` / `lab runs show RUN`: what `lab build` left in its run folders, read from
``build_state.json`` (stages: status, fingerprint, start and finish times, seconds, summary, error;
``last_build``), ``run.json`` (provenance), ``train/manifest.json`` (phases, selected checkpoint),
``rm/rm_manifest.json``, ``eval/eval.json`` (totals with n and 95% intervals) and
``release/release.json`` + ``SHA256SUMS``. Reads files only: no torch, no model is loaded.

A run folder is one that holds ``build_state.json`` (``lab build --out DIR``; default
``runs/main``). Times are shown in UTC, ISO 8601.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from lab_tools.build import STAGES, STATE_FILE
from lab_tools.errors import LabError, plural


def _read_json(path: Path, *, required: bool = False):
    """The JSON value of ``path``; None when it is missing and not ``required``.

    Raises:
        LabError: unreadable or invalid JSON (naming the file and line), or missing and required.
    """
    if not path.is_file():
        if required:
            raise LabError("not found", file=str(path))
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise LabError(f"invalid JSON: {exc.msg}", file=str(path), line=exc.lineno) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise LabError(f"cannot read: {exc}", file=str(path)) from exc


def iso(ts) -> str | None:
    """A Unix time as UTC ISO 8601 (``2026-12-07T05:17:15Z``); None for None or not a number."""
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def read_state(run: Path) -> dict:
    """``run/build_state.json``, checked: an object whose ``stages`` maps names to objects.

    Raises:
        LabError: missing, invalid JSON, or another shape (naming the file and field).
    """
    path = run / STATE_FILE
    state = _read_json(path, required=True)
    if not isinstance(state, dict) or not isinstance(state.get("stages"), dict) or \
            not all(isinstance(v, dict) for v in state["stages"].values()):
        raise LabError("expected {\"stages\": {name: {...}}, ...} as `lab build` writes it", file=str(path),
                       field="stages")
    return state


def find_runs(runs_dir: str | Path) -> list[Path]:
    """Run folders in ``runs_dir``: itself when it holds ``build_state.json``, and every folder
    directly inside it that does; sorted by name.

    Raises:
        LabError: ``runs_dir`` is not a folder.
    """
    root = Path(runs_dir)
    if not root.is_dir():
        raise LabError("runs folder not found (`lab build --out DIR` writes one run per DIR)", file=str(root))
    found = [root] if (root / STATE_FILE).is_file() else []
    return found + sorted(d for d in root.iterdir() if d.is_dir() and (d / STATE_FILE).is_file())


def resolve_run(run: str, runs_dir: str | Path) -> Path:
    """RUN as given (a folder holding ``build_state.json``), else ``runs_dir/RUN``.

    Raises:
        LabError: neither holds a ``build_state.json``.
    """
    for cand in (Path(run), Path(runs_dir) / run):
        if (cand / STATE_FILE).is_file():
            return cand
    raise LabError(f"no run {run!r}: neither {run} nor {Path(runs_dir) / run} holds {STATE_FILE} "
                   "(`lab runs list` shows the runs)", file=run)


def _ordered(stages: dict) -> list[str]:
    return [s for s in STAGES if s in stages] + sorted(s for s in stages if s not in STAGES)


def run_status(state: dict) -> str:
    """One word or phrase for a run: ``failed at STAGE``, ``interrupted at STAGE`` (a stage left
    ``running``: killed, or running now), ``done`` (every recorded stage done), else ``incomplete``."""
    stages = state["stages"]
    for name in _ordered(stages):
        if stages[name].get("status") == "failed":
            return f"failed at {name}"
    for name in _ordered(stages):
        if stages[name].get("status") == "running":
            return f"interrupted at {name}"
    return "done" if stages and all(s.get("status") == "done" for s in stages.values()) else "incomplete"


def summarize(run: Path) -> dict:
    """One row of ``lab runs list``: ``{"name", "path", "status", "finished" (ISO, the last
    build's end or the latest stage's), "seconds" (the last build's wall time, or None),
    "stages": {"done", "failed", "running"} counts, "commit" (taxonomy, from run.json),
    "release" (folder or None)}``.

    Raises:
        LabError: a malformed ``build_state.json`` or ``run.json``.
    """
    state = read_state(run)
    stages = state["stages"]
    last = state.get("last_build") if isinstance(state.get("last_build"), dict) else {}
    ends = [s.get("finished") for s in stages.values() if isinstance(s.get("finished"), (int, float))]
    prov = _read_json(run / "run.json") or {}
    release = run / "release"
    counts = {k: sum(s.get("status") == k for s in stages.values()) for k in ("done", "failed", "running")}
    return {"name": run.name, "path": str(run), "status": run_status(state),
            "finished": iso(last.get("finished") or (max(ends) if ends else None)),
            "seconds": last.get("seconds"), "stages": counts,
            "commit": ((prov.get("taxonomy") or {}).get("commit") if isinstance(prov, dict) else None),
            "release": str(release) if (release / "release.json").is_file() else None}


def _training(run: Path) -> dict | None:
    manifest = _read_json(run / "train" / "manifest.json")
    if not isinstance(manifest, dict):
        return None
    phases = {}
    for name, entry in (manifest.get("phases") or {}).items():
        entry = entry or {}
        decision = entry.get("decision") or {}
        phases[name] = {k: entry.get(k) for k in ("steps", "selected", "selection", "skipped", "kept", "method")
                        if entry.get(k) is not None}
        if decision:
            phases[name]["decision"] = {k: decision.get(k) for k in ("metric", "n", "chosen", "verdict")}
        if isinstance(entry.get("seconds"), dict):
            phases[name]["seconds"] = entry["seconds"]
    return {"base_model": manifest.get("base_model"), "preset": manifest.get("preset"),
            "world_size": manifest.get("world_size"), "selected": manifest.get("selected"), "phases": phases}


def _release(run: Path) -> dict | None:
    info = _read_json(run / "release" / "release.json")
    if not isinstance(info, dict):
        return None
    sums = run / "release" / "SHA256SUMS"
    files = [line.split(None, 1)[1].strip() for line in sums.read_text(encoding="utf-8").splitlines()
             if len(line.split(None, 1)) == 2] if sums.is_file() else []
    return {"path": str(run / "release"), "format": info.get("format"), "released": info.get("released"),
            "selected_checkpoint": info.get("selected_checkpoint"), "taxonomy": info.get("taxonomy"),
            "samples": info.get("samples"), "checksummed_files": files}


def details(run: Path) -> dict:
    """Everything ``lab runs show`` prints: :func:`summarize` plus ``stages`` (per stage in build
    order: status, fingerprint, started, finished, seconds, summary, error), ``last_build``
    (``{"finished", "seconds", "stages": {name: {"status": ran|skipped|failed|not run, "seconds"}}}``),
    ``provenance`` (run.json: taxonomy, teacher, judge, student, preset), ``training``
    (train/manifest.json: base model, preset, selected, per phase steps / selected / decision),
    ``reward_model`` (rm/rm_manifest.json: base, pairs, held-out accuracy), ``evaluation``
    (eval/eval.json report totals: base and trained with n, 95% intervals and verdict) and
    ``release`` (release.json + the files SHA256SUMS covers); a part whose file is absent is None.

    Raises:
        LabError: a malformed state or a file that is not valid JSON (naming it).
    """
    state = read_state(run)
    out = summarize(run)
    out["stages"] = [{"name": name, "status": st.get("status"), "fingerprint": st.get("fingerprint"),
                      "started": iso(st.get("started")), "finished": iso(st.get("finished")),
                      "seconds": st.get("seconds"), "summary": st.get("summary"), "error": st.get("error")}
                     for name, st in ((n, state["stages"][n]) for n in _ordered(state["stages"]))]
    last = state.get("last_build")
    out["last_build"] = ({"finished": iso(last.get("finished")), "seconds": last.get("seconds"),
                          "stages": last.get("stages")} if isinstance(last, dict) else None)
    prov = _read_json(run / "run.json")
    out["provenance"] = ({k: prov.get(k) for k in ("taxonomy", "created", "teacher", "judge", "student", "preset")}
                         if isinstance(prov, dict) else None)
    out["training"] = _training(run)
    rm = _read_json(run / "rm" / "rm_manifest.json")
    out["reward_model"] = ({k: rm.get(k) for k in ("base", "train_pairs", "heldout_pairs", "train_accuracy",
                                                    "heldout_accuracy", "seconds")} if isinstance(rm, dict) else None)
    ev = _read_json(run / "eval" / "eval.json")
    out["evaluation"] = ((ev.get("report") or {}).get("totals") if isinstance(ev, dict) else None)
    out["release"] = _release(run)
    return out


# ----------------------------------------------------------------------------- text

def _interval(iv) -> str:
    return f"[{iv[0]:.4g}, {iv[1]:.4g}]" if isinstance(iv, list) and len(iv) == 2 else "[n/a]"


def _num(x) -> str:
    return f"{x:.4g}" if isinstance(x, float) else str(x)


def render_details(d: dict) -> str:
    """The text of ``lab runs show``."""
    lines = [f"run {d['name']} ({d['path']}): {d['status']}"]
    if d["provenance"]:
        p, tax = d["provenance"], d["provenance"].get("taxonomy") or {}
        lines.append(f"taxonomy commit {tax.get('commit')}{' (dirty)' if tax.get('dirty') else ''}; teacher "
                     f"{p.get('teacher')}; judge {p.get('judge')}; student {p.get('student')}; preset {p.get('preset')}")
    if d["last_build"]:
        lb = d["last_build"]
        lines.append(f"last build finished {lb['finished']} in {lb['seconds']} s")
    lines.append("stages (status, fingerprint, finished, seconds, summary):")
    for st in d["stages"]:
        fp = (st["fingerprint"] or "")[:12] or "-"
        extra = st["summary"] or st["error"] or ""
        lines.append(f"  {st['name']:<13} {st['status'] or '-':<8} {fp:<12} {st['finished'] or '-':<20} "
                     f"{'' if st['seconds'] is None else st['seconds']:>8}  {extra.splitlines()[0] if extra else ''}")
    if d["training"]:
        t = d["training"]
        lines.append(f"training: base {t['base_model']}, preset {t['preset']}, selected {t['selected']}")
        for name, ph in t["phases"].items():
            dec = ph.get("decision") or {}
            what = ph.get("skipped") and f"skipped ({ph['skipped']})" or \
                f"{plural(ph.get('steps') or 0, 'step')}, selected {ph.get('selected')}"
            lines.append(f"  {name}: {what}" + (f"; {dec.get('metric')} on n={dec.get('n')}: {dec.get('verdict')}"
                                                  if dec else ""))
    if d["reward_model"]:
        rm = d["reward_model"]
        lines.append(f"reward model: base {rm['base']}, {plural(rm.get('train_pairs') or 0, 'training pair')}, "
                     f"held-out accuracy {rm.get('heldout_accuracy')} on {plural(rm.get('heldout_pairs') or 0, 'pair')}")
    if d["evaluation"]:
        lines.append("evaluation (test part; 95% intervals):")
        for name, t in d["evaluation"].items():
            lines.append(f"  {name}: base {_num(t.get('base'))} {_interval(t.get('base_interval'))} -> trained "
                         f"{_num(t.get('trained'))} {_interval(t.get('trained_interval'))}, n={t.get('n')}: "
                         f"{t.get('verdict')}")
    r = d["release"]
    lines.append(f"release: {r['path']} ({r['format']}, released {r['released']}, checkpoint "
                 f"{r['selected_checkpoint']}, {plural(len(r['checksummed_files']), 'file')} in SHA256SUMS)"
                 if r else "release: none")
    return "\n".join(lines)


@click.group("runs")
def runs():
    """List build runs and show one run's stages, fingerprints, times and release."""


_RUNS_DIR = click.option("--runs-dir", default="runs", show_default=True, type=click.Path(file_okay=False),
                         help="Folder holding run folders (each `lab build --out DIR`).")
_JSON = click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")


@runs.command("list")
@_RUNS_DIR
@_JSON
def list_runs(runs_dir, as_json):
    """One line per run folder under --runs-dir: status, last finish, time, taxonomy commit, release."""
    rows = [summarize(r) for r in find_runs(runs_dir)]
    if as_json:
        click.echo(json.dumps(rows, indent=1))
        return
    if not rows:
        click.echo(f"no runs in {runs_dir}")
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        secs = "-" if r["seconds"] is None else f"{r['seconds']:.0f}s"
        click.echo(f"{r['name']:<{width}}  {r['status']:<22} {r['finished'] or '-':<20} {secs:>7}  "
                   f"commit {(r['commit'] or '-')[:12]}  release {r['release'] or '-'}")


@runs.command("show")
@click.argument("run")
@_RUNS_DIR
@_JSON
def show_run(run, runs_dir, as_json):
    """Stages (status, fingerprint, times), provenance, training phases, evaluation totals and the
    release of RUN (a run folder, or its name under --runs-dir)."""
    d = details(resolve_run(run, runs_dir))
    click.echo(json.dumps(d, indent=1) if as_json else render_details(d))

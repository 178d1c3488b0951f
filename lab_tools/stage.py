"""The one shape of a `lab build` stage, and the context every stage runs in.

A stage (:class:`Stage`) lives in the subpackage that owns its work (``taxonomy``, ``sdg``,
``feedback``, ``train``, ``eval``, ``release``: each one's ``build_stages.py``) and says three
things: its ``inputs(ctx)`` (what its fingerprint covers: sha256 over the stage name and these
parts), its ``outputs(ctx)`` (the files a skipped stage must still find), and ``run(ctx) ->
StageResult``. The recipe (:mod:`lab_tools.build`) only orders the stages, skips a stage whose
fingerprint and outputs are unchanged since its last successful run, runs the others and records
state; it holds no stage logic. Arrows point down: recipe → stages → this module → shared library.

:class:`Context` is one build's shared view: the taxonomy root and the run folder's layout, the
settings, the leaves and their content hashes, a file hasher memoized across builds
(:class:`Hasher`), the teachers loaded so far, and the facts several stages read (the selected
checkpoint, the trained reward model, the student's identity).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from lab_tools.engines import engine_tag, resolve_engine
from lab_tools.runpaths import resolve
from lab_tools.sdg.backends import LazyTeacher, make_teacher, release_gpu_teachers, teacher_options
from lab_tools.taxonomy.leaf import iter_leaf_paths, leaf_hash

_SKIP_DIRS = {".git", "__pycache__", ".venv"}


def sha(*parts) -> str:
    """sha256 hex of ``parts`` as canonical JSON (sorted keys; paths and other objects as str):
    a stage's fingerprint is ``sha(name, *inputs)``."""
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
        return sha(rows)

    def model(self, path: Path) -> str:
        """Digest of a model directory's files (weights, config, tokenizer)."""
        return sha(sorted(self.files(p for p in path.iterdir() if p.is_file()).items()))


@dataclass
class StageResult:
    """One stage of one build: ``status`` ``ran`` / ``skipped`` / ``failed`` / ``not run``;
    ``seconds`` wall time; ``summary`` one line for the table; ``data`` stage facts kept in the state."""
    name: str
    status: str = "not run"
    seconds: float = 0.0
    summary: str = ""
    data: dict = field(default_factory=dict)


class Context:
    """One `lab build` run as its stages see it.

    ``root``: the taxonomy; ``out``: the run folder, with ``data_dir`` (``data/``), ``train_dir``,
    ``eval_dir``, ``release_dir``; ``cfg``: the loaded :class:`lab_tools.config.Config`; ``state``:
    the build state (``build_state.json``, :func:`lab_tools.build.load_state`), whose
    ``hash_memo`` backs ``hasher``; ``leaf_paths`` / ``leaf_hashes``: every leaf and its content
    hash; ``judge_spec``: ``generate.judge``, else the teacher; ``backends``: teachers loaded so
    far (spec -> Teacher), shared by the stages; ``previous``: the state entry of the running
    stage from the last build (set by the recipe before ``run``); ``memo``: values a stage
    computes once per build (e.g. the release provenance).
    """

    def __init__(self, root: Path, out: Path, cfg, state: dict, *, resume: bool, progress: bool, console):
        self.root, self.out, self.cfg, self.state = root, out, cfg, state
        self.resume, self.progress, self.console = resume, progress, console
        self.data_dir, self.train_dir = out / "data", out / "train"
        self.eval_dir, self.release_dir = out / "eval", out / "release"
        self.hasher = Hasher(state.get("hash_memo"))
        self.backends: dict[str, object] = {}
        self.leaf_paths = iter_leaf_paths(root)
        self.leaf_hashes = {p: leaf_hash(root / p) for p in self.leaf_paths}
        self.judge_spec = cfg.generate.judge or cfg.generate.teacher
        self.previous: dict = {}
        self.memo: dict = {}

    def backend(self, spec: str):
        """A teacher/judge backend, built once per build (loading a model is the slow part) with
        the ``generate`` settings (:func:`lab_tools.sdg.backends.teacher_options`); an in-process
        ``vllm:`` one is a :class:`~lab_tools.sdg.backends.LazyTeacher`, its engine started on
        first use (e.g. the pref stage's judge after the policy has trained, not before)."""
        if spec not in self.backends:
            opts, cache = teacher_options(self.cfg.generate), self.cfg.cache_path
            self.backends[spec] = LazyTeacher(spec, lambda: make_teacher(spec, cache, **opts), cache) \
                if str(spec).startswith("vllm:") else make_teacher(spec, cache, **opts)
        return self.backends[spec]

    def release_gpu_backends(self) -> list[str]:
        """Close every loaded teacher that holds a GPU (in-process vLLM, a transformers model on
        CUDA: :func:`lab_tools.sdg.backends.release_gpu_teachers`) before a stage that trains
        loads its model; a later stage that needs one builds it again. Returns the specs closed."""
        gone = release_gpu_teachers(self.backends)
        if gone:
            self.console.print(f"closed {', '.join(gone)}: the GPU is the training stage's", style="dim",
                               markup=False, highlight=False)
        return gone

    def heldout_files(self) -> dict[str, str | None]:
        """Digests of the held-out files ``data/heldout_mc.jsonl`` and ``data/heldout_prompts.jsonl``."""
        return self.hasher.files([self.data_dir / "heldout_mc.jsonl", self.data_dir / "heldout_prompts.jsonl"])

    def trained_rm(self) -> Path | None:
        """``OUT/rm`` when it holds a trained reward model (``config.json``), else None."""
        rm = self.out / "rm"
        return rm if (rm / "config.json").is_file() else None

    def sdg_rm(self) -> Path | None:
        """The reward model that scores SDG samples: ``OUT/rm`` from a previous build when
        ``feedback.rm_scores_sdg`` is on (None on the first build: the rule score ranks)."""
        return self.trained_rm() if self.cfg.feedback.rm_scores_sdg else None

    def engine_id(self) -> str:
        """The inference engine that local models run on (``""`` for transformers, else e.g.
        ``+ctranslate2-4.8.5-int8``): part of every fingerprint whose stage generates or scores
        with a local model, so switching engines (or installing one under ``generate.engine:
        auto``) reruns those stages instead of keeping the other engine's outputs."""
        g = self.cfg.generate
        return engine_tag(resolve_engine(g.engine), g.engine_compute_type)

    def student_id(self) -> str:
        """``embedded``, the digest of a local student directory, or the student spec as given."""
        spec = self.cfg.train.student
        if spec == "embedded":
            return spec
        p = Path(spec)
        return self.hasher.model(p) if p.is_dir() else spec

    def selected(self) -> Path | None:
        """The checkpoint the training run selected (``train/manifest.json`` ``selected``, a path
        relative to ``train/``), or None when there is none with a ``config.json``."""
        try:
            sel = json.loads((self.train_dir / "manifest.json").read_text(encoding="utf-8")).get("selected")
        except (OSError, ValueError):
            return None
        path = resolve(sel, self.train_dir) if isinstance(sel, str) and sel else None  # relative to train/
        return path if path is not None and (path / "config.json").is_file() else None


class Stage:
    """One stage of `lab build`. Subclasses set ``name`` and implement :meth:`inputs`,
    :meth:`outputs` and :meth:`run`; ``loads_models``: the recipe quiets the model libraries'
    own bars first (:func:`lab_tools.progress.quiet_libraries`); ``trains``: it loads a model to
    train it, so no in-process teacher may hold the GPU (the recipe closes them first)."""

    name = ""
    loads_models = False
    trains = False

    def enabled(self, cfg) -> bool:
        """Whether this build runs the stage (the feedback stages only with ``feedback.enabled``)."""
        return True

    def inputs(self, ctx: Context) -> list:
        """What the fingerprint covers, as JSON-able parts: ``sha(name, *inputs)``."""
        raise NotImplementedError

    def outputs(self, ctx: Context) -> list[Path]:
        """The files the stage leaves; a stage whose inputs are unchanged is skipped only when
        they are all there (:meth:`present`)."""
        raise NotImplementedError

    def present(self, ctx: Context) -> bool:
        """Whether the outputs of the last run are on disk."""
        return all(p.is_file() for p in self.outputs(ctx))

    def fingerprint(self, ctx: Context) -> str:
        """sha256 over the stage name and its :meth:`inputs`."""
        return sha(self.name, *self.inputs(ctx))

    def run(self, ctx: Context) -> StageResult:
        """Do the stage's work; a :class:`StageResult` with ``status`` ``ran``, the one-line
        ``summary`` of the table and ``data`` kept in the state.

        Raises:
            LabError: the stage failed (the recipe stops the build, naming the stage).
        """
        raise NotImplementedError

    def failure_hint(self, ctx: Context) -> str:
        """A line added to the build's error when this stage fails (e.g. how to resume), or ""."""
        return ""

    def done(self, summary: str, data: dict) -> StageResult:
        """The result of a successful run: ``summary`` for the table, ``data`` for the state."""
        return StageResult(self.name, "ran", summary=summary, data=data)


class FeedbackStage(Stage):
    """A stage of ALMoST's synthetic feedback (comparisons, reward_model, self_play, pref,
    alignment): runs only with ``feedback.enabled``; every one loads models. Its fingerprint is
    ``sha(name, inputs)``, the parts as one list (as the feedback stages have always keyed it, so
    the fingerprints of earlier builds stay valid)."""

    loads_models = True

    def enabled(self, cfg) -> bool:
        return bool(cfg.feedback.enabled)

    def fingerprint(self, ctx: Context) -> str:
        return sha(self.name, self.inputs(ctx))

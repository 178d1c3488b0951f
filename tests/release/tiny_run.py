"""A small real run folder, built by the stage functions themselves (no hand-written manifest):
a copy of three leaves of this repository's taxonomy, phase data whose samples carry those
leaves' paths and content hashes, KT/1 trained for one epoch on the tiny random model
(``lab_tools.train.phases.train_phases``), the evaluation (``lab_tools.eval.evaluate``) and
``run.json`` (``lab_tools.release.release.provenance``). Used by tests/release/test_moved_run.py and
tests/security/test_release_binding.py; about 15 s on 2 CPU cores."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

LEAVES = {"knowledge": "knowledge/science/biology/honey_bees",
          "skill": "compositional_skills/writing/freeform/poetry/haiku",
          "foundational": "foundational_skills/reasoning/common_sense_reasoning"}
PRESET = {"max_seq_len": 96, "micro_batch_tokens": 192, "dtype": "float32", "mixed_precision": "no",
          "save_state_steps": 0, "seed": 7,
          "selection": {"max_mc_items": 4, "max_prompts": 1, "max_new_tokens": 4, "judge_max_tokens": 16,
                        "max_checkpoints": 1, "batch_size": 4},
          "kt1": {"learning_rate": 3e-3, "effective_batch_size": 4, "warmup_steps": 1, "epochs": 1}}


def make_taxonomy(dest: Path, repo_root: Path) -> Path:
    """Copy the three :data:`LEAVES` of this repository's taxonomy under ``dest``; returns it."""
    for leaf in LEAVES.values():
        shutil.copytree(repo_root / "taxonomy" / leaf, dest / leaf)
    return dest


def make_run(tmp: Path, repo_root: Path, tiny_model: Path, run: str | Path = "runs/main") -> Path:
    """Build the run folder ``tmp/run`` (``run`` may be relative: the stages then run in ``tmp``
    with the paths relative to it, as `lab build --out runs/main` does) and return its absolute path."""
    import yaml

    from lab_tools.eval.evalset import load_eval_set
    from lab_tools.eval.evaluate import evaluate
    from lab_tools.release.release import provenance, write_json
    from lab_tools.taxonomy.leaf import iter_leaves
    from lab_tools.train.phases import train_phases
    from tests.train.conftest import write_phase_data

    taxonomy = make_taxonomy(tmp / "taxonomy", repo_root)
    hashes = {lf.path: lf.content_hash for lf in iter_leaves(taxonomy)}
    (tmp / "preset.yaml").write_text(yaml.safe_dump(PRESET))
    here = Path.cwd()
    os.chdir(tmp)
    try:
        run = Path(run)
        data = write_phase_data(run / "data", n=8)
        for phase in ("kt1", "kt2", "st"):  # the samples name the leaf version they came from
            leaf = LEAVES["skill"] if phase == "st" else LEAVES["knowledge"]
            rows = [json.loads(line) for line in (data / f"{phase}.jsonl").read_text().splitlines()]
            for r in rows:
                r["metadata"].update(leaf=leaf, leaf_hash=hashes[leaf])
            (data / f"{phase}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (data / "dataset_card.json").write_text("{}")
        result = train_phases(data, tiny_model, run / "train", preset=tmp / "preset.yaml", phases=("kt1",),
                              progress=False, judge_rates=False)
        evaluate(result.selected, load_eval_set(data_dir=data, max_mc=4, max_prompts=1), run / "eval",
                 max_new_tokens=4, progress=False)
        write_json(run / "run.json", provenance(taxonomy))
        return run.absolute()
    finally:
        os.chdir(here)


def release_cli(run_lab, run: Path, *extra: str):
    """``lab release --run RUN --out RUN/../release-<name> ...`` in-process: ``(code, captured, out dir)``."""
    out = run.parent / f"release-{run.name}"
    code, cap = run_lab(["release", "--run", str(run), "--out", str(out), *extra])
    return code, cap, out

"""The inference engine is part of the fingerprint of every build stage that generates or scores
with a local model: installing CTranslate2 under ``generate.engine: auto`` (or switching engines)
reruns those stages instead of keeping the other engine's outputs (issue 26)."""

from pathlib import Path

from rich.console import Console

import lab_tools.stage as stage_mod
from lab_tools.build import PIPELINE
from lab_tools.config import load_config
from lab_tools.stage import Context

REPO = Path(__file__).resolve().parents[1]
# train and pref: checkpoint selection and the pref-vs-ST decision score on the engine
ENGINE_STAGES = {"generate", "comparisons", "self_play", "train", "pref", "evaluate", "alignment"}


def _fingerprints(tmp_path, monkeypatch, engine: str) -> dict[str, str]:
    monkeypatch.setattr(stage_mod, "resolve_engine", lambda setting, model_dir=None: engine)
    cfg = load_config(REPO / "taxonomy")
    ctx = Context(REPO / "taxonomy", tmp_path / "run", cfg, {}, resume=False, progress=False,
                  console=Console(quiet=True))
    return {s.name: s.fingerprint(ctx) for s in PIPELINE if s.name in ENGINE_STAGES | {"validate", "licenses", "reward_model"}}


def test_engine_changes_the_fingerprints_of_the_stages_that_run_models(tmp_path, monkeypatch):
    ref = _fingerprints(tmp_path, monkeypatch, "transformers")
    fast = _fingerprints(tmp_path, monkeypatch, "ctranslate2")
    changed = {name for name in ref if ref[name] != fast[name]}
    assert changed == ENGINE_STAGES

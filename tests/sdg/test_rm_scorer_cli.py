"""`lab generate --reward-model RM` with feedback.rm_scores_sdg: the reward model scores the SDG
samples where no model judge grades them (pair evaluation by reward), the best
generate.samples per leaf by reward are kept, a threshold rejects low-reward samples with the
reason, and the dataset card names the scorer."""

from __future__ import annotations

import json

import pytest

from lab_tools.feedback import scorer as scorer_mod
from lab_tools.feedback.scorer import rm_scorer
from lab_tools.sdg.filters import REWARD_REJECTION
from tests.feedback.test_scorer import _tiny_rm


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _samples(out):
    return [s for p in ("kt1", "kt2", "st") for s in _rows(out / f"{p}.jsonl")]


def _generate(run_lab, taxonomy, tmp_path, name, rm, *, on=True, threshold=None):
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(f"cache_dir: {tmp_path / name / 'cache'}\ngenerate:\n  samples: 2\n  model_judges: false\n"
                   f"  filters:\n    oversample: 3.0\nfeedback:\n  rm_scores_sdg: {'true' if on else 'false'}\n"
                   + (f"  rm_score_threshold: {threshold}\n" if threshold is not None else ""))
    out = tmp_path / name / "out"
    code, io = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--config", str(cfg),
                        "--out", str(out), "--quiet", "--reward-model", str(rm)])
    assert code == 0, io.err
    return out


def test_the_reward_model_scores_and_names_the_kept_samples(taxonomy, fake_documents, tmp_path, run_lab,
                                                             tiny_model):
    from lab_tools.feedback.evaluate import load_rm, rewards

    rm = _tiny_rm(tiny_model, tmp_path / "rm")
    out = _generate(run_lab, taxonomy, tmp_path, "rm", rm)
    name = "reward:" + rm_scorer(rm, threshold=None, max_length=64).name
    samples = _samples(out)
    assert samples and {s["metadata"]["scorer"] for s in samples} == {name}
    model, tok = load_rm(rm)  # the recorded score is the RM's reward of the sample (no comparisons: baseline 0)
    assert [s["metadata"]["score"] for s in samples] == pytest.approx(
        rewards(model, tok, [s["messages"] for s in samples], max_length=384), abs=2e-4)
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["scorers"] == [name] and card["reward_rejected"] == 0
    assert f"`{name}`" in (out / "README.md").read_text()

    off = _generate(run_lab, taxonomy, tmp_path, "off", rm, on=False)  # the setting gates it
    assert {s["metadata"]["scorer"] for s in _samples(off)} == {"rules"}


def test_top_samples_by_reward_and_threshold_rejects(taxonomy, fake_documents, tmp_path, run_lab, tiny_model,
                                                     monkeypatch):
    calls: list[dict[str, float]] = []  # one call per leaf: answer -> reward

    def fake_relative_reward(rm_dir, comparisons, *, max_length):
        def reward(convs):  # deterministic, spread around 0
            values = [(len(c[-1]["content"]) % 13) - 6 + len(c[-1]["content"]) / 1e4 for c in convs]
            calls.append({c[-1]["content"]: v for c, v in zip(convs, values)})
            return values
        return reward, 0.0

    monkeypatch.setattr(scorer_mod, "relative_reward", fake_relative_reward)
    rm = _tiny_rm(tiny_model, tmp_path / "rm")
    out = _generate(run_lab, taxonomy, tmp_path, "thr", rm, threshold=0.0)
    samples, rejected = _samples(out), [r for r in _rows(out / "rejected.jsonl") if r["reason"] == REWARD_REJECTION]
    assert samples and rejected and calls
    for s in samples:
        answer = s["messages"][-1]["content"]
        call = next(c for c in calls if answer in c)
        assert s["metadata"]["score"] == pytest.approx(call[answer], abs=1e-4) and call[answer] >= 0
    for call in calls:  # the kept ones of each leaf are the 2 best by reward of those at or above 0
        kept = sorted((s["metadata"]["score"] for s in samples if s["messages"][-1]["content"] in call), reverse=True)
        assert kept == pytest.approx(sorted((v for v in call.values() if v >= 0), reverse=True)[:2], abs=1e-4)
    below = {a for call in calls for a, v in call.items() if v < 0}
    assert {r["answer"] for r in rejected} == below
    assert all("< threshold 0" in r["detail"] for r in rejected)
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["reward_rejected"] == len(rejected)
    assert sum(q["rejected"].get(REWARD_REJECTION, 0) for q in card["quality"].values()) == len(rejected)
    assert f"Pair evaluation by reward rejected {len(rejected)} samples" in (out / "README.md").read_text()
    for leaf in card["leaves"]:  # every generated candidate accounted for
        assert leaf["generated"] == leaf["kept"] + sum(leaf["rejected"].values()) + sum(leaf["lost"].values()) \
            + leaf["unused"]


def test_build_generate_uses_the_previous_builds_rm_and_fingerprints_it(taxonomy, fake_documents, tmp_path,
                                                                       tiny_model):
    from rich.console import Console

    from lab_tools.config import load_config
    from lab_tools.sdg.build_stages import GenerateStage
    from lab_tools.stage import Context

    cfg = load_config(taxonomy)
    cfg.override("generate.teacher", "scripted:")
    cfg.override("cache_dir", str(tmp_path / "cache"))
    cfg.generate.model_judges, cfg.generate.samples = False, 1
    out = tmp_path / "build"

    stage = GenerateStage()

    def build():
        return Context(taxonomy, out, cfg, {"stages": {}}, resume=False, progress=False, console=Console(quiet=True))

    plain = stage.fingerprint(build())
    cfg.feedback.rm_scores_sdg = True
    assert stage.fingerprint(build()) == plain  # first build: no RM yet, the rule score ranks
    data = stage.run(build()).data
    assert data["scorer"] is None and json.loads((out / "data" / "dataset_card.json").read_text())["scorers"] == ["rules"]
    rm = _tiny_rm(tiny_model, out / "rm")  # what the previous build's reward_model stage left
    with_rm = stage.fingerprint(build())
    assert with_rm != plain
    data = stage.run(build()).data
    name = rm_scorer(rm, threshold=None, max_length=64, comparisons=out / "data" / "comparisons.jsonl").name
    assert data["scorer"] == name
    assert {s["metadata"]["scorer"] for s in _samples(out / "data")} == {"reward:" + name}
    cfg.feedback.rm_score_threshold = 1.0
    assert stage.fingerprint(build()) not in (plain, with_rm)
    cfg.feedback.rm_scores_sdg = False
    assert stage.fingerprint(build()) == plain

"""`lab generate`'s output is one Hugging Face dataset (issue 24.1): the phase files load as one
``DatasetDict`` (one metadata schema for every kind, with and without model judges),
``comparisons.jsonl`` is TRL's conversational preference format, and ``README.md`` is a Hub
dataset card that ``huggingface_hub`` reads back (licenses, configs, size, taxonomy commit)."""

from __future__ import annotations

import json
import subprocess

import pytest

from lab_tools.sdg.datacard import METADATA_FIELDS, scores_of

PHASES = ("kt1", "kt2", "st")


def _generate(run_lab, repo_root, tmp_path, judges: bool, monkeypatch, feedback: bool = False):
    monkeypatch.setenv("LAB_GENERATE__MODEL_JUDGES", "true" if judges else "false")
    monkeypatch.setenv("LAB_FEEDBACK__ENABLED", "true" if feedback else "false")
    out = tmp_path / f"data-{judges}"
    code, io = run_lab(["generate", str(repo_root / "taxonomy"), "--teacher", "scripted:", "--out", str(out),
                        "--quiet", "--samples", "2"])
    assert code == 0, io.err
    return out


@pytest.mark.parametrize("judges", [False, True])
def test_phase_files_load_as_one_datasetdict(judges, run_lab, repo_root, tmp_path, cache_dir, monkeypatch):
    import datasets

    out = _generate(run_lab, repo_root, tmp_path, judges, monkeypatch)
    rows = {p: [json.loads(line) for line in (out / f"{p}.jsonl").read_text().splitlines()] for p in PHASES}
    assert all(rows.values())  # knowledge in kt1/kt2, foundational skills in kt2, compositional in st
    for p, samples in rows.items():
        for s in samples:
            assert tuple(s["metadata"]) == METADATA_FIELDS, p
    kinds = {s["metadata"]["kind"]: s["metadata"] for p in PHASES for s in rows[p]}
    assert kinds["knowledge"]["source"]["commit"] and kinds["compositional_skills"]["source"] is None
    assert kinds["compositional_skills"]["persona"] in ("precise", "creative")
    if judges:  # each kind's checks, by name
        assert scores_of(kinds["compositional_skills"])["pair"] == 3
        assert scores_of(kinds["knowledge"])["faithful"] == 1.0

    ds = datasets.load_dataset("json", data_files={p: str(out / f"{p}.jsonl") for p in PHASES},
                               cache_dir=str(tmp_path / "hf"))
    assert isinstance(ds, datasets.DatasetDict) and {k: v.num_rows for k, v in ds.items()} == \
        {p: len(rows[p]) for p in PHASES}
    assert ds["kt1"].features == ds["kt2"].features == ds["st"].features
    assert ds["st"][0]["messages"][0]["role"] == "user"
    # the card's configs load the same splits the Hub way
    by_config = datasets.load_dataset(str(out), "sft", cache_dir=str(tmp_path / "hf2"))
    assert set(by_config) == set(PHASES)


def test_dataset_card_and_trl_preference_format(run_lab, repo_root, tmp_path, cache_dir, monkeypatch, tiny_model):
    import datasets
    from huggingface_hub import DatasetCard
    from transformers import AutoTokenizer
    from trl.data_utils import apply_chat_template, is_conversational

    out = _generate(run_lab, repo_root, tmp_path, False, monkeypatch, feedback=True)
    pref = datasets.load_dataset("json", data_files=str(out / "comparisons.jsonl"), cache_dir=str(tmp_path / "hf"))
    row = pref["train"][0]
    assert {"prompt", "chosen", "rejected"} <= set(row) and is_conversational(row)
    text = apply_chat_template({k: row[k] for k in ("prompt", "chosen", "rejected")},
                               AutoTokenizer.from_pretrained(tiny_model))
    assert text["prompt"] and text["chosen"] and text["rejected"]

    card = DatasetCard.load(out / "README.md")
    data = card.data.to_dict()
    assert not (out / "dataset_card.md").exists()  # one card: README.md
    head = subprocess.run(["git", "-C", str(repo_root), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert data["source_taxonomy"]["commit"] == head
    assert "cc-by-4.0" in data["license"]  # the documents'; the scripted teacher's terms are unknown:
    assert "other" in data["license"]
    configs = {c["config_name"]: c for c in data["configs"]}
    assert [f["split"] for f in configs["sft"]["data_files"]] == list(PHASES)
    assert configs["preference"]["data_files"] == [{"split": "train", "path": "comparisons.jsonl"}]
    assert data["size_categories"] == ["n<1K"] and "text-generation" in data["task_categories"]
    assert "## Synthetic comparisons" in card.text and "## Loading" in card.text


def test_teacher_license_setting_reaches_the_card(run_lab, repo_root, tmp_path, cache_dir, monkeypatch):
    from huggingface_hub import DatasetCard

    monkeypatch.setenv("LAB_GENERATE__TEACHER_LICENSE", "MIT")
    out = _generate(run_lab, repo_root, tmp_path, False, monkeypatch)
    assert DatasetCard.load(out / "README.md").data.license == ["cc-by-4.0", "mit"]
    monkeypatch.setenv("LAB_GENERATE__TEACHER_LICENSE", "not a license!")
    code, io = run_lab(["generate", str(repo_root / "taxonomy"), "--teacher", "scripted:", "--out",
                        str(tmp_path / "x"), "--quiet"])
    assert code != 0 and "generate.teacher_license" in io.err and "Traceback" not in io.err

"""The release's README.md is a Hub model card (issue 24.2): ``huggingface_hub.ModelCard`` reads
back its license, base model (also for a local student), tags and a model-index entry for every
evaluation total with n and its 95% interval."""

from __future__ import annotations

import json

from huggingface_hub import ModelCard
from tests.release.test_release import run_dir  # noqa: F401 (fixture)

from lab_tools.release.card import hub_base_model
from lab_tools.release.release import make_release


def test_model_card_loads_with_front_matter(run_dir):  # noqa: F811
    out = make_release(run_dir).out_dir
    card = ModelCard.load(out / "README.md")
    data = card.data
    assert data.license == "apache-2.0" and data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation" and "lab" in data.tags
    [result] = data.eval_results  # the fixture's eval.json has one total: knowledge
    assert (result.metric_type, result.metric_value, result.dataset_split) == ("accuracy", 0.5, "test")
    assert result.metric_args == {"n": 8, "interval_low": 0.215216, "interval_high": 0.784784, "confidence": 0.95,
                                  "base_model_value": 0.25}
    assert data.to_dict()["source_taxonomy"]["commit"] == json.loads((out / "release.json").read_text())["taxonomy"]["commit"]
    assert card.text.lstrip().startswith("# Model card")


def test_base_model_of_a_local_student(tmp_path, tiny_model):
    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text(json.dumps({"_name_or_path": "org/base-7b"}))
    # from the released model's config, the license unknown
    assert hub_base_model(str(student), str(student), student) == {"base_model": "org/base-7b", "license": "other"}
    # the student's own Hub card names its base and license
    (student / "README.md").write_text("---\nbase_model: org/true-base\nlicense: mit\n---\n# x\n")
    assert hub_base_model(str(student), str(student), student) == {"base_model": "org/true-base", "license": "mit"}
    # a Hub id given as the student is the base; a local path never is
    assert hub_base_model("org/named", None, None)["base_model"] == "org/named"
    assert hub_base_model(str(tiny_model), str(tiny_model), tiny_model)["base_model"] is None


def test_model_card_names_the_dataset_of_release_dataset(run_dir, repo_root):  # noqa: F811
    """``release.dataset`` (issue 24.2): recorded in run.json and release.json, and the card's
    ``datasets`` as huggingface_hub reads it back; unset, the card names no dataset."""
    from lab_tools.config import load_config
    from lab_tools.release.release import provenance, read_json, write_json

    out = make_release(run_dir, run_dir / "release-unset").out_dir
    assert ModelCard.load(out / "README.md").data.datasets is None
    assert read_json(out / "release.json")["dataset"] is None and "dataset" not in read_json(run_dir / "run.json")

    cfg = load_config(None, environ={"LAB_RELEASE__DATASET": "alice/lab-taxonomy-data"})
    write_json(run_dir / "run.json", provenance(repo_root / "taxonomy", cfg))  # what the build records
    assert read_json(run_dir / "run.json")["dataset"] == "alice/lab-taxonomy-data"
    out = make_release(run_dir, run_dir / "release-set").out_dir
    card = ModelCard.load(out / "README.md")
    assert card.data.datasets == ["alice/lab-taxonomy-data"]
    assert read_json(out / "release.json")["dataset"] == "alice/lab-taxonomy-data"
    assert "Training data (Hub dataset): <code>alice/lab-taxonomy-data</code>" in card.text
    # `lab release` with a config that sets it names that one
    other = load_config(None, environ={"LAB_RELEASE__DATASET": "bob/other-data"})
    out = make_release(run_dir, run_dir / "release-cfg", cfg=other).out_dir
    assert ModelCard.load(out / "README.md").data.datasets == ["bob/other-data"]


def test_release_dataset_must_be_a_hub_id_named_with_its_line(tmp_path, run_lab):
    (tmp_path / "lab.yaml").write_text("generate:\n  samples: 2\nrelease:\n  dataset: my data set\n")
    code, cap = run_lab(["config", "show", str(tmp_path)])
    assert code != 0 and "Traceback" not in cap.err
    assert "lab.yaml:4" in cap.err and "release.dataset: must be a Hugging Face Hub dataset id" in cap.err, cap.err

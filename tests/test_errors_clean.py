"""Bad input is a clean error: exit code != 0, a message naming the file (and line) and the
field, no traceback, nothing half-written. One test per case of the review's list (the phase-file
case of `lab release` is in tests/release/test_release.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from lab_tools.tiny import CHAT_TEMPLATE

HAIKU = {"version": 3, "created_by": "tester", "task_description": "Write a haiku about a topic.",
         "seed_examples": [{"question": f"Write a haiku about {t}.", "answer": f"A haiku about {t}\nfive seven five"}
                           for t in ("rain", "snow", "the sea", "autumn leaves", "a cat")]}
SAMPLE = {"messages": [{"role": "user", "content": "Write a haiku about rain."},
                       {"role": "assistant", "content": "Rain on the roof, soft."}],
          "metadata": {"leaf": "compositional_skills/writing/haiku", "phase": "st"}}


def _clean(code, cap, *needles):
    """The common assertions: non-zero exit, every needle in stderr, no traceback anywhere."""
    text = cap.out + cap.err
    assert code not in (0, None), text
    assert "Traceback" not in text
    for n in needles:
        assert str(n) in cap.err, (n, cap.err)


@pytest.fixture()
def taxonomy(tmp_path) -> Path:
    root = tmp_path / "taxonomy"
    (root / "compositional_skills" / "writing" / "haiku").mkdir(parents=True)
    (root / "compositional_skills" / "writing" / "haiku" / "qna.yaml").write_text(yaml.safe_dump(HAIKU))
    return root


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "st.jsonl").write_text(json.dumps(SAMPLE) + "\n")
    return d


# ----------------------------------------------------------------------------- heldout_mc.jsonl

MC_OK = {"leaf": "knowledge/x", "question": "Which planet is closest to the Sun?",
         "choices": ["Mercury", "Venus", "Mars"], "answer": 0}


@pytest.mark.parametrize("row, field", [
    (["Which planet?", ["Mercury", "Venus"], 0], None),                      # wrong shape: not an object
    ({k: v for k, v in MC_OK.items() if k != "choices"}, "choices"),         # missing choices
    ({**MC_OK, "choices": "Mercury"}, "choices"),                            # choices not a list
    ({**MC_OK, "answer": 3}, "answer"),                                      # out of range
    ({**MC_OK, "answer": -1}, "answer"),
    ({**MC_OK, "answer": "0"}, "answer"),                                    # not an index
])
def test_malformed_heldout_mc_row(data_dir, run_lab, tmp_path, row, field):
    path = data_dir / "heldout_mc.jsonl"
    path.write_text(json.dumps(MC_OK) + "\n" + json.dumps(row) + "\n")
    code, cap = run_lab(["evaluate", "--model", "embedded", "--data", str(data_dir), "--judge", "none",
                         "--out", str(tmp_path / "eval")])
    _clean(code, cap, f"{path}:2:", *([f"{field}:"] if field else []))
    assert not (tmp_path / "eval").exists()


def test_malformed_heldout_mc_row_stops_train_before_the_manifest(data_dir, run_lab, tmp_path, tiny_model):
    path = data_dir / "heldout_mc.jsonl"
    path.write_text(json.dumps({**MC_OK, "answer": 7}) + "\n")
    out = tmp_path / "train"
    code, cap = run_lab(["train", "--data", str(data_dir), "--model", str(tiny_model), "--out", str(out)])
    _clean(code, cap, f"{path}:1:", "answer:")
    assert not (out / "manifest.json").exists()


# ----------------------------------------------------------------------------- model folders

@pytest.fixture()
def no_tokenizer(tiny_model, tmp_path) -> Path:
    d = tmp_path / "model-without-tokenizer"
    d.mkdir()
    for f in tiny_model.iterdir():
        if not f.name.startswith(("tokenizer", "chat_template", "special_tokens", "vocab", "merges")):
            shutil.copy2(f, d / f.name)
    return d


def test_train_model_without_tokenizer(data_dir, no_tokenizer, run_lab, tmp_path):
    out = tmp_path / "train"
    code, cap = run_lab(["train", "--data", str(data_dir), "--model", str(no_tokenizer), "--out", str(out)])
    _clean(code, cap, str(no_tokenizer), "model:", "no tokenizer")
    assert not (out / "manifest.json").exists()


def test_chat_model_without_tokenizer(no_tokenizer, run_lab):
    code, cap = run_lab(["chat", "--model", str(no_tokenizer)])
    _clean(code, cap, str(no_tokenizer), "model:", "no tokenizer")


def test_chat_template_that_raises_names_the_sample(data_dir, tiny_model, run_lab, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    raising = ("{% for message in messages %}{% if 'BOOM' in message['content'] %}"
               "{{ raise_exception('this template cannot render BOOM') }}{% endif %}{% endfor %}")
    (model / "chat_template.jinja").write_text(raising + CHAT_TEMPLATE)
    bad = {**SAMPLE, "messages": [SAMPLE["messages"][0], {"role": "assistant", "content": "BOOM"}]}
    (data_dir / "st.jsonl").write_text(json.dumps(SAMPLE) + "\n\n" + json.dumps(bad) + "\n")
    out = tmp_path / "train"
    code, cap = run_lab(["train", "--data", str(data_dir), "--model", str(model), "--out", str(out)])
    _clean(code, cap, f"{data_dir / 'st.jsonl'}:3:", "messages:", "cannot render BOOM")
    assert not (out / "manifest.json").exists()


# ----------------------------------------------------------------------------- settings out of range

@pytest.mark.parametrize("setting, value", [("batch_size", 0), ("workers", -2), ("max_new_tokens", 0),
                                            ("answer_tokens", -1), ("eval_tokens", 0)])
def test_generate_setting_out_of_range_in_lab_yaml(taxonomy, run_lab, tmp_path, setting, value):
    (taxonomy / "lab.yaml").write_text(yaml.safe_dump({"generate": {setting: value}}))
    out = tmp_path / "out"
    code, cap = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--out", str(out)])
    _clean(code, cap, str(taxonomy / "lab.yaml"), f"generate.{setting}: must be >= 1, got {value}")
    assert not out.exists()


def test_workers_flag_out_of_range(taxonomy, run_lab, tmp_path):
    code, cap = run_lab(["generate", str(taxonomy), "--teacher", "scripted:", "--workers", "0",
                         "--out", str(tmp_path / "out")])
    _clean(code, cap, "generate.workers: must be >= 1, got 0")


def test_selection_batch_size_out_of_range(data_dir, run_lab, tmp_path, tiny_model, repo_root):
    preset = yaml.safe_load((repo_root / "training" / "presets" / "tiny-cpu.yaml").read_text())
    preset.setdefault("selection", {})["batch_size"] = 0
    path = tmp_path / "bad-preset.yaml"
    path.write_text(yaml.safe_dump(preset))
    out = tmp_path / "train"
    code, cap = run_lab(["train", "--data", str(data_dir), "--model", str(tiny_model), "--preset", str(path),
                         "--out", str(out)])
    _clean(code, cap, str(path), "selection.batch_size: must be >= 1, got 0")
    assert not (out / "manifest.json").exists()


# ----------------------------------------------------------------------------- scripted teacher

@pytest.mark.parametrize("script, field", [
    ([{"match": "x", "reply": "y"}], None),                        # a list, not an object
    ({"pair_eval": {"match": "x", "reply": "3"}}, "pair_eval"),    # rules not a list
    ({"pair_eval": ["3"]}, "pair_eval.0"),                         # a rule that is not an object
    ({"pair_eval": [{"reply": []}]}, "pair_eval.0.reply"),         # empty reply list
    ({"pair_eval": [{"match": "(unclosed", "reply": "3"}]}, "pair_eval.0.match"),  # bad regex
    ({"pair_evaluation": []}, "pair_evaluation"),                  # unknown stage tag
    ({"delay": "slow"}, "delay"),
])
def test_scripted_teacher_file_of_the_wrong_shape(taxonomy, run_lab, tmp_path, script, field):
    path = tmp_path / "script.json"
    path.write_text(json.dumps(script))
    out = tmp_path / "out"
    code, cap = run_lab(["generate", str(taxonomy), "--teacher", f"scripted:{path}", "--out", str(out)])
    _clean(code, cap, str(path), *([f"{field}:"] if field else []))
    assert not out.exists()


def test_scripted_teacher_file_not_json(taxonomy, run_lab, tmp_path):
    path = tmp_path / "script.json"
    path.write_text('{"pair_eval": [\n  {"reply": "3",}\n]}')
    code, cap = run_lab(["generate", str(taxonomy), "--teacher", f"scripted:{path}", "--out", str(tmp_path / "o")])
    _clean(code, cap, f"{path}:2:", "not valid JSON")


@pytest.mark.parametrize("row, field", [({"leaf": "x", "messages": "hi"}, "messages"),
                                        ({"leaf": "x", "messages": [{"role": "assistant", "content": "a"}]}, "messages"),
                                        ({"leaf": "x", "messages": [{"role": "user", "content": "q"}], "reference": 3},
                                         "reference"),
                                        ({"leaf": ["x"], "messages": []}, "leaf")])
def test_malformed_heldout_prompt_row(tmp_path, row, field):
    from lab_tools.errors import LabError
    from lab_tools.eval.heldout import read_prompts

    path = tmp_path / "heldout_prompts.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(LabError) as err:
        read_prompts(path)
    assert (err.value.file, err.value.line, err.value.field) == (str(path), 1, field)

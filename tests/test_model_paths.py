"""Model directories given on the command line are checked before anything is loaded: a path that
does not exist, a file, a folder without config.json or a Hub id (ORG/NAME) is a clean error
naming the option and the path, at once (no judge, teacher or student is loaded first)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab_tools.errors import LabError

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
SAMPLE = {"messages": [{"role": "user", "content": "Write a haiku about rain."},
                       {"role": "assistant", "content": "Rain on the roof, soft."}],
          "metadata": {"leaf": "compositional_skills/writing/haiku", "phase": "st"}}


@pytest.fixture()
def no_loading(monkeypatch):
    """Every way a command loads a model fails the test loudly (not with a clean LabError)."""
    import lab_tools.feedback.evaluate as fb_eval
    import lab_tools.models as models
    import lab_tools.sdg.backends as backends

    def refuse(*args, **kwargs):
        raise AssertionError(f"a model was loaded before the model path was checked: {args}")

    for mod, name in ((models, "load_model"), (models, "load_tokenizer"), (models, "embedded_model_dir"),
                      (backends, "make_teacher"), (fb_eval, "load_rm")):
        monkeypatch.setattr(mod, name, refuse)


@pytest.fixture()
def data_dir(tmp_path) -> Path:
    d = tmp_path / "data"
    d.mkdir()
    (d / "st.jsonl").write_text(json.dumps(SAMPLE) + "\n")
    return d


def _clean(code, cap, *needles):
    text = cap.out + cap.err
    assert code not in (0, None), text
    assert "Traceback" not in text
    for n in needles:
        assert str(n) in cap.err, (n, cap.err)


def _commands(tmp_path: Path, data_dir: Path, bad: str) -> dict[str, tuple[list[str], str]]:
    """Each command line that takes a model directory, with ``bad`` as that directory, and the
    option the error must name."""
    out = str(tmp_path / "out")
    tax = tmp_path / "taxonomy"
    tax.mkdir(exist_ok=True)
    return {
        "evaluate --model": (["evaluate", "--model", bad, "--taxonomy", str(tax), "--out", out], "--model"),
        "evaluate --base-model": (["evaluate", "--model", "embedded", "--base-model", bad, "--taxonomy", str(tax),
                                   "--out", out], "--base-model"),
        "evaluate --reward-model": (["evaluate", "--reward-model", bad, "--data", str(data_dir), "--out", out],
                                    "--reward-model"),
        "train --model": (["train", "--data", str(data_dir), "--model", bad, "--out", out], "--model"),
        "train --phase rm --model": (["train", "--phase", "rm", "--data", str(data_dir), "--model", bad,
                                      "--out", out], "--model"),
        "train --phase pref --reward-model": (["train", "--phase", "pref", "--data", str(data_dir),
                                               "--reward-model", bad, "--out", out], "--reward-model"),
        "chat --model": (["chat", "--model", bad], "--model"),
        "build --student": (["build", str(tax), "--student", bad, "--out", out, "--quiet"], "--student"),
    }


CASES = ["evaluate --model", "evaluate --base-model", "evaluate --reward-model", "train --model",
         "train --phase rm --model", "train --phase pref --reward-model", "chat --model", "build --student"]


@pytest.mark.parametrize("case", CASES)
def test_missing_model_dir_is_named_before_loading(case, tmp_path, data_dir, run_lab, no_loading, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "no-such-model"
    args, option = _commands(tmp_path, data_dir, str(bad))[case]
    code, cap = run_lab(args)
    _clean(code, cap, option, bad, "does not exist")


@pytest.mark.parametrize("case", CASES)
def test_hub_id_says_models_must_be_local(case, tmp_path, data_dir, run_lab, no_loading, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args, option = _commands(tmp_path, data_dir, HUB_ID)[case]
    code, cap = run_lab(args)
    _clean(code, cap, option, HUB_ID, "must be local directories",
           f"huggingface-cli download {HUB_ID} --local-dir", "hf download")


def test_file_and_folder_without_config(tmp_path, run_lab, no_loading):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"\0")
    code, cap = run_lab(["chat", "--model", str(weights)])
    _clean(code, cap, "--model", weights, "not a directory")
    folder = tmp_path / "folder"
    folder.mkdir()
    code, cap = run_lab(["chat", "--model", str(folder)])
    _clean(code, cap, "--model", folder, "no config.json")


def test_evaluate_missing_model_imports_no_torch(tmp_path):
    """The issue's case: `lab evaluate --model /nonexistent` used to load the judge (~37 s) first."""
    code = ("import sys\nfrom lab_tools.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    print('EXIT', e.code)\n"
            "print('HEAVY', [m for m in ('torch', 'transformers') if m in sys.modules])\n")
    bad = tmp_path / "nonexistent"
    out = subprocess.run([sys.executable, "-c", code, "evaluate", "--model", str(bad), "--out",
                          str(tmp_path / "eval")], capture_output=True, text=True, cwd=tmp_path)
    assert "EXIT 1" in out.stdout and "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert str(bad) in out.stderr and "Traceback" not in out.stderr


def test_require_local_model_dir(tmp_path):
    from lab_tools.models import require_local_model_dir

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    assert require_local_model_dir("embedded") == "embedded"
    assert require_local_model_dir(str(model)) == model
    with pytest.raises(LabError, match="does not exist"):  # where only a directory will do
        require_local_model_dir("embedded", "--reward-model", embedded=False)
    with pytest.raises(LabError) as err:
        require_local_model_dir(HUB_ID, "--judge")
    assert err.value.field == "--judge" and "hf download" in str(err.value)
    # an existing relative folder that looks like ORG/NAME is a path, not a Hub id
    (tmp_path / "org" / "name").mkdir(parents=True)
    with pytest.raises(LabError, match="no config.json"):
        require_local_model_dir(str(tmp_path / "org" / "name"))


def test_generate_reward_model_is_checked_before_the_sdg(tmp_path, run_lab, no_loading):
    """`lab generate --self-play --reward-model DIR` used to find a bad DIR only after the SDG."""
    leaf = tmp_path / "taxonomy" / "compositional_skills" / "writing" / "haiku"
    leaf.mkdir(parents=True)
    (leaf / "qna.yaml").write_text("version: 3\n")
    bad = tmp_path / "no-such-rm"
    code, cap = run_lab(["generate", str(tmp_path / "taxonomy"), "--teacher", "scripted:", "--self-play",
                         "--reward-model", str(bad), "--out", str(tmp_path / "out"), "--no-progress"])
    _clean(code, cap, "--reward-model", bad, "does not exist")
    assert not (tmp_path / "out").exists()

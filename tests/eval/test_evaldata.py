"""The evaluation data shipped inside the package: found without ../shared, checked by sha256,
and a configured evaluation whose file is missing fails naming the file."""

from __future__ import annotations

import shutil

import pytest

from lab_tools import evaldata
from lab_tools.errors import LabError
from lab_tools.eval.preference import load_static_hhh
from lab_tools.feedback.evaluate import hhh_default_path
from tests.conftest import REPO


def test_shipped_files_are_inside_the_package_and_match_their_readme():
    hhh, vicuna = evaldata.static_hhh_path(), evaldata.vicuna_questions_path()
    assert hhh == hhh_default_path() and hhh.parent == REPO / "lab_tools" / "evaldata"
    assert "shared" not in hhh.parts
    readme = (hhh.parent / "README.md").read_text()
    assert all(digest in readme for digest in evaldata.CHECKSUMS.values())  # README lists the same sums
    assert "Apache-2.0" in readme
    assert len(load_static_hhh(hhh)) == 221
    questions = evaldata.load_vicuna_questions()
    assert len(questions) == 80 and len({q["question_id"] for q in questions}) == 80


def test_a_modified_or_missing_shipped_file_is_refused(tmp_path, monkeypatch):
    for name in evaldata.CHECKSUMS:
        shutil.copy(evaldata.HERE / name, tmp_path / name)
    monkeypatch.setattr(evaldata, "HERE", tmp_path)
    assert evaldata.static_hhh_path() == tmp_path / "hhh_eval.json"
    with (tmp_path / "hhh_eval.json").open("a") as f:
        f.write(" ")
    with pytest.raises(LabError, match="modified") as err:
        evaldata.static_hhh_path()
    assert err.value.file == str(tmp_path / "hhh_eval.json")
    (tmp_path / "vicuna_questions.jsonl").unlink()
    with pytest.raises(LabError, match="missing") as err:
        evaldata.vicuna_questions_path()
    assert "vicuna_questions.jsonl" in str(err.value)


def test_vicuna_file_errors_name_the_line(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"question_id": 1, "text": "hi"}\n{"question_id": 2}\n')
    with pytest.raises(LabError) as err:
        evaldata.load_vicuna_questions(p)
    assert err.value.line == 2 and str(p) in str(err.value)
    with pytest.raises(LabError, match="not found"):
        evaldata.load_vicuna_questions(tmp_path / "absent.jsonl")


def test_lab_evaluate_with_a_missing_hhh_file_names_it(tmp_path, run_lab):
    """A configured evaluation whose data are missing fails with the file named, never an empty row."""
    rm = tmp_path / "rm"
    rm.mkdir()
    (rm / "config.json").write_text("{}")  # passes the model-folder check; never loaded
    (tmp_path / "comparisons.jsonl").write_text("")
    missing = tmp_path / "nope" / "hhh.json"
    code, cap = run_lab(["evaluate", "--reward-model", str(rm), "--data", str(tmp_path),
                         "--hhh", str(missing), "--out", str(tmp_path / "ev")])
    assert code != 0
    assert str(missing) in cap.err and "Traceback" not in cap.err + cap.out

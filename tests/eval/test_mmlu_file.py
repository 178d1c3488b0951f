"""MMLU-format files (CSV like MMLU's dev files, or JSONL) and item selection."""

import json

import pytest

from lab_tools.errors import LabError
from lab_tools.eval.evalset import load_eval_set, load_mmlu_file


def test_csv_without_and_with_header(tmp_path):
    plain = tmp_path / "astronomy_dev.csv"
    plain.write_text('"What is the Sun?",A planet,A star,A moon,A comet,B\n'
                     '"2+2, in words?",three,four,five,six,B\n', encoding="utf-8")
    items = load_mmlu_file(plain)
    assert [i["answer"] for i in items] == [1, 1]
    assert items[1]["question"] == "2+2, in words?" and items[1]["choices"][1] == "four"
    assert {i["source"] for i in items} == {"astronomy_dev.csv"}
    head = tmp_path / "h.csv"
    head.write_text("question,A,B,C,D,answer\nQ?,w,x,y,z,D\n", encoding="utf-8")
    assert load_mmlu_file(head) == [{"source": "h.csv", "question": "Q?", "choices": ["w", "x", "y", "z"],
                                     "answer": 3}]


def test_bad_rows_name_file_line_and_field(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("Q1?,a,b,c,d,A\nQ2?,a,b,c,d,E\n", encoding="utf-8")
    with pytest.raises(LabError) as err:
        load_mmlu_file(bad)
    assert err.value.line == 2 and err.value.field == "answer" and "bad.csv" in str(err.value)
    short = tmp_path / "short.csv"
    short.write_text("Q?,a\n", encoding="utf-8")
    with pytest.raises(LabError, match="columns"):
        load_mmlu_file(short)
    empty = tmp_path / "empty.csv"
    empty.write_text("\n", encoding="utf-8")
    with pytest.raises(LabError, match="no questions"):
        load_mmlu_file(empty)


def test_jsonl_choices_or_letter_keys(tmp_path):
    f = tmp_path / "x.jsonl"
    f.write_text(json.dumps({"question": "q1", "choices": ["a", "b", "c"], "answer": 2}) + "\n\n"
                 + json.dumps({"question": "q2", "A": "a", "B": "b", "answer": "b"}) + "\n", encoding="utf-8")
    items = load_mmlu_file(f)
    assert [(i["choices"], i["answer"]) for i in items] == [(["a", "b", "c"], 2), (["a", "b"], 1)]
    f.write_text('{"question": "q"\n', encoding="utf-8")
    with pytest.raises(LabError) as err:
        load_mmlu_file(f)
    assert err.value.line == 1


def test_caps_keep_every_leaf(repo_root):
    es = load_eval_set(taxonomy=repo_root / "taxonomy", max_mc=5, max_prompts=4)
    assert len(es.mc) <= 5 and len(es.prompts) <= 4
    assert len({i["leaf"] for i in es.mc}) == min(5, len({i["leaf"] for i in
                                                          load_eval_set(taxonomy=repo_root / "taxonomy").mc}))

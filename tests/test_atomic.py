"""lab_tools.atomic: a write either lands whole or leaves the old file; no temporaries remain."""

import json
import os

import pytest

from lab_tools.atomic import (atomic_dir, atomic_open, write_json_atomic, write_jsonl_atomic,
                              write_text_atomic)


class Boom(Exception):
    pass


def test_writes_land_whole(tmp_path):
    p = tmp_path / "sub" / "a.json"
    write_json_atomic(p, {"x": "é"}, indent=1, newline=True)
    assert json.loads(p.read_text(encoding="utf-8")) == {"x": "é"} and p.read_text().endswith("}\n")
    write_jsonl_atomic(tmp_path / "r.jsonl", [{"a": 1}, [2]])
    assert (tmp_path / "r.jsonl").read_text() == '{"a": 1}\n[2]\n'
    write_text_atomic(tmp_path / "t.txt", "hi")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "t.txt").stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600
    assert sorted(x.name for x in tmp_path.rglob("*")) == ["a.json", "r.jsonl", "sub", "t.txt"]


def test_failure_keeps_old_content_and_removes_the_temporary(tmp_path):
    p = tmp_path / "state.json"
    write_json_atomic(p, {"v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"v": object()})  # not serializable
    with pytest.raises(Boom):
        with atomic_open(p) as fh:
            fh.write('{"v": 2, "torn": ')
            raise Boom()
    assert json.loads(p.read_text()) == {"v": 1}
    assert [x.name for x in tmp_path.iterdir()] == ["state.json"]


def test_atomic_dir_swaps_in_or_leaves_nothing(tmp_path):
    target = tmp_path / "release"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    assert (target / "a").read_text() == "1"
    with pytest.raises(Boom):
        with atomic_dir(target) as d:
            (d / "a").write_text("2")
            raise Boom()
    assert (target / "a").read_text() == "1"
    with atomic_dir(target) as d:
        (d / "b").write_text("3")
    assert [x.name for x in target.iterdir()] == ["b"]
    assert [x.name for x in tmp_path.iterdir()] == ["release"]  # no release.tmp* / release.old*

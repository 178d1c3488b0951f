"""The hostile-input-safe loader refuses every dangerous or ambiguous input with file and line."""

from __future__ import annotations

import pytest

from lab_tools.errors import LabError
from lab_tools.taxonomy.safeyaml import MAX_BYTES, load_yaml_doc, load_yaml_file

HOSTILE = {
    "alias": (b"a: &x [1, 2]\nb: *x\n", 1, "anchor"),
    "billion_laughs": (b"a: &a ['lol','lol']\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n"
                       b"c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\nd: [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n", 1, "anchor"),
    "bare_alias": (b"a: 1\nb: *nowhere\n", 2, None),
    "deep_nesting": (b"a: " + b"[" * 5000 + b"]" * 5000 + b"\n", 1, "nesting"),
    "deep_block_nesting": ("".join(" " * i + f"k{i}:\n" for i in range(60)).encode() + b" " * 60 + b"v\n",
                           None, "nesting"),
    "tab_indent": (b"a:\n\t- 1\n", 2, "tab"),
    "duplicate_key": (b"version: 3\ncreated_by: a\nversion: 2\n", 3, "duplicate key"),
    "list_top": (b"- question: q\n  answer: a\n", 1, "mapping"),
    "scalar_top": (b"just text\n", 1, "mapping"),
    "empty": (b"", 1, "empty"),
    "two_documents": (b"a: 1\n---\nb: 2\n", 2, "more than one"),
    "python_tag": (b"a: !!python/object/apply:os.system ['echo hi']\n", 1, "tag"),
    "invalid_utf8": (b"a: 1\nb: \xff\xfe\n", 2, "UTF-8"),
    "binary": (b"a: 1\n\x00\x01\x02", 2, "binary"),
    "syntax": (b"a: [1, 2\nb: 3\n", None, "invalid YAML"),
    "complex_key": (b"? [a, b]\n: 1\n", 1, "key"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_input_is_refused_with_file_and_line(tmp_path, name):
    raw, line, word = HOSTILE[name]
    f = tmp_path / "qna.yaml"
    f.write_bytes(raw)
    with pytest.raises(LabError) as err:
        load_yaml_file(f)
    assert err.value.file == str(f)
    if line is not None:
        assert err.value.line == line, str(err.value)
    if word is not None:
        assert word.lower() in err.value.message.lower(), err.value.message


def test_file_over_one_mib_is_refused_before_parsing(tmp_path):
    f = tmp_path / "qna.yaml"
    f.write_bytes(b"a: '" + b"x" * MAX_BYTES + b"'\n")
    with pytest.raises(LabError, match="1 MiB"):
        load_yaml_file(f)


def test_values_match_pyyaml_and_positions_point_at_nodes(tmp_path):
    import yaml

    text = ("version: 3\ncreated_by: me\nseed_examples:\n  - question: |\n      Why?\n"
            "    answer: 'Because.'\n  - question: n\n    answer: 2024-01-01\nflag: yes\nnum: 1.5\nnothing:\n")
    f = tmp_path / "qna.yaml"
    f.write_text(text)
    doc = load_yaml_doc(f)
    assert doc.data == yaml.safe_load(text)
    assert doc.positions[("seed_examples", 1, "answer")] == (8, 13)
    assert doc.key_positions[("seed_examples", 0, "answer")] == (6, 5)
    assert doc.position(("seed_examples", 7, "missing")) == doc.positions[("seed_examples",)]


def test_tabs_inside_text_are_allowed(tmp_path):
    f = tmp_path / "qna.yaml"
    f.write_text('a: "x\\ty"\nb: "col1\tcol2"\n')
    assert load_yaml_file(f) == {"a": "x\ty", "b": "col1\tcol2"}

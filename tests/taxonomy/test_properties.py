"""Property-based: random and mutated YAML thrown at the validator. It never raises; it always reports."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lab_tools.taxonomy.findings import Finding
from lab_tools.taxonomy.validate import validate_file

from .helpers import knowledge, skill

LEAF = "compositional_skills/a/b/qna.yaml"
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
VALID = [yaml.safe_dump(skill(), sort_keys=False), yaml.safe_dump(knowledge(), sort_keys=False),
         yaml.safe_dump(skill(context=True, version=2), sort_keys=False)]


def _check(tmp_path, raw: bytes, leaf: str = LEAF):
    path = tmp_path / leaf
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(raw)
    found = validate_file(tmp_path, leaf)
    assert isinstance(found, list) and all(isinstance(f, Finding) for f in found)
    assert all(f.line >= 1 and f.column >= 1 and f.severity in ("error", "warning") for f in found)
    return found


@SETTINGS
@given(st.binary(max_size=2000))
def test_random_bytes(tmp_path, raw):
    _check(tmp_path, raw)


yaml_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=25)


@SETTINGS
@given(yaml_values)
def test_random_yaml_documents(tmp_path, value):
    _check(tmp_path, yaml.safe_dump(value).encode())


@SETTINGS
@given(st.sampled_from(range(len(VALID))), st.data())
def test_mutated_valid_leaves(tmp_path, which, data):
    text = VALID[which]
    leaf = "knowledge/a/b/qna.yaml" if which == 1 else LEAF
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text)))
        op = data.draw(st.sampled_from(["delete", "insert", "dup_line"]))
        if op == "delete":
            text = text[:i] + text[i + data.draw(st.integers(1, 20)):]
        elif op == "insert":
            text = text[:i] + data.draw(st.sampled_from(["\t", "&a ", "*a", ": ", "- ", "\n", "[", "'", "\x00",
                                                         "!!python/name:os.system ", "version: 9\n"])) + text[i:]
        else:
            lines = text.splitlines(keepends=True)
            j = i % max(1, len(lines))
            text = "".join(lines[: j + 1] + lines[j:])
    _check(tmp_path, text.encode(), leaf)

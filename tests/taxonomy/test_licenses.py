"""attribution.txt parsing, SPDX normalization and the license allowlist."""

from __future__ import annotations

import pytest

from lab_tools.config_sections import DEFAULT_LICENSES
from lab_tools.taxonomy.licenses import check_licenses, normalize_license, parse_attribution

from .helpers import ATTRIBUTION, knowledge, skill, write_leaf


@pytest.mark.parametrize("raw,spdx", [
    ("CC-BY-SA-4.0", "CC-BY-SA-4.0"), ("CC BY-NC-SA 4.0", "CC-BY-NC-SA-4.0"), ("Apache 2.0", "Apache-2.0"),
    ("Apache License, Version 2.0", "Apache-2.0"), ("cc-by-4.0", "CC-BY-4.0"), ("CC0 1.0", "CC0-1.0"),
    ("MIT AND CC-BY-4.0", "MIT AND CC-BY-4.0"), ("public domain", None), ("", None),
])
def test_normalize_license(raw, spdx):
    assert normalize_license(raw)[0] == spdx


def test_parse_attribution_single_and_multiple(tmp_path):
    f = tmp_path / "attribution.txt"
    f.write_text(ATTRIBUTION)
    a = parse_attribution(f)
    assert (a.title, a.link, a.license, a.creators, a.spdx) == (
        "Moon facts", "https://example.org/moon", "CC-BY-4.0", "Example Authors", "CC-BY-4.0")
    f.write_text(ATTRIBUTION + "\n" + ATTRIBUTION.replace("CC-BY-4.0", "MIT").replace("Moon", "Sun"))
    a = parse_attribution(f)
    assert len(a.entries) == 2 and a.spdx == "CC-BY-4.0 AND MIT" and a.title == "Moon facts"
    assert a.entries[1].line == 8  # its License line


def _check(tmp_path, leaf, attribution, data):
    write_leaf(tmp_path, leaf, data, attribution)
    return check_licenses(tmp_path, [leaf], DEFAULT_LICENSES)


def test_knowledge_rules(tmp_path):
    k = "knowledge/space/moon"
    assert _check(tmp_path, k, ATTRIBUTION, knowledge()) == []
    (tmp_path / k / "attribution.txt").unlink()
    missing = check_licenses(tmp_path, [k], DEFAULT_LICENSES)
    assert len(missing) == 1 and missing[0].is_error and "missing attribution.txt" in missing[0].message
    for lic, word in (("CC BY-ND 4.0", "derivatives"), ("CC-BY-NC-4.0", "non-commercial"),
                      ("public domain", "not an SPDX"), ("GPL-3.0-only", "allowlist")):
        found = _check(tmp_path, k, ATTRIBUTION.replace("CC-BY-4.0", lic), knowledge())
        assert len(found) == 1 and found[0].is_error and word in found[0].message, (lic, found)
        assert found[0].line == 3 and found[0].field == "License of the work"
    found = _check(tmp_path, k, ATTRIBUTION.replace("Creator names: Example Authors\n", ""), knowledge())
    assert [f.field for f in found] == ["Creator names"]


def test_skills_rules_are_warnings_except_nc_nd(tmp_path):
    s = "compositional_skills/math/add"
    write_leaf(tmp_path, s, skill())
    assert [f.severity for f in check_licenses(tmp_path, [s], DEFAULT_LICENSES)] == ["warning"]
    assert [f.severity for f in _check(tmp_path, s, ATTRIBUTION.replace("CC-BY-4.0", "public domain"),
                                       skill())] == ["warning"]
    assert [f.severity for f in _check(tmp_path, s, ATTRIBUTION.replace("CC-BY-4.0", "CC BY-NC 4.0"),
                                       skill())] == ["error"]


def test_unreadable_attribution_is_a_finding(tmp_path):
    k = "knowledge/space/moon"
    write_leaf(tmp_path, k, knowledge())
    (tmp_path / k / "attribution.txt").write_bytes(b"\xff\x00")
    found = check_licenses(tmp_path, [k], DEFAULT_LICENSES)
    assert len(found) == 1 and found[0].is_error

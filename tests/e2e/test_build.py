"""`lab build` end to end with the real stages, the tiny random model as student and the scripted
teacher and judge: release provenance against the taxonomy, checksums, loading, incremental rebuilds."""

from __future__ import annotations

import json
import subprocess

from click.testing import CliRunner

from lab_tools.build import STATE_FILE
from lab_tools.cli import cli
from lab_tools.markdown import code, inline
from lab_tools.taxonomy.leaf import iter_leaves
from lab_tools.taxonomy.licenses import parse_attribution

from build_fixture import LEAVES, git


def _build(root, out, *extra):
    res = CliRunner().invoke(cli, ["build", str(root), "--out", str(out), *extra], catch_exceptions=False)
    state = json.loads((out / STATE_FILE).read_text())
    return res, {name: st["status"] for name, st in state["stages"].items()}, state


def _statuses(state) -> dict:
    return {k: v["status"] for k, v in state["last_build"]["stages"].items()}


def test_build_end_to_end_then_incremental(build_repo, cache_dir, tmp_path, monkeypatch):
    root, out = build_repo, tmp_path / "run"
    res, _, state = _build(root, out)
    assert res.exit_code == 0, res.output
    assert set(_statuses(state).values()) == {"ran"}, _statuses(state)
    assert "lab build" in res.output and "release:" in res.output

    rel = out / "release"
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=rel, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr

    # provenance: the card and release.json against the taxonomy and the generated data
    info = json.loads((rel / "release.json").read_text())
    card = (rel / "README.md").read_text()
    assert info["taxonomy"]["commit"] == git(root.parent, "rev-parse", "HEAD") and info["taxonomy"]["commit"] in card
    leaves = iter_leaves(root)
    assert [lf["path"] for lf in info["leaves"]] == sorted(LEAVES) == [lf.path for lf in leaves]
    dataset_card = json.loads((out / "data" / "dataset_card.json").read_text())
    per_leaf = {row["leaf"]: row["phases"] for row in dataset_card["leaves"]}
    for lf in info["leaves"]:
        s = lf["samples"]
        assert {p: s[p] for p in ("kt1", "kt2", "st")} == per_leaf[lf["path"]]
        assert (f"| {code(lf['path'])} | {inline(lf['kind'])} | {code(lf['hash'][:12])} | {s['kt1']} | {s['kt2']} | "
                f"{s['st']} |") in card
    assert sum(lf["samples"]["total"] for lf in info["leaves"]) > 0
    know = [lf for lf in leaves if lf.kind == "knowledge"]
    assert [d["leaf"] for d in info["documents"]] == [lf.path for lf in know]
    for d, lf in zip(info["documents"], know):
        attr = parse_attribution(root / lf.path / "attribution.txt")
        assert d["spdx"] == attr.spdx and attr.spdx in card and d["commit"] == lf.document["commit"]
    assert f"Teacher: {code(info['teacher'])}" in card and info["teacher"] == "scripted:"
    assert info["judge"].startswith("scripted:")
    assert info["preset"] == "tiny-cpu" and "learning_rate" in card
    assert info["evaluation"]["totals"]["knowledge"]["base"] is not None
    assert (rel / "loss.png").is_file() and (rel / "branch_report.md").is_file()

    # `lab runs` reads what this build wrote (tests/test_runs_cli.py covers the details)
    listed = CliRunner().invoke(cli, ["runs", "list", "--runs-dir", str(tmp_path), "--json"])
    (row,) = [r for r in json.loads(listed.stdout) if r["name"] == "run"]
    assert row["status"] == "done" and row["release"] == str(rel) and row["commit"] == info["taxonomy"]["commit"]
    shown = json.loads(CliRunner().invoke(cli, ["runs", "show", str(out), "--json"]).stdout)
    assert [s["fingerprint"] for s in shown["stages"]] == [state["stages"][s["name"]]["fingerprint"]
                                                          for s in shown["stages"]]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model, tok = AutoModelForCausalLM.from_pretrained(rel), AutoTokenizer.from_pretrained(rel)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    assert model.generate(**ids, max_new_tokens=2, do_sample=False).shape[1] > ids["input_ids"].shape[1]

    # nothing changed: every stage skipped, and no model is even loaded
    import lab_tools.models as models

    def no_models(*a, **k):
        raise AssertionError("a skipped build must not load a model")

    monkeypatch.setattr(models, "load_model", no_models)
    res, _, state = _build(root, out)
    assert res.exit_code == 0, res.output
    assert set(_statuses(state).values()) == {"skipped"}
    monkeypatch.undo()
    monkeypatch.setenv("LAB_CACHE_DIR", str(cache_dir))

    # edit one leaf: only that leaf is regenerated; the release is rebuilt from the new data
    haiku = root / LEAVES[1] / "qna.yaml"
    haiku.write_text(haiku.read_text().replace("Write a haiku about", "Compose a haiku about", 1))
    res, _, state = _build(root, out, "--quiet")
    assert res.exit_code == 0, res.output
    st = _statuses(state)
    assert st["generate"] == "ran" and st["release"] == "ran"
    card2 = json.loads((out / "data" / "dataset_card.json").read_text())
    assert sorted(r["leaf"] for r in card2["leaves"] if not r["cached"]) == [LEAVES[1]]
    info2 = json.loads((out / "release" / "release.json").read_text())
    assert info2["taxonomy"]["dirty"] is True
    assert subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out / "release").returncode == 0

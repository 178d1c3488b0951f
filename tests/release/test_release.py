"""Release directories: model files, model card provenance, release.json, SHA256SUMS."""

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from lab_tools.errors import LabError
from lab_tools.markdown import code, inline
from lab_tools.release.release import (make_release, provenance, sample_counts, verify_sha256sums,
                                       write_json)
from lab_tools.taxonomy.leaf import iter_leaves
from lab_tools.weights import file_digests


def _sample(leaf: str, phase: str, leaf_hash: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
                       "metadata": {"leaf": leaf, "leaf_hash": leaf_hash, "phase": phase}}) + "\n"


@pytest.fixture()
def run_dir(tmp_path, tiny_model, repo_root):
    """A run dir shaped like `lab build`'s, with the tiny model as the selected checkpoint."""
    return build_run_dir(tmp_path / "run", tiny_model, repo_root)


def build_run_dir(run, model, repo_root):
    """Write a run dir shaped like `lab build`'s at ``run`` with a copy of the model folder
    ``model`` as the selected checkpoint (weight digests recorded); returns ``run``."""
    root = repo_root / "taxonomy"
    leaves = iter_leaves(root)
    data = run / "data"
    data.mkdir(parents=True)
    know = [lf.path for lf in leaves if lf.kind == "knowledge"]
    skills = [lf.path for lf in leaves if lf.kind != "knowledge"]
    h = {lf.path: lf.content_hash for lf in leaves}  # samples carry the leaf version they came from
    (data / "kt1.jsonl").write_text("".join(_sample(p, "kt1", h[p]) for p in know for _ in range(2)))
    (data / "kt2.jsonl").write_text("".join(_sample(p, "kt2", h[p]) for p in know + skills[:1]))
    (data / "st.jsonl").write_text("".join(_sample(p, "st", h[p]) for i, p in enumerate(skills) for _ in range(i % 3)))
    (data / "dataset_card.json").write_text("{}")
    ckpt = run / "train" / "st" / "epoch-1"
    shutil.copytree(model, ckpt)
    (ckpt / "optimizer.pt").write_bytes(b"not for release")
    (run / "train" / "loss.png").write_bytes(b"\x89PNG fake")
    write_json(run / "train" / "manifest.json", {
        "base_model": "embedded", "preset": "tiny-cpu",
        "hyperparameters": {"max_seq_len": 512, "kt1": {"learning_rate": 1e-4, "epochs": 1},
                            "kt2": {"learning_rate": 5e-5, "epochs": 1}, "st": {"learning_rate": 2e-5, "epochs": 2}},
        "phases": {"kt1": {"samples": {"kt1": 6}, "steps": 2, "selected": str(ckpt), "selection": "last"},
                   "kt2": {"skipped": "no samples"},
                   "st": {"samples": {"st": 3, "replay_kt1": 1}, "steps": 4, "scores": {str(ckpt): -1.5},
                          "selection": "reference", "selected": str(ckpt),
                          "decision": {"verdict": "only candidate", "candidates": {str(ckpt): {
                              "value": -1.5, "n": 6, "interval": [-1.75, -1.25], "method": "bootstrap 2000"}},
                              "judge": {"used": False, "reason": "the judge (x) is the base model (y)"}}}},
        "selected": str(ckpt), "weights": {"st/epoch-1": file_digests(ckpt)}})
    (run / "eval").mkdir()
    write_json(run / "eval" / "eval.json", {"report": {"totals": {"knowledge": {
        "base": 0.25, "trained": 0.5, "n": 8, "base_interval": [0.071479, 0.590725],
        "trained_interval": [0.215216, 0.784784], "verdict": "too small to decide",
        "delta": {"value": 0.25, "n": 8, "interval": [-0.125, 0.625], "method": "paired bootstrap 2000, seed 0"}}},
        "counts": {"too small to decide": 1}, "rows": []}, "weights": {"files": file_digests(ckpt)}})
    (run / "eval" / "branch_report.md").write_text("# Branch report\n\n| leaf |\n")

    class Cfg:  # the settings provenance() reads
        class generate:
            teacher, judge, samples = "scripted:", None, 4
        class train:
            student, preset = "embedded", "tiny-cpu"
        class licenses:
            allowlist = ["CC-BY-4.0"]
        class release:
            dataset = ""
    write_json(run / "run.json", provenance(root, Cfg))
    return run


def test_release_provenance_checksums_and_model(run_dir, repo_root):
    res = make_release(run_dir)
    out = res.out_dir
    assert out == run_dir / "release"
    # every file checks with the system tool, and the training-only optimizer state is left out
    done = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = {line.split("  ", 1)[1] for line in (out / "SHA256SUMS").read_text().splitlines()}
    assert listed == {p.name for p in out.iterdir()} - {"SHA256SUMS"}
    assert not (out / "optimizer.pt").exists() and "README.md" in listed and "release.json" in listed

    info = json.loads((out / "release.json").read_text())
    card = (out / "README.md").read_text()
    counts = sample_counts(run_dir / "data")
    leaves = iter_leaves(repo_root / "taxonomy")
    assert [lf["path"] for lf in info["leaves"]] == [lf.path for lf in leaves]
    for lf in info["leaves"]:
        want = counts.get(lf["path"], {"kt1": 0, "kt2": 0, "st": 0, "total": 0})
        assert lf["samples"] == want
        s = want
        assert (f"| {code(lf['path'])} | {inline(lf['kind'])} | {code(lf['hash'][:12])} | {s['kt1']} | {s['kt2']} | "
                f"{s['st']} |") in card
    know = [lf for lf in leaves if lf.kind == "knowledge"]
    assert {d["leaf"] for d in info["documents"]} == {lf.path for lf in know}
    for d in info["documents"]:
        attribution = (repo_root / "taxonomy" / d["leaf"] / "attribution.txt").read_text()
        assert d["license"] and d["license"] in attribution and d["license"] in card
        assert d["commit"] and d["commit"] in card
    assert "Teacher: <code>scripted:</code>" in card and "Student (base model): <code>embedded</code>" in card
    assert "learning_rate" in card and "0.0001" in card and "![training loss per phase](loss.png)" in card
    # every figure with n and its interval; a set too small to decide says so
    assert ("| knowledge | 8 | 25.0% [7.1% to 59.1%] | 50.0% [21.5% to 78.5%] | "
            "+25.0% [-12.5% to +62.5%]: too small to decide |") in card
    assert "epoch-1: -1.500 [-1.750 to -1.250] (n 6)" in card
    assert "ST selection used no judge: the judge (x) is the base model (y)." in card
    assert info["samples"] == {p: sum(c[p] for c in counts.values()) for p in ("kt1", "kt2", "st")}

    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(out)
    tok = AutoTokenizer.from_pretrained(out)
    ids = tok.apply_chat_template([{"role": "user", "content": "hi"}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    assert model.generate(**ids, max_new_tokens=3, do_sample=False).shape[1] > ids["input_ids"].shape[1]


def test_tampering_is_detected_and_rerelease_replaces(run_dir):
    out = make_release(run_dir, run_dir / "rel").out_dir
    assert verify_sha256sums(out) == []
    (out / "config.json").write_text("{}")
    assert verify_sha256sums(out) == ["config.json"]
    make_release(run_dir, run_dir / "rel")
    assert verify_sha256sums(out) == [] and not list(run_dir.glob("rel.*"))


def test_missing_pieces_are_clean_errors(run_dir, tmp_path):
    (run_dir / "run.json").unlink()
    with pytest.raises(LabError, match="--taxonomy"):
        make_release(run_dir)
    manifest = json.loads((run_dir / "train" / "manifest.json").read_text())
    manifest["selected"] = str(tmp_path / "nowhere")
    write_json(run_dir / "train" / "manifest.json", manifest)
    with pytest.raises(LabError) as err:
        make_release(run_dir)
    assert err.value.field == "selected"


def test_cli(run_dir):
    from lab_tools.cli import cli

    res = CliRunner().invoke(cli, ["release", "--run", str(run_dir), "--out", str(run_dir / "r")])
    assert res.exit_code == 0, res.output
    assert (run_dir / "r" / "SHA256SUMS").is_file() and "release written to" in res.output


def _outside_git_run(run_dir, tmp_path, repo_root):
    """The fixture's run, re-pointed at a copy of the taxonomy outside any git repository and at a
    student and cache under ``tmp_path`` (absolute machine paths everywhere a run records them)."""
    root = tmp_path / "tax"
    shutil.copytree(repo_root / "taxonomy", root)
    manifest = json.loads((run_dir / "train" / "manifest.json").read_text())
    manifest["base_model"] = str(tmp_path / "models" / "student")
    manifest["data"] = str(run_dir / "data")
    write_json(run_dir / "train" / "manifest.json", manifest)
    prov = json.loads((run_dir / "run.json").read_text())
    prov.update(provenance(root), student=str(tmp_path / "models" / "student"),
                teacher=f"transformers:{tmp_path / 'models' / 'teacher'}")
    write_json(run_dir / "run.json", prov)
    write_json(run_dir / "eval" / "eval.json", {"trained": {"model": str(run_dir / "train" / "st" / "epoch-1")},
                                                "report": {"totals": {}, "counts": {}, "rows": []},
                                                "weights": {"files": file_digests(run_dir / "train" / "st" / "epoch-1")}})
    return root


def test_release_names_no_machine_paths(run_dir, tmp_path, repo_root, monkeypatch):
    import os

    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    _outside_git_run(run_dir, tmp_path, repo_root)
    assert str(tmp_path) in (run_dir / "run.json").read_text()  # the run itself records them
    out = make_release(run_dir).out_dir
    home = os.path.expanduser("~")
    for name in ("README.md", "release.json", "training_manifest.json", "eval.json", "branch_report.md"):
        text = (out / name).read_text()
        assert str(tmp_path) not in text, name
        assert str(tmp_path.resolve()) not in text, name
        if home not in ("", "/"):
            assert home + "/" not in text, name
    info = json.loads((out / "release.json").read_text())
    assert info["taxonomy"]["root"] == "."  # no git repository: relative to the taxonomy root
    assert info["selected_checkpoint"] == "train/st/epoch-1"
    assert "- Taxonomy root: <code>.</code>" in (out / "README.md").read_text()
    assert verify_sha256sums(out) == []


def test_release_root_is_relative_to_the_repository(run_dir):
    info = make_release(run_dir).info
    assert info["taxonomy"]["root"] == "taxonomy"  # the fixture's taxonomy is this repository's


@pytest.mark.parametrize("bad", ["[1, 2]", '"text"', '{"messages": [], "metadata": [1]}',
                                 '{"messages": [], "metadata": {"leaf": ["x"]}}'])
def test_phase_line_not_an_object_is_a_clean_error(run_dir, run_lab, bad):
    lines = (run_dir / "data" / "st.jsonl").read_text().splitlines()
    (run_dir / "data" / "st.jsonl").write_text("\n".join(lines[:1] + [bad] + lines[1:]) + "\n")
    code, cap = run_lab(["release", "--run", str(run_dir)])
    assert code == 1, cap
    assert f"{run_dir / 'data' / 'st.jsonl'}:2:" in cap.err
    assert "Traceback" not in cap.out + cap.err
    assert not (run_dir / "release").exists() and not list(run_dir.glob("release.tmp*"))


def test_failed_release_leaves_no_temporary_folder_and_keeps_the_old_one(run_dir):
    make_release(run_dir)
    before = (run_dir / "release" / "release.json").read_text()
    for weights in (run_dir / "train" / "st" / "epoch-1").glob("*.safetensors"):
        weights.unlink()  # fails inside the release folder being written
    with pytest.raises(LabError, match="safetensors"):
        make_release(run_dir)
    assert not list(run_dir.glob("release.tmp*")) and not list(run_dir.glob("release.old*"))
    assert (run_dir / "release" / "release.json").read_text() == before

"""Issue 27 item 2: a run folder can be copied, moved, archived and released anywhere. Every path
a run records is relative to the folder of its record (the training manifest's: ``kt1/epoch-1``),
and readers resolve it there, not against the folder the build ran in."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.release.tiny_run import make_run, release_cli


@pytest.fixture(scope="module")
def built(tmp_path_factory, repo_root, tiny_model):
    """A run built in its folder's parent with the relative out dir ``runs/main`` (as the workflow's
    `lab build --out runs/main` does)."""
    tmp = tmp_path_factory.mktemp("built")
    return make_run(tmp, repo_root, tiny_model, "runs/main")


def test_the_run_records_paths_relative_to_its_folders(built):
    manifest = json.loads((built / "train" / "manifest.json").read_text())
    assert manifest["selected"] == manifest["phases"]["kt1"]["selected"] == "kt1/epoch-1"
    assert manifest["phases"]["kt1"]["checkpoints"] == ["kt1/epoch-1"]
    assert manifest["data"] == "../data" and list(manifest["weights"]) == ["kt1/epoch-1"]
    phase_run = json.loads((built / "train" / "kt1" / "run.json").read_text())
    assert phase_run["checkpoints"] == ["epoch-1"] and list(phase_run["digests"]) == ["epoch-1"]
    text = (built / "train" / "manifest.json").read_text()
    assert "runs/main" not in text and str(built) not in text


def test_a_moved_run_releases_from_anywhere(built, tmp_path, run_lab, monkeypatch):
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(built, moved)  # the module's run stays for the other tests: a copy, then a move
    moved2 = tmp_path / "archive" / "moved"
    moved2.parent.mkdir()
    shutil.move(moved, moved2)
    monkeypatch.chdir(tmp_path)  # neither the folder the run was built in nor the run's own
    code, cap, out = release_cli(run_lab, moved2)
    assert code == 0, cap.err
    info = json.loads((out / "release.json").read_text())
    assert info["selected_checkpoint"] == "train/kt1/epoch-1"
    check = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=out, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    trained = (moved2 / "train" / "kt1" / "epoch-1" / "model.safetensors").read_bytes()
    assert (out / "model.safetensors").read_bytes() == trained


def test_a_copy_releases_its_own_checkpoint_not_the_original(built, tmp_path, run_lab):
    """A copy whose original is gone (an artifact downloaded elsewhere): an absolute path in the
    manifest would name the original's checkpoint."""
    original = tmp_path / "original"
    shutil.copytree(built, original)
    copy = tmp_path / "downloaded" / "run"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    code, cap, out = release_cli(run_lab, copy)
    assert code == 0, cap.err
    assert json.loads((out / "release.json").read_text())["selected_checkpoint"] == "train/kt1/epoch-1"


def test_an_older_manifest_inside_the_run_releases_one_naming_another_copy_does_not(built, tmp_path, run_lab):
    """A manifest of an older version records absolute paths: one inside the run still releases;
    one naming another copy of the run is refused (releasing it would publish that copy's weights)."""
    other = tmp_path / "other"
    shutil.copytree(built, other)
    run = tmp_path / "run"
    shutil.copytree(built, run)
    mpath = run / "train" / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["selected"] = str(run / "train" / "kt1" / "epoch-1")
    mpath.write_text(json.dumps(manifest))
    code, cap, out = release_cli(run_lab, run)
    assert code == 0, cap.err
    shutil.rmtree(out)
    manifest["selected"] = str(other / "train" / "kt1" / "epoch-1")
    mpath.write_text(json.dumps(manifest))
    code, cap, out = release_cli(run_lab, run)
    assert code == 1 and "outside the run folder" in cap.err and f"{mpath}: selected:" in cap.err
    assert "Traceback" not in cap.err and not out.exists()

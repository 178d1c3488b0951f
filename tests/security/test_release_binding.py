"""Issue 23 item 4: a release is what was trained and evaluated. Weight digests are recorded when a
checkpoint is written (training manifest) and when it is evaluated (eval.json) and verified at
`lab release`; no published file is a symbolic link; a leaf is credited only with the samples of
its recorded version; `lab build` evaluates again when the weights change, even with the same
size and mtime."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.release.tiny_run import LEAVES, make_run, release_cli

CKPT = ("train", "kt1", "epoch-1")


@pytest.fixture(scope="module")
def built(tmp_path_factory, repo_root, tiny_model):
    tmp = tmp_path_factory.mktemp("built")
    return make_run(tmp, repo_root, tiny_model, "run")


@pytest.fixture()
def run(built, tmp_path):
    """A fresh copy of the module's run for one attack."""
    copy = tmp_path / "run"
    shutil.copytree(built, copy, symlinks=True)
    return copy


def _rewrite_same_size_and_mtime(path):
    """Change a file's bytes in place, keeping its size and restoring its mtime (``touch -r``)."""
    st = path.stat()
    data = bytearray(path.read_bytes())
    data[-16:] = bytes(b ^ 0xFF for b in data[-16:])
    with path.open("r+b") as fh:
        fh.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns


def test_weights_overwritten_after_evaluation_are_not_released(run, run_lab):
    weights = run.joinpath(*CKPT, "model.safetensors")
    _rewrite_same_size_and_mtime(weights)
    code, cap, out = release_cli(run_lab, run)
    assert code == 1 and "Traceback" not in cap.err
    assert "model.safetensors: changed" in cap.err and "when the checkpoint was written" in cap.err
    assert f"{run / 'train' / 'manifest.json'}: weights.kt1/epoch-1:" in cap.err
    assert not out.exists() and not list(out.parent.glob(out.name + ".tmp*"))


def test_evaluated_weights_must_be_the_released_ones(run, run_lab):
    """eval.json of other weights (say, evaluated before a checkpoint was replaced by its training
    twin): the card would show figures of a model it does not ship."""
    ev = json.loads((run / "eval" / "eval.json").read_text())
    ev["weights"]["files"]["model.safetensors"] = "0" * 64
    (run / "eval" / "eval.json").write_text(json.dumps(ev))
    code, cap, out = release_cli(run_lab, run)
    assert code == 1 and "when it was evaluated" in cap.err and "model.safetensors: changed" in cap.err
    assert f"{run / 'eval' / 'eval.json'}: weights.files:" in cap.err and not out.exists()
    del ev["weights"]  # an eval.json without digests (older lab-tools) cannot vouch either
    (run / "eval" / "eval.json").write_text(json.dumps(ev))
    code, cap, _ = release_cli(run_lab, run)
    assert code == 1 and "no weight digests recorded when it was evaluated" in cap.err


def test_a_weight_file_added_after_training_is_refused(run, run_lab):
    (run.joinpath(*CKPT) / "pytorch_model.bin").write_bytes(b"other weights")
    code, cap, _ = release_cli(run_lab, run)
    assert code == 1 and "pytorch_model.bin: not recorded" in cap.err


@pytest.mark.parametrize("inside", [CKPT + ("tokenizer.json",), CKPT + ("model.safetensors",), ("train", "loss.png"),
                                    ("eval", "eval.json")])
def test_a_symlink_out_of_the_run_is_not_published(run, run_lab, tmp_path, inside):
    """The link points at a byte-identical copy outside the run, so only the link itself is wrong:
    the digests match, and publishing it would publish whatever the link points at tomorrow."""
    target = run.joinpath(*inside)
    outside = tmp_path / "outside" / target.name
    outside.parent.mkdir()
    shutil.copy2(target, outside)
    target.unlink()
    target.symlink_to(outside)
    code, cap, out = release_cli(run_lab, run)
    assert code == 1 and "Traceback" not in cap.err
    assert f"{target}: {target.name} is a symbolic link (to {outside})" in cap.err
    assert not out.exists()


def test_a_checkpoint_folder_linked_out_of_the_run_is_not_published(run, run_lab, tmp_path):
    ckpt = run.joinpath(*CKPT)
    outside = tmp_path / "outside-ckpt"
    shutil.copytree(ckpt, outside)
    shutil.rmtree(ckpt)
    ckpt.symlink_to(outside, target_is_directory=True)
    code, cap, _ = release_cli(run_lab, run)
    assert code == 1 and "outside the run folder" in cap.err and "Traceback" not in cap.err


def _leaf_edited(run):
    """Edit the knowledge leaf after its samples were generated; returns the taxonomy root."""
    root = json.loads((run / "run.json").read_text())["taxonomy"]["root"]
    copy = run.parent / "taxonomy-edited"
    shutil.copytree(root, copy)
    qna = copy / LEAVES["knowledge"] / "qna.yaml"
    qna.write_text(qna.read_text() + "\n# edited after generation\n")
    return copy


def test_a_leaf_edited_after_generation_is_not_credited(run, run_lab):
    """Without the build's record (no run.json), provenance comes from the taxonomy as it is now:
    the edited leaf's samples were generated from its old version and are not credited to it."""
    taxonomy = _leaf_edited(run)
    samples = [json.loads(line) for line in (run / "data" / "kt1.jsonl").read_text().splitlines()]
    old = samples[0]["metadata"]["leaf_hash"]
    (run / "run.json").unlink()
    code, cap, out = release_cli(run_lab, run, "--taxonomy", str(taxonomy))
    assert code == 0, cap.err
    info = json.loads((out / "release.json").read_text())
    leaves = {lf["path"]: lf for lf in info["leaves"]}
    edited = leaves[LEAVES["knowledge"]]
    assert edited["hash"] != old and edited["samples"]["total"] == 0
    assert leaves[LEAVES["skill"]]["samples"]["st"] > 0  # an unchanged leaf keeps its samples
    assert info["uncredited_samples"] == [{"leaf": LEAVES["knowledge"], "hash": edited["hash"],
                                          "samples": {old: _count(run, old)}}]
    from lab_tools.markdown import code  # the card's escaping of contributor text

    card = (out / "README.md").read_text()
    note = card[card.index("Not credited above"):]
    assert f"- {code(LEAVES['knowledge'])} (recorded {code(edited['hash'][:12])}): " \
           f"{_count(run, old)} from {code(old[:12])}" in note


def _count(run, leaf_hash):
    """How many samples of the phase datasets carry ``leaf_hash``."""
    return sum(json.loads(line)["metadata"]["leaf_hash"] == leaf_hash
               for p in ("kt1", "kt2", "st") for line in (run / "data" / f"{p}.jsonl").read_text().splitlines())


def test_release_keeps_the_runs_provenance_when_given_the_taxonomy(run, run_lab):
    """--taxonomy says where the documents are; the leaves and hashes stay those of run.json."""
    taxonomy = _leaf_edited(run)
    recorded = {lf["path"]: lf["hash"] for lf in json.loads((run / "run.json").read_text())["leaves"]}
    code, cap, out = release_cli(run_lab, run, "--taxonomy", str(taxonomy))
    assert code == 0, cap.err
    info = json.loads((out / "release.json").read_text())
    assert {lf["path"]: lf["hash"] for lf in info["leaves"]} == recorded
    assert info["leaves"][[lf["path"] for lf in info["leaves"]].index(LEAVES["knowledge"])]["samples"]["total"] > 0
    assert "uncredited_samples" not in info


def test_build_evaluates_again_when_the_weights_change_with_the_same_size_and_mtime(run, tmp_path):
    """`lab build` skips evaluate when its fingerprint is unchanged; a (size, mtime) memo would keep
    the old digest of weights rewritten in place with their mtime restored."""
    from rich.console import Console

    from lab_tools.build import load_state, save_state
    from lab_tools.config import load_config
    from lab_tools.eval.build_stages import EvaluateStage
    from lab_tools.stage import Context

    root = json.loads((run / "run.json").read_text())["taxonomy"]["root"]
    cfg = load_config(root)
    cfg.override("cache_dir", str(tmp_path / "cache"))
    evaluate = EvaluateStage()

    def build():
        return Context(Path(root), run, cfg, load_state(run), resume=False, progress=False,
                       console=Console(quiet=True))

    first = build()
    before = evaluate.fingerprint(first)
    save_state(first)  # the state (with its memo) as a finished build leaves it
    assert evaluate.fingerprint(build()) == before  # nothing changed: skipped
    _rewrite_same_size_and_mtime(run.joinpath(*CKPT, "model.safetensors"))
    assert evaluate.fingerprint(build()) != before

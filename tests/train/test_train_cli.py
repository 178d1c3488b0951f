"""`lab train` on the command line: a KT/1-only run, and clean errors for bad input."""

from __future__ import annotations

import json

import pytest

from lab_tools.cli import main


def test_lab_train_kt1_only(tiny_model, phase_data, fast_preset, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    main(["train", "--data", str(phase_data), "--model", str(tiny_model), "--preset", str(fast_preset),
          "--out", str(out), "--phases", "kt1", "--quiet"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert list(manifest["phases"]) == ["kt1"]
    # KT/1 is selected on held-out MC items too; 2 selection items cannot show a gain: epoch 1 stays
    assert manifest["selected"].endswith("kt1/epoch-1")
    assert manifest["phases"]["kt1"]["decision"]["verdict"] == "too small to decide"
    assert "selected model:" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:  # a second run into the same dir needs --resume
        main(["train", "--data", str(phase_data), "--model", str(tiny_model), "--preset",
              str(fast_preset), "--out", str(out), "--phases", "kt1", "--quiet"])
    assert exc.value.code == 1
    assert "--resume" in capsys.readouterr().err


def test_bad_preset_is_a_clean_error(tiny_model, phase_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "bad.yaml"
    bad.write_text("kt1:\n  learning_rat: 1e-5\nmax_seq_len: -3\n")
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(phase_data), "--model", str(tiny_model), "--preset", str(bad),
              "--out", str(tmp_path / "o"), "--quiet"])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert "kt1.learning_rat: unknown key" in err and "max_seq_len" in err
    assert "Traceback" not in err


def test_unknown_phase_is_refused(tiny_model, phase_data, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exc:
        main(["train", "--data", str(phase_data), "--model", str(tiny_model), "--phases", "kt3",
              "--out", str(tmp_path / "o"), "--quiet"])
    assert exc.value.code == 1 and "kt3" in capsys.readouterr().err

"""Progress that CI logs show: plain lines when stderr is not a terminal (lab_tools.progress)."""

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

from lab_tools.progress import Progress, progress_interval


class TTY(io.StringIO):
    def isatty(self):
        return True


def test_plain_lines_with_rate_and_eta():
    out = io.StringIO()
    with Progress(stage="generate", stream=out, interval=0) as p:
        p.add("response", 4)
        p.advance("response", 1)
        p.add("response", 4)  # totals grow as work is discovered
        p.advance("response", 7, note="loss 1.5")
    lines = out.getvalue().splitlines()
    assert re.fullmatch(r"progress: generate response 1/4 \(25%\) [\d.]+/s ETA \d+:\d\d:\d\d", lines[0])
    assert re.fullmatch(r"progress: generate response 8/8 \(100%\) [\d.]+/s done in \d+:\d\d:\d\d loss 1.5",
                        lines[-1])
    assert len(lines) == 2


def test_lines_at_a_steady_interval_even_without_advances():
    out = io.StringIO()
    p = Progress(stage="train", stream=out, interval=0.05)
    p.add("kt1", 10)
    p.advance("kt1", 3)
    assert out.getvalue() == ""  # not due yet
    time.sleep(0.4)
    p.stop()
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3 and all(ln.startswith("progress: train kt1 3/10 (30%)") for ln in lines)
    n = len(lines)
    time.sleep(0.15)
    assert len(out.getvalue().splitlines()) == n  # stopped: no more lines


def test_terminal_gets_bars_not_lines_and_disabled_is_silent():
    tty = TTY()
    with Progress(stage="evaluate", stream=tty, interval=0) as p:
        p.add("base", 2)
        p.advance("base", 2)
    assert "progress:" not in tty.getvalue()
    quiet = io.StringIO()
    with Progress(False, stream=quiet, interval=0) as p:
        p.add("x", 1)
        p.advance("x")
    assert quiet.getvalue() == ""


def test_interval_from_the_environment():
    assert progress_interval({"LAB_PROGRESS_INTERVAL": "2.5"}) == 2.5
    assert progress_interval({"LAB_PROGRESS_INTERVAL": "-1"}) == 0
    assert progress_interval({}) == progress_interval({"LAB_PROGRESS_INTERVAL": "soon"}) == 15


def test_generate_prints_progress_lines_in_a_ci_log(tmp_path, run_lab, monkeypatch, cache_dir):
    monkeypatch.setenv("LAB_PROGRESS_INTERVAL", "0")
    leaf = tmp_path / "taxonomy" / "compositional_skills" / "writing" / "haiku"
    leaf.mkdir(parents=True)
    (leaf / "qna.yaml").write_text(yaml.safe_dump({
        "version": 3, "created_by": "tester", "task_description": "Write a haiku about a topic.",
        "seed_examples": [{"question": f"Write a haiku about {t}.", "answer": f"A haiku about {t}\nfive seven five"}
                          for t in ("rain", "snow", "the sea", "autumn leaves", "a cat")]}))
    code, cap = run_lab(["generate", str(tmp_path / "taxonomy"), "--teacher", "scripted:", "--samples", "2",
                         "--out", str(tmp_path / "out")])
    assert code == 0, cap.err
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("progress: generate ")]
    assert any(re.search(r" \d+/\d+ \(\d+%\) [\d.]+/s (ETA|done in) ", ln) for ln in lines), cap.err
    assert any("done in" in ln for ln in lines)


# ----------------------------------------------------------------------------- the libraries' bars

def test_library_bars_are_silenced_under_quiet_or_without_a_terminal():
    from lab_tools.progress import LIBRARY_BARS_ENV, library_bars_off, silence_library_bars

    assert not library_bars_off(False, TTY()) and library_bars_off(True, TTY())
    assert library_bars_off(False, io.StringIO())  # a CI log
    env = {}
    assert silence_library_bars(False, TTY(), environ=env) is False and env == {}
    assert silence_library_bars(True, TTY(), environ=env) is True
    assert env == dict.fromkeys(LIBRARY_BARS_ENV, "1")
    env = {"HF_HUB_DISABLE_PROGRESS_BARS": "0"}
    assert silence_library_bars(False, io.StringIO(), environ=env)
    assert env == dict.fromkeys(LIBRARY_BARS_ENV, "1")


_BAR = re.compile(r"it/s|s/it|\|█|█\||Loading weights|Writing model shards|Loading checkpoint shards")


def _train_args(tmp_path, tiny_model):
    """`lab train` of the tiny model on a few samples (KT/1, one epoch): it loads the model and
    saves a checkpoint, which draw transformers' "Loading weights" and "Writing model shards"."""
    from tests.train.conftest import FAST_PRESET, write_phase_data

    data = write_phase_data(tmp_path / "data", n=4)
    preset = tmp_path / "fast.yaml"
    preset.write_text(yaml.safe_dump({**FAST_PRESET, "kt1": {**FAST_PRESET["kt1"], "epochs": 1}}))
    return [sys.executable, "-m", "lab_tools", "train", "--data", str(data), "--model", str(tiny_model),
            "--preset", str(preset), "--phases", "kt1", "--out", str(tmp_path / "run")]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS",
                                                            "HF_DATASETS_DISABLE_PROGRESS_BARS")}
    return {**env, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), **extra}


def test_a_ci_log_has_our_progress_lines_and_no_library_bars(tmp_path, tiny_model):
    """stderr piped (GitHub Actions, `| tee`): the plain `progress:` lines stay, tqdm bars go."""
    out = subprocess.run(_train_args(tmp_path, tiny_model), capture_output=True, text=True, timeout=180,
                         env=_env(LAB_PROGRESS_INTERVAL="0"), cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "progress: train kt1" in out.stderr, out.stderr
    assert not _BAR.search(out.stderr), out.stderr


def test_quiet_on_a_terminal_has_no_library_bars(tmp_path, tiny_model):
    """--quiet with stderr on a terminal (a pty): neither our bars nor the libraries'."""
    import pytest

    pytest.importorskip("termios")  # a POSIX terminal
    import fcntl
    import pty
    import struct
    import termios
    import threading

    master, slave = pty.openpty()
    # a terminal of 40x120 (a fresh pty is 0 columns wide, and tqdm draws nothing in 0 columns)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    chunks = []

    def drain():
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        proc = subprocess.run([*_train_args(tmp_path, tiny_model), "--quiet"], stdout=subprocess.PIPE,
                              stderr=slave, text=True, timeout=180, env=_env(), cwd=tmp_path)
    finally:
        os.close(slave)
    reader.join(10)
    os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, err
    assert "selected model:" in proc.stdout
    assert not _BAR.search(err) and "progress:" not in err, err

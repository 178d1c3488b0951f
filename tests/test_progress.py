"""Progress that CI logs show: plain lines when stderr is not a terminal (lab_tools.progress)."""

import io
import re
import time

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

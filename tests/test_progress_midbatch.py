"""Progress that moves during a batch (issue 27.1): token budgets and report_tokens
(lab_tools.progress), fed by the backends while a batched call is still running."""

from __future__ import annotations

import io
import json
import re
import threading
from concurrent.futures import ThreadPoolExecutor

import yaml

from lab_tools.progress import Progress, bind_budget, report_tokens, token_budget

TOKENS = re.compile(r"progress: generate (\S+) tokens (\d+)/(\d+) \(\d+%\) ([\d.]+)/s (ETA \d+:\d\d:\d\d|done in)")
ITEMS = re.compile(r"progress: generate (\S+) (\d+)/(\d+) ")


def _leaf(root, name="haiku"):
    leaf = root / "compositional_skills" / "writing" / name
    leaf.mkdir(parents=True)
    (leaf / "qna.yaml").write_text(yaml.safe_dump({
        "version": 3, "created_by": "tester", "task_description": "Write a haiku about a topic.",
        "seed_examples": [{"question": f"Write a haiku about {t}.", "answer": f"A haiku about {t}\nfive seven five"}
                          for t in ("rain", "snow", "the sea", "autumn leaves", "a cat")]}))


def test_a_slow_batch_shows_tokens_moving_before_it_ends(tmp_path, run_lab, monkeypatch, cache_dir):
    """A scripted teacher that takes 0.05 s per request answers one batch of 6 responses: the log
    shows the response tokens moving (with a rate and an ETA) before any response is counted done."""
    monkeypatch.setenv("LAB_PROGRESS_INTERVAL", "0.05")
    _leaf(tmp_path / "taxonomy")
    script = tmp_path / "slow.json"
    script.write_text(json.dumps({"delay": 0.05}))
    code, cap = run_lab(["generate", str(tmp_path / "taxonomy"), "--teacher", f"scripted:{script}",
                         "--samples", "4", "--out", str(tmp_path / "out")])
    assert code == 0, cap.err
    lines = cap.err.splitlines()
    mid = [i for i, ln in enumerate(lines) if (m := TOKENS.match(ln)) and m.group(1) == "responses"
           and 0 < int(m.group(2)) < int(m.group(3)) and m.group(5).startswith("ETA") and float(m.group(4)) > 0]
    first_done = next(i for i, ln in enumerate(lines) if (m := ITEMS.match(ln)) and m.group(1) == "responses"
                      and int(m.group(2)) > 0)
    assert mid and mid[0] < first_done, cap.err
    # the batch's unused budget leaves the total: the token task ends at 100 %
    last = [m for ln in lines if (m := TOKENS.match(ln)) and m.group(1) == "responses"][-1]
    assert last.group(2) == last.group(3) and last.group(5) == "done in", cap.err


def test_transformers_reports_decode_steps_within_one_generate_call(tiny_model):
    from lab_tools.sdg.backends import ChatRequest, TransformersTeacher

    teacher = TransformersTeacher(str(tiny_model), batch_size=4)
    out = io.StringIO()
    reqs = [ChatRequest([{"role": "user", "content": f"Say something about {w}."}], max_tokens=12,
                        temperature=0.0) for w in ("rain", "snow", "sea", "wind")]
    seen = []
    progress = Progress(stage="generate", stream=out, interval=0)
    with token_budget(progress, "response", sum(r.max_tokens for r in reqs)) as budget:
        orig = budget.report

        def spy(n):
            orig(n)
            seen.append(budget.done)
        budget.report = spy
        comps = teacher.generate(reqs)
    progress.stop()
    assert all(c.error is None for c in comps)
    # one report per decode step of the batch of 4, so the figure moves many times in one call
    assert len(seen) >= 5 and seen == sorted(seen) and seen[0] == 4, seen
    assert any(0 < int(m.group(2)) < 48 for m in TOKENS.finditer(out.getvalue())), out.getvalue()


def test_reports_go_to_their_own_budget_from_pool_threads():
    out = io.StringIO()
    progress = Progress(stage="generate", stream=out, interval=60)
    report_tokens(5)  # no budget open: nothing happens
    results = {}

    def stage(name: str, n: int) -> None:
        with token_budget(progress, name, 100) as budget:
            with ThreadPoolExecutor(2) as pool:  # the workers do not inherit the caller's context
                list(pool.map(bind_budget(lambda _: report_tokens(1)), range(n)))
            results[name] = budget.done

    threads = [threading.Thread(target=stage, args=(name, n)) for name, n in (("a", 7), ("b", 11))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    progress.stop()
    assert results == {"a": 7, "b": 11}
    assert progress.tasks["a tokens"].total == 7 and progress.tasks["b tokens"].total == 11
    with token_budget(None, "c", 10) as none:  # progress off: nothing to report into
        report_tokens(3)
    assert none is None

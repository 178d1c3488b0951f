"""Progress that moves while models score (issue 27.1): MC and reference scoring report each
forward pass, the A/B judge and the reward model too, and the alignment stage and the
preference phase's selection show token figures before a part ends."""

from __future__ import annotations

import io
import json
import re

import pytest

from lab_tools.progress import Progress, token_budget

LINE = re.compile(r"progress: (\S+) (.+?) tokens (\d+)/(\d+) \(\d+%\) ([\d.]+)/s (ETA \S+|done in)")


def _token_lines(text: str, stage: str, task: str) -> list[tuple[int, int, str]]:
    """``(done, total, ETA|done in)`` of every plain line of ``<stage> <task> tokens``."""
    return [(int(m.group(3)), int(m.group(4)), m.group(6)) for m in LINE.finditer(text)
            if m.group(1) == stage and m.group(2) == task]


def _moved_mid_part(lines, points: int = 2) -> bool:
    """Intermediate figures (0 < done < total) at ``points`` or more points, then 100 % done."""
    mid = {d for d, t, _ in lines if 0 < d < t}
    return len(mid) >= points and lines[-1][0] == lines[-1][1] and lines[-1][2] == "done in"


def _mc_items(n: int = 5) -> list[dict]:
    return [{"leaf": "k/x", "question": f"What is item {i}?", "choices": [f"It is {i}.", "No idea at all.", "Maybe."],
             "answer": 0} for i in range(n)]


def _prompts(n: int = 5) -> list[dict]:
    return [{"leaf": f"s/{i % 2}", "messages": [{"role": "user", "content": f"Describe the colour {c}."}],
             "reference": f"The colour {c} is a colour."} for i, c in enumerate(("red", "green", "blue", "teal", "ochre")[:n])]


@pytest.fixture(scope="module")
def loaded(tiny_model):
    from lab_tools.models import load_model

    return load_model(str(tiny_model))


def test_mc_scoring_moves_per_forward_pass_within_a_chunk(loaded):
    """15 choices at batch size 4: four forward passes in one call, each moving the figure; and
    `lab evaluate`'s chunk of 16 items moves before the chunk's tick (it used to move per chunk)."""
    from lab_tools.eval.model_scores import _mc_scores
    from lab_tools.eval.scoring import mc_accuracy, mc_token_count

    model, tok = loaded
    out = io.StringIO()
    bar = Progress(stage="evaluate", stream=out, interval=0)
    acc, per_item = mc_accuracy(model, tok, _mc_items(), batch_size=4, progress=bar, task="st knowledge")
    lines = _token_lines(out.getvalue(), "evaluate", "st knowledge")
    assert len(lines) == 4 and _moved_mid_part(lines), out.getvalue()
    assert lines[-1][1] == mc_token_count(tok, _mc_items()) and len(per_item) == 5

    out = io.StringIO()
    bar = Progress(stage="evaluate", stream=out, interval=0)
    _mc_scores(model, tok, _mc_items(), "leaf", lambda n: print(f"TICK {n}", file=out), bar, "base knowledge")
    text = out.getvalue()
    before_tick = text[:text.index("TICK 5")]  # the only tick: all 5 items are one chunk
    # 15 choices at the default batch size 8: two forward passes, the first one shown mid-chunk
    assert _moved_mid_part(_token_lines(before_tick, "evaluate", "base knowledge"), points=1), text


def test_ctranslate2_mc_scoring_moves_per_batch(tiny_model, tmp_path):
    """The CPU engine scores a call's rows in batches of ``batch_size``, each reported (before,
    one ``score_batch`` of every row reported once at its end)."""
    pytest.importorskip("ctranslate2")
    from lab_tools.engines.load import load_scoring_model
    from lab_tools.eval.scoring import mc_accuracy

    model, tok = load_scoring_model(tiny_model, tmp_path, engine="ctranslate2", compute_type="float32")
    out = io.StringIO()
    mc_accuracy(model, tok, _mc_items(), batch_size=4, progress=Progress(stage="evaluate", stream=out, interval=0),
                task="st knowledge")
    lines = _token_lines(out.getvalue(), "evaluate", "st knowledge")
    assert len(lines) == 4 and _moved_mid_part(lines), out.getvalue()


def test_ab_judge_and_reward_model_report_each_forward_pass(loaded, tiny_model, tmp_path):
    from lab_tools.eval.preference import ABItem, hhh_accuracy
    from lab_tools.feedback.evaluate import load_rm, rewards
    from lab_tools.tiny import make_tiny_reward_model

    model, tok = loaded
    out = io.StringIO()
    bar = Progress(stage="alignment", stream=out, interval=0)
    items = [ABItem(context=f"User: question {i}", a=f"A fine answer {i}.", b="No.") for i in range(4)]
    hhh_accuracy(model, tok, items, batch_size=2, progress=bar, task="pref static HHH")  # 8 prompts, 4 passes
    lines = _token_lines(out.getvalue(), "alignment", "pref static HHH")
    assert len(lines) == 4 and _moved_mid_part(lines), out.getvalue()

    rm, rtok = load_rm(str(make_tiny_reward_model(tiny_model, tmp_path / "rm")))
    convs = [p["messages"] + [{"role": "assistant", "content": p["reference"]}] for p in _prompts()]
    rewards(rm, rtok, convs, batch_size=2, progress=bar, task="reward model")
    lines = _token_lines(out.getvalue(), "alignment", "reward model")
    assert len(lines) == 3 and _moved_mid_part(lines), out.getvalue()
    # without `progress` the RM reports nothing: self-play scores its candidates inside the budget
    # of decoded turns, where the RM's tokens must not count as decoded ones
    with token_budget(bar, "turns", 10_000) as budget:
        rewards(rm, rtok, convs, batch_size=2)
    assert budget.done == 0


def test_alignment_shows_every_part_moving_mid_batch(tiny_model, capsys, monkeypatch):
    """`lab build`'s alignment stage (base, ST, pref): the plain log shows each part's tokens with
    intermediate figures before the part is done, for Static HHH, knowledge, reference and answers."""
    from lab_tools.eval.alignment import evaluate_alignment
    from lab_tools.eval.preference import ABItem

    monkeypatch.setenv("LAB_PROGRESS_INTERVAL", "0")
    said = []
    models = {"base": str(tiny_model), "st": str(tiny_model), "pref": str(tiny_model)}
    hhh = [ABItem(context=f"User: question {i}", a=f"A fine answer {i}.", b="No.", kind="helpful") for i in range(4)]
    block = evaluate_alignment(models, _prompts(), _mc_items(), hhh_items=hhh, judge_dir=None, max_new_tokens=6,
                               batch_size=2, progress=said.append, engine="transformers")
    err = capsys.readouterr().err
    for label in ("base", "st", "pref"):
        assert _moved_mid_part(_token_lines(err, "alignment", f"{label} static HHH")), err
    for label in ("st", "pref"):
        for part in ("knowledge", "reference", "answers"):
            assert _moved_mid_part(_token_lines(err, "alignment", f"{label} {part}")), (label, part, err)
        assert re.search(rf"progress: alignment {label} 19/19 \(100%\)", err), err  # 4 HHH + 5 MC + 2 x 5 prompts
    assert block["static_hhh"]["pref"]["n"] == 4 and any("Static HHH" in m for m in said)
    # without a progress callable nothing is printed
    evaluate_alignment({"st": str(tiny_model)}, _prompts(2), [], hhh_items=None, judge_dir=None, max_new_tokens=4,
                       batch_size=2, engine="transformers")
    assert "progress:" not in capsys.readouterr().err


def test_pref_selection_measures_move_mid_batch(tiny_model, tmp_path):
    """The preference phase's selection scores reference log-likelihood, MC and answers of ST and
    each candidate: each moves per forward pass / decode step."""
    from lab_tools.train.config import SelectionConfig
    from lab_tools.train.pref_select import _measure, rm_verdicts_fn
    from lab_tools.tiny import make_tiny_reward_model

    out = io.StringIO()
    bar = Progress(stage="pref", stream=out, interval=0)
    sel = SelectionConfig(batch_size=2, max_new_tokens=6)
    got = _measure(str(tiny_model), _prompts(), _mc_items(), sel, answers=True, progress=bar)
    name = tiny_model.name
    for part in ("answers", "reference", "knowledge"):
        assert _moved_mid_part(_token_lines(out.getvalue(), "pref", f"{name} {part}")), (part, out.getvalue())
    assert len(got["answers"]) == 5 and len(got["reference"]) == 5 and len(got["mc"]) == 5
    verdicts = rm_verdicts_fn(str(make_tiny_reward_model(tiny_model, tmp_path / "rm")))
    assert len(verdicts(_prompts(), got["answers"], ["No."] * 5, progress=bar)) == 5
    rm_lines = _token_lines(out.getvalue(), "pref", "reward model")  # x's rewards, then y's (one pass each)
    assert len(rm_lines) == 2 and rm_lines[0][1] < rm_lines[1][0] == rm_lines[1][1], out.getvalue()
    json.dumps(got)  # plain data for the manifest

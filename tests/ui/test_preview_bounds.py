"""Issue 23.3 for `lab ui`: the page's preview runs under the bot's bounds
(:func:`lab_tools.bot.bounded.bounded_generate`: new rounds until the requested samples are kept,
``bot.max_attempts``, the ``bot.time_budget`` deadline, prompts cut to ``bot.max_prompt_tokens``)
and its JSON result says the count and why it is short (Starlette's TestClient, scripted teacher)."""

from __future__ import annotations

import json
import time

import pytest
from starlette.testclient import TestClient

from tests.ui.conftest import ui_repo  # noqa: F401  (a fixture)

pytestmark = pytest.mark.timeout(300)
HOST, PORT = "127.0.0.1", 8765
FABLES_LEAF = "compositional_skills/writing/fables"
TOPICS = ("kindness", "honesty", "courage", "patience", "friendship")
NOVEL = ("the river and the bridge", "a lantern in the harbor", "the desert at night", "a violin maker",
         "the glacier's last summer", "a market before dawn", "the orchard in spring", "a railway in the snow")


def _client(ui_repo, tmp_path, *, delay: float = 0.0, **bot):  # noqa: F811
    """A `lab ui` on ``ui_repo`` whose scripted teacher answers every question request with three
    copies of seed questions and one new request (which one depends on the request's seed): at most
    one sample per round survives the seed-copy filter. ``bot``: settings of the ``bot`` section."""
    from lab_tools.config import load_config
    from lab_tools.ui.server import create_app

    replies = ["\n".join([*(f"{i + 1}. Tell me a fable about {t}." for i, t in enumerate(TOPICS[:3])),
                          f"4. Write a story about {n}."]) for n in NOVEL]
    script = tmp_path / "teacher.json"
    script.write_text(json.dumps({"skill_question": [{"reply": replies}], "delay": delay}), encoding="utf-8")
    root = ui_repo / "taxonomy"
    cfg = load_config(root)
    cfg.bot.samples = 2
    for key, value in bot.items():
        cfg.override(f"bot.{key}", value)
    app = create_app(root, cfg, teacher=f"scripted:{script}")
    app.state.ui.bind(HOST, PORT)
    c = TestClient(app, base_url=f"http://{HOST}:{PORT}")
    c.headers.update({"X-Lab-Token": app.state.ui.token, "Origin": f"http://{HOST}:{PORT}"})
    return c


def _preview(client) -> dict:
    """Preview a new fables leaf (seed questions "Tell me a fable about ...") and wait for the job."""
    resp = client.get("/api/new", params={"path": FABLES_LEAF})
    assert resp.status_code == 200, resp.text
    form = resp.json()["form"]
    form["created_by"] = "alice"
    form["task_description"] = "Write fables."
    for ex, topic in zip(form["seed_examples"], TOPICS):
        ex["question"] = f"Tell me a fable about {topic}."
        ex["answer"] = f"A fox learned {topic} from a crow one winter, and kept it all its life."
    form["attribution"] = [{"title": "Fables", "link": "self-authored", "revision": "",
                            "license": "CC-BY-4.0", "creators": "alice"}]
    resp = client.post("/api/preview", json={"path": FABLES_LEAF, "form": form})
    assert resp.status_code == 202, resp.text
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        job = client.get(f"/api/preview/{resp.json()['id']}").json()
        if job["state"] in ("done", "failed"):
            return job
        time.sleep(0.05)
    raise AssertionError("the preview did not finish")


def test_ui_preview_oversamples_until_it_has_the_samples_it_announces(ui_repo, tmp_path):  # noqa: F811
    job = _preview(_client(ui_repo, tmp_path, max_attempts=4))
    assert job["state"] == "done", job
    assert job["samples"]["kept"] == 2 == job["samples"]["requested"] and job["samples"]["attempts"] >= 2, job
    assert job["summary"] == f"2 of 2 samples ({job['samples']['attempts']} attempts)"
    assert job["html"].count("<summary>sample ") == 2 and "Short:" not in job["markdown"]


def test_ui_preview_says_which_filter_took_how_many_when_short(ui_repo, tmp_path):  # noqa: F811
    job = _preview(_client(ui_repo, tmp_path, max_attempts=1))
    assert job["state"] == "done", job
    assert job["samples"] == {"kept": 1, "requested": 2, "attempts": 1}
    assert job["summary"].startswith("1 of 2 samples: dedup: near-duplicate of a seed example took 3"), job["summary"]
    assert "bot.max_attempts" in job["summary"] and "Short:" in job["markdown"]


def test_ui_preview_stops_at_the_time_budget_and_cuts_prompts(ui_repo, tmp_path):  # noqa: F811
    """A slow teacher (0.3 s a request) and a 0.5 s budget: the preview stops before a later stage
    and says so; a 64-token prompt cap cuts the teacher's prompts, counted in the same line."""
    job = _preview(_client(ui_repo, tmp_path, delay=0.3, time_budget=0.5, max_prompt_tokens=64))
    assert job["state"] == "done", job
    assert job["samples"]["kept"] < 2, job
    assert "the time budget (bot.time_budget = 0.5 s) ran out" in job["summary"], job["summary"]
    assert "cut to fit (bot.max_prompt_tokens)" in job["summary"], job["summary"]

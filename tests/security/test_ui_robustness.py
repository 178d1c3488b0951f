"""Issue 23 item 7: ``lab ui`` under load and odd input (Starlette's TestClient, scripted teacher).

The attacks: 200 preview requests made 199 threads queued without bound, and a job dropped from
the table still ran; a deeply nested JSON body (RecursionError) or a 5,000-digit ``version``
(ValueError) answered 500 with a traceback and without the security headers;
``GET /api/new?path=.../haiku/qna.yaml/qna.yaml`` answered 200 and a following save overwrote
``.../haiku/qna.yaml`` after checking another path.
"""

from __future__ import annotations

import threading
import time

import pytest
from starlette.testclient import TestClient

from tests.ui.conftest import ui_repo  # noqa: F401  (a fixture)

from lab_tools.ui import jobs as jobs_module

pytestmark = pytest.mark.timeout(180)
HAIKU = "compositional_skills/writing/freeform/poetry/haiku"
HOST, PORT = "127.0.0.1", 8765


@pytest.fixture()
def app(ui_repo):
    from lab_tools.config import load_config
    from lab_tools.ui.server import create_app

    root = ui_repo / "taxonomy"
    app = create_app(root, load_config(root), teacher="scripted:")
    app.state.ui.bind(HOST, PORT)
    return app


@pytest.fixture()
def client(app):
    c = TestClient(app, base_url=f"http://{HOST}:{PORT}", raise_server_exceptions=False)
    c.headers.update({"X-Lab-Token": app.state.ui.token, "Origin": f"http://{HOST}:{PORT}"})
    return c


def _secure(resp) -> None:
    assert "script-src 'self'" in resp.headers.get("content-security-policy", ""), dict(resp.headers)
    assert resp.headers.get("x-content-type-options") == "nosniff"
    assert resp.headers["content-type"].startswith("application/json"), resp.text[:200]


def _form(client) -> dict:
    resp = client.get("/api/leaf", params={"path": HAIKU})
    assert resp.status_code == 200, resp.text
    return resp.json()["form"]


@pytest.mark.parametrize("depth", [50, 100_000])
def test_a_deeply_nested_body_is_a_400_json_error_with_the_headers(client, depth):
    body = '{"path": ' + "[" * depth + "]" * depth + ', "form": {}}'
    resp = client.post("/api/check", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "nested" in resp.json()["error"], resp.text[:300]
    _secure(resp)


def test_a_5000_digit_number_is_a_400_json_error_with_the_headers(client):
    body = '{"path": "%s", "form": {"version": %s}}' % (HAIKU, "9" * 5000)
    resp = client.post("/api/save", content=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400 and "error" in resp.json(), resp.text[:300]
    _secure(resp)


def test_an_unexpected_error_is_a_json_500_with_the_headers(ui_repo, monkeypatch):
    from lab_tools.config import load_config
    from lab_tools.ui import api
    from lab_tools.ui.server import create_app

    def boom(request):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "tree", boom)
    root = ui_repo / "taxonomy"
    app = create_app(root, load_config(root), teacher="scripted:")
    app.state.ui.bind(HOST, PORT)
    c = TestClient(app, base_url=f"http://{HOST}:{PORT}", raise_server_exceptions=False)
    resp = c.get("/api/tree", headers={"X-Lab-Token": app.state.ui.token})
    assert resp.status_code == 500 and "RuntimeError" in resp.json()["error"] and "a bug" not in resp.text
    _secure(resp)
    resp = c.get("/api/nothing-here", headers={"X-Lab-Token": app.state.ui.token})
    assert resp.status_code == 404 and "nosniff" == resp.headers.get("x-content-type-options")


def test_a_path_is_normalized_once_so_check_and_write_name_the_same_folder(client, ui_repo):
    qna = ui_repo / "taxonomy" / HAIKU / "qna.yaml"
    before = qna.read_text()
    doubled = f"{HAIKU}/qna.yaml/qna.yaml"
    resp = client.get("/api/new", params={"path": doubled})
    assert resp.status_code == 400 and resp.json()["field"] == "path", resp.text
    _secure(resp)
    form = _form(client)
    form["created_by"] = "mallory"
    resp = client.post("/api/save", json={"path": doubled, "form": form})
    assert resp.status_code == 400 and resp.json()["field"] == "path"
    assert qna.read_text() == before
    assert client.get("/api/new", params={"path": f"{HAIKU}/qna.yaml"}).status_code == 409  # one suffix: the leaf


@pytest.fixture()
def gate(monkeypatch):
    """Every teacher call of a preview waits until the gate opens (a slow teacher)."""
    opened = threading.Event()
    real = jobs_module._CountingTeacher.generate

    def gated(self, requests):
        assert opened.wait(60), "gate never opened"
        return real(self, requests)

    monkeypatch.setattr(jobs_module._CountingTeacher, "generate", gated)
    yield opened
    opened.set()


def _wait(client, job_id: str, states=("done", "failed", "cancelled"), timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = client.get(f"/api/preview/{job_id}").json()
        if view["state"] in states:
            return view
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} stayed {view['state']}")


def test_previews_queue_within_a_bound_and_answer_busy(client, gate):
    form = _form(client)
    threads_before = threading.active_count()
    first = client.post("/api/preview", json={"path": HAIKU, "form": form})
    assert first.status_code == 202
    _wait(client, first.json()["id"], states=("running",))
    answers = [client.post("/api/preview", json={"path": f"compositional_skills/writing/other/leaf_{i}", "form": form})
               for i in range(200)]
    codes = [r.status_code for r in answers]
    assert codes[:jobs_module.MAX_QUEUED] == [202] * jobs_module.MAX_QUEUED
    assert set(codes[jobs_module.MAX_QUEUED:]) == {429}, codes
    busy = answers[-1]
    assert "busy" in busy.json()["error"]
    _secure(busy)
    assert threading.active_count() - threads_before <= 3  # one worker, not one thread per request
    gate.set()
    for r in [first, *answers[:jobs_module.MAX_QUEUED]]:
        assert _wait(client, r.json()["id"])["state"] == "done"


def test_a_new_preview_of_a_leaf_cancels_the_one_it_replaces(client, gate):
    form = _form(client)
    running = client.post("/api/preview", json={"path": HAIKU, "form": form}).json()
    _wait(client, running["id"], states=("running",))
    other = "compositional_skills/writing/other/limerick"
    queued = client.post("/api/preview", json={"path": other, "form": form}).json()
    replacement = client.post("/api/preview", json={"path": other, "form": form}).json()
    view = client.get(f"/api/preview/{queued['id']}").json()
    assert view["state"] == "cancelled" and view["requests"] == 0  # a queued job never runs
    newest = client.post("/api/preview", json={"path": HAIKU, "form": form}).json()  # replaces the running one
    gate.set()
    view = _wait(client, running["id"])
    assert view["state"] == "cancelled" and "replaced" in view["error"]
    assert _wait(client, newest["id"])["state"] == "done"
    assert _wait(client, replacement["id"])["state"] == "done"

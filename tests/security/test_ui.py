"""`lab ui` refuses what a hostile page or path would try: leaving the taxonomy (``..``, absolute
paths, symlinks), cross-origin and cross-site writes, a missing token, a foreign Host (DNS
rebinding), oversized or non-JSON bodies; and the preview HTML keeps teacher text inert."""

from __future__ import annotations

import json
import os

import pytest

from tests.ui.conftest import Client, form_of, ui, ui_repo, wait_preview  # noqa: F401  (fixtures)

HAIKU = "compositional_skills/writing/freeform/poetry/haiku"


def _outside_files(ui_repo):
    return sorted(p.name for p in ui_repo.parent.iterdir())


@pytest.mark.parametrize("path", ["../outside", "compositional_skills/../../outside",
                                  "/tmp/outside", "compositional_skills/x/../../../outside",
                                  "compositional_skills\\..\\..\\outside", "knowledge/%2e%2e/x",
                                  "compositional_skills/x\x00y"])
def test_path_escape_is_refused_and_nothing_is_written(ui, ui_repo, path):
    before = _outside_files(ui_repo)
    form = form_of(ui, HAIKU)
    for endpoint in ("/api/save", "/api/check", "/api/preview"):
        status, data = ui.call("POST", endpoint, {"path": path, "form": form})
        assert status == 400 and data["field"] == "path", (endpoint, data)
    status, data = ui.call("GET", "/api/leaf?path=" + path.replace("\x00", "%00"))
    assert status == 400
    assert _outside_files(ui_repo) == before
    assert not (ui.root.parent / "outside").exists() and not os.path.exists("/tmp/outside/qna.yaml")


def test_symlinked_folder_or_file_is_refused(ui, ui_repo, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (ui.root / "compositional_skills" / "linked").symlink_to(outside, target_is_directory=True)
    form = form_of(ui, HAIKU)
    status, data = ui.call("POST", "/api/save", {"path": "compositional_skills/linked/leaf", "form": form})
    assert status == 400 and "symlink" in data["error"]
    target = tmp_path / "victim.txt"
    target.write_text("keep me\n")
    (ui.root / HAIKU / "qna.yaml").unlink()
    (ui.root / HAIKU / "qna.yaml").symlink_to(target)
    status, data = ui.call("POST", "/api/save", {"path": HAIKU, "form": form})
    assert status == 400 and "symlink" in data["error"]
    assert target.read_text() == "keep me\n" and list(outside.iterdir()) == []


@pytest.mark.parametrize("headers", [{"Origin": "http://evil.example"}, {"Origin": "null"},
                                     {"Origin": "http://127.0.0.1:1"},
                                     {"Origin": None, "Sec-Fetch-Site": "cross-site"}])
def test_cross_origin_write_is_refused(ui, headers):
    qna = ui.root / HAIKU / "qna.yaml"
    before = qna.read_text()
    form = form_of(ui, HAIKU)
    form["created_by"] = "mallory"
    status, data = ui.call("POST", "/api/save", {"path": HAIKU, "form": form}, headers=headers)
    assert status == 403 and "cross" in data["error"]
    assert qna.read_text() == before
    # the same request from the page's own origin goes through
    status, _ = ui.call("POST", "/api/save", {"path": HAIKU, "form": form})
    assert status == 200 and "mallory" in qna.read_text()


def test_token_is_required_for_the_page_and_the_api(ui):
    status, _ = ui.call("GET", "/", headers={"X-Lab-Token": None})
    assert status == 403
    status, page = ui.call("GET", "/?token=" + ui.token)
    assert status == 200 and f'content="{ui.token}"' in page
    for method, path, body in (("GET", "/api/tree", None), ("POST", "/api/check", {"path": HAIKU, "form": {}})):
        for token in (None, "wrong"):
            status, data = ui.call(method, path, body, headers={"X-Lab-Token": token})
            assert status == 403 and "X-Lab-Token" in data["error"]


def test_foreign_host_header_is_refused(ui):
    status, data = ui.call("GET", "/api/tree", headers={"Host": "attacker.example:80"})
    assert status == 403 and "Host" in data["error"]


def test_bodies_must_be_small_json_objects(ui):
    assert ui.call("POST", "/api/check", raw=b"x" * (1024 * 1024 + 10))[0] == 413
    assert ui.call("POST", "/api/check", raw=b"[1, 2]")[0] == 400
    assert ui.call("POST", "/api/check", raw=b"{not json")[0] == 400
    status, _ = ui.call("POST", "/api/check", raw=json.dumps({"path": HAIKU}).encode(),
                        headers={"Content-Type": "text/plain"})
    assert status == 415  # what a cross-site <form> could send


def test_responses_carry_a_strict_content_security_policy(ui):
    ui.call("GET", "/?token=" + ui.token)
    csp = ui.last_headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert ui.last_headers["X-Content-Type-Options"] == "nosniff"


def test_yaml_from_the_form_is_data_not_yaml(ui):
    form = form_of(ui, HAIKU)
    form["created_by"] = "x\nversion: 1\n!!python/object/apply:os.system ['id']"
    _, data = ui.call("POST", "/api/check", {"path": HAIKU, "form": form})
    import yaml

    assert yaml.safe_load(data["yaml"])["created_by"] == form["created_by"]  # one string, as typed
    assert yaml.safe_load(data["yaml"])["version"] == 3


def test_preview_html_keeps_teacher_text_inert(ui_repo, tmp_path):
    from lab_tools.config import load_config
    from lab_tools.ui.server import ServerThread, create_app

    script = tmp_path / "evil.json"
    script.write_text(json.dumps({"response": [{"reply": "<img src=x onerror=alert(1)> <script>alert(2)</script>"}]}))
    root = ui_repo / "taxonomy"
    app = create_app(root, load_config(root), teacher=f"scripted:{script}")
    with ServerThread(app) as srv:
        client = Client(base=srv.base, url=srv.url, token=app.state.ui.token, root=root)
        _, job = client.call("POST", "/api/preview", {"path": HAIKU, "form": form_of(client, HAIKU)})
        job = wait_preview(client, job["id"])
    assert job["state"] == "done", job
    assert "onerror=alert(1)" in job["html"]  # the text is shown ...
    assert "<img" not in job["html"] and "<script" not in job["html"]  # ... as text

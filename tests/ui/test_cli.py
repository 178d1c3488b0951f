"""`lab ui` as a command: it serves the page at the URL it prints, stays off the heavy imports
for `lab --help`, warns when not on loopback, and fails cleanly when it cannot listen."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

from tests.ui.conftest import REPO


def test_lab_ui_serves_the_page_at_the_printed_url(ui_repo):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "lab_tools", "ui", str(ui_repo / "taxonomy"), "--port", "0",
                             "--teacher", "scripted:"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env, cwd=REPO)
    try:
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("open http://127.0.0.1:"):
                url = line.split()[1]
        assert url, proc.stderr.read() if proc.poll() is not None else "no URL printed"
        with urllib.request.urlopen(url, timeout=30) as resp:
            page = resp.read().decode()
        token = url.split("token=", 1)[1]
        assert f'content="{token}"' in page
        req = urllib.request.Request(url.split("/?")[0] + "/api/meta", headers={"X-Lab-Token": token})
        with urllib.request.urlopen(req, timeout=30) as resp:
            assert json.loads(resp.read())["teacher"] == "scripted:"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_lab_ui_warns_off_loopback_and_fails_cleanly_when_it_cannot_listen(ui_repo, run_lab):
    # 192.0.2.1 (TEST-NET-1) is not an address of this machine: binding fails, nothing is sent
    code, out = run_lab(["ui", str(ui_repo / "taxonomy"), "--host", "192.0.2.1", "--port", "8765"])
    assert code == 1
    assert "warning: lab ui is listening on 192.0.2.1" in out.err
    assert "cannot listen on 192.0.2.1:8765" in out.err and "Traceback" not in out.err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out = run_lab(["ui", str(ui_repo / "taxonomy"), "--port", str(port)])
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in out.err and "warning" not in out.err


def test_lab_help_does_not_import_the_web_stack():
    code = ("import sys; from lab_tools.cli import main\n"
            "try:\n    main(['ui', '--help'])\nexcept SystemExit:\n    pass\n"
            "bad = [m for m in ('starlette', 'uvicorn', 'markdown_it', 'torch', 'lab_tools.ui.server') if m in sys.modules]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr

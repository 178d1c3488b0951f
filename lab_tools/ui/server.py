"""The ``lab ui`` web application (Starlette) and the safety rules around it.

Safe by default:

- bound to 127.0.0.1 unless ``--host`` says otherwise (then :func:`serve` prints a warning);
- a random per-run token: the page is served only at ``/?token=...`` (the URL ``lab ui`` prints,
  as Jupyter does), the page carries it in a ``<meta>`` tag, and every ``/api`` request must send
  it as ``X-Lab-Token``; another site can neither read the page nor guess the token;
- the ``Host`` header must name this server (defeats DNS rebinding), and a write (``POST``) with
  an ``Origin`` that is not this server, or ``Sec-Fetch-Site: cross-site``, is refused (CSRF);
  writes must be ``application/json`` (a cross-site HTML form cannot send that);
- request bodies at most :data:`lab_tools.ui.api.MAX_BODY` bytes; paths kept inside the taxonomy
  (:mod:`lab_tools.ui.paths`); the YAML written is generated from form fields (:mod:`lab_tools.ui.form`);
- a Content-Security-Policy without inline scripts, ``frame-ancestors 'none'``, ``nosniff``,
  ``no-referrer`` and ``no-store`` on every response, errors included: bad input is a 400 JSON
  error (also a body nested too deeply or a number Python will not parse), a full preview queue a
  429 "busy", and an unexpected exception a 500 JSON error (traceback only on the terminal).
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import secrets
import socket
import sys
import threading
import traceback
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from lab_tools.errors import LabError
from lab_tools.redact import strip_credentials
from lab_tools.ui import api
from lab_tools.ui.jobs import PreviewJobs

_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


@dataclass
class UiState:
    """What the handlers share: taxonomy ``root``, ``cfg`` (:class:`lab_tools.config.Config`),
    ``jobs`` (:class:`lab_tools.ui.jobs.PreviewJobs`), the ``token``, and the ``host:port``
    names and ``http://host:port`` origins this server answers to."""
    root: Path
    cfg: object
    jobs: object
    token: str
    hosts: set[str] = field(default_factory=set)
    origins: set[str] = field(default_factory=set)

    def bind(self, host: str, port: int) -> None:
        """Accept ``Host``/``Origin`` for ``host:port`` and, for loopback, its usual names."""
        names = {host}
        if _is_loopback(host):
            names |= {"127.0.0.1", "localhost", "[::1]"}
        for name in names:
            shown = f"[{name}]" if ":" in name and not name.startswith("[") else name
            self.hosts.add(f"{shown}:{port}".lower())
            self.origins.add(f"http://{shown}:{port}".lower())


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _refuse(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status_code=status)


class Guard(BaseHTTPMiddleware):
    """The request checks of the module docstring, and the security headers on every response."""

    async def dispatch(self, request: Request, call_next):
        st: UiState = request.app.state.ui
        resp = self._check(request, st)
        if resp is None:
            try:
                resp = await call_next(request)
            except Exception as exc:  # noqa: BLE001 -- a bug answers JSON with the headers, never a bare 500
                traceback.print_exc(file=sys.stderr)  # the terminal running lab ui gets the story
                resp = _refuse(500, f"internal error ({type(exc).__name__}); the terminal running lab ui "
                                    "shows the details")
        for k, v in _HEADERS.items():
            resp.headers.setdefault(k, v)
        return resp

    @staticmethod
    def _check(request: Request, st: UiState) -> Response | None:
        host = request.headers.get("host", "").lower()
        if host not in st.hosts:
            return _refuse(403, f"Host {host!r} is not this server (open the URL that lab ui printed)")
        path = request.url.path
        if path.startswith("/static/"):
            return None
        if path == "/":
            if not hmac.compare_digest(request.query_params.get("token", ""), st.token):
                return HTMLResponse("<!doctype html><title>lab ui</title><p>Open the URL that "
                                    "<code>lab ui</code> printed (it carries this session's token).</p>",
                                    status_code=403)
            return None
        if not hmac.compare_digest(request.headers.get("x-lab-token", ""), st.token):
            return _refuse(403, "missing or wrong X-Lab-Token (reload the page from the URL lab ui printed)")
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin is not None and origin.lower() not in st.origins:
                return _refuse(403, f"cross-origin write refused (Origin {origin!r})")
            if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
                return _refuse(403, "cross-site write refused")
        return None


async def _lab_error(request: Request, err: LabError) -> Response:
    """A LabError raised by a handler (bad input): JSON with its status, never a traceback."""
    return JSONResponse({"error": err.message, "field": err.field}, status_code=getattr(err, "status", 400))


def _index(request: Request):
    st: UiState = request.app.state.ui
    page = (resources.files("lab_tools.ui") / "static" / "index.html").read_text(encoding="utf-8")
    return HTMLResponse(page.replace("{{TOKEN}}", html.escape(st.token)))


def create_app(root: str | Path, cfg, *, teacher: str | None = None, token: str | None = None) -> Starlette:
    """The application for taxonomy ``root`` (call ``app.state.ui.bind(host, port)`` before serving).

    ``teacher``: preview teacher spec overriding ``cfg.generate.teacher``; ``token``: the session
    token (default: 32 random bytes, URL-safe)."""
    routes = [
        Route("/", _index),
        Route("/api/meta", api.meta),
        Route("/api/tree", api.tree),
        Route("/api/leaf", api.get_leaf),
        Route("/api/new", api.new_leaf),
        Route("/api/check", api.check, methods=["POST"]),
        Route("/api/save", api.save, methods=["POST"]),
        Route("/api/preview", api.preview_start, methods=["POST"]),
        Route("/api/preview/{job}", api.preview_get),
        Mount("/static", StaticFiles(packages=[("lab_tools.ui", "static")]), name="static"),
    ]
    app = Starlette(routes=routes, middleware=[Middleware(Guard)], exception_handlers={LabError: _lab_error})
    root = Path(root)
    app.state.ui = UiState(root=root, cfg=cfg, jobs=PreviewJobs(root, cfg, teacher),
                           token=token or secrets.token_urlsafe(32))
    return app


class ServerThread:
    """Serve ``app`` with uvicorn on a thread (tests, screenshots). ``port`` 0 picks a free port;
    ``url`` is the page's URL with its token. Use as a context manager or call :meth:`stop`."""

    def __init__(self, app: Starlette, host: str = "127.0.0.1", port: int = 0):
        import uvicorn

        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)  # connections made before uvicorn runs wait in the backlog
        self.host, self.port = host, self.sock.getsockname()[1]
        app.state.ui.bind(host, self.port)
        shown = f"[{host}]" if ":" in host else host
        self.base = f"http://{shown}:{self.port}"
        self.url = f"{self.base}/?token={app.state.ui.token}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> "ServerThread":
        """Start serving; returns once the server accepts connections (at most 30 s)."""
        import time

        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        if not self.server.started:
            raise RuntimeError("lab ui server did not start")
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread."""
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def serve(root: str | Path, cfg, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False,
          teacher: str | None = None) -> None:
    """Run ``lab ui`` until Ctrl-C: print the URL (with the token), optionally open a browser.

    Raises:
        LabError: the port cannot be bound.
    """
    import click

    app = create_app(root, cfg, teacher=teacher)
    if not _is_loopback(host):
        click.echo(f"warning: lab ui is listening on {host}, not only on this machine: anyone who can reach "
                   "it and learns the URL's token can edit this taxonomy", err=True)
    try:
        srv = ServerThread(app, host, port)
    except OSError as exc:
        raise LabError(f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="--port") from None
    click.echo(f"lab ui: taxonomy {Path(root).resolve()}, preview teacher {strip_credentials(app.state.ui.jobs.teacher)}")
    click.echo(f"open {srv.url}")
    if open_browser:
        import webbrowser

        webbrowser.open(srv.url)
    try:
        srv.server.run(sockets=[srv.sock])
    finally:
        srv.sock.close()

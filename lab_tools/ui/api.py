"""The JSON endpoints of ``lab ui`` (Starlette handlers). Every path from the page goes through
:mod:`lab_tools.ui.paths`, every form through :func:`lab_tools.ui.form.form_to_leaf`; findings come
from :func:`lab_tools.ui.checks.check_leaf` (the validator and the license check themselves).

==========================  =====================================================================
``GET  /api/meta``          kinds, license allowlist, word limits, schema bounds, teacher
``GET  /api/tree``          every leaf with its status (``valid`` / ``warnings`` / ``errors``)
``GET  /api/leaf?path=``    an existing leaf as a form, its YAML and findings
``GET  /api/new?path=``     a blank form for a new leaf at ``path`` (refused if the path is bad)
``POST /api/check``         ``{path, form}`` -> the YAML and attribution it writes, and findings
``POST /api/save``          ``{path, form, commit?: {branch, message}}`` -> files written, git
``POST /api/preview``       ``{path, form}`` -> a preview job id
``GET  /api/preview/{id}``  the job's state, progress and (when done) the rendered samples
==========================  =====================================================================

Errors are ``{"error": message, "field": field}`` with 400 (bad input), 404, 413 or 422.
"""

from __future__ import annotations

import json

import click
from starlette.requests import Request
from starlette.responses import JSONResponse

from lab_tools.errors import LabError
from lab_tools.redact import strip_credentials
from lab_tools.taxonomy.leaf import iter_leaf_paths, KINDS
from lab_tools.taxonomy.licenses import parse_attributions
from lab_tools.taxonomy.safeyaml import load_yaml_doc
from lab_tools.taxonomy.schema import family, load_schema, SUPPORTED
from lab_tools.taxonomy.validate import CONTEXT_WORDS, QA_WORDS, validate_tree
from lab_tools.ui.checks import check_leaf
from lab_tools.ui.form import blank_form, form_to_leaf, leaf_to_form
from lab_tools.ui.gitops import commit_files, open_repo, write_atomic
from lab_tools.ui.paths import kind_of, leaf_dir

MAX_BODY = 1024 * 1024  # bytes per request body
MAX_DEPTH = 16  # nesting of a request body (the page's forms nest 6 deep)


class ApiError(LabError):
    """An error answered as JSON with HTTP ``status``."""

    def __init__(self, message: str, status: int = 400, field: str | None = None):
        super().__init__(message, field=field)
        self.status = status


async def read_json(request: Request) -> dict:
    """The request body as a JSON object, at most :data:`MAX_BODY` bytes.

    Raises:
        ApiError: 413 over the limit, 415 not ``application/json``, 400 not a JSON object (also
            nested over :data:`MAX_DEPTH` levels, or a number Python will not parse: over 4,300
            digits).
    """
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != "application/json":
        raise ApiError("send application/json", 415)
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY):
        raise ApiError(f"request body over {MAX_BODY} bytes", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(f"request body over {MAX_BODY} bytes", 413)
    try:
        data = json.loads(body.decode("utf-8"))
    except RecursionError:
        raise ApiError(f"request body is nested more than {MAX_DEPTH} levels deep") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer over Python's digit limit
        raise ApiError(f"request body is not JSON the page sends: {str(exc)[:200]}") from None
    if not isinstance(data, dict):
        raise ApiError("request body must be a JSON object")
    if _depth(data) > MAX_DEPTH:
        raise ApiError(f"request body is nested more than {MAX_DEPTH} levels deep")
    return data


def _depth(value) -> int:
    """Nesting depth of parsed JSON (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level + 1)
            stack.extend((v, level + 1) for v in (item.values() if isinstance(item, dict) else item))
    return deepest


def _bounds() -> dict:
    """Per (family, version): minItems/maxItems the schemas put on the lists the form edits."""
    out: dict = {}
    for fam, version in sorted(SUPPORTED):
        props = load_schema(fam, version)["properties"]
        ex = props["seed_examples"]
        b = {"examples": [ex.get("minItems", 1), ex.get("maxItems")]}
        if fam == "knowledge":
            qa = ex["items"]["properties"]["questions_and_answers"]
            pats = props["document"]["properties"]["patterns"]
            b["qas"] = [qa.get("minItems", 1), qa.get("maxItems")]
            b["patterns"] = [pats.get("minItems", 1), pats.get("maxItems")]
        out.setdefault(fam, {})[str(version)] = b
    return out


def _state(request: Request):
    return request.app.state.ui


def _leaf_from_body(st, body: dict) -> tuple[str, str, object]:
    rel, _ = leaf_dir(st.root, body.get("path"))
    return rel, kind_of(rel), form_to_leaf(kind_of(rel), body.get("form"))


async def meta(request: Request):
    """Kinds, license allowlist (SPDX ids), word limits, schema bounds, teacher, samples."""
    st = _state(request)
    return JSONResponse({"root": str(st.root), "kinds": list(KINDS), "licenses": list(st.cfg.licenses.allowlist),
                         "limits": {"context": CONTEXT_WORDS, "qa": QA_WORDS}, "bounds": _bounds(),
                         "teacher": strip_credentials(st.jobs.teacher), "samples": int(st.cfg.bot.samples)})


async def tree(request: Request):
    """``{"leaves": [{path, kind, status, errors, warnings}], "other": [{file, errors, warnings}]}``
    from one :func:`lab_tools.taxonomy.validate.validate_tree` run over the whole taxonomy."""
    import os

    root = _state(request).root
    paths = iter_leaf_paths(root)
    counts = {p: [0, 0] for p in paths}
    other: dict[str, list[int]] = {}
    for f in validate_tree(root):
        rel = os.path.relpath(f.file, root).replace(os.sep, "/")
        owner = max((p for p in paths if rel.startswith(p + "/")), key=len, default=None)
        slot = counts[owner] if owner else other.setdefault(rel, [0, 0])
        slot[0 if f.is_error else 1] += 1
    status = lambda e, w: "errors" if e else "warnings" if w else "valid"  # noqa: E731
    return JSONResponse({
        "leaves": [{"path": p, "kind": kind_of(p), "status": status(*counts[p]), "errors": counts[p][0],
                    "warnings": counts[p][1]} for p in paths],
        "other": [{"file": k, "status": status(*v), "errors": v[0], "warnings": v[1]} for k, v in sorted(other.items())]})


def _checked(st, rel: str, leaf) -> dict:
    return {"path": rel, "kind": kind_of(rel), "yaml": leaf.yaml_text(), "attribution": leaf.attribution_text(),
            "findings": check_leaf(st.root, rel, leaf, list(st.cfg.licenses.allowlist))}


async def get_leaf(request: Request):
    """An existing leaf: ``{path, kind, form, dropped, yaml, attribution, findings, reformatted}``;
    ``reformatted`` is true when saving the unchanged form would change the file's text."""
    st = _state(request)
    rel, d = leaf_dir(st.root, request.query_params.get("path"))
    qna = d / "qna.yaml"
    if not qna.is_file():
        raise ApiError(f"no leaf at {rel} (no qna.yaml)", 404, "path")
    try:
        doc = load_yaml_doc(qna)
        works = parse_attributions(d / "attribution.txt") if (d / "attribution.txt").is_file() else []
    except LabError as err:
        raise ApiError(f"{rel}: {err.message}" + (f" (line {err.line})" if err.line else "")
                       + "; fix the file in an editor first", 422) from None
    form, dropped = leaf_to_form(kind_of(rel), doc.data, doc.text, works)
    leaf = form_to_leaf(kind_of(rel), form)
    out = _checked(st, rel, leaf)
    out.update(form=form, dropped=dropped, reformatted=leaf.yaml_text() != doc.text)
    return JSONResponse(out)


async def new_leaf(request: Request):
    """A blank form for a new leaf at ``path`` (kind from the top folder); 409 if it exists."""
    st = _state(request)
    rel, d = leaf_dir(st.root, request.query_params.get("path"))
    if (d / "qna.yaml").exists():
        raise ApiError(f"{rel} already has a qna.yaml; open it from the tree", 409, "path")
    kind = kind_of(rel)
    props = load_schema(family(kind), 3)["properties"]["seed_examples"]
    min_qas = props["items"]["properties"].get("questions_and_answers", {}).get("minItems", 3)
    form = blank_form(kind, props.get("minItems", 1), min_qas)
    out = _checked(st, rel, form_to_leaf(kind, form))
    out.update(form=form, dropped=[], reformatted=False)
    return JSONResponse(out)


async def check(request: Request):
    """``{path, form}`` -> ``{path, kind, yaml, attribution, findings}`` (nothing written)."""
    body = await read_json(request)
    rel, _, leaf = _leaf_from_body(_state(request), body)
    return JSONResponse(_checked(_state(request), rel, leaf))


async def save(request: Request):
    """Write the leaf's ``qna.yaml`` and ``attribution.txt`` (only those that change), then, with
    ``commit: {branch, message}``, commit them on that branch (a bad branch name is refused before
    anything is written). Returns ``{path, written, unchanged, findings, git, git_error, next}``;
    ``git_error`` says why the commit failed after the files were saved; ``next`` is the commands
    to run afterwards."""
    from starlette.concurrency import run_in_threadpool

    st = _state(request)
    body = await read_json(request)
    rel, _, leaf = _leaf_from_body(st, body)
    want = body.get("commit")
    if want is not None and not (isinstance(want, dict) and isinstance(want.get("branch"), str)
                                 and isinstance(want.get("message", ""), str)):
        raise ApiError("commit must be {branch, message}", field="branch")
    repo = open_repo(st.root, want["branch"].strip()) if want is not None else None  # refused before writing
    result = _checked(st, rel, leaf)
    again, d = leaf_dir(st.root, rel)  # symlinks checked again right before writing, same folder
    if again != rel:
        raise ApiError(f"path {rel!r} changed when checked again ({again!r}); nothing written", field="path")
    written, unchanged = [], []
    files = [(d / "qna.yaml", leaf.yaml_text())]
    if leaf.attribution_text():
        files.append((d / "attribution.txt", leaf.attribution_text()))
    for path, text in files:
        (written if write_atomic(path, text) else unchanged).append(f"{rel}/{path.name}")
    git_info, git_error, nxt = None, None, []
    if repo is not None:
        try:
            git_info = await run_in_threadpool(commit_files, repo, [p for p, _ in files],
                                               want["branch"].strip(), want.get("message", ""))
            nxt = [git_info["push"], git_info["pr"]]
            click.echo(f"lab ui: committed {rel} on {git_info['branch']} ({git_info['commit'][:12]}); "
                       "next:\n  " + "\n  ".join(nxt))
        except LabError as err:  # the files are saved; say why the commit is not there
            git_error = err.message
    else:
        click.echo(f"lab ui: saved {', '.join(written) or 'nothing (unchanged)'}")
    return JSONResponse({"path": rel, "written": written, "unchanged": unchanged, "findings": result["findings"],
                         "git": git_info, "git_error": git_error, "next": nxt})


async def preview_start(request: Request):
    """``{path, form}`` -> ``{id}`` of a new preview job (see :mod:`lab_tools.ui.jobs`)."""
    st = _state(request)
    rel, _, leaf = _leaf_from_body(st, await read_json(request))
    return JSONResponse(st.jobs.start(rel, leaf).view(), status_code=202)


async def preview_get(request: Request):
    """The preview job's ``{id, state, stage, requests, seconds, markdown, html, error}``."""
    job = _state(request).jobs.get(request.path_params["job"])
    if job is None:
        raise ApiError("no such preview job", 404)
    return JSONResponse(job.view())

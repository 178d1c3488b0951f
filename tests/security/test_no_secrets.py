"""No secrets in what is published (issue 23.6): a teacher or judge spec with credentials in its URL
(``openai:http://user:token@host/v1#model``) is stripped wherever a spec is shown or stored: the
bot's comment (also when no generation runs), error messages and logs, ``dataset_card.json`` and
the dataset card, ``run.json``, ``release.json`` and the model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.bot.conftest import OWNER_REPO, fake_github, pull_repo, skill_leaf  # noqa: F401 (fixtures)
from tests.release.test_release import run_dir  # noqa: F401 (fixture)
from tests.security.test_teacher_outage import MODEL, _closed_port, _openai_handler

from lab_tools.errors import LabError
from lab_tools.redact import PathRedactor, strip_credentials
from lab_tools.release.release import make_release, provenance, write_json
from lab_tools.sdg.backends import make_teacher, teacher_identity

TOKEN = "s3cr3t-t0ken"


def _files_holding(folder: Path, secret: str) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.is_file() and secret in p.read_bytes().decode("utf-8", "replace"))


def test_strip_credentials_keeps_the_server_and_model():
    assert strip_credentials(f"openai:http://user:{TOKEN}@host:8000/v1#m") == "openai:http://host:8000/v1#m"
    assert strip_credentials(f"openai:https://{TOKEN}@h/v1#m") == "openai:https://h/v1#m"
    assert strip_credentials(f"openai:http://u:p@ss:{TOKEN}@h/v1#m") == "openai:http://h/v1#m"  # the last @ ends it
    assert TOKEN not in strip_credentials(f"GET http://h/v1/models?api_key={TOKEN}&x=1")
    assert strip_credentials("openai:http://127.0.0.1:8000/v1#m") == "openai:http://127.0.0.1:8000/v1#m"
    assert strip_credentials("write to a@b.example") == "write to a@b.example"  # not a URL
    assert PathRedactor(None).text(f"teacher openai:http://u:{TOKEN}@h/v1#m") == "teacher openai:http://h/v1#m"


def test_errors_and_identity_do_not_quote_credentials():
    with pytest.raises(LabError) as err:
        make_teacher(f"openai:http://user:{TOKEN}@127.0.0.1:1/v1")  # no #MODEL: a spec error quoting it
    assert TOKEN not in str(err.value) and "openai:http://127.0.0.1:1/v1" in str(err.value)
    assert teacher_identity(f"openai:http://user:{TOKEN}@h/v1#m") == "openai:http://h/v1#m"


def test_generate_stores_no_credentials(tmp_path, repo_root, tiny_model, cache_dir, run_lab, monkeypatch):
    """`lab generate` against a served teacher whose URL carries a token: nothing it writes or
    prints holds the token (dataset_card.json kept the full URL before)."""
    from pytest_httpserver import HTTPServer
    from tests.e2e.build_fixture import make_build_repo

    repo = make_build_repo(tmp_path, repo_root, tiny_model)
    monkeypatch.setenv("LAB_FEEDBACK__ENABLED", "false")
    server = HTTPServer("127.0.0.1", _closed_port(), threaded=True)
    server.expect_request("/v1/chat/completions", method="POST").respond_with_handler(_openai_handler())
    server.start()
    try:
        spec = f"openai:http://lab:{TOKEN}@127.0.0.1:{server.port}/v1#{MODEL}"
        out = tmp_path / "data"
        code, io = run_lab(["generate", str(repo), "--teacher", spec, "--judge", spec, "--out", str(out)])
    finally:
        server.stop()
    assert code == 0, io.out + io.err
    card = json.loads((out / "dataset_card.json").read_text())
    assert card["teacher_identity"] == f"openai:http://127.0.0.1:{server.port}/v1#{MODEL}"  # still names the server
    assert sum(card["phases"].values()) > 0
    assert _files_holding(out, TOKEN) == [] and TOKEN not in io.out + io.err


def test_bot_comment_without_generation_names_no_credentials(fake_github, pull_repo, cache_dir):  # noqa: F811
    leaf = "compositional_skills/writing/poetry/limerick"
    pull_repo.write_leaf(leaf, skill_leaf("Write limericks.", [("Write one.", "There once was a cat.")]))
    pull_repo.commit("add a leaf that fails validation")  # too few seed examples: no generation runs
    spec = f"openai:http://lab:{TOKEN}@127.0.0.1:{_closed_port()}/v1#{MODEL}"
    args = ["preview", "--repo", OWNER_REPO, "--pr", "7", "--taxonomy", str(pull_repo.taxonomy),
            "--config", str(pull_repo.path.parent / "trusted.yaml"), "--teacher", spec]
    from lab_tools.bot.cli import bot

    result = CliRunner().invoke(bot, args, catch_exceptions=False)
    body = next(iter(fake_github.comments.values()))["body"]
    assert "limerick" in body and "127.0.0.1" in body  # the teacher is still named
    assert TOKEN not in body and TOKEN not in result.output


def test_release_and_run_json_hold_no_credentials(run_dir, repo_root):  # noqa: F811
    class Cfg:  # the settings provenance() reads, with credentials in both specs
        class generate:
            teacher = f"openai:http://lab:{TOKEN}@teacher.internal/v1#big"
            judge = f"openai:https://{TOKEN}@judge.internal/v1#judge"
            samples = 4
        class train:
            student, preset = "embedded", "tiny-cpu"
        class licenses:
            allowlist = ["CC-BY-4.0"]
        class release:
            dataset = ""
    prov = provenance(repo_root / "taxonomy", Cfg)
    assert prov["teacher"] == "openai:http://teacher.internal/v1#big"
    write_json(run_dir / "run.json", prov)
    card = json.loads((run_dir / "data" / "dataset_card.json").read_text() or "{}")
    card["teacher_identity"] = Cfg.generate.teacher  # a card written before this fix
    (run_dir / "data" / "dataset_card.json").write_text(json.dumps(card))
    out = make_release(run_dir).out_dir
    assert TOKEN not in (run_dir / "run.json").read_text()
    assert _files_holding(out, TOKEN) == []
    assert "teacher.internal" in (out / "README.md").read_text()

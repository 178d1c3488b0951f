"""The `lab ui` endpoints without a browser, against a live server (scripted teacher).

Path-escape and cross-origin refusals live in tests/security/test_ui.py."""

from __future__ import annotations

import pytest
import yaml

from lab_tools.bot.render import inline
from lab_tools.taxonomy.validate import QA_WORDS
from tests.ui.conftest import form_of, git, wait_preview

HAIKU = "compositional_skills/writing/freeform/poetry/haiku"
BEES = "knowledge/science/biology/honey_bees"
NEW = "compositional_skills/writing/poetry/limericks"


def _findings(data, field=None):
    return [f for f in data["findings"] if field is None or f["field"] == field]


def _new_form(ui, path=NEW):
    status, data = ui.call("GET", f"/api/new?path={path}")
    assert status == 200, data
    form = data["form"]
    form["created_by"] = "alice"
    form["task_description"] = "Write a limerick on the given subject."
    for i, ex in enumerate(form["seed_examples"]):
        ex["question"] = f"Write a limerick about a cat named {i}."
        ex["answer"] = f"There once was a cat known as {i} ..."
    form["attribution"] = [{"title": "Limericks", "link": "self-authored", "revision": "",
                            "license": "CC-BY-4.0", "creators": "alice"}]
    return form


def test_meta_reports_allowlist_limits_and_schema_bounds(ui):
    status, meta = ui.call("GET", "/api/meta")
    assert status == 200
    lab = yaml.safe_load((ui.root.parent / "lab.yaml").read_text())
    assert meta["licenses"] == lab["licenses"]["allowlist"]
    assert meta["limits"] == {"context": 500, "qa": QA_WORDS}
    assert meta["bounds"]["skills"]["3"]["examples"][0] == 5
    assert meta["bounds"]["skills"]["1"]["examples"][0] == 1
    assert meta["bounds"]["knowledge"]["3"]["qas"][0] == 3
    assert meta["teacher"] == "scripted:"


def test_tree_gives_each_leaf_the_validator_status(ui):
    status, data = ui.call("GET", "/api/tree")
    assert status == 200
    assert {leaf["path"]: leaf["status"] for leaf in data["leaves"]}[HAIKU] == "valid"
    qna = ui.root / HAIKU / "qna.yaml"
    qna.write_text(qna.read_text().replace("created_by:", "made_by:"))
    long = ui.root / "foundational_skills/reasoning/temporal_reasoning/qna.yaml"
    doc = yaml.safe_load(long.read_text())
    doc["seed_examples"][0]["answer"] = "word " * (QA_WORDS + 5)
    long.write_text(yaml.safe_dump(doc, sort_keys=False))
    _, data = ui.call("GET", "/api/tree")
    by = {leaf["path"]: leaf for leaf in data["leaves"]}
    assert by[HAIKU]["status"] == "errors" and by[HAIKU]["errors"] >= 1
    assert by["foundational_skills/reasoning/temporal_reasoning"]["status"] == "warnings"
    assert by[BEES]["status"] == "valid"


def test_leaf_round_trips_to_the_same_text(ui):
    status, data = ui.call("GET", f"/api/leaf?path={BEES}")
    assert status == 200
    assert data["kind"] == "knowledge" and data["dropped"] == [] and data["reformatted"] is False
    assert data["yaml"] == (ui.root / BEES / "qna.yaml").read_text()
    assert data["attribution"] == (ui.root / BEES / "attribution.txt").read_text()
    assert data["form"]["document"]["patterns"] == ["honey_bees/*.md"]
    assert data["findings"] == []


def test_leaf_missing_and_unparsable(ui):
    status, data = ui.call("GET", "/api/leaf?path=compositional_skills/none/here")
    assert status == 404 and data["field"] == "path"
    (ui.root / HAIKU / "qna.yaml").write_text("version: 3\ncreated_by: [unclosed\n")
    status, data = ui.call("GET", f"/api/leaf?path={HAIKU}")
    assert status == 422 and "line" in data["error"]


def test_leaf_with_unknown_fields_lists_what_saving_drops(ui):
    qna = ui.root / HAIKU / "qna.yaml"
    qna.write_text(qna.read_text() + "extra_field: 1\n")
    _, data = ui.call("GET", f"/api/leaf?path={HAIKU}")
    assert data["dropped"] == ["extra_field"]
    assert "extra_field" not in data["yaml"]


def test_new_gives_a_blank_form_within_the_schema_bounds(ui):
    status, data = ui.call("GET", f"/api/new?path={NEW}")
    assert status == 200 and data["kind"] == "compositional_skills"
    assert len(data["form"]["seed_examples"]) == 5
    fields = {f["field"] for f in data["findings"]}
    assert {"created_by", "task_description", "seed_examples.0.question"} <= fields
    status, data = ui.call("GET", "/api/new?path=knowledge/history/moon")
    assert len(data["form"]["seed_examples"]) == 5
    assert all(len(ex["questions_and_answers"]) == 3 for ex in data["form"]["seed_examples"])
    assert ui.call("GET", f"/api/new?path={HAIKU}")[0] == 409
    for bad in ("writing/poetry/x", "compositional_skills", "compositional_skills/.hidden/x",
                "compositional_skills/venv/x", "compositional_skills/a b/x"):
        status, data = ui.call("GET", f"/api/new?path={bad.replace(' ', '%20')}")
        assert status == 400 and data["field"] == "path", (bad, data)


def test_check_names_the_field_and_line_of_each_finding(ui):
    form = _new_form(ui)
    form["created_by"] = ""
    form["seed_examples"][2]["answer"] = "word " * (QA_WORDS + 1)
    status, data = ui.call("POST", "/api/check", {"path": NEW, "form": form})
    assert status == 200
    missing = _findings(data, "created_by")
    assert missing and missing[0]["severity"] == "error" and "required" in missing[0]["message"]
    warn = _findings(data, "seed_examples.2")
    assert warn and warn[0]["severity"] == "warning" and str(QA_WORDS) in warn[0]["message"]
    line = data["yaml"].splitlines()[warn[0]["line"] - 1]
    assert line.strip().startswith("- question:")
    assert "created_by" not in data["yaml"]
    assert not (ui.root / NEW).exists()  # checking writes nothing into the taxonomy


def test_check_flags_a_non_permissive_license_on_its_field(ui):
    form = _new_form(ui)
    form["attribution"][0]["license"] = "CC-BY-NC-4.0"
    _, data = ui.call("POST", "/api/check", {"path": NEW, "form": form})
    lic = _findings(data, "attribution.0.license")
    assert lic and lic[0]["severity"] == "error" and "non-commercial" in lic[0]["message"]
    form["attribution"][0]["license"] = "GPL-3.0-only"
    _, data = ui.call("POST", "/api/check", {"path": NEW, "form": form})
    assert "allowlist" in _findings(data, "attribution.0.license")[0]["message"]
    form["attribution"][0]["license"] = "CC-BY-4.0"
    _, data = ui.call("POST", "/api/check", {"path": NEW, "form": form})
    assert data["findings"] == []


def test_check_puts_license_findings_on_the_right_work(ui):
    form = _new_form(ui)
    ok = dict(form["attribution"][0])
    empty = {k: "" for k in ok}
    form["attribution"] = [ok, empty, {**ok, "title": "Second", "license": "CC-BY-ND-4.0"}, {**ok, "license": ""}]
    _, data = ui.call("POST", "/api/check", {"path": NEW, "form": form})
    assert data["attribution"].count("Title of work:") == 3  # the empty work is not written
    fields = {f["field"]: f for f in data["findings"] if f["file"] == "attribution.txt"}
    assert set(fields) == {"attribution.2.license", "attribution.3.license"}
    assert "forbids derivatives" in fields["attribution.2.license"]["message"]
    line = data["attribution"].splitlines()[fields["attribution.2.license"]["line"] - 1]
    assert line == "License of the work: CC-BY-ND-4.0"


def test_check_refuses_forms_of_the_wrong_shape(ui):
    form = _new_form(ui)
    for bad in ({**form, "unknown": "x"}, {**form, "created_by": ["a"]},
                {**form, "seed_examples": [{"question": "q", "answer": "a", "extra": "x"}]},
                {**form, "version": "3; rm -rf /"}, {**form, "created_by": "x" * 30_000}):
        status, data = ui.call("POST", "/api/check", {"path": NEW, "form": bad})
        assert status == 400, data


def test_save_writes_a_leaf_that_validates(ui, run_lab):
    form = _new_form(ui)
    status, data = ui.call("POST", "/api/save", {"path": NEW, "form": form})
    assert status == 200, data
    assert data["written"] == [f"{NEW}/qna.yaml", f"{NEW}/attribution.txt"] and data["git"] is None
    assert yaml.safe_load((ui.root / NEW / "qna.yaml").read_text())["created_by"] == "alice"
    code, out = run_lab(["taxonomy", "validate", str(ui.root)])
    assert code == 0, out.out + out.err
    code, out = run_lab(["taxonomy", "licenses", str(ui.root)])
    assert code == 0, out.out + out.err
    status, data = ui.call("POST", "/api/save", {"path": NEW, "form": form})
    assert data["written"] == [] and len(data["unchanged"]) == 2


def test_save_unchanged_existing_leaf_changes_nothing(ui):
    _, data = ui.call("POST", "/api/save", {"path": BEES, "form": form_of(ui, BEES)})
    assert data["written"] == []
    assert git(ui.root.parent, "status", "--porcelain") == ""


def test_save_with_commit_makes_a_branch_and_prints_the_next_commands(ui):
    body = {"path": NEW, "form": _new_form(ui), "commit": {"branch": "leaf/limericks", "message": "Add limericks"}}
    status, data = ui.call("POST", "/api/save", body)
    assert status == 200, data
    repo = ui.root.parent
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "leaf/limericks"
    assert git(repo, "rev-parse", "HEAD").strip() == data["git"]["commit"]
    changed = git(repo, "show", "--name-only", "--format=", "HEAD").split()
    assert changed == [f"taxonomy/{NEW}/attribution.txt", f"taxonomy/{NEW}/qna.yaml"]
    assert data["next"][0] == "git push -u origin leaf/limericks"
    assert data["next"][1].startswith("gh pr create --head leaf/limericks")
    # the same files again: saved (unchanged), and the reason there is no commit
    status, data = ui.call("POST", "/api/save", body)
    assert status == 200 and data["git"] is None and "nothing to commit" in data["git_error"]
    # a bad branch name is refused before anything is written
    other = "compositional_skills/writing/poetry/sonnets"
    for bad in ("bad..name", "-f", ""):
        status, data = ui.call("POST", "/api/save", {"path": other, "form": _new_form(ui, other),
                                                     "commit": {"branch": bad, "message": "x"}})
        assert status == 400 and data["field"] == "branch", data
    assert not (ui.root / other).exists()


def test_preview_shows_the_scripted_samples_as_the_bot_comment_does(ui):
    form = form_of(ui, HAIKU)
    status, job = ui.call("POST", "/api/preview", {"path": HAIKU, "form": form})
    assert status == 202 and job["state"] in ("queued", "running")
    job = wait_preview(ui, job["id"])
    assert job["state"] == "done", job
    assert job["requests"] > 0
    assert f"<code>{inline(HAIKU)}</code>" in job["markdown"]
    samples = yaml.safe_load((ui.root.parent / "lab.yaml").read_text())["bot"]["samples"]
    assert job["html"].count("<summary>sample ") == samples  # bot.samples, as the bot uses
    assert "<summary>sample 1" in job["html"] and "<strong>Answer</strong>" in job["html"]
    assert ui.call("GET", "/api/preview/nope")[0] == 404


def test_preview_of_a_leaf_with_errors_says_what_to_fix(ui):
    form = form_of(ui, HAIKU)
    form["created_by"] = ""
    _, job = ui.call("POST", "/api/preview", {"path": HAIKU, "form": form})
    job = wait_preview(ui, job["id"])
    assert job["state"] == "done" and job["requests"] == 0
    assert "fix the errors above" in job["markdown"] and inline("created_by") in job["markdown"]


def test_preview_of_a_knowledge_leaf_reads_its_pinned_documents(ui):
    import shutil

    from tests.ui.conftest import REPO

    repo = ui.root.parent
    shutil.copytree(REPO / "documents" / "honey_bees", repo / "documents" / "honey_bees")
    git(repo, "add", "documents")
    git(repo, "commit", "-q", "-m", "documents")
    form = form_of(ui, BEES)
    assert form["document"]["repo"] == "../documents"
    form["document"]["commit"] = git(repo, "rev-parse", "HEAD").strip()
    _, job = ui.call("POST", "/api/preview", {"path": BEES, "form": form})
    job = wait_preview(ui, job["id"])
    assert job["state"] == "done", job
    assert "Generation failed" not in job["markdown"], job["markdown"][:2000]
    assert "<summary>sample 1" in job["html"]
    form["document"]["commit"] = "0" * 40  # not in the repository: the leaf's own error, shown
    _, job = ui.call("POST", "/api/preview", {"path": BEES, "form": form})
    job = wait_preview(ui, job["id"])
    assert "documents" in job["markdown"] and "<summary>sample" not in job["html"]


def test_live_findings_are_what_lab_taxonomy_validate_reports_for_the_saved_file(ui):
    """The page's checks and the CLI's validator agree finding for finding on the written file."""
    import os

    from lab_tools.taxonomy.validate import validate_tree

    form = _new_form(ui)
    form["task_description"] = ""
    form["seed_examples"][3]["question"] = form["seed_examples"][0]["question"]  # a duplicate
    form["seed_examples"][4]["context"] = "word " * 501  # a grounded example over the context limit
    form["seed_examples"].pop()
    form["seed_examples"].append({"question": "", "answer": "only an answer"})
    _, checked = ui.call("POST", "/api/check", {"path": NEW, "form": form})
    ui.call("POST", "/api/save", {"path": NEW, "form": form})
    on_disk = [(f.line, f.column, f.field, f.message, f.severity) for f in validate_tree(ui.root, [NEW])
               if os.path.basename(f.file) == "qna.yaml"]
    live = [(f["line"], f["column"], f["field"], f["message"], f["severity"]) for f in checked["findings"]
            if f["file"] == "qna.yaml"]
    assert live == on_disk
    assert {"task_description", "seed_examples.3.question", "seed_examples.4.question"} <= {f[2] for f in live}


def test_preview_progress_is_reported_while_it_runs(ui_repo, tmp_path):
    import json
    import time

    from lab_tools.config import load_config
    from lab_tools.ui.server import ServerThread, create_app
    from tests.ui.conftest import Client

    script = tmp_path / "slow.json"
    script.write_text(json.dumps({"delay": 0.05}))
    root = ui_repo / "taxonomy"
    app = create_app(root, load_config(root), teacher=f"scripted:{script}")
    with ServerThread(app) as srv:
        client = Client(base=srv.base, url=srv.url, token=app.state.ui.token, root=root)
        _, job = client.call("POST", "/api/preview", {"path": HAIKU, "form": form_of(client, HAIKU)})
        seen = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            _, view = client.call("GET", f"/api/preview/{job['id']}")
            seen.append((view["state"], view["stage"], view["requests"]))
            if view["state"] in ("done", "failed"):
                break
            time.sleep(0.05)
    assert view["state"] == "done", view
    running = [s for s in seen if s[0] == "running" and s[2] > 0]
    assert running, seen[:5]
    assert any(":" in stage and "request" in stage for _, stage, _ in running)
    counts = [s[2] for s in seen]
    assert counts == sorted(counts) and counts[-1] == view["requests"] > running[0][2]


@pytest.mark.embedded
@pytest.mark.timeout(1800)
def test_preview_with_the_default_embedded_teacher(ui_repo):
    """No --teacher: the page previews with lab.yaml's teacher, the embedded SmolLM2-135M
    (one sample, short replies: a busy 2-core machine took over 10 minutes for two)."""
    from lab_tools.config import load_config
    from lab_tools.ui.server import ServerThread, create_app
    from tests.ui.conftest import Client

    root = ui_repo / "taxonomy"
    cfg = load_config(root)
    cfg.bot.samples, cfg.generate.question_factor, cfg.generate.max_new_tokens = 1, 1, 64
    app = create_app(root, cfg)
    with ServerThread(app) as srv:
        client = Client(base=srv.base, url=srv.url, token=app.state.ui.token, root=root)
        assert client.call("GET", "/api/meta")[1]["teacher"] == "transformers:embedded"
        _, job = client.call("POST", "/api/preview", {"path": HAIKU, "form": form_of(client, HAIKU)})
        job = wait_preview(client, job["id"], timeout=900)
    assert job["state"] == "done", job
    assert job["requests"] > 0 and "Generation failed" not in job["markdown"]
    assert "transformers" not in job["error"]

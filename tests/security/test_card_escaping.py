"""The model card and the dataset card escape contributor text (issue 23.5).

``release.yml`` publishes the model card as the release notes, and the dataset card is a Hub
README: an attribution title holding a markdown link to a download, creators with ``@mentions``
and an ``<img>`` tag, a ``javascript:`` link, and a leaf folder whose name holds a backtick,
HTML and a markdown link used to render live. Now every such text goes through the bot's own
escaping rule (:mod:`lab_tools.markdown`) and a link is shown only when http(s), as text."""

from __future__ import annotations

import html
import json
import re
import shutil
from pathlib import Path

from markdown_it import MarkdownIt
from tests.release.test_release import run_dir  # noqa: F401 (fixture)

import lab_tools.bot.render as bot_render
from lab_tools import markdown
from lab_tools.markdown import ZWJ, link_text
from lab_tools.release.release import make_release, provenance, write_json

EVIL_FOLDER = "x`<img src=x onerror=alert(1)>`[dl](evil.exe)@someone"
EVIL_LEAF = f"compositional_skills/writing/freeform/poetry/{EVIL_FOLDER}"
EVIL_TITLE = "Bees [download the full book](https://evil.example/book.exe) ![px](https://evil.example/p.png)"
EVIL_CREATORS = "@someone @org/team <img src=x onerror=alert(1)> **bold** | broken | table"


def to_html(md: str) -> str:
    """Render like GitHub would for our purposes: CommonMark with raw HTML allowed, tables on."""
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(md)


def _assert_inert(md: str) -> None:
    rendered = to_html(md)
    assert all('src="loss.png"' in tag for tag in re.findall(r"<img [^>]*>", rendered)), "only our loss plot"
    assert "<script" not in rendered and "onerror" not in "".join(re.findall(r"<[a-z][^>]*>", rendered))
    assert "evil.exe" not in "".join(a for a in rendered.split("<a ")[1:]), "a live link to the download"
    assert 'href="https://evil' not in rendered and 'href="evil' not in rendered and "javascript:" not in rendered
    assert "@someone" not in md and "https://evil" not in md  # no mention, no autolink (a joiner in between)


def _hostile_taxonomy(tmp_path: Path, repo_root: Path) -> Path:
    root = tmp_path / "hostile" / "taxonomy"
    shutil.copytree(repo_root / "taxonomy", root)
    (root / EVIL_LEAF).parent.mkdir(parents=True, exist_ok=True)
    (root / "compositional_skills/writing/freeform/poetry/haiku").rename(root / EVIL_LEAF)
    (root / "knowledge/science/biology/honey_bees/attribution.txt").write_text(
        f"Title of work: {EVIL_TITLE}\nLink to work: javascript:alert(document.cookie)\n"
        f"License of the work: CC-BY-4.0\nCreator names: {EVIL_CREATORS}\n", encoding="utf-8")
    (root / "knowledge/science/earth_science/water_cycle/attribution.txt").write_text(
        "Title of work: Water\nLink to work: https://evil.example/water\nLicense of the work: CC-BY-4.0\n"
        "Creator names: Ann\n", encoding="utf-8")
    return root


def test_one_escaping_rule_for_the_comment_and_the_cards():
    assert bot_render.inline is markdown.inline and bot_render.code_block is markdown.code_block


def test_links_are_shown_as_text_and_only_when_http():
    assert "javascript" not in link_text("javascript:alert(1)") and "not shown" in link_text("javascript:alert(1)")
    assert "not shown" in link_text("file:///etc/passwd") and "not shown" in link_text("documents/x.md")
    assert "not shown" in link_text("https://user:pw@example.org/x")
    shown = link_text("https://example.org/a_(b)")
    assert "<a" not in to_html(shown) and html.unescape(shown).replace(ZWJ, "") == "https://example.org/a_(b)"


def test_model_card_escapes_attribution_and_leaf_paths(run_dir, tmp_path, repo_root):  # noqa: F811
    root = _hostile_taxonomy(tmp_path, repo_root)
    prov = json.loads((run_dir / "run.json").read_text())
    write_json(run_dir / "run.json", {**prov, **provenance(root)})  # the run was built from the hostile tree
    out = make_release(run_dir, tmp_path / "rel", taxonomy=root).out_dir
    card = (out / "README.md").read_text(encoding="utf-8")
    body = card.split("\n---\n", 1)[1]  # what release.yml publishes as the release notes
    _assert_inert(body)
    text = html.unescape(to_html(body)).replace(ZWJ, "")
    # nothing is lost: the reader sees the contributor's words as text
    assert EVIL_TITLE in text and "@someone @org/team <img src=x onerror=alert(1)>" in text
    assert EVIL_FOLDER in text and "https://evil.example/water" in text
    assert "javascript" not in text and "only http(s) links are" in text
    # the table keeps its shape: a "|" in the creators does not add cells
    row = next(line for line in body.splitlines() if "broken" in line and line.startswith("| "))  # documents table
    assert row.count(" | ") == 5


def test_dataset_card_escapes_leaf_paths(tmp_path, repo_root, cache_dir, run_lab, monkeypatch):
    root = _hostile_taxonomy(tmp_path, repo_root)
    shutil.rmtree(root / "knowledge")  # skills only: no documents to fetch
    monkeypatch.setenv("LAB_FEEDBACK__ENABLED", "false")
    out = tmp_path / "data"
    code, io = run_lab(["generate", str(root), "--teacher", "scripted:", "--out", str(out), "--quiet",
                        "--samples", "2"])
    assert code == 0, io.err
    readme = (out / "README.md").read_text(encoding="utf-8")
    assert "img" in readme and "evil.exe" in readme  # the leaf is in the card ...
    _assert_inert(readme.split("\n---\n", 1)[1])  # ... as text

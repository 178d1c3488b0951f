"""`lab ui` in a real headless Chromium (Debian's, driven by Playwright through executable_path):
write a new compositional skill with inline findings, edit an existing knowledge leaf with a
one-line diff, preview with the scripted teacher, and the screenshots of CONTRIBUTING.md."""

from __future__ import annotations

import pytest

from lab_tools.taxonomy.validate import QA_WORDS
from lab_tools.ui.shots import chromium_path, launch, open_leaf, take_screenshots
from tests.ui.conftest import git

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed and could not be: "
                                "scripts/install.sh installs Debian's chromium where apt-get is available")
NEW = "compositional_skills/writing/poetry/limericks"
BEES = "knowledge/science/biology/honey_bees"
HAIKU = "compositional_skills/writing/freeform/poetry/haiku"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch(pw)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def page(ui, browser):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    pg.set_default_timeout(60_000)  # the shared 2-core machine can be busy
    yield pg
    context.close()


def _msgs(page, field: str, cls: str):
    return page.locator(f'#leaf-form [data-field="{field}"] > .msgs .finding.{cls}')


def test_create_compositional_skill_with_inline_findings(ui, page, run_lab):
    page.goto(ui.url)
    page.fill("#new-path", "compositional_skills/../x")
    page.click("#new-btn")
    assert "'..'" in page.locator("#new-error .finding.error").inner_text()
    page.fill("#new-path", NEW)
    page.click("#new-btn")
    page.wait_for_selector('[name="task_description"]')
    page.fill('[name="task_description"]', "Write a limerick on the given subject.")
    for i in range(5):
        page.fill(f'[name="seed_examples.{i}.question"]', f"Write a limerick about a cat called {i}.")
        page.fill(f'[name="seed_examples.{i}.answer"]', f"There once was a cat known as {i}.")
    page.fill('[name="seed_examples.1.answer"]', "word " * (QA_WORDS + 10))
    page.select_option('[name="attribution.0.license"]', "CC-BY-4.0")
    page.fill('[name="attribution.0.title"]', "Limericks")
    page.fill('[name="attribution.0.link"]', "self-authored")
    page.fill('[name="attribution.0.creators"]', "alice")
    # the inline error for the missing created_by, next to its field
    missing = _msgs(page, "created_by", "error")
    missing.first.wait_for()
    assert "required field is missing" in missing.first.inner_text()
    # the word-limit warning next to the example, its counter over, its YAML line highlighted
    warn = _msgs(page, "seed_examples.1", "warning")
    warn.first.wait_for()
    assert f"limit of {QA_WORDS}" in warn.first.inner_text()
    assert "over" in page.locator('[data-qa="seed_examples.1"]').get_attribute("class")
    hl = page.locator("#yaml .ln.hl-warning")
    assert hl.count() >= 1 and hl.first.inner_text().strip().endswith("- question: Write a limerick about a cat called 1.")
    assert page.locator("#yaml .ln.hl-error").count() >= 1
    # fix both
    page.fill('[name="created_by"]', "alice")
    page.fill('[name="seed_examples.1.answer"]', "There once was a cat known as one.")
    page.wait_for_selector("#status.ok")
    assert page.locator("#status").inner_text() == "valid: no findings"
    assert page.locator("#leaf-form .finding").count() == 0
    page.click("#save-btn")
    page.wait_for_selector("#save-result .finding.info")
    assert "Saved" in page.locator("#save-result").inner_text()
    code, out = run_lab(["taxonomy", "validate", str(ui.root)])
    assert code == 0, out.out + out.err
    code, out = run_lab(["taxonomy", "licenses", str(ui.root), "--changed-only", "--base", "main"])
    assert code == 0, out.out + out.err
    page.wait_for_selector(f'#tree button.leaf[data-path="{NEW}"]')


def test_non_permissive_license_is_flagged_before_saving(ui, page):
    attribution = ui.root / HAIKU / "attribution.txt"
    attribution.write_text(attribution.read_text().replace("CC-BY-4.0", "CC-BY-NC-4.0"))
    open_leaf(page, ui.url, HAIKU)
    select = page.locator('[name="attribution.0.license"]')
    assert select.input_value() == "CC-BY-NC-4.0"
    assert "not in the allowlist" in select.locator("option:checked").inner_text()
    err = _msgs(page, "attribution.0.license", "error")
    err.first.wait_for()
    assert "non-commercial" in err.first.inner_text()
    assert page.locator("#attr .ln.hl-error").inner_text().endswith("License of the work: CC-BY-NC-4.0")
    page.once("dialog", lambda d: d.dismiss())  # "save anyway?" -> no
    page.click("#save-btn")
    page.wait_for_timeout(500)
    assert page.locator("#save-result").inner_text() == "" and "CC-BY-NC-4.0" in attribution.read_text()
    select.select_option("CC-BY-4.0")
    page.wait_for_selector("#status.ok")
    assert err.count() == 0


def test_edit_existing_knowledge_leaf_diff_is_that_change_only(ui, page):
    open_leaf(page, ui.url, BEES)
    field = '[name="seed_examples.1.questions_and_answers.0.answer"]'
    old = page.input_value(field)
    new = old.replace("four stages", "four distinct stages")
    assert new != old
    page.fill(field, new)
    page.locator("#yaml .ln", has_text="four distinct stages").wait_for()
    page.wait_for_selector("#status.ok")
    page.click("#save-btn")
    page.wait_for_selector("#save-result .finding.info")
    diff = git(ui.root.parent, "diff", "--unified=0")
    changed = [ln for ln in diff.splitlines() if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]
    assert len(changed) == 2, diff
    assert changed[0].startswith("-") and "four stages" in changed[0]
    assert changed[1] == changed[0].replace("-", "+", 1).replace("four stages", "four distinct stages")
    assert git(ui.root.parent, "status", "--porcelain").split() == ["M", f"taxonomy/{BEES}/qna.yaml"]


def test_preview_with_the_scripted_teacher_shows_its_samples(ui, page):
    open_leaf(page, ui.url, HAIKU)
    assert page.locator("#teacher").inner_text() == "scripted:"
    page.click("#preview-btn")
    page.wait_for_selector("#preview-body details")
    assert page.locator("#preview-progress").inner_text().startswith("done in")
    summaries = page.locator("#preview-body details > summary")
    assert summaries.count() == 2 and summaries.first.inner_text().startswith("sample 1")
    summaries.first.click()
    text = page.locator("#preview-body details").first.inner_text()
    assert "Question" in text and "Answer" in text


def test_screenshot_per_kind(ui, tmp_path, browser):
    files = take_screenshots(ui.url, tmp_path, browser=browser)
    assert [f.name for f in files] == ["ui-compositional.png", "ui-foundational.png", "ui-knowledge.png"]
    for f in files:
        data = f.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_switching_leaves_with_unsaved_edits_asks_first(ui, page):
    open_leaf(page, ui.url, HAIKU)
    page.fill('[name="created_by"]', "someone-else")
    messages = []

    def answer(dialog, accept):
        messages.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()

    page.once("dialog", lambda d: answer(d, False))
    page.click(f'#tree button.leaf[data-path="{BEES}"]')
    page.wait_for_timeout(300)
    assert "unsaved edits" in messages[0] and page.locator("#leaf-title").inner_text() == HAIKU
    assert page.input_value('[name="created_by"]') == "someone-else"
    page.once("dialog", lambda d: answer(d, True))
    page.click(f'#tree button.leaf[data-path="{BEES}"]')
    page.locator("#leaf-title", has_text=BEES).wait_for()

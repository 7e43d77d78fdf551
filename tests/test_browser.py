"""The app in a real browser: Debian's chromium driven by Playwright, against a live server on 127.0.0.1.

The server gets a copy of the corpus index and its own library folder, so uploads and removals here
touch nothing else. RAG_SCREENSHOT=PATH saves a picture of a finished answer (the README's).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import CORPUS, running_app

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
WAIT_MS = 120_000
# The sources pane once the final, checked answer is in: sources marked cited or not, or the statement that none
# answer. (Before the model writes, the pane already lists the evidence and the sources "given to the model".)
ANSWER_DONE = """() => {
  const text = document.querySelector('#sources').innerText;
  return /\\((?:not )?cited\\)/.test(text) || text.includes('No passage of your documents');
}"""


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium (apt-get install chromium).")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def app(corpus_index, tmp_path_factory):
    work = tmp_path_factory.mktemp("browser")
    shutil.copytree(corpus_index, work / "index")
    with running_app("--index", str(work / "index"), "--library", str(work / "library")) as url:
        yield url, work / "library"


def open_page(browser, url, **context):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}, **context).new_page()
    page.set_default_timeout(WAIT_MS)
    page.goto(url)
    page.wait_for_selector("#question textarea")
    return page


@pytest.fixture
def page(browser, app):
    opened = open_page(browser, app[0])
    yield opened
    opened.context.close()


def ask(page, question: str) -> None:
    page.fill("#question textarea", question)
    page.click("#ask")


def answer(page, question: str) -> None:
    """Ask and wait for the checked answer. The question shows in the chat in the same update that
    clears the previous sources, so the wait cannot be satisfied by the last answer's sources."""
    asked = page.locator("#chat [data-testid='user']").count()
    ask(page, question)
    page.wait_for_function(f"() => document.querySelectorAll('#chat [data-testid=user]').length === {asked + 1}")
    page.wait_for_function(ANSWER_DONE)


def bot_text(page) -> str:
    bots = page.locator("#chat [data-testid='bot']")
    return bots.last.inner_text() if bots.count() else ""


def tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()


# Every length the last answer's text takes on screen, recorded by the page itself on each change, so that
# a fast machine whose tokens arrive between two polls still shows the answer arriving in pieces.
RECORD_LENGTHS = """() => {
    window.__lengths = new Set();
    new MutationObserver(() => {
        const bots = document.querySelectorAll("#chat [data-testid='bot']");
        if (bots.length) window.__lengths.add(bots[bots.length - 1].innerText.length);
    }).observe(document.querySelector("#chat"), {subtree: true, childList: true, characterData: true});
}"""


def test_an_answer_streams_in_with_citations_and_sources_that_open_the_cited_pdf_page(page, app):
    page.evaluate(RECORD_LENGTHS)
    ask(page, "How many bytes does a Q4_0 block of 32 weights take?")
    lengths = set()
    evidence_early = False  # the evidence on screen while the answer is still being written
    while not page.evaluate(ANSWER_DONE):
        lengths.add(len(bot_text(page)))
        pane = page.inner_text("#sources")
        evidence_early |= pane.startswith("Evidence") and "18 bytes" in pane and not page.evaluate(ANSWER_DONE)
        time.sleep(0.05)
    assert evidence_early, "the evidence did not appear before the answer was finished"
    lengths |= set(page.evaluate("() => Array.from(window.__lengths)"))
    assert len(lengths - {0, 1}) >= 3, f"the answer did not arrive in pieces: lengths seen {sorted(lengths)}"
    written, sources = bot_text(page), page.inner_text("#sources")
    cited = set(re.findall(r"\[(\d+)\]", written))
    listed = set(re.findall(r"^\[(\d+)\] ", sources, re.M))
    assert cited and cited <= listed  # every citation in the answer has its numbered source
    assert sources.startswith("Evidence") and page.locator("#sources li").count() >= 1  # found without the model
    assert page.locator("#sources blockquote strong").count() >= 1  # the supporting sentence, highlighted
    match = re.search(r"^\[(\d+)\] llm-handbook\.pdf, page (\d+)", sources, re.M)
    assert match, sources
    page_number = match.group(2)
    link = page.locator(f"#sources a:has-text('open llm-handbook.pdf at page {page_number}')").first
    assert link.get_attribute("target") == "_blank"
    pdf = (CORPUS / "llm-handbook.pdf").read_bytes()
    assert link.get_attribute("href") == f"/doc/{hashlib.sha256(pdf).hexdigest()}#page={page_number}"
    if os.environ.get("RAG_SCREENSHOT"):
        page.screenshot(path=os.environ["RAG_SCREENSHOT"])
    with page.context.expect_page() as opened:
        link.click()
    pdf_tab = opened.value
    assert pdf_tab.url == app[0].rstrip("/") + link.get_attribute("href")
    served = page.request.get(pdf_tab.url.split("#")[0])
    assert served.headers["content-type"] == "application/pdf" and served.body() == pdf

    # A follow-up: alone, "How big does it get?" finds no KV-cache passage; with the conversation it does.
    answer(page, "What does the KV cache store?")
    answer(page, "How big does it get?")
    assert re.search(r"^\[1\] kv-cache\.md", page.inner_text("#sources"), re.M)


def test_an_uploaded_file_is_indexed_answered_from_and_removed(page, app, tmp_path):
    note = tmp_path / "garden-log.md"
    note.write_text("# Garden log\n\nThe zucchini bed by the north fence was planted on the ninth of May, "
                    "with a variety called Black Beauty.\n", encoding="utf-8")
    tab(page, "Library")
    page.set_input_files("#upload input[type=file]", str(note))
    page.wait_for_selector("#ingest-status :text('✅ indexed')")
    assert re.search(r"garden-log\.md\s+✅ indexed\s+1 chunks", page.inner_text("#ingest-status"))
    page.wait_for_selector("#documents :text('garden-log.md')")
    assert re.search(r"garden-log\.md\s+–\s+1\s+.*uploaded", page.inner_text("#documents"))
    assert (app[1] / "garden-log.md").read_bytes() == note.read_bytes()

    tab(page, "Chat")
    ask(page, "When was the zucchini bed planted, and which variety?")
    page.wait_for_function(ANSWER_DONE)
    assert re.search(r"^\[1\] garden-log\.md", page.inner_text("#sources"), re.M)

    tab(page, "Library")
    page.click("#remove-choice input")
    page.click("#remove-choice li[aria-label='garden-log.md']")
    page.click("#remove")
    page.wait_for_selector("#remove-status :text('Removed garden-log.md')")
    page.wait_for_function("() => !document.querySelector('#documents').innerText.includes('garden-log.md')")
    assert not (app[1] / "garden-log.md").exists()

    tab(page, "Chat")
    page.click("#new-chat")
    ask(page, "When was the zucchini bed planted, and which variety?")
    page.wait_for_function(ANSWER_DONE)
    assert "garden-log.md" not in page.inner_text("#sources")


def test_uploaded_slides_are_answered_from_and_cited_by_slide(page, app, tmp_path):
    from tests import documents

    deck = documents.slides(tmp_path / "transport-review.pptx")
    tab(page, "Library")
    page.set_input_files("#upload input[type=file]", str(deck))
    page.wait_for_selector("#ingest-status :text('✅ indexed')")
    tab(page, "Chat")
    ask(page, "How often does the Harbour Line tram run on Sundays?")
    page.wait_for_function(ANSWER_DONE)
    sources = page.inner_text("#sources")
    assert re.search(r"^\[1\] transport-review\.pptx, slide 2, Harbour Line timetable", sources, re.M), sources
    assert "every 12 minutes on Sundays" in page.inner_text("#chat")
    tab(page, "Library")  # leave the shared app as it was
    page.click("#remove-choice input")
    page.click("#remove-choice li[aria-label='transport-review.pptx']")
    page.click("#remove")
    page.wait_for_selector("#remove-status :text('Removed transport-review.pptx')")


def test_a_folder_upload_indexes_what_it_can_and_names_each_refused_file(page, app, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "ferries.txt").write_text("The harbour ferry leaves every twenty minutes.\n", encoding="utf-8")
    (folder / "setup.exe").write_bytes(b"MZ\x90\x00")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")
    tab(page, "Library")
    page.set_input_files("#upload-folder input[type=file]", str(folder))
    page.wait_for_selector("#ingest-status :text('ferries.txt')")
    page.wait_for_function("() => !/waiting|reading|embedding/.test(document.querySelector('#ingest-status').innerText)")
    status = page.inner_text("#ingest-status")
    assert re.search(r"ferries\.txt\s+✅ indexed", status)
    assert re.search(r"setup\.exe\s+❌ failed\s+.*not indexed", status)
    assert re.search(r"broken\.pdf\s+❌ failed", status)
    assert sorted(p.name for p in app[1].iterdir()) == ["ferries.txt"]  # refused files are not kept
    page.wait_for_selector("#documents :text('ferries.txt')")

    # A name that tries to climb out of the library lands inside it, under its base name.
    page.set_input_files("#upload input[type=file]", files=[{"name": "../../escape.md", "mimeType": "text/markdown",
                                                            "buffer": b"# Escape\n\nThe lighthouse keeper logs the fog.\n"}])
    page.wait_for_selector("#ingest-status :text('escape.md')")
    page.wait_for_function("() => !/waiting|reading|embedding/.test(document.querySelector('#ingest-status').innerText)")
    assert sorted(p.name for p in app[1].iterdir()) == ["escape.md", "ferries.txt"]
    assert not (app[1].parent / "escape.md").exists() and not (app[1].parent.parent / "escape.md").exists()


def test_stop_ends_the_answer_and_new_chat_starts_over(page):
    ask(page, "Explain in detail how the KV cache works during prefill and decode.")
    page.wait_for_function("() => (document.querySelector('#chat [data-testid=bot]') || {innerText: ''}).innerText.length > 40")
    page.click("#stop")
    page.wait_for_selector("#chat :text('⏹ stopped')")
    stopped = bot_text(page)
    time.sleep(3)
    assert bot_text(page) == stopped  # nothing more streams in
    assert "incomplete" in page.inner_text("#sources")
    ask(page, "What is a GGUF file?")  # the app is free again at once
    page.wait_for_function(ANSWER_DONE)
    assert page.locator("#chat [data-testid='user']").count() == 2
    page.click("#new-chat")
    page.wait_for_function("() => document.querySelectorAll('#chat [data-testid=user]').length === 0")
    assert "sources of each answer appear here" in page.inner_text("#sources")


def test_settings_show_what_is_in_force_and_apply_without_a_restart(page, tmp_path):
    tab(page, "Settings")
    assert "5 sources" in page.inner_text("#settings-in-force")
    assert "SmolLM2-135M-Instruct" in page.input_value("#model input, #model textarea")
    page.fill("#top-k input[type=number]", "2")
    page.press("#top-k input[type=number]", "Enter")
    page.click("#apply")
    page.wait_for_selector("#settings-in-force :text('2 sources')")
    try:
        tab(page, "Chat")
        ask(page, "What does the reward model learn from?")
        page.wait_for_function(ANSWER_DONE)
        listed = re.findall(r"^\[(\d+)\] ", page.inner_text("#sources"), re.M)
        assert listed == ["1", "2"]

        tab(page, "Settings")
        broken = tmp_path / "half.gguf"
        broken.write_bytes(b"GGUF" + b"\0" * 16)
        page.fill("#model textarea, #model input", str(broken))
        page.click("#apply")
        page.wait_for_selector("#settings-in-force :text('Not applied')")
        assert "half.gguf" in page.inner_text("#settings-in-force")
        assert "SmolLM2-135M-Instruct" in page.inner_text("#settings-in-force")  # the old model stays in force
    finally:
        tab(page, "Settings")
        page.fill("#model textarea, #model input", "")
        page.fill("#top-k input[type=number]", "5")
        page.press("#top-k input[type=number]", "Enter")
        page.click("#apply")
        page.wait_for_selector("#settings-in-force :text('5 sources')")


def test_two_people_get_their_own_conversations_and_a_waiting_one_is_told(browser, app):
    first, second = open_page(browser, app[0]), open_page(browser, app[0])
    try:
        ask(first, "Explain how LoRA adapters are trained and merged.")
        first.wait_for_function("() => document.querySelectorAll('#chat [data-testid=bot]').length > 0")
        ask(second, "What does the reward model learn from?")
        second.wait_for_selector("#chat :text('queue')", timeout=30_000)  # the waiting page says so
        first.wait_for_function(ANSWER_DONE)
        second.wait_for_function(ANSWER_DONE)
        mine, theirs = first.inner_text("#chat"), second.inner_text("#chat")
        assert "LoRA adapters" in mine and "reward model" not in mine
        assert "reward model learn" in theirs and "LoRA adapters" not in theirs
        assert "rlhf.md" in second.inner_text("#sources")
    finally:
        first.context.close()
        second.context.close()


def test_with_a_password_the_browser_must_give_it(browser, corpus_index, tmp_path):
    header = "Basic " + base64.b64encode(b"team:long passphrase").decode()
    with running_app("--index", str(corpus_index), "--library", str(tmp_path / "library"),
                     "--auth", "team:long passphrase", ready=header) as url:
        stranger = browser.new_context()
        assert stranger.request.get(url).status == 401
        with pytest.raises(Exception, match="ERR_INVALID_AUTH_CREDENTIALS"):
            stranger.new_page().goto(url)  # the browser gets no page at all
        stranger.close()
        page = open_page(browser, url, http_credentials={"username": "team", "password": "long passphrase"})
        try:
            ask(page, "What does the reward model learn from?")
            page.wait_for_function(ANSWER_DONE)
            assert "rlhf.md" in page.inner_text("#sources")
        finally:
            page.context.close()

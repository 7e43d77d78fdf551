"""Coming back to the app in a real browser: saved chats, several libraries, a watched folder, the small things.

Each test starts its own app on a copy of the corpus index, so the chats, libraries and folders it
makes touch nothing else. Waits on the model are generous; what is asserted is what is on screen
and on disk.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from tests.conftest import running_app
from tests.test_browser import ANSWER_DONE, answer, ask, bot_text, browser, open_page, tab  # noqa: F401 - fixture

pytestmark = pytest.mark.slow

GARDEN = ("# Garden log\n\nThe zucchini bed by the north fence was planted on the ninth of May, "
          "with a variety called Black Beauty.\n")


@pytest.fixture
def work(corpus_index, tmp_path):
    shutil.copytree(corpus_index, tmp_path / "index")
    return tmp_path


def app_args(work: Path, *more: str) -> tuple[str, ...]:
    return ("--index", str(work / "index"), "--library", str(work / "library"), *more)


def saved_chats(work: Path) -> list[dict]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sorted((work / "chats").rglob("*.json"))]


def header(page) -> str:
    return page.inner_text("#library-status")


def new_chat(page) -> None:
    page.click("#new-chat")
    page.wait_for_function("() => document.querySelectorAll('#chat [data-testid=user]').length === 0")


def choose(page, selector: str, label: str) -> None:
    page.click(f"{selector} input")
    page.click(f"{selector} li[aria-label='{label}']")


def test_a_conversation_survives_reload_and_restart_and_is_renamed_exported_and_deleted(browser, work):
    question = "How many bytes does a Q4_0 block of 32 weights take?"
    with running_app(*app_args(work)) as url:
        page = open_page(browser, url)
        answer(page, question)
        shown = bot_text(page)
        assert "18 bytes" in shown
        page.wait_for_selector(f"#chat-list :text('{question}')")  # listed, titled by its first question
        [saved] = saved_chats(work)
        assert saved["title"] == question and saved["turns"][0]["question"] == question
        assert "(cited)" in saved["turns"][0]["sources"]  # the sources pane as it was, verdicts included

        follow = "And how many bits per weight is that?"
        answer(page, follow)
        page.reload()  # the same tab, reloaded: the conversation is still there, answers and sources as they were
        page.wait_for_selector("#question textarea")
        page.wait_for_function("() => document.querySelectorAll('#chat [data-testid=user]').length === 2")
        assert page.locator("#chat [data-testid='bot']").first.inner_text() == shown
        assert "(cited)" in page.inner_text("#sources")
        page.context.close()

    with running_app(*app_args(work)) as url:  # the app restarted: the chat is listed and reopens whole
        page = open_page(browser, url)
        page.wait_for_selector(f"#chat-list :text('{question}')")
        page.click(f"#chat-list :text('{question}')")
        page.wait_for_function("() => document.querySelectorAll('#chat [data-testid=user]').length === 2")
        assert page.locator("#chat [data-testid='bot']").first.inner_text() == shown
        assert "(cited)" in page.inner_text("#sources")

        page.fill("#chat-title textarea, #chat-title input", "Quant block sizes")
        page.click("#rename-chat")
        page.wait_for_selector("#chat-list :text('Quant block sizes')")
        assert [c["title"] for c in saved_chats(work)] == ["Quant block sizes"]

        with page.expect_download() as download:
            page.click("#export-chat")
        exported = Path(download.value.path()).read_text(encoding="utf-8")
        assert exported.startswith("# Quant block sizes")
        assert f"## {question}" in exported and f"## {follow}" in exported
        assert "18 bytes" in exported and "[1]" in exported  # the answer with its citation markers
        assert "Sources:" in exported and "- [1] llm-handbook.pdf, page" in exported  # ...and the sources they point at

        files = list((work / "chats").rglob("*.json"))
        page.click("#delete-chat")
        page.wait_for_selector("#chat-note :text('Deleted')")
        assert files and not any(f.exists() for f in files)  # gone from disk
        assert page.locator("#chat [data-testid='user']").count() == 0
        assert "Quant block sizes" not in page.inner_text("#chat-list")
        page.context.close()


def test_saving_can_be_turned_off(browser, work):
    with running_app(*app_args(work, "--no-save-chats")) as url:
        page = open_page(browser, url)
        answer(page, "What is a GGUF file?")
        page.context.close()
    assert not (work / "chats").exists() or not list((work / "chats").rglob("*.json"))


def test_two_libraries_answer_from_their_own_documents_and_the_chat_shows_which(browser, work, tmp_path):
    note = tmp_path / "garden-log.md"
    note.write_text(GARDEN, encoding="utf-8")
    with running_app(*app_args(work)) as url:
        page = open_page(browser, url)
        assert "Library: Default" in header(page)
        tab(page, "Library")
        page.fill("#new-library-name textarea, #new-library-name input", "Garden")
        page.click("#create-library")
        page.wait_for_selector("#libraries-status :text('Created the library')")
        page.wait_for_function("() => document.querySelector('#library-status').innerText.includes('Library: Garden')")
        tab(page, "Chat")
        page.wait_for_selector("#empty-library :text('no documents yet')")  # an empty library says so, upload at hand
        with page.expect_file_chooser() as chooser:
            page.click("#empty-upload")
        chooser.value.set_files(str(note))
        page.wait_for_function("() => document.querySelector('#library-status').innerText.includes('1 documents')")
        assert (work / "libraries" / "garden" / "library" / "garden-log.md").exists()  # its own upload folder

        answer(page, "When was the zucchini bed planted, and which variety?")
        assert "garden-log.md" in page.inner_text("#sources") and "llm-handbook" not in page.inner_text("#sources")
        assert "Library: Garden" in header(page)
        answer(page, "How many bytes does a Q4_0 block of 32 weights take?")  # not in this library
        assert "llm-handbook" not in page.inner_text("#sources")

        choose(page, "#library-choice", "Default")  # switching needs no restart
        page.wait_for_function("() => document.querySelector('#library-status').innerText.includes('Library: Default')")
        assert page.locator("#chat [data-testid='user']").count() == 0  # a chat asks one library: a new one starts
        answer(page, "How many bytes does a Q4_0 block of 32 weights take?")
        assert "llm-handbook.pdf" in page.inner_text("#sources")
        answer(page, "When was the zucchini bed planted, and which variety?")
        assert "garden-log.md" not in page.inner_text("#sources")

        garden_chat = "When was the zucchini bed planted, and which variety?"
        new_chat(page)
        listed = page.inner_text("#chat-list")
        assert f"{garden_chat} · Garden" in listed  # the list says which library a chat asked
        page.click(f"#chat-list label:has-text('{garden_chat} · Garden')")
        page.wait_for_function("() => document.querySelector('#library-status').innerText.includes('Library: Garden')")
        assert page.input_value("#library-choice input") == "Garden"
        page.context.close()


def test_a_file_copied_into_a_watched_folder_is_answered_within_seconds_and_a_deleted_one_is_no_longer_cited(
        browser, work, tmp_path):
    watched = tmp_path / "notes"
    watched.mkdir()
    source = tmp_path / "garden-log.md"
    source.write_text(GARDEN, encoding="utf-8")
    with running_app(*app_args(work, "--watch", str(watched))) as url:
        page = open_page(browser, url)
        page.wait_for_function("() => document.querySelector('#library-status').innerText.includes('watching 1 folder')")
        page.wait_for_function("() => document.querySelector('#library-status').innerText.includes('last sync')")
        before = header(page)
        copied = time.time()
        shutil.copy(source, watched / "garden-log.md")
        page.wait_for_function("() => document.querySelector('#library-status').innerText.includes('12 documents')",
                               timeout=60_000)
        latency = time.time() - copied
        assert latency <= 10, f"the copied file took {latency:.1f} s to be indexed (header before: {before})"
        answer(page, "When was the zucchini bed planted, and which variety?")
        assert "garden-log.md" in page.inner_text("#sources")
        assert "Black Beauty" in page.inner_text("#chat") or "ninth of May" in page.inner_text("#chat")

        (watched / "garden-log.md").unlink()
        page.wait_for_function("() => document.querySelector('#library-status').innerText.includes('11 documents')",
                               timeout=60_000)
        new_chat(page)
        answer(page, "When was the zucchini bed planted, and which variety?")
        assert "garden-log.md" not in page.inner_text("#sources")
        page.context.close()


def test_escape_stops_an_answer_and_an_answer_is_copied_with_its_sources(browser, work):
    with running_app(*app_args(work)) as url:
        page = open_page(browser, url)
        ask(page, "Explain in detail how the KV cache works during prefill and decode.")
        page.wait_for_function("() => (document.querySelector('#chat [data-testid=bot]') || {innerText: ''}).innerText.length > 40")
        page.keyboard.press("Escape")
        page.wait_for_selector("#chat :text('⏹ stopped')")

        new_chat(page)
        answer(page, "How many bytes does a Q4_0 block of 32 weights take?")
        page.click("#copy-answer")
        page.wait_for_function("() => (document.querySelector('#copy-text textarea') || {value: ''}).value.includes('Sources:')")
        copied = page.input_value("#copy-text textarea")
        assert "18 bytes" in copied and "[1]" in copied and "[1] llm-handbook.pdf, page" in copied
        page.context.close()


def test_with_passwords_each_login_sees_only_its_own_chats(browser, work):
    import base64

    logins = {"alice": "first long secret", "bob": "second long secret"}
    auth = [arg for user, password in logins.items() for arg in ("--auth", f"{user}:{password}")]
    ready = "Basic " + base64.b64encode(b"alice:first long secret").decode()
    with running_app(*app_args(work, *auth), ready=ready) as url:
        alice = open_page(browser, url, http_credentials={"username": "alice", "password": logins["alice"]})
        answer(alice, "What is a GGUF file?")
        alice.wait_for_selector("#chat-list :text('What is a GGUF file?')")
        bob = open_page(browser, url, http_credentials={"username": "bob", "password": logins["bob"]})
        answer(bob, "What does the reward model learn from?")
        bob.wait_for_selector("#chat-list :text('What does the reward model learn from?')")
        assert "GGUF" not in bob.inner_text("#chat-list")
        alice.reload()
        alice.wait_for_selector("#chat-list :text('What is a GGUF file?')")
        assert "reward model" not in alice.inner_text("#chat-list")
        assert sorted(p.parent.name.split("-")[1] for p in (work / "chats").rglob("*.json")) == ["alice", "bob"]
        alice.context.close()
        bob.context.close()

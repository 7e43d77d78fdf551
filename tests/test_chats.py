"""Saved conversations on disk: listed newest first, titled by the first question, renamed, exported, deleted."""

from __future__ import annotations

import json
import os

import pytest

from rag import chats
from rag.errors import ConfigError


def turn(question: str, answer: str = "Q4_0 takes 18 bytes per block [1].") -> chats.Turn:
    cited = (chats.Cited(1, "llm-handbook.pdf, page 5", "/docs/llm-handbook.pdf", 5, "Q4_0 stores 32 weights ... 18 bytes.", True),
             chats.Cited(2, "notes.md, GGUF", "/docs/notes.md", None, "GGUF is a file format.", False))
    return chats.Turn(question, answer, "**[1] llm-handbook.pdf, page 5** (cited)", cited, 1.0)


def test_a_chat_is_titled_by_its_first_question_and_reloads_as_it_was(tmp_path):
    store = chats.ChatStore(tmp_path)
    chat = chats.with_turn(chats.new_chat("garden"), turn("How many bytes does a Q4_0 block take?"))
    chat = chats.with_turn(chat, turn("And per weight?", "4.5 bits [1]."))
    store.save(chat)
    again = store.load(chat.id)
    assert again == chat
    assert again.title == "How many bytes does a Q4_0 block take?" and again.library == "garden"
    assert [m["role"] for m in again.messages()] == ["user", "assistant", "user", "assistant"]
    assert [p.name for p in tmp_path.iterdir()] == [f"{chat.id}.json"]  # no partial file is left behind


def test_a_long_first_question_is_cut_at_a_word():
    title = chats.title_of("word " * 40)
    assert len(title) <= chats.TITLE_CHARS and title.endswith("word…")


def test_chats_are_listed_most_recent_first_and_a_damaged_file_is_skipped(tmp_path):
    store = chats.ChatStore(tmp_path)
    older = chats.with_turn(chats.new_chat(), turn("first"))
    store.save(older)
    newer = chats.with_turn(chats.new_chat(), turn("second"))
    store.save(newer)
    store.save(chats.with_turn(older, turn("first again")))  # used again: now the most recent
    (tmp_path / f"{'0' * 32}.json").write_text("{not json", encoding="utf-8")
    assert [c.title for c in store.listed()] == ["first", "second"]


def test_rename_keeps_the_turns_and_delete_removes_the_file(tmp_path):
    store = chats.ChatStore(tmp_path)
    chat = chats.with_turn(chats.new_chat(), turn("How many bytes?"))
    store.save(chat)
    renamed = store.rename(chat.id, "  Quant   sizes ")
    assert renamed.title == "Quant sizes" and renamed.turns == chat.turns
    assert json.loads((tmp_path / f"{chat.id}.json").read_text(encoding="utf-8"))["title"] == "Quant sizes"
    with pytest.raises(ConfigError, match="needs a title"):
        store.rename(chat.id, "   ")
    assert store.delete(chat.id) is True
    assert not (tmp_path / f"{chat.id}.json").exists() and store.listed() == []
    assert store.delete(chat.id) is False


def test_an_id_from_outside_cannot_reach_other_files(tmp_path):
    store = chats.ChatStore(tmp_path / "local")
    (tmp_path / "secret.json").write_text("{}", encoding="utf-8")
    with pytest.raises(ConfigError, match="not a saved chat"):
        store.delete("../secret")
    assert store.load("../secret") is None
    assert (tmp_path / "secret.json").exists()


def test_each_login_has_its_own_folder_and_a_name_cannot_climb_out(tmp_path):
    alice, bob, local = (chats.owner_folder(tmp_path, n) for n in ("alice", "bob", ""))
    assert len({alice, bob, local}) == 3
    assert local == tmp_path / "local" and chats.owner_folder(tmp_path, "a.b") != chats.owner_folder(tmp_path, "a_b")
    for hostile in ("../../etc", "..", "/root", "a/../../b"):
        folder = chats.owner_folder(tmp_path, hostile)
        assert folder.parent == tmp_path and ".." not in folder.name and os.sep not in folder.name


def test_the_export_holds_each_question_the_answer_with_its_markers_and_the_sources():
    chat = chats.with_turn(chats.new_chat(), turn("How many bytes does a Q4_0 block take?",
                                                   "Q4_0 takes 18 bytes [1].\n\n<sub>Quoted</sub>"))
    text = chats.markdown(chat)
    assert text.startswith("# How many bytes does a Q4_0 block take?")
    assert "## How many bytes does a Q4_0 block take?" in text
    assert "Q4_0 takes 18 bytes [1]." in text and "<sub>" not in text
    assert "- [1] llm-handbook.pdf, page 5 (cited) — `/docs/llm-handbook.pdf`" in text
    assert "- [2] notes.md, GGUF (not cited)" in text
    assert "  > Q4_0 stores 32 weights" in text
    assert chats.export_name(chat) == "how-many-bytes-does-a-q4_0-block-take.md"


def test_copying_an_answer_keeps_its_citations_and_the_cited_sources():
    copied = chats.turn_markdown(turn("q"))
    assert copied.startswith("Q4_0 takes 18 bytes per block [1].")
    assert "Sources:\n[1] llm-handbook.pdf, page 5" in copied and "[2]" not in copied

"""Saved conversations: one JSON file per chat on this machine, listed newest first, renamed, exported, deleted.

Chats live in settings.chats_dir (`chats` beside the default index), one folder per login
(`local` when the app has no password), so a login only ever lists its own. Each turn keeps the
question, the answer as it was shown (checked sentences, unchecked ones marked), the sources pane
as it was shown, and the numbered sources, so a reopened chat looks as it did and exports with its
citations. A file is replaced whole (written aside, then renamed), so a crash leaves the old chat
or the new one. Deleting a chat deletes its file. Nothing is written when saving is turned off.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from rag.errors import ConfigError

TITLE_CHARS = 80
_ID = re.compile(r"^[0-9a-f]{32}$")
_OWNER = re.compile(r"[^\w-]+")


@dataclass(frozen=True)
class Cited:
    """One numbered source of an answer, as exported."""

    n: int
    label: str
    path: str
    page: int | None
    text: str
    cited: bool


@dataclass(frozen=True)
class Turn:
    question: str
    answer: str  # the answer's Markdown as the chat showed it
    sources: str  # the sources pane's Markdown as it was shown
    numbered: tuple[Cited, ...] = ()
    asked_at: float = 0.0


@dataclass(frozen=True)
class Chat:
    id: str
    title: str
    library: str  # the library it was asked against ("" for the default one)
    created: float
    updated: float
    turns: tuple[Turn, ...] = field(default=())

    def messages(self) -> list[dict]:
        """The chat as Gradio's messages."""
        shown = []
        for turn in self.turns:
            shown += [{"role": "user", "content": turn.question}, {"role": "assistant", "content": turn.answer}]
        return shown


def new_chat(library: str = "") -> Chat:
    now = time.time()
    return Chat(uuid.uuid4().hex, "", library, now, now)


def title_of(question: str) -> str:
    """A chat is titled by its first question, cut at a word."""
    flat = " ".join(question.split())
    return flat if len(flat) <= TITLE_CHARS else flat[: TITLE_CHARS - 1].rsplit(" ", 1)[0] + "…"


def with_turn(chat: Chat, turn: Turn) -> Chat:
    return replace(chat, title=chat.title or title_of(turn.question), updated=time.time(), turns=(*chat.turns, turn))


def owner_folder(chats_dir: Path, login: str | None) -> Path:
    """Each login's own folder; `local` without a password.

    The name is the login's letters and digits (so it never reaches outside chats_dir) plus a digest
    of the whole login, so two logins that differ only in other characters never share a folder.
    """
    if not login:
        return chats_dir / "local"
    name = _OWNER.sub("_", login).strip("_")[:40]
    return chats_dir / f"user-{name}-{hashlib.sha256(login.encode()).hexdigest()[:8]}"


class ChatStore:
    """The saved chats of one login."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _file(self, chat_id: str) -> Path:
        if not _ID.match(chat_id or ""):
            raise ConfigError(f"{chat_id!r} is not a saved chat's id; choose a chat from the list.")
        return self.folder / f"{chat_id}.json"

    def save(self, chat: Chat) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self._file(chat.id)
        partial = self.folder / f".{chat.id}.{uuid.uuid4().hex[:8]}.part"
        with open(partial, "w", encoding="utf-8") as out:
            json.dump(asdict(chat), out, ensure_ascii=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)

    def load(self, chat_id: str) -> Chat | None:
        """The chat, or None when it is gone or unreadable (a damaged file is skipped, never fatal)."""
        try:
            raw = json.loads(self._file(chat_id).read_text(encoding="utf-8"))
            turns = tuple(Turn(t["question"], t["answer"], t["sources"], tuple(Cited(**c) for c in t.get("numbered", ())),
                               t.get("asked_at", 0.0)) for t in raw["turns"])
            return Chat(raw["id"], raw["title"], raw.get("library", ""), raw["created"], raw["updated"], turns)
        except (OSError, ValueError, KeyError, TypeError, ConfigError):
            return None

    def listed(self) -> list[Chat]:
        """Every saved chat, the most recently used first."""
        if not self.folder.is_dir():
            return []
        chats = [c for c in (self.load(p.stem) for p in self.folder.glob("*.json")) if c is not None]
        return sorted(chats, key=lambda c: c.updated, reverse=True)

    def rename(self, chat_id: str, title: str) -> Chat:
        chat = self.load(chat_id)
        if chat is None:
            raise ConfigError("That chat is no longer saved; choose one from the list.")
        title = " ".join((title or "").split())[:200]
        if not title:
            raise ConfigError("A chat needs a title; type one, then rename.")
        renamed = replace(chat, title=title)
        self.save(renamed)
        return renamed

    def delete(self, chat_id: str) -> bool:
        """Delete the chat's file; True when there was one."""
        target = self._file(chat_id)
        existed = target.exists()
        target.unlink(missing_ok=True)
        return existed


_SUB = re.compile(r"</?sub>")


def markdown(chat: Chat) -> str:
    """The chat as a Markdown document: each question, the answer with its [n] markers, then its numbered sources."""
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(chat.created))
    lines = [f"# {chat.title or 'Conversation'}", "", f"Library: {chat.library or 'Default'} · started {when}", ""]
    for turn in chat.turns:
        lines += [f"## {turn.question}", "", _SUB.sub("", turn.answer).strip(), ""]
        if turn.numbered:
            lines += ["Sources:", ""]
            for source in turn.numbered:
                mark = "cited" if source.cited else "not cited"
                quote = "\n".join(f"  > {line}" if line.strip() else "  >" for line in source.text.splitlines())
                lines += [f"- [{source.n}] {source.label} ({mark}) — `{source.path}`", quote, ""]
    return "\n".join(lines).rstrip() + "\n"


def turn_markdown(turn: Turn) -> str:
    """One answer with its sources, for "copy answer with citations"."""
    lines = [_SUB.sub("", turn.answer).strip()]
    if turn.numbered:
        lines += ["", "Sources:"] + [f"[{s.n}] {s.label}" for s in turn.numbered if s.cited or not any(x.cited for x in turn.numbered)]
    return "\n".join(lines)


def export_name(chat: Chat) -> str:
    stem = re.sub(r"[^\w]+", "-", (chat.title or "conversation").lower()).strip("-")[:60] or "conversation"
    return f"{stem}.md"

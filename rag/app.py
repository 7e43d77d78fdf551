"""`python app.py`: the Gradio chat app; streams answers and shows the numbered sources beside them."""


import argparse
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

from rag import chats, libraries, library, loaders, server
from rag.cli import settings_arguments, settings_from
from rag.config import Settings
from rag.embeddings import lazy_embedder
from rag.errors import ConfigError, RagError
from rag.pipeline import Answer, Found, Partial, Pipeline
from rag.yielding import YieldingEmbedder

NO_SOURCES = "*The sources of each answer appear here: file, page, section and passage.*"
STATE_MARK = {"waiting": "⏳ waiting", "reading": "📖 reading", "embedding": "🧮 embedding", "indexed": "✅ indexed",
              "unchanged": "➖ already indexed", "failed": "❌ failed"}
STOPPED = "*Stopped. The answer above is incomplete and was not checked against the sources.*"
STOP_MARK = "*⏹ stopped*"


def message_text(content: Any) -> str:
    """Plain text of a chat message, whichever shape Gradio hands it over in."""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        return str(content.get("text") or content.get("content") or "")
    if isinstance(content, (list, tuple)):
        return " ".join(message_text(part) for part in content)
    return ""


def answer_markdown(answer: Answer) -> str:
    """The checked answer first; the model's sentences that no source supports below it, in italics with ⚠️.

    When none passed, the best evidence is quoted as the answer and marked as quoted. A code block
    is shown as code, never split into sentences.
    """
    if not answer.sentences and not answer.quoted:
        return answer.text
    unchecked = [c for c in answer.sentences if not c.supported]
    if answer.quoted:
        head = (f"> {answer.text}\n\n<sub>Quoted: the sentence in quotation marks is from your documents, the best evidence found; "
                "any sentence after it is the model's, checked against its source.</sub>")
    else:
        head = " ".join(_shown(c.text) for c in answer.sentences if c.supported)
    if not unchecked:
        return head
    rest = "\n\n".join(_shown(c.text) if c.text.startswith("```") else f"*{c.text}* ⚠️" for c in unchecked)
    return f"{head}\n\n<sub>⚠️ Unchecked: the sources it cites do not say this; check it against the evidence.</sub>\n\n{rest}"


def _shown(text: str) -> str:
    return f"\n\n{text}\n\n" if text.startswith("```") else text


def document_links(pipeline: Pipeline) -> dict[str, str]:
    """path -> the app's address for that document: /doc/SHA256, served only for indexed files."""
    try:
        return {d.path: f"/doc/{d.sha256}" for d in pipeline.retriever.snapshot.documents}
    except RagError:
        return {}


def sources_markdown(answer: Answer | Found, links: dict[str, str] | None = None) -> str:
    """Evidence first, then the sources numbered like the citations, with the supporting sentence in bold.

    Shown twice: from `Found` as soon as retrieval ends, before the model writes, then from the
    checked `Answer`, which adds which sources are cited and what supports each sentence.
    """
    if not answer.sources:
        return "*No passage of your documents answers this question.*"
    final = isinstance(answer, Answer)
    cited = {s.n for s in answer.cited} if final else set()
    support = {s.n: s.sentence for c in answer.sentences if c.supported for s in c.support} if final else {}
    if final and answer.quoted and answer.evidence:
        support[answer.evidence[0].n] = answer.evidence[0].lead  # the quoted sentence, in bold in its passage
    lines = []
    if answer.evidence:
        lines.append("**Evidence** (found without the model):\n")
        for e in answer.evidence:
            also = f" <sub>also in {', '.join(e.also)}</sub>" if e.also else ""
            lines.append(f"- {e.sentence} [{e.n}]{also}")
        lines.append("")
    if not final:
        lines.append("*Writing the answer…*\n")
    for source in answer.sources:
        mark = ("cited" if source.n in cited else "not cited") if final else "given to the model"
        text = source.text
        if source.n in support and support[source.n] in text:
            text = text.replace(support[source.n], f"**{support[source.n]}**", 1)
        passage = "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())
        link = (links or {}).get(source.path)
        if link:
            # Only a PDF viewer understands #page=; an attachment's page is inside the mail, not the file.
            paged = source.page if source.path.lower().endswith(".pdf") and not source.part else None
            target = f"{link}#page={paged}" if paged else link
            where = f"[open {Path(source.path).name}{f' at page {paged}' if paged else ''}]({target})"
        else:
            where = f"`{source.path}`"
        also = f"  \nAlso in: {', '.join(source.also)}" if source.also else ""
        lines.append(f"**[{source.n}] {source.label}** ({mark})  \n{where}{also}\n\n{passage}\n")
    return "\n".join(lines)


def document_choices(pipeline: Pipeline) -> list[tuple[str, str]]:
    """(file name, path) of every indexed document, for the "search only in" control."""
    try:
        documents = pipeline.retriever.snapshot.documents
    except RagError:
        return []
    return [(Path(d.path).name, d.path) for d in documents]


class Turns:
    """The answers being written, per browser session, and what their user asked for meanwhile.

    Stop and New chat do not cancel the event from outside: the answering loop sees the request
    between two tokens and ends itself, so its last update is the one that stays on screen. A
    question still waiting in the queue is not running yet, so Stop and New chat do not reach it.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, str | None] = {}

    def start(self, session: str) -> None:
        with self._lock:
            self._running[session] = None

    def request(self, session: str, what: str) -> bool:
        """Ask the session's running answer to "stop" (keep it, marked) or "drop" (discard it)."""
        with self._lock:
            if session not in self._running:
                return False
            self._running[session] = what
            return True

    def wanted(self, session: str) -> str | None:
        with self._lock:
            return self._running.get(session)

    def end(self, session: str) -> None:
        with self._lock:
            self._running.pop(session, None)


def respond(pipeline: Pipeline, question: str, history: list[dict], within: list[str] | None = None,
            turns: Turns | None = None, session: str = "", record: list | None = None) -> Iterator[tuple[str, list[dict], str]]:
    """One turn: the question goes into the chat at once, the answer streams in, the sources follow.

    `record` receives the checked Answer when there is one (the app saves it with the chat).
    """
    question = (question or "").strip()
    if not question:
        yield "", history, NO_SOURCES
        return
    turns = turns or Turns()
    turns.start(session)
    previous = model_history(history)
    chat = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
    pane = "*Searching your documents…*"
    yield "", chat, pane
    events = pipeline.ask_stream(question, previous, within=within or None)
    try:
        for event in events:
            wanted = turns.wanted(session)
            if wanted == "drop":
                return
            if isinstance(event, Found):
                pane = sources_markdown(event, document_links(pipeline))
                yield "", chat, pane
                continue
            if wanted == "stop":
                text = event.text if isinstance(event, Partial) else answer_markdown(event)
                chat[-1] = {"role": "assistant", "content": f"{text or '…'}\n\n{STOP_MARK}"}
                yield "", chat, STOPPED
                return
            if isinstance(event, Answer):
                if record is not None:
                    record.append(event)
                chat[-1] = {"role": "assistant", "content": answer_markdown(event)}
                yield "", chat, sources_markdown(event, document_links(pipeline))
            else:  # the sources pane keeps the evidence shown with Found
                chat[-1] = {"role": "assistant", "content": event.text or "…"}
                yield "", chat, pane
    except RagError as exc:
        chat[-1] = {"role": "assistant", "content": f"**Cannot answer:** {exc}"}
        yield "", chat, NO_SOURCES
    finally:
        events.close()  # ends llama.cpp's generation and frees the model for the next question
        turns.end(session)




def model_history(history: list[dict]) -> list[dict]:
    """The finished exchanges of a chat as plain messages; a stopped answer and its question are left out."""
    messages = [{"role": m["role"], "content": message_text(m["content"])} for m in history if m.get("role") in ("user", "assistant")]
    kept: list[dict] = []
    for message in messages:
        if message["role"] == "assistant" and message["content"].endswith(STOP_MARK):
            if kept and kept[-1]["role"] == "user":
                kept.pop()
            continue
        if message["role"] == "assistant":  # the model sees its words, not the app's marks
            message = {"role": "assistant", "content": _MARKS.sub("", message["content"]).strip()}
        kept.append(message)
    return kept


_MARKS = re.compile(r"\n*<sub>.*?</sub>|\s*⚠️|(?<!\w)\*(?=\S)|(?<=\S)\*(?!\w)", re.S)


def status_markdown(statuses: list) -> str:
    """The upload table: one row per file, its state and what happened to it."""
    if not statuses:
        return ""
    rows = [f"| {_cell(s.name)} | {STATE_MARK.get(s.state, s.state)} | {_cell(s.detail)} |" for s in statuses]
    return "| File | State | Details |\n|---|---|---|\n" + "\n".join(rows)


def library_markdown(settings) -> str:
    entries = library.entries(settings)
    if not entries:
        return "*Nothing is indexed yet: upload files above, or run `python ingest.py FOLDER`.*"
    rows = [f"| {_cell(e.name)} | {e.pages or '–'} | {e.chunks} | {e.size / 1024:,.0f} KB | {library.age(e.ingested_at)} | "
            f"{'uploaded' if e.uploaded else _cell(str(Path(e.path).parent))} |" for e in entries]
    total = sum(e.chunks for e in entries)
    return (f"**{len(entries)} documents, {total} chunks**\n\n| Document | Pages | Chunks | Size | Added | Folder |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def settings_markdown(settings) -> str:
    model = f"model server `{settings.llm_url}`" if settings.llm_url else f"model `{Path(settings.model_path).name}`"
    return (f"**In force:** {model}, {settings.top_k} sources, reranking "
            f"{'on' if settings.rerank or settings.reranker else 'off'}"
            f"{f' (cross-encoder {Path(settings.reranker).name})' if settings.reranker else ''}, "
            f"temperature {settings.temperature:g}.")


def upload_files(pipeline: Pipeline, files: list | None) -> Iterator[str]:
    """Uploaded files: refused ones are named at once, the rest copied into the library and ingested with progress."""
    refused, stored = [], []
    for item in files or []:
        temp = Path(item if isinstance(item, str) else getattr(item, "name", str(item)))
        name = getattr(item, "orig_name", None) or temp.name
        try:
            stored.append(library.add_upload(temp, name, pipeline.settings))
        except RagError as exc:
            refused.append(library.FileStatus(library.safe_name(name), "", "failed", getattr(exc, "reason", str(exc))))
        finally:
            temp.unlink(missing_ok=True)  # Gradio's upload copy: the library copy is the one kept
    if not stored:
        yield status_markdown(refused) or "*No file was uploaded.*"
        return
    # The upload's embedding waits between small batches while an answer is being written (rag/yielding.py).
    for statuses in library.ingest_with_progress(stored, pipeline.settings, YieldingEmbedder(pipeline.embedder, pipeline.gate)):
        yield status_markdown(refused + statuses)


class Shelf:
    """The libraries one app serves: a Pipeline per library (sharing the embedder and the model) and their watchers.

    The pipeline the app started with answers for its own library; any other library gets a
    sibling over its own index, made when first asked for. With watching on, every library that
    has folders is kept in step with them (rag/watch.py) and its last sync is shown.
    """

    def __init__(self, pipeline: Pipeline, watch: bool = False) -> None:
        self.root = pipeline
        self.save_chats = pipeline.settings.save_chats
        self.watching = watch
        self._lock = threading.Lock()
        self.start_key = libraries.current(pipeline.settings).key  # by key: a rename does not lose it
        self._open: dict[str, Pipeline] = {self.start_key: pipeline}
        self._watchers: dict[str, Any] = {}

    def listed(self) -> list[libraries.Library]:
        return libraries.listed(self.root.settings)

    def library(self, key: str) -> libraries.Library:
        """The library with this key; the default one when it was deleted meanwhile."""
        return libraries.by_key(self.root.settings, key) or libraries.default(self.root.settings)

    def pipeline(self, key: str) -> Pipeline:
        library = self.library(key)
        with self._lock:
            if library.key not in self._open:
                self._open[library.key] = self.root.sibling(libraries.settings_for(self.root.settings, library))
            return self._open[library.key]

    def documents(self) -> list:
        """The documents of every open library (for /doc links)."""
        found = []
        for pipeline in list(self._open.values()):
            try:
                found += pipeline.retriever.snapshot.documents
            except RagError:
                continue
        return found

    def configure(self, **changes) -> Settings:
        settings = self.root.configure(**changes)
        with self._lock:  # the other libraries are opened again with the new settings when next asked for
            self._open = {k: p for k, p in self._open.items() if p is self.root}
        return settings

    def forget(self, key: str) -> None:
        self.stop_watching(key)
        with self._lock:
            if self._open.get(key) is not self.root:
                self._open.pop(key, None)

    # -- folders kept in step -----------------------------------------------------------------------------------

    def watch_all(self, on: bool) -> None:
        self.watching = on
        for library in self.listed():
            if on and library.folders:
                self.start_watching(library.key)
            elif not on:
                self.stop_watching(library.key)

    def start_watching(self, key: str) -> None:
        from rag import watch

        library = self.library(key)
        with self._lock:
            running = self._watchers.get(library.key)
        if running is not None:
            for folder in library.folders:
                if Path(folder) not in running.folders:
                    running.add(Path(folder))
            return
        pipeline = self.pipeline(library.key)
        watcher = watch.Watcher([Path(f) for f in library.folders], pipeline.settings,
                                YieldingEmbedder(pipeline.embedder, pipeline.gate))
        with self._lock:
            self._watchers[library.key] = watcher
        watcher.start()

    def stop_watching(self, key: str) -> None:
        with self._lock:
            watcher = self._watchers.pop(key, None)
        if watcher is not None:
            watcher.stop()

    def watcher(self, key: str):
        with self._lock:
            return self._watchers.get(key)

    def close(self) -> None:
        for key in list(self._watchers):
            self.stop_watching(key)


def header_markdown(shelf: Shelf, key: str) -> str:
    """The top of the chat: which library it asks, its size and last update, and the last sync of its folders."""
    shown = shelf.library(key)
    pipeline = shelf.pipeline(shown.key)
    try:
        snapshot = pipeline.retriever.snapshot
    except RagError as exc:
        if "No index" in str(exc) or "no index" in str(exc):
            return f"**Library: {shown.name}** · no documents yet"
        return f"**Library: {shown.name}** · ⚠️ **the index cannot be used:** {exc}"
    documents = snapshot.documents
    newest = max((d.ingested_at for d in documents), default=0)
    updated = f" · last update {library.age(newest)}" if newest else ""
    line = f"**Library: {shown.name}** · {len(documents)} documents, {len(snapshot.chunks)} passages{updated}"
    return line + sync_line(shelf, shown.key)


def sync_line(shelf: Shelf, key: str) -> str:
    watcher = shelf.watcher(key)
    if watcher is None:
        return ""
    folders = len(watcher.folders)
    text = f" · 🔄 watching {folders} folder{'s' if folders != 1 else ''}"
    last = watcher.last
    if watcher.busy:
        text += ", syncing now"
    if last is not None:
        done = time.strftime("%H:%M:%S", time.localtime(last.finished))
        text += f", last sync {done} ({len(last.indexed)} indexed, {len(last.removed)} removed)"
        if last.error:
            text += f" ⚠️ {last.error}"
    if watcher.failures:
        failed = "; ".join(f"{Path(p).name}: {why}" for p, why in sorted(watcher.failures.items())[:5])
        text += f"\n\n❌ **Not indexed:** {failed}"
    return text


def chat_choices(chat_store: chats.ChatStore | None, shelf: Shelf) -> list[tuple[str, str]]:
    """(title, id) of the saved chats, newest first; a chat of a named library says which."""
    if chat_store is None:
        return []
    names = {lib.key: lib.name for lib in shelf.listed()}
    return [((c.title or "Untitled") + (f" · {names.get(c.library, 'deleted library')}" if c.library else ""), c.id)
            for c in chat_store.listed()]


def numbered_of(answer: Answer | None) -> tuple[chats.Cited, ...]:
    if answer is None:
        return ()
    cited = {s.n for s in answer.cited}
    return tuple(chats.Cited(s.n, s.label, s.path, s.page, s.text, s.n in cited) for s in answer.sources)


EMPTY_LIBRARY = ("### This library has no documents yet\nAdd some here, or in the Library tab; or index a folder with "
                 "`python ingest.py {flag}FOLDER`. Answers only ever come from the documents in it.")
STOP_SHORTCUT = """<script>
document.addEventListener('keydown', (event) => {
  if (event.key === 'Escape') { const stop = document.querySelector('#stop'); if (stop) stop.click(); }
});
</script>"""


def build_app(pipeline: Pipeline, shelf: Shelf | None = None, logins: bool = False):
    import gradio as gr

    shelf = shelf or Shelf(pipeline)
    suffixes = sorted(loaders.SUPPORTED_SUFFIXES)
    start = shelf.start_key

    def library_names() -> list[tuple[str, str]]:
        return [(lib.name, lib.key) for lib in shelf.listed()]

    with gr.Blocks(title="Chat with your documents", analytics_enabled=False) as demo:
        gr.Markdown("## Chat with your documents\nAnswers come from your indexed files only, with numbered citations.")
        library_key = gr.State(start)
        chat_state = gr.State(None)  # the Chat being written in this tab
        remembered = gr.BrowserState({"chat": "", "library": start}, storage_key="rag-chat-current")
        with gr.Row():
            library_choice = gr.Dropdown(choices=library_names(), value=start, label="Library", elem_id="library-choice",
                                         scale=1, interactive=True)
            # What needs the index is filled in when the page loads (demo.load), so the app serves at once.
            header = gr.Markdown(f"**Library: {shelf.library(start).name}**", elem_id="library-status")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat-tab"):
                with gr.Row():
                    with gr.Column(scale=1, min_width=220):
                        new_chat = gr.Button("New chat", elem_id="new-chat")
                        chat_list = gr.Radio(choices=[], label="Saved chats (newest first)", elem_id="chat-list")
                        chat_title = gr.Textbox(label="Title of this chat", elem_id="chat-title")
                        with gr.Row():
                            rename_chat = gr.Button("Rename", size="sm", elem_id="rename-chat")
                            delete_chat = gr.Button("Delete", size="sm", variant="stop", elem_id="delete-chat")
                        export_chat = gr.DownloadButton("Export as Markdown", size="sm", elem_id="export-chat", value=None)
                        chat_note = gr.Markdown("", elem_id="chat-note")
                    with gr.Column(scale=3):
                        with gr.Column(visible=False, elem_id="empty-library") as empty:
                            empty_text = gr.Markdown(EMPTY_LIBRARY.format(flag=""))
                            empty_upload = gr.UploadButton("Add documents", file_count="multiple", file_types=suffixes,
                                                           variant="primary", elem_id="empty-upload")
                            empty_progress = gr.Markdown("", elem_id="empty-status")
                        chatbot = gr.Chatbot(label="Conversation", height=520, elem_id="chat", buttons=["copy"])
                        question = gr.Textbox(label="Question", placeholder="Ask about your documents and press Enter "
                                              "(Esc stops an answer)", elem_id="question", autofocus=True)
                        with gr.Row():
                            ask = gr.Button("Ask", variant="primary", elem_id="ask")
                            stop = gr.Button("Stop (Esc)", variant="stop", elem_id="stop")
                            copy = gr.Button("Copy answer with sources", elem_id="copy-answer")
                        copied = gr.Textbox(visible="hidden", elem_id="copy-text")
                    with gr.Column(scale=2):
                        # Choices are refreshed on page load and after each upload; other indexed paths are accepted too.
                        within = gr.Dropdown(choices=[], multiselect=True, allow_custom_value=True,
                                             label="Search only in (empty: all documents)", elem_id="within")
                        gr.Markdown("### Sources")
                        sources = gr.Markdown(NO_SOURCES, elem_id="sources")
            with gr.Tab("Library", id="library-tab"):
                where = gr.Markdown(upload_note(shelf.pipeline(start).settings, suffixes), elem_id="upload-note")
                with gr.Row():
                    upload = gr.File(label="Upload files", file_count="multiple", file_types=suffixes, elem_id="upload")
                    upload_folder = gr.File(label="Upload a folder", file_count="directory", elem_id="upload-folder")
                progress = gr.Markdown("", elem_id="ingest-status")
                documents = gr.Markdown("", elem_id="documents")
                with gr.Row():
                    to_remove = gr.Dropdown(choices=[], label="Document to remove",
                                            elem_id="remove-choice", scale=3)
                    remove = gr.Button("Remove from the index", variant="stop", elem_id="remove", scale=1)
                removed = gr.Markdown("", elem_id="remove-status")
                gr.Markdown("### Folders kept in step\nFolders on this machine indexed into this library; with watching "
                            "on, new, changed and deleted files are indexed or removed within seconds.")
                with gr.Row():
                    folder = gr.Textbox(label="Folder on this machine", placeholder="/home/me/Documents", scale=3,
                                        elem_id="watch-folder")
                    add_folder = gr.Button("Add folder", scale=1, elem_id="add-folder")
                watch_on = gr.Checkbox(shelf.watching, label="Keep every library's folders in sync (watch them)",
                                       elem_id="watch-on")
                folders_note = gr.Markdown(folders_markdown(shelf, start), elem_id="watch-status")
                gr.Markdown("### Libraries\nEach library is its own index with its own uploads; a chat asks one library.")
                with gr.Row():
                    new_name = gr.Textbox(label="New library", placeholder="Work papers", elem_id="new-library-name", scale=3)
                    create = gr.Button("Create", elem_id="create-library", scale=1)
                with gr.Row():
                    renamed_to = gr.Textbox(label="Rename this library to", elem_id="rename-library-name", scale=3)
                    rename_library = gr.Button("Rename", elem_id="rename-library", scale=1)
                with gr.Row():
                    confirm = gr.Checkbox(False, label="Yes, delete this library's index and uploaded copies "
                                          "(your own folders stay)", elem_id="confirm-delete-library", scale=3)
                    delete_library = gr.Button("Delete this library", variant="stop", elem_id="delete-library", scale=1)
                libraries_note = gr.Markdown("", elem_id="libraries-status")
            with gr.Tab("Settings", id="settings-tab"):
                in_force = gr.Markdown(settings_markdown(pipeline.settings), elem_id="settings-in-force")
                model = gr.Textbox(pipeline.settings.model_path, label="Model file (GGUF)", elem_id="model")
                top_k = gr.Slider(1, 10, value=pipeline.settings.top_k, step=1, label="Sources per answer", elem_id="top-k")
                rerank = gr.Checkbox(pipeline.settings.rerank, label="Rerank the passages (feedback reranker, or the "
                                     "configured cross-encoder)", elem_id="rerank")
                temperature = gr.Slider(0, 1.5, value=pipeline.settings.temperature, step=0.05, label="Temperature",
                                        elem_id="temperature")
                save = gr.Checkbox(shelf.save_chats, label=f"Save conversations on this machine (in "
                                   f"{pipeline.settings.chats_dir})", elem_id="save-chats")
                apply = gr.Button("Apply", variant="primary", elem_id="apply")
        ticker = gr.Timer(2.0)

        turns = Turns()

        def chat_store(request: gr.Request | None) -> chats.ChatStore | None:
            if not shelf.save_chats:
                return None
            login = server.login_of(request.headers) if logins and request is not None else ""
            return chats.ChatStore(chats.owner_folder(pipeline.settings.chats_dir, login))

        def chat_list_update(request, value: str | None):
            return gr.Radio(choices=chat_choices(chat_store(request), shelf), value=value)

        def export_update(chat: chats.Chat | None):
            if chat is None or not chat.turns:
                return gr.DownloadButton(value=None, interactive=False)
            folder = Path(tempfile.gettempdir()) / "rag-chat-exports" / chat.id
            folder.mkdir(parents=True, exist_ok=True)
            target = folder / chats.export_name(chat)
            target.write_text(chats.markdown(chat), encoding="utf-8")
            return gr.DownloadButton(value=str(target), interactive=True)

        def library_view(key: str):
            """Everything on the page that shows the library: header, empty state, documents, choices."""
            scoped = shelf.pipeline(key)
            choices = document_choices(scoped)
            flag = "" if not scoped.settings.library_name else f"--library-name {libraries._quoted(scoped.settings.library_name)} "
            return (header_markdown(shelf, key), gr.Column(visible=not choices), EMPTY_LIBRARY.format(flag=flag),
                    gr.Dropdown(choices=choices), gr.Dropdown(choices=choices, value=None),
                    library_markdown(scoped.settings), upload_note(scoped.settings, suffixes), folders_markdown(shelf, key))

        library_outputs = [header, empty, empty_text, within, to_remove, documents, where, folders_note]

        def turn(message: str, history: list[dict], only: list[str] | None, key: str, chat: chats.Chat | None,
                 request: gr.Request):
            scoped = shelf.pipeline(key)
            record: list = []
            last = None
            for last in respond(scoped, message, history, only, turns, request.session_hash or "", record=record):
                yield (*last, gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip())
            if last is None or not (message or "").strip() or len(last[1]) == len(history):
                return
            answer = record[0] if record else None
            shown = last[1][-1]["content"]
            chat = chat if chat is not None and chat.library == shelf.library(key).key else chats.new_chat(shelf.library(key).key)
            chat = chats.with_turn(chat, chats.Turn(message.strip(), shown, last[2], numbered_of(answer), time.time()))
            saved = chat_store(request)
            if saved is not None:
                saved.save(chat)
            yield (*last, chat, chat_list_update(request, chat.id), {"chat": chat.id, "library": chat.library},
                   chat.title, export_update(chat))

        turn_outputs = [question, chatbot, sources, chat_state, chat_list, remembered, chat_title, export_chat]

        def api_turn(message: str, history: list[dict], only: list[str] | None, request: gr.Request):
            yield from respond(shelf.pipeline(start), message, history, only, turns, request.session_hash or "")

        def stop_answer(request: gr.Request):
            turns.request(request.session_hash or "", "stop")

        def start_over(key: str, request: gr.Request):
            turns.request(request.session_hash or "", "drop")
            return ("", [], NO_SOURCES, None, gr.Radio(value=None), {"chat": "", "library": key}, "",
                    gr.DownloadButton(value=None, interactive=False), "")

        over_outputs = [question, chatbot, sources, chat_state, chat_list, remembered, chat_title, export_chat, chat_note]

        def show_chat(chat: chats.Chat | None, request, note: str = ""):
            """Outputs that put a saved chat (or a new one) on the page, with its library."""
            key = chat.library if chat is not None else start
            key = shelf.library(key).key
            pane = chat.turns[-1].sources if chat is not None and chat.turns else NO_SOURCES
            return (chat.messages() if chat else [], pane, chat, key, gr.Dropdown(choices=library_names(), value=key),
                    chat_list_update(request, chat.id if chat else None), {"chat": chat.id if chat else "", "library": key},
                    chat.title if chat else "", export_update(chat), note, *library_view(key))

        show_outputs = [chatbot, sources, chat_state, library_key, library_choice, chat_list, remembered, chat_title,
                        export_chat, chat_note, *library_outputs]

        def opened(memory: dict | None, request: gr.Request):
            """On page load: the chat this browser had open, if it is still saved, else a new chat on its library."""
            memory = memory or {}
            saved = chat_store(request)
            chat = saved.load(memory.get("chat", "")) if saved is not None and memory.get("chat") else None
            if chat is None:
                key = shelf.library(memory.get("library", start)).key
                outputs = list(show_chat(None, request))
                outputs[3] = key
                outputs[4] = gr.Dropdown(choices=library_names(), value=key)
                outputs[6] = {"chat": "", "library": key}
                outputs[10:] = library_view(key)
                return tuple(outputs)
            return show_chat(chat, request)

        def open_saved(chat_id: str | None, request: gr.Request):
            saved = chat_store(request)
            chat = saved.load(chat_id) if saved is not None and chat_id else None
            if chat is None:
                return show_chat(None, request, "*That chat is no longer saved.*")
            turns.request(request.session_hash or "", "drop")
            return show_chat(chat, request)

        def retitle(chat: chats.Chat | None, title: str, request: gr.Request):
            saved = chat_store(request)
            if chat is None or saved is None:
                return chat, gr.skip(), "*Ask a question first: a chat is saved with its first answer.*", gr.skip()
            try:
                chat = saved.rename(chat.id, title)
            except RagError as exc:
                return chat, gr.skip(), f"**Not renamed:** {exc}", gr.skip()
            return chat, chat_list_update(request, chat.id), f"Renamed to “{chat.title}”.", export_update(chat)

        def forget_chat(chat: chats.Chat | None, key: str, request: gr.Request):
            saved = chat_store(request)
            if chat is None:
                return (*start_over(key, request)[:-1], "*No saved chat is open.*")
            gone = saved.delete(chat.id) if saved is not None else False
            outputs = list(start_over(key, request))
            outputs[4] = chat_list_update(request, None)
            outputs[-1] = f"Deleted “{chat.title}”." if gone else "*That chat was not saved.*"
            return tuple(outputs)

        def copy_answer(chat: chats.Chat | None, history: list[dict], pane: str):
            if chat is not None and chat.turns:
                return chats.turn_markdown(chat.turns[-1])
            bots = [m for m in history or [] if m.get("role") == "assistant"]
            return f"{message_text(bots[-1]['content'])}\n\n{pane}" if bots else ""

        def switch_library(key: str, request: gr.Request):
            outputs = list(show_chat(None, request))
            key = shelf.library(key).key
            outputs[3], outputs[4] = key, gr.Dropdown(choices=library_names(), value=key)
            outputs[6] = {"chat": "", "library": key}
            outputs[10:] = library_view(key)
            turns.request(request.session_hash or "", "drop")
            return tuple(outputs)

        def make_library(name: str, request: gr.Request):
            try:
                made = libraries.create(pipeline.settings, name)
            except RagError as exc:
                return (*[gr.skip()] * len(show_outputs), f"**Not created:** {exc}", gr.skip())
            return (*switch_library(made.key, request), f"Created the library “{made.name}”; add documents to it "
                    "with the upload buttons.", "")

        def retitle_library(key: str, name: str):
            library = shelf.library(key)
            try:
                renamed = libraries.rename(pipeline.settings, library.name, name)
            except RagError as exc:
                return gr.skip(), gr.skip(), f"**Not renamed:** {exc}", gr.skip()
            shelf.forget(library.key)  # reopened under its new name when next asked for; the start library stays
            return (gr.Dropdown(choices=library_names(), value=renamed.key), header_markdown(shelf, renamed.key),
                    f"Renamed “{library.name}” to “{renamed.name}”.", "")

        def drop_library(key: str, sure: bool, request: gr.Request):
            library = shelf.library(key)
            if not sure:
                return (*[gr.skip()] * len(show_outputs), "*Tick the box to confirm, then delete.*", gr.skip())
            if shelf.pipeline(library.key) is shelf.root and not library.default:
                return (*[gr.skip()] * len(show_outputs), f"**Not deleted:** the app was started on “{library.name}”; "
                        "start it on another library to delete this one.", gr.skip())
            try:
                shelf.stop_watching(library.key)
                libraries.delete(pipeline.settings, library.name)
            except RagError as exc:
                return (*[gr.skip()] * len(show_outputs), f"**Not deleted:** {exc}", gr.skip())
            shelf.forget(library.key)
            return (*switch_library("", request), f"Deleted the library “{library.name}”.", False)

        def uploaded(files, key: str):
            yield from upload_files(shelf.pipeline(key), files)

        def remove_one(path: str | None, key: str):
            if not path:
                return "*Choose a document first.*"
            try:
                gone = library.remove_document(path, shelf.pipeline(key).settings)
            except RagError as exc:
                return f"**Not removed:** {exc}"
            return f"Removed {Path(path).name} from the index." if gone else f"{Path(path).name} was not in the index."

        def add_watched(path: str, key: str):
            folder_path = Path((path or "").strip()).expanduser()
            if not str(path or "").strip() or not folder_path.is_dir():
                return f"**Not added:** {path!r} is not a folder on this machine; give its full path.", gr.skip()
            scoped = shelf.pipeline(key)
            libraries.record_folders(scoped.settings, [folder_path])
            if not shelf.watching:
                shelf.watching = True
            shelf.start_watching(shelf.library(key).key)
            return folders_markdown(shelf, key), ""

        def toggle_watch(on: bool, key: str):
            shelf.watch_all(bool(on))
            return folders_markdown(shelf, key), header_markdown(shelf, key)

        def tick(key: str):
            return header_markdown(shelf, key), folders_markdown(shelf, key)

        def apply_settings(model_file: str, k: float, on: bool, heat: float, keep: bool):
            model_file = (model_file or "").strip()
            shelf.save_chats = bool(keep)
            try:
                unchanged = model_file == pipeline.settings.model_path
                settings = shelf.configure(model=pipeline.settings.model if unchanged else model_file,
                                           top_k=int(k), rerank=bool(on), temperature=float(heat))
            except RagError as exc:
                return f"**Not applied:** {exc}\n\n{settings_markdown(pipeline.settings)}"
            return settings_markdown(settings) + ("" if keep else "\n\nConversations are not saved.")

        private = dict(api_visibility="private")
        answering = dict(concurrency_id="answer", concurrency_limit=1)
        turn_inputs = [question, chatbot, within, library_key, chat_state]
        ask.click(turn, turn_inputs, turn_outputs, **private, **answering)
        question.submit(turn, turn_inputs, turn_outputs, **private, **answering)
        api = gr.Button(visible=False)  # the /ask endpoint of gradio_client: the start library, no saved chat
        api.click(api_turn, [question, chatbot, within], [question, chatbot, sources], api_name="ask", **answering)
        stop.click(stop_answer, None, None, queue=False, **private)
        new_chat.click(start_over, library_key, over_outputs, queue=False, **private)
        chat_list.input(open_saved, chat_list, show_outputs, queue=False, **private)
        rename_chat.click(retitle, [chat_state, chat_title], [chat_state, chat_list, chat_note, export_chat], queue=False,
                          **private)
        delete_chat.click(forget_chat, [chat_state, library_key], over_outputs, queue=False, **private)
        copy.click(copy_answer, [chat_state, chatbot, sources], copied, queue=False, **private).then(
            None, copied, None, js="(text) => { if (text && navigator.clipboard) navigator.clipboard.writeText(text); }")
        demo.load(opened, remembered, show_outputs, queue=False, **private)
        library_choice.input(switch_library, library_choice, show_outputs, queue=False, **private)
        create.click(make_library, new_name, [*show_outputs, libraries_note, new_name], **private, concurrency_id="library")
        rename_library.click(retitle_library, [library_key, renamed_to], [library_choice, header, libraries_note, renamed_to],
                             **private, concurrency_id="library")
        delete_library.click(drop_library, [library_key, confirm], [*show_outputs, libraries_note, confirm], **private,
                             concurrency_id="library")
        refresh = dict(fn=library_view, inputs=library_key, outputs=library_outputs, queue=False, show_progress="hidden",
                       **private)
        for box in (upload, upload_folder):
            box.upload(uploaded, [box, library_key], progress, **private, concurrency_id="library", concurrency_limit=1
                       ).then(**refresh).then(lambda: None, None, box, queue=False, **private)
        empty_upload.upload(uploaded, [empty_upload, library_key], empty_progress, **private, concurrency_id="library"
                            ).then(**refresh)
        remove.click(remove_one, [to_remove, library_key], removed, **private, concurrency_id="library").then(**refresh)
        add_folder.click(add_watched, [folder, library_key], [folders_note, folder], **private).then(**refresh)
        watch_on.input(toggle_watch, [watch_on, library_key], [folders_note, header], queue=False, **private)
        ticker.tick(tick, library_key, [header, folders_note], queue=False, show_progress="hidden", **private)
        apply.click(apply_settings, [model, top_k, rerank, temperature, save], in_force, **private, concurrency_id="answer")
    return demo


def upload_note(settings: Settings, suffixes: list[str]) -> str:
    return (f"Upload files or a whole folder: they are copied into `{settings.library_dir}` and indexed. "
            f"Types: {', '.join(suffixes)}; at most {settings.max_file_mb} MB each.")


def folders_markdown(shelf: Shelf, key: str) -> str:
    library = shelf.library(key)
    if not library.folders:
        return "*No folder is kept in step with this library yet.*"
    state = "watched" if shelf.watcher(library.key) is not None else "not watched (turn watching on below)"
    rows = "\n".join(f"- `{f}`" for f in library.folders)
    return f"Folders of “{library.name}”, {state}:\n{rows}{sync_line(shelf, library.key)}"


def build_parser(prog: str = "python app.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Chat with your indexed documents in the browser.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"examples:\n  {prog}                                  serve the default library on http://127.0.0.1:7860\n"
               f"  {prog} --library-name Work              open the app on the library Work\n"
               f"  {prog} --host 0.0.0.0 --auth me:a-long-passphrase   serve the local network, with a password")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only; any other needs --auth)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    parser.add_argument("--auth", metavar="USER:PASSWORD", action="append",
                        help="ask for this username and password; repeat it for several logins, each with its own saved "
                             "chats (default: RAG_AUTH, one USER:PASSWORD per line; required beyond 127.0.0.1)")
    parser.add_argument("--watch", nargs="*", type=Path, metavar="FOLDER",
                        help="keep the library in step with its folders (and these, which are added to it): new, changed "
                             "and deleted files are indexed or removed within seconds (default: RAG_WATCH)")
    parser.add_argument("--no-save-chats", action="store_true",
                        help="keep no conversation on disk (default: saved in `chats` beside the index; RAG_SAVE_CHATS=off)")
    settings_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = "python app.py") -> int:
    args = build_parser(prog).parse_args(argv)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # nothing leaves the machine
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        auth = server.parse_logins(args.auth, "--auth") or server.parse_logins([os.environ.get("RAG_AUTH") or ""], "RAG_AUTH")
        server.check_exposure(args.host, auth or None)
        extra = {"watch": True if args.watch is not None else None, "save_chats": False if args.no_save_chats else None}
        settings = settings_from(args, **extra)
        missing = [str(f) for f in args.watch or [] if not f.is_dir()]
        if missing:
            raise ConfigError(f"--watch {missing[0]} is not a folder; give folders that exist on this machine.")
        if args.watch:
            libraries.record_folders(settings, args.watch)
        # The embedder loads in the background with the model (warm_up), not before the page is served.
        pipeline = Pipeline(settings, embedder=lazy_embedder(settings))
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    import uvicorn

    shelf = Shelf(pipeline, watch=settings.watch)
    demo = build_app(pipeline, shelf, logins=bool(auth))
    demo.queue(default_concurrency_limit=1)
    asgi = server.build_server(shelf.documents, demo, auth or None, pipeline.settings.max_file_mb, head=STOP_SHORTCUT)
    # An open tab keeps a connection (its event stream) open; on SIGTERM or Ctrl-C wait at most 3 s for it.
    web = uvicorn.Server(uvicorn.Config(asgi, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=3))

    def after_start() -> None:
        """The models, the index and the folder watchers load once the page is served, not before: on two cores they
        would only slow the start (bench/startup.py)."""
        while not web.started and not web.should_exit:
            time.sleep(0.05)
        pipeline.warm_up()
        if settings.watch:
            shelf.watch_all(True)

    threading.Thread(target=after_start, name="warm-up", daemon=True).start()
    print(f"Serving on http://{args.host}:{args.port} (library: {libraries.current(settings).name}, index: "
          f"{pipeline.settings.index_dir}{', password required' if auth else ''}"
          f"{', watching its folders' if settings.watch else ''})", flush=True)
    try:
        web.run()
    finally:
        shelf.close()
    return 0

if __name__ == "__main__":
    sys.exit(main())

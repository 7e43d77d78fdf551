"""`python app.py`: the Gradio chat app; streams answers and shows the numbered sources beside them."""


import argparse
import os
import re
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from rag import library, loaders, server
from rag.cli import settings_arguments, settings_from
from rag.errors import ConfigError, RagError
from rag.pipeline import Answer, Found, Partial, Pipeline

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


def index_status(pipeline: Pipeline) -> str:
    """One line at the top of the page: what is indexed, or in one sentence why the index cannot be used."""
    try:
        snapshot = pipeline.retriever.snapshot
    except RagError as exc:
        return f"⚠️ **The index cannot be used:** {exc}"
    return f"Index: {len(snapshot.documents)} documents, {len(snapshot.chunks)} passages."


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
            turns: Turns | None = None, session: str = "") -> Iterator[tuple[str, list[dict], str]]:
    """One turn: the question goes into the chat at once, the answer streams in, the sources follow."""
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
    for statuses in library.ingest_with_progress(stored, pipeline.settings, pipeline.embedder):
        yield status_markdown(refused + statuses)


def build_app(pipeline: Pipeline):
    import gradio as gr

    suffixes = sorted(loaders.SUPPORTED_SUFFIXES)
    with gr.Blocks(title="Chat with your documents", analytics_enabled=False) as demo:
        gr.Markdown("## Chat with your documents\nAnswers come from your indexed files only, with numbered citations.")
        status = gr.Markdown(index_status(pipeline), elem_id="index-status")
        with gr.Tabs():
            with gr.Tab("Chat", id="chat-tab"):
                with gr.Row():
                    with gr.Column(scale=3):
                        chatbot = gr.Chatbot(label="Conversation", height=560, elem_id="chat", buttons=["copy"])
                        question = gr.Textbox(label="Question", placeholder="Ask about your documents and press Enter",
                                              elem_id="question", autofocus=True)
                        with gr.Row():
                            ask = gr.Button("Ask", variant="primary", elem_id="ask")
                            stop = gr.Button("Stop", variant="stop", elem_id="stop")
                            new_chat = gr.Button("New chat", elem_id="new-chat")
                    with gr.Column(scale=2):
                        # Choices are refreshed on page load and after each upload; other indexed paths are accepted too.
                        within = gr.Dropdown(choices=document_choices(pipeline), multiselect=True, allow_custom_value=True,
                                             label="Search only in (empty: all documents)", elem_id="within")
                        gr.Markdown("### Sources")
                        sources = gr.Markdown(NO_SOURCES, elem_id="sources")
            with gr.Tab("Library", id="library-tab"):
                gr.Markdown(f"Upload files or a whole folder: they are copied into `{pipeline.settings.library_dir}` "
                            f"and indexed. Types: {', '.join(suffixes)}; at most {pipeline.settings.max_file_mb} MB each.")
                with gr.Row():
                    upload = gr.File(label="Upload files", file_count="multiple", file_types=suffixes, elem_id="upload")
                    upload_folder = gr.File(label="Upload a folder", file_count="directory", elem_id="upload-folder")
                progress = gr.Markdown("", elem_id="ingest-status")
                documents = gr.Markdown(library_markdown(pipeline.settings), elem_id="documents")
                with gr.Row():
                    to_remove = gr.Dropdown(choices=document_choices(pipeline), label="Document to remove",
                                            elem_id="remove-choice", scale=3)
                    remove = gr.Button("Remove from the index", variant="stop", elem_id="remove", scale=1)
                removed = gr.Markdown("", elem_id="remove-status")
            with gr.Tab("Settings", id="settings-tab"):
                in_force = gr.Markdown(settings_markdown(pipeline.settings), elem_id="settings-in-force")
                model = gr.Textbox(pipeline.settings.model_path, label="Model file (GGUF)", elem_id="model")
                top_k = gr.Slider(1, 10, value=pipeline.settings.top_k, step=1, label="Sources per answer", elem_id="top-k")
                rerank = gr.Checkbox(pipeline.settings.rerank, label="Rerank the passages (feedback reranker, or the "
                                     "configured cross-encoder)", elem_id="rerank")
                temperature = gr.Slider(0, 1.5, value=pipeline.settings.temperature, step=0.05, label="Temperature",
                                        elem_id="temperature")
                apply = gr.Button("Apply", variant="primary", elem_id="apply")

        turns = Turns()

        def turn(message: str, history: list[dict], only: list[str] | None, request: gr.Request):
            yield from respond(pipeline, message, history, only, turns, request.session_hash or "")

        def stop_answer(request: gr.Request):
            turns.request(request.session_hash or "", "stop")

        def start_over(request: gr.Request):
            turns.request(request.session_hash or "", "drop")
            return "", [], NO_SOURCES

        def refreshed():
            choices = document_choices(pipeline)
            return (gr.Dropdown(choices=choices), gr.Dropdown(choices=choices, value=None), library_markdown(pipeline.settings),
                    index_status(pipeline))

        def uploaded(files):
            yield from upload_files(pipeline, files)

        def remove_one(path: str | None):
            if not path:
                return "*Choose a document first.*"
            try:
                gone = library.remove_document(path, pipeline.settings)
            except RagError as exc:
                return f"**Not removed:** {exc}"
            return f"Removed {Path(path).name} from the index." if gone else f"{Path(path).name} was not in the index."

        def apply_settings(model_file: str, k: float, on: bool, heat: float):
            model_file = (model_file or "").strip()
            try:
                unchanged = model_file == pipeline.settings.model_path
                settings = pipeline.configure(model=pipeline.settings.model if unchanged else model_file,
                                              top_k=int(k), rerank=bool(on), temperature=float(heat))
            except RagError as exc:
                return f"**Not applied:** {exc}\n\n{settings_markdown(pipeline.settings)}"
            return settings_markdown(settings)

        answering = dict(concurrency_id="answer", concurrency_limit=1)
        ask.click(turn, [question, chatbot, within], [question, chatbot, sources], api_name="ask", **answering)
        question.submit(turn, [question, chatbot, within], [question, chatbot, sources],
                                    api_visibility="private", **answering)
        stop.click(stop_answer, None, None, queue=False, api_visibility="private")
        new_chat.click(start_over, None, [question, chatbot, sources], queue=False, api_visibility="private")
        demo.load(refreshed, None, [within, to_remove, documents, status], api_visibility="private", queue=False)
        for box in (upload, upload_folder):
            box.upload(uploaded, box, progress, api_visibility="private", concurrency_id="library", concurrency_limit=1
                       ).then(refreshed, None, [within, to_remove, documents, status], queue=False, api_visibility="private"
                       ).then(lambda: None, None, box, queue=False, api_visibility="private")
        remove.click(remove_one, to_remove, removed, api_visibility="private", concurrency_id="library"
                     ).then(refreshed, None, [within, to_remove, documents, status], queue=False, api_visibility="private")
        apply.click(apply_settings, [model, top_k, rerank, temperature], in_force, api_visibility="private",
                    concurrency_id="answer")
    return demo


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
    parser.add_argument("--auth", metavar="USER:PASSWORD",
                        help="ask for this username and password (default: RAG_AUTH; required beyond 127.0.0.1)")
    settings_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = "python app.py") -> int:
    args = build_parser(prog).parse_args(argv)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # nothing leaves the machine
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        auth = server.parse_auth(args.auth, "--auth") or server.parse_auth(os.environ.get("RAG_AUTH"), "RAG_AUTH")
        server.check_exposure(args.host, auth)
        pipeline = Pipeline(settings_from(args))
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    threading.Thread(target=pipeline.warm_up, daemon=True).start()
    import uvicorn

    demo = build_app(pipeline)
    demo.queue(default_concurrency_limit=1)
    asgi = server.build_server(pipeline, demo, auth, pipeline.settings.max_file_mb)
    print(f"Serving on http://{args.host}:{args.port} (index: {pipeline.settings.index_dir}"
          f"{', password required' if auth else ''})", flush=True)
    uvicorn.run(asgi, host=args.host, port=args.port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())

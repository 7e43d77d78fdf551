"""`python app.py`: the Gradio chat app; streams answers and shows the numbered sources beside them."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

from rag.cli import settings_arguments, settings_from
from rag.errors import RagError
from rag.pipeline import Answer, Pipeline

NO_SOURCES = "*The sources of each answer appear here: file, page, section and passage.*"


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
    """The checked answer: sentences no source supports are struck through in italics, with a warning."""
    if not answer.sentences:
        return answer.text
    parts = [c.text if c.supported else f"*{c.text}* ⚠️" for c in answer.sentences]
    note = ("\n\n<sub>⚠️ not supported by the sources it cites: check it against the evidence.</sub>"
            if any(not c.supported for c in answer.sentences) else "")
    return " ".join(parts) + note


def document_links(pipeline: Pipeline) -> dict[str, str]:
    """path -> the app's address for that document: /doc/SHA256, served only for indexed files."""
    try:
        return {d.path: f"/doc/{d.sha256}" for d in pipeline.retriever.snapshot.documents}
    except RagError:
        return {}


def sources_markdown(answer: Answer, links: dict[str, str] | None = None) -> str:
    """Evidence sentences first, then the sources numbered like the citations, with the supporting sentence in bold."""
    if not answer.sources:
        return "*No passage of your documents answers this question.*"
    cited = {s.n for s in answer.cited}
    support = {s.n: s.sentence for c in answer.sentences if c.supported for s in c.support}
    lines = []
    if answer.evidence:
        lines.append("**Evidence** (found without the model):\n")
        lines += [f"- {e.sentence} [{e.n}]" for e in answer.evidence]
        lines.append("")
    for source in answer.sources:
        mark = "cited" if source.n in cited else "not cited"
        text = source.text
        if source.n in support and support[source.n] in text:
            text = text.replace(support[source.n], f"**{support[source.n]}**", 1)
        passage = "\n".join(f"> {line}" if line.strip() else ">" for line in text.splitlines())
        link = (links or {}).get(source.path)
        if link:
            target = f"{link}#page={source.page}" if source.page else link
            where = f"[open {Path(source.path).name}{f' at page {source.page}' if source.page else ''}]({target})"
        else:
            where = f"`{source.path}`"
        lines.append(f"**[{source.n}] {source.label}** ({mark})  \n{where}\n\n{passage}\n")
    return "\n".join(lines)


def document_choices(pipeline: Pipeline) -> list[tuple[str, str]]:
    """(file name, path) of every indexed document, for the "search only in" control."""
    try:
        documents = pipeline.retriever.snapshot.documents
    except RagError:
        return []
    return [(Path(d.path).name, d.path) for d in documents]


def respond(pipeline: Pipeline, question: str, history: list[dict],
            within: list[str] | None = None) -> Iterator[tuple[str, list[dict], str]]:
    """One turn: the question goes into the chat at once, the answer streams in, the sources follow."""
    question = (question or "").strip()
    if not question:
        yield "", history, NO_SOURCES
        return
    previous = [{"role": m["role"], "content": message_text(m["content"])} for m in history if m.get("role") in ("user", "assistant")]
    chat = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
    yield "", chat, "*Searching your documents…*"
    try:
        for event in pipeline.ask_stream(question, previous, within=within or None):
            shown = answer_markdown(event) if isinstance(event, Answer) else event.text
            chat[-1] = {"role": "assistant", "content": shown or "…"}
            yield "", chat, (sources_markdown(event, document_links(pipeline)) if isinstance(event, Answer)
                             else "*Writing the answer…*")
    except RagError as exc:
        chat[-1] = {"role": "assistant", "content": f"**Cannot answer:** {exc}"}
        yield "", chat, NO_SOURCES


def build_app(pipeline: Pipeline):
    import gradio as gr

    with gr.Blocks(title="Chat with your documents", analytics_enabled=False) as demo:
        gr.Markdown("## Chat with your documents\nAnswers come from your indexed files only, with numbered citations.")
        with gr.Row():
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(label="Conversation", height=560, elem_id="chat", buttons=["copy"])
                question = gr.Textbox(label="Question", placeholder="Ask about your documents and press Enter",
                                      elem_id="question", autofocus=True)
                with gr.Row():
                    ask = gr.Button("Ask", variant="primary", elem_id="ask")
                    new_chat = gr.Button("New chat", elem_id="new-chat")
            with gr.Column(scale=2):
                # Choices are refreshed on every page load; a path indexed since then is still accepted.
                within = gr.Dropdown(choices=document_choices(pipeline), multiselect=True, allow_custom_value=True,
                                     label="Search only in (empty: all documents)", elem_id="within")
                gr.Markdown("### Sources")
                sources = gr.Markdown(NO_SOURCES, elem_id="sources")

        def turn(message: str, history: list[dict], only: list[str] | None):
            yield from respond(pipeline, message, history, only)

        ask.click(turn, [question, chatbot, within], [question, chatbot, sources], api_name="ask")
        question.submit(turn, [question, chatbot, within], [question, chatbot, sources], api_visibility="private")
        demo.load(lambda: gr.Dropdown(choices=document_choices(pipeline)), None, within, api_visibility="private")
        new_chat.click(lambda: ("", [], NO_SOURCES), None, [question, chatbot, sources], api_visibility="private")
    return demo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python app.py", description="Chat with your indexed documents in the browser.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    settings_arguments(parser)
    args = parser.parse_args(argv)
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # nothing leaves the machine
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        pipeline = Pipeline(settings_from(args))
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    threading.Thread(target=pipeline.warm_up, daemon=True).start()
    import uvicorn

    print(f"Serving on http://{args.host}:{args.port} (index: {pipeline.settings.index_dir})", flush=True)
    uvicorn.run(build_server(pipeline), host=args.host, port=args.port, log_level="warning")
    return 0


def build_server(pipeline: Pipeline):
    """The Gradio app, plus /doc/SHA256 serving indexed documents so that citations open them."""
    import gradio as gr
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse

    server = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @server.get("/doc/{digest}")
    def document(digest: str) -> FileResponse:
        # Looked up in the index, never built from the request: nothing outside it can be asked for.
        match = next((d for d in pipeline.retriever.snapshot.documents if d.sha256 == digest), None)
        if match is None or not Path(match.path).is_file():
            raise HTTPException(status_code=404, detail="No indexed document has this address.")
        kinds = {".pdf": "application/pdf", ".html": "text/html", ".htm": "text/html"}
        media = kinds.get(Path(match.path).suffix.lower(), "text/plain; charset=utf-8")
        return FileResponse(match.path, media_type=media, content_disposition_type="inline",
                            filename=Path(match.path).name)

    demo = build_app(pipeline)
    demo.queue(default_concurrency_limit=1)
    return gr.mount_gradio_app(server, demo, path="", server_name="127.0.0.1", show_error=True)


if __name__ == "__main__":
    sys.exit(main())

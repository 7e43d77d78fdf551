"""`python -m rag ask|search`: answers and passages from the terminal, as text or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from rag.config import Settings
from rag.errors import RagError


def settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every entry point shares; each falls back to its RAG_* variable, then the default."""
    parser.add_argument("--index", type=Path, help="index folder (default: RAG_INDEX or ./index in the project)")
    parser.add_argument("--library", type=Path, help="folder for files uploaded in the app (default: RAG_LIBRARY or ./library)")
    parser.add_argument("--library-name", metavar="NAME", help="use the named library: its own index and upload folder, "
                        "kept under `libraries` beside the default index (default: RAG_LIBRARY_NAME, or the default "
                        "library, which is --index and --library); `python -m rag library list` shows them")
    parser.add_argument("--embedder", help="sentence-transformers model folder (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--model", help="GGUF model file (default: RAG_MODEL or the bundled SmolLM2-135M)")
    parser.add_argument("--llm-url", metavar="URL", help="OpenAI-compatible model server that answers instead, such as "
                        "http://127.0.0.1:8000 (default: RAG_LLM_URL, or none: the model runs in this process)")
    parser.add_argument("--milvus", metavar="URI", help="keep the index in Milvus: a file path (Milvus Lite) or "
                        "http://host:19530 (a Milvus server); default: RAG_MILVUS_URI, else the local --index folder")


def settings_from(args: argparse.Namespace, create_library: bool = False, **extra: object) -> Settings:
    """Settings from the shared options; create_library=True (ingest) makes a named library that does not exist yet."""
    return Settings.load({"index_dir": args.index, "library_dir": getattr(args, "library", None), "embedder": args.embedder,
                          "model": getattr(args, "model", None), "milvus_uri": getattr(args, "milvus", None),
                          "llm_url": getattr(args, "llm_url", None), "library_name": getattr(args, "library_name", None),
                          **extra}, create_library=create_library)


def build_parser(prog: str = "python -m rag") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Ask questions of your indexed documents.", formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"examples:\n  {prog} ask \"How many bytes does a Q4_0 block take?\"\n"
               f"  {prog} search \"quantization\" --json\n  {prog} ask \"Who signed the lease?\" --library-name Home\n"
               f"  {prog} library create Work")
    commands = parser.add_subparsers(dest="command", required=True)
    raw = argparse.RawDescriptionHelpFormatter
    ask = commands.add_parser("ask", help="answer a question with numbered citations", formatter_class=raw,
                              epilog=f"examples:\n  {prog} ask \"How many bytes does a Q4_0 block take?\"\n"
                                     f"  {prog} ask \"Who signed the lease?\" --library-name Home --json\n"
                                     f"  {prog} ask \"What changed in version 2?\" --in ~/Documents/release-notes.pdf")
    ask.add_argument("question")
    ask.add_argument("-k", "--top-k", type=int, help="sources given to the model (default 5)")
    ask.add_argument("--temperature", type=float, help="sampling temperature (default 0.1)")
    ask.add_argument("--max-tokens", type=int, help="longest answer in tokens (default 384)")
    ask.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ask.add_argument("--in", dest="within", action="append", metavar="PATH", help="only use this file or folder (repeatable)")
    settings_arguments(ask)
    search = commands.add_parser("search", help="show the ranked passages, without the language model", formatter_class=raw,
                                 epilog=f"examples:\n  {prog} search \"quantization\"\n  {prog} search \"lease\" -k 10 --json")
    search.add_argument("query")
    search.add_argument("-k", "--top-k", type=int, help="passages to show (default 5)")
    search.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    search.add_argument("--in", dest="within", action="append", metavar="PATH", help="only search this file or folder (repeatable)")
    settings_arguments(search)
    library = commands.add_parser("library", help="list, create, rename or delete libraries (named indexes)",
                                  description="A library is a named index with its own folders: ask against one with "
                                              "--library-name NAME, in the CLI and the app.", formatter_class=raw,
                                  epilog=f"examples:\n  {prog} library list\n  {prog} library create \"Work papers\"\n"
                                         f"  {prog} library rename \"Work papers\" Work\n  {prog} library delete Work --yes")
    actions = library.add_subparsers(dest="action", required=True)
    settings_arguments(actions.add_parser("list", help="every library with its documents, chunks and folders"))
    created = actions.add_parser("create", help="a new, empty library")
    created.add_argument("name")
    settings_arguments(created)
    renamed = actions.add_parser("rename", help="give a library a new name (its index and chats stay)")
    renamed.add_argument("name")
    renamed.add_argument("new_name")
    settings_arguments(renamed)
    deleted = actions.add_parser("delete", help="delete a library's index and uploaded copies (your own files stay)")
    deleted.add_argument("name")
    deleted.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    settings_arguments(deleted)
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "python -m rag") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        if args.command == "ask":
            return _ask(args)
        if args.command == "library":
            return _library(args)
        return _search(args)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _ask(args: argparse.Namespace) -> int:
    from rag.pipeline import Answer, Found, Pipeline

    settings = settings_from(args, top_k=args.top_k, temperature=args.temperature, max_tokens=args.max_tokens)
    pipeline = Pipeline(settings)
    answer = None
    streamed = ""
    for event in pipeline.ask_stream(args.question, within=_within(args)):
        if isinstance(event, Answer):
            answer = event
        elif args.json:
            continue
        elif isinstance(event, Found):  # the evidence, as soon as retrieval ends, before the model's first word
            print(evidence_text(event.evidence, event.sources), end="\n\nAnswer (being written, not yet checked):\n", flush=True)
        else:
            print(event.text[len(streamed):], end="", flush=True)  # the raw text, as the model writes it
            streamed = event.text
    assert answer is not None
    if args.json:
        print(json.dumps(answer.to_json(), ensure_ascii=False))
        return 0
    if answer.abstained:
        print(("\n\n" if streamed else "") + answer.text)
        return 0
    print("\n\nChecked answer:" if not answer.quoted else
          "\n\nAnswer: the best evidence, quoted, then the model's sentences that passed the check:")
    print(f"  {answer.text}")
    unsupported = [c for c in answer.sentences if not c.supported]
    if unsupported:
        print("\nUnchecked: the sources it cites do not say this (check it against the evidence):")
        for check in unsupported:
            print(f"  ! {check.text}")
    print("\nSources:")
    for source in answer.sources:
        mark = "*" if source in answer.cited else " "
        print(f"{mark}[{source.n}] {source.label}\n     {_snippet(source.text)}")
    return 0


def evidence_text(evidence, sources) -> str:
    """The evidence block the CLI prints first: each window under its source number and place."""
    labels = {s.n: s.label for s in sources}
    lines = ["Evidence from your documents (found without the model):"]
    for item in evidence:
        also = f"; also in {', '.join(item.also)}" if item.also else ""
        lines.append(f"  [{item.n}] {item.sentence}\n      ({labels.get(item.n, '')}{also})")
    return "\n".join(lines)


def _search(args: argparse.Namespace) -> int:
    from rag.pipeline import Pipeline

    settings = settings_from(args)
    hits = Pipeline(settings).search(args.query, args.top_k, _within(args))
    if args.json:
        rows = [{"path": h.chunk.path, "page": h.chunk.page, "heading": h.chunk.heading, "place": h.chunk.where,
                 "attachment": h.chunk.part, "label": h.chunk.label, "text": h.chunk.text, "score": round(h.score, 6)}
                for h in hits]
        print(json.dumps({"hits": rows}, ensure_ascii=False))
        return 0
    if not hits:
        print("No passages found.")
    for rank, hit in enumerate(hits, start=1):
        print(f"{rank}. {hit.chunk.label}  (score {hit.score:.4f})\n   {_snippet(hit.chunk.text)}")
    return 0


def _library(args: argparse.Namespace) -> int:
    from rag import libraries, store

    settings = settings_from(args)
    if args.action == "create":
        made = libraries.create(settings, args.name)
        print(f"created library {made.name!r} in {made.index_dir.parent}; index into it with "
              f"`python ingest.py --library-name {libraries._quoted(made.name)} FOLDER`")
    elif args.action == "rename":
        renamed = libraries.rename(settings, args.name, args.new_name)
        print(f"renamed library {args.name!r} to {renamed.name!r}")
    elif args.action == "delete":
        target = libraries.get(settings, args.name)
        if not args.yes:
            if not sys.stdin.isatty():
                print(f"error: deleting {target.name!r} removes its index and uploaded copies; add --yes to confirm.",
                      file=sys.stderr)
                return 1
            if input(f"Delete the library {target.name!r}, its index and its uploaded copies? [y/N] ").strip().lower() not in ("y", "yes"):
                print("not deleted")
                return 1
        gone = libraries.delete(settings, args.name)
        print(f"deleted library {gone.name!r} (your own folders were not touched)")
    else:
        for lib in libraries.listed(settings):
            try:
                view = store.choose(libraries.settings_for(settings, lib)).load()
                size = f"{len(view.documents)} documents, {len(view.chunks)} chunks"
            except RagError:
                size = "empty"
            marker = "*" if lib.name == libraries.current(settings).name else " "
            folders = f"; folders: {', '.join(lib.folders)}" if lib.folders else ""
            print(f"{marker} {lib.name}  ({size}; {lib.index_dir}{folders})")
    return 0


def _within(args: argparse.Namespace) -> list[str] | None:
    return [str(Path(p).expanduser().absolute()) for p in args.within] if args.within else None


def _snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rsplit(" ", 1)[0] + "…"

"""`rag-chat`, the installed command: one subcommand per entry point (ingest, ask, search, library, serve)."""

from __future__ import annotations

import sys
from typing import Sequence

PROG = "rag-chat"

# Each subcommand hands its arguments to the parser that `python ingest.py`, `python -m rag` or `python app.py` uses,
# so the options and their --help are the same; only the program name in them changes.
COMMANDS = {
    "ingest": "index files and folders (again: only what changed), list or remove what is indexed",
    "ask": "answer a question with numbered citations",
    "search": "show the ranked passages, without the language model",
    "library": "list, create, rename or delete libraries (named indexes)",
    "serve": "the chat app in the browser, on http://127.0.0.1:7860",
}

EXAMPLES = [
    ("ingest ~/Documents", "index a folder"),
    ('ask "Who signed the lease?"', "an answer, with its sources"),
    ('search "quantization" --json', "the passages, as JSON"),
    ("library create Work", "a second, separate index"),
    ("ingest --library-name Work ~/work", "index into it"),
    ("serve", "the app on http://127.0.0.1:7860"),
]


def version() -> str:
    """The installed distribution's version; the package's own when it runs from a checkout that is not installed."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed_version

    try:
        return installed_version("rag-chat")
    except PackageNotFoundError:
        from rag import __version__

        return __version__


def usage() -> str:
    """The top-level help: the subcommands, one line each, examples, and where the index is kept by default."""
    from rag.config import DEFAULT_INDEX_DIR  # light: no model or UI library is imported

    name_width, line_width = max(map(len, COMMANDS)), max(len(line) for line, _ in EXAMPLES)
    commands = "\n".join(f"  {name.ljust(name_width)}  {text}" for name, text in COMMANDS.items())
    examples = "\n".join(f"  {PROG} {line.ljust(line_width)}  {text}" for line, text in EXAMPLES)
    return (f"usage: {PROG} COMMAND [options]\n\n"
            "Chat with your documents, offline: index them, then ask questions answered with citations,\n"
            "in the terminal or in the browser.\n\n"
            f"commands:\n{commands}\n\n"
            "options:\n"
            "  -h, --help     show this help; COMMAND --help shows that command's options and examples\n"
            "  -V, --version  print the version\n\n"
            f"examples:\n{examples}\n\n"
            f"The index is kept in {DEFAULT_INDEX_DIR} unless --index or RAG_INDEX says otherwise.")


def main(argv: Sequence[str] | None = None) -> int:
    """Run `rag-chat ARGS`; returns the exit status (2 for a command or option it does not know)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0
    if args[0] in ("-V", "--version"):
        print(f"{PROG} {version()}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        what = "option" if command.startswith("-") else "command"
        print(f"{PROG}: error: unknown {what} {command!r}; the commands are {', '.join(COMMANDS)} "
              f"(`{PROG} --help` shows examples).", file=sys.stderr)
        return 2
    try:
        return _run(command, rest)
    except SystemExit as exc:  # argparse's --help and usage errors: the same status, returned rather than raised
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        print(f"{PROG} {command}: interrupted.", file=sys.stderr)
        return 130


def _run(command: str, rest: list[str]) -> int:
    # Imported here, per command: `rag-chat --help` must not wait for torch or Gradio.
    if command == "ingest":
        from rag.ingest import main as ingest_main

        return ingest_main(rest, prog=f"{PROG} ingest")
    if command == "serve":
        from rag.app import main as app_main

        return app_main(rest, prog=f"{PROG} serve")
    from rag.cli import main as cli_main

    return cli_main([command, *rest], prog=PROG)


if __name__ == "__main__":
    sys.exit(main())

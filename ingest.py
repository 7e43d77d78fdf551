"""`python ingest.py PATH... [--index DIR]`: add files and folders to the index, with progress and a summary."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from rag.cli import settings_arguments, settings_from
    from rag.errors import RagError

    parser = argparse.ArgumentParser(
        prog="python ingest.py",
        description="Index PDF, Markdown and text files (folders are searched recursively). "
                    "Unchanged files are skipped; changed files replace their old chunks.")
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="files or folders to index")
    parser.add_argument("--chunk-tokens", type=int, help="largest chunk in embedder tokens (default 200)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    settings_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = settings_from(args, chunk_tokens=args.chunk_tokens)
        report = _run(args.paths, settings, show_progress=not args.quiet)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for failure in report.failed:
        print(f"could not index {failure.path}: {failure.reason}", file=sys.stderr)
    print(report.summary())
    print(f"index: {settings.index_dir}")
    return 0 if report.documents or not report.failed else 1


def _run(paths, settings, show_progress: bool):
    from tqdm import tqdm

    from rag.embeddings import SentenceTransformerEmbedder
    from rag.indexing import ingest

    embedder = SentenceTransformerEmbedder(settings.embedder_path)
    bar = tqdm(total=0, unit="file", disable=not show_progress, file=sys.stderr, dynamic_ncols=True)

    def progress(done: int, total: int, path: str) -> None:
        bar.total = total
        bar.n = done
        bar.set_postfix_str(Path(path).name if path else "writing index", refresh=False)
        bar.refresh()

    try:
        return ingest(paths, settings, embedder, progress)
    finally:
        bar.close()


if __name__ == "__main__":
    sys.exit(main())

"""`python ingest.py PATH... [--index DIR]`: add files and folders to the index; also --list and --remove."""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path

from rag.cli import settings_arguments, settings_from
from rag.errors import RagError

FORMATS = ("PDF (scans read by OCR), Markdown, plain text, HTML, Word (.docx), PowerPoint (.pptx), Excel (.xlsx), "
           "CSV/TSV, EPUB, e-mail (.eml, .mbox) and image (.png, .jpg, .tiff)")


def build_parser(prog: str = "python ingest.py") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"examples:\n  {prog} ~/Documents                      index a folder (again: only what changed)\n"
               f"  {prog} --library-name Work ~/work       index into the library Work (made if new)\n"
               f"  {prog} --list                           what is indexed\n"
               f"  {prog} --remove ~/Documents/old.pdf     take a file out of the index\n"
               f"  {prog} --watch ~/Documents              index, then keep the index in step with the folder",
        description=f"Index {FORMATS} files; folders are searched recursively. Unchanged files are skipped, "
                    "changed files replace their old chunks, and files gone from a folder leave the index.")
    parser.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or folders to index")
    parser.add_argument("--list", action="store_true", help="show the indexed documents with page and chunk counts")
    parser.add_argument("--remove", nargs="+", type=Path, metavar="PATH", help="remove these files (or folders) from the index")
    parser.add_argument("--rebuild", action="store_true",
                        help="build the index anew (for a damaged one) from the documents it recorded, the library "
                             "folder and any PATH given")
    parser.add_argument("--watch", action="store_true",
                        help="after indexing, keep watching the PATH folders (without PATH: the folders recorded for "
                             "the library) and index new, changed and deleted files within seconds; Ctrl-C stops")
    parser.add_argument("--chunk-tokens", type=int, help="largest chunk in embedder tokens (default 200)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    settings_arguments(parser)
    return parser


def main(argv: list[str] | None = None, prog: str = "python ingest.py") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if not (args.paths or args.list or args.remove or args.rebuild or args.watch):
        parser.error("give at least one PATH to index, or --list, --remove PATH, --rebuild or --watch")
    try:
        # Indexing into a named library that does not exist yet creates it; --list and --remove never do.
        settings = settings_from(args, create_library=bool(args.paths) and not (args.list or args.remove),
                                 chunk_tokens=args.chunk_tokens)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        if args.remove:
            return _remove(args.remove, settings)
        if args.list:
            return _list(settings)
        if args.rebuild:
            return _rebuild(args.paths, settings, show_progress=not args.quiet)
        if args.watch:
            return _watch(args.paths, settings, show_progress=not args.quiet)
        return _ingest(args.paths, settings, show_progress=not args.quiet)
    except RagError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (OSError, sqlite3.Error) as exc:  # the index folder could not be written: disk full, read-only, no permission
        reason = getattr(exc, "strerror", None) or str(exc)
        print(f"error: could not write the index in {settings.index_dir} ({reason}); "
              "free some space or choose another --index, then run again. The previous index is unchanged.",
              file=sys.stderr)
        return 2


def _ingest(paths: list[Path], settings, show_progress: bool, fresh: bool = False) -> int:
    from tqdm import tqdm

    from rag.embeddings import lazy_embedder
    from rag.indexing import Progress, ingest

    bar = tqdm(total=0, unit="file", disable=not show_progress, file=sys.stderr, dynamic_ncols=True)
    started = time.perf_counter()

    def progress(step: Progress) -> None:
        elapsed = max(time.perf_counter() - started, 1e-6)
        bar.total = step.files_total
        bar.n = step.files_done
        name = Path(step.current).name if step.current else "writing index"
        ocr = f", {step.ocr_pages} pages read by OCR" if step.ocr_pages else ""
        bar.set_postfix_str(f"{step.chunks_done} chunks, {step.chunks_done / elapsed:.1f} chunks/s{ocr}, {name}", refresh=False)
        bar.refresh()

    def waiting() -> None:
        print(f"Another ingest is writing {settings.index_dir}; waiting for it to finish...", file=sys.stderr, flush=True)

    try:
        report = ingest(paths, settings, lazy_embedder(settings), progress,
                        on_wait=waiting, fresh=fresh)
    finally:
        bar.close()
    for failure in report.failed:
        print(f"could not index {failure.path}: {failure.reason}", file=sys.stderr)
    print(report.summary())
    from rag import libraries

    libraries.record_folders(settings, [p for p in paths if p.is_dir()])
    from rag import store

    print(f"index: {store.choose(settings).describe()}")
    if not report.usable:
        print(f"error: nothing to index in {', '.join(map(str, paths))}; give files or folders holding {FORMATS} files.",
              file=sys.stderr)
        return 1
    return 0


def _watch(paths: list[Path], settings, show_progress: bool) -> int:
    """Index the folders (or those recorded for the library), then apply their changes until SIGINT or SIGTERM."""
    import signal
    import threading

    from rag import libraries
    from rag.embeddings import lazy_embedder
    from rag.indexing import find_files
    from rag.watch import Sync, Watcher

    if paths:
        for path in paths:
            if not path.expanduser().is_dir():
                print(f"error: --watch keeps folders in step and {path} is not a folder; give the folder it is in.",
                      file=sys.stderr)
                return 2
        if find_files(paths)[0]:
            _ingest(paths, settings, show_progress)  # the same summary as a plain ingest
        else:  # an empty folder is fine to watch: files dropped into it are indexed
            libraries.record_folders(settings, paths)
        folders = paths
    else:
        library = libraries.current(settings)
        folders = [Path(f) for f in library.folders if Path(f).is_dir()]
        for gone in (f for f in library.folders if not Path(f).is_dir()):
            print(f"not watching {gone}: the folder no longer exists", file=sys.stderr)
        if not folders:
            print(f"error: no folders are recorded for the library {library.name!r}; give the folders to watch, "
                  "as in `python ingest.py --watch ~/Documents`.", file=sys.stderr)
            return 2

    def printed(sync: Sync) -> None:
        for failure in sync.failed:
            print(f"could not index {failure.path}: {failure.reason}", file=sys.stderr, flush=True)
        print(sync.summary(), file=sys.stderr if sync.error else sys.stdout, flush=True)

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    watcher = Watcher(folders, settings, lazy_embedder(settings), printed)
    watcher.start()
    how = "by polling every second" if watcher.polling else "for file events"
    print(f"watching {', '.join(map(str, watcher.folders))} {how}; Ctrl-C stops", file=sys.stderr, flush=True)
    while not stop.wait(0.5):
        pass
    watcher.stop()
    print("stopped watching", flush=True)
    return 0


def _rebuild(paths: list[Path], settings, show_progress: bool) -> int:
    """A fresh index from what the old one recorded, the library folder and `paths`; the old one stays until it is done."""
    from rag import store

    recorded = [Path(p) for p in store.choose(settings).recorded_paths()]
    missing = [p for p in recorded if not p.exists()]
    sources = [p for p in recorded if p.exists()] + list(paths)
    if settings.library_dir.is_dir():
        sources.append(settings.library_dir)
    for path in missing:
        print(f"not rebuilt: {path} was indexed but no longer exists", file=sys.stderr)
    if not sources:
        print(f"error: nothing to rebuild {settings.index_dir} from: it recorded no readable documents and there is "
              f"no library folder {settings.library_dir}; give the folders to index.", file=sys.stderr)
        return 1
    print(f"rebuilding {settings.index_dir} from {len(recorded) - len(missing)} recorded documents"
          f"{', the library' if settings.library_dir.is_dir() else ''}{f' and {len(paths)} more paths' if paths else ''}",
          file=sys.stderr)
    return _ingest(sources, settings, show_progress, fresh=True)


def _list(settings) -> int:
    from rag import store

    backend = store.choose(settings)
    snapshot = backend.load()
    for document in snapshot.documents:
        pages = f"{document.pages} pages, " if document.pages else ""
        print(f"{document.path}  ({pages}{document.chunks} chunks)")
    print(f"{len(snapshot.documents)} documents, {len(snapshot.chunks)} chunks in {backend.describe()}")
    return 0


def _remove(paths: list[Path], settings) -> int:
    from rag.indexing import remove

    gone, _ = remove(paths, settings)
    for path in gone:
        print(f"removed {path}")
    if not gone:
        print(f"error: none of {', '.join(map(str, paths))} is in the index; see `python ingest.py --list`.", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

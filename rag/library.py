"""The app's library: uploads kept under one folder with safe names, ingested with per-file progress, listed, removed."""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import unicodedata
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from rag import indexing, loaders, store
from rag.config import Settings
from rag.embeddings import Embedder
from rag.errors import LoadError, RagError

_UNSAFE = re.compile(r"[^\w.\- ()]+")
MAX_NAME = 120


def safe_name(name: str) -> str:
    """A file name that can only land directly inside the library: no folders, no leading dots, no odd characters.

    "../../etc/passwd.md" -> "passwd.md", "C:\\Users\\x\\notes.txt" -> "notes.txt", ".bashrc.md" -> "bashrc.md".
    """
    base = re.split(r"[\\/]", unicodedata.normalize("NFC", name or ""))[-1]
    base = _UNSAFE.sub("_", base).strip().lstrip(".")
    stem, suffix = os.path.splitext(base)
    stem = stem.strip(" .")[:MAX_NAME] or "document"
    return stem + suffix.lower()


def check_upload(name: str, size: int, settings: Settings) -> None:
    """Refuse, naming the file, what the library does not take: unsupported types and files over the size cap."""
    suffix = Path(safe_name(name)).suffix
    if suffix not in loaders.SUPPORTED_SUFFIXES:
        raise LoadError(name, f"is a {suffix or 'file without an extension'}, which is not indexed; upload one of "
                              f"{', '.join(sorted(loaders.SUPPORTED_SUFFIXES))}")
    if size > settings.max_file_mb * 1024 * 1024:
        raise LoadError(name, f"is {size / 1024 / 1024:.0f} MB, over the {settings.max_file_mb} MB limit; "
                              "split it, or raise RAG_MAX_FILE_MB")


def add_upload(source: Path, name: str, settings: Settings) -> Path:
    """Copy an uploaded file into the library under a safe, unused name and return where it went.

    The same bytes uploaded again return the copy already there, so nothing is indexed twice; a
    different file with a taken name gets "name-2.pdf". The copy appears whole or not at all.
    """
    check_upload(name, source.stat().st_size, settings)
    library = settings.library_dir
    library.mkdir(parents=True, exist_ok=True)
    digest = _sha256(source)
    wanted = Path(safe_name(name))
    partial = library / f".upload-{uuid.uuid4().hex}.part"
    try:
        with open(source, "rb") as src, open(partial, "xb") as out:
            while block := src.read(1 << 20):
                out.write(block)
            out.flush()
            os.fsync(out.fileno())
        for n in range(1, 10_000):
            target = library / (wanted.name if n == 1 else f"{wanted.stem}-{n}{wanted.suffix}")
            if target.exists():
                if target.is_file() and _sha256(target) == digest:
                    return target
                continue
            try:
                os.link(partial, target)  # fails if the name was taken meanwhile: never overwrites
            except FileExistsError:
                continue
            return target
        raise LoadError(name, "has too many namesakes in the library; rename it and upload again")
    finally:
        partial.unlink(missing_ok=True)


def in_library(path: str | Path, settings: Settings) -> bool:
    library = settings.library_dir.resolve()
    return Path(path).resolve().parent == library


@dataclass(frozen=True)
class Entry:
    """One indexed document as the library shows it."""

    path: str
    name: str
    pages: int | None
    chunks: int
    size: int
    ingested_at: float
    uploaded: bool


def entries(settings: Settings) -> list[Entry]:
    """Every indexed document, by name; an index not built yet is an empty library."""
    try:
        documents = store.choose(settings).load().documents
    except RagError:
        return []
    return sorted((Entry(d.path, Path(d.path).name, d.pages, d.chunks, d.size, d.ingested_at, in_library(d.path, settings))
                   for d in documents), key=lambda e: (e.name.lower(), e.path))


def remove_document(path: str, settings: Settings) -> list[str]:
    """Take one document out of the index; an uploaded copy in the library is deleted too, the user's own files never."""
    gone, _ = indexing.remove([Path(path)], settings)
    if path in gone and in_library(path, settings):
        Path(path).unlink(missing_ok=True)
    return gone


@dataclass(frozen=True)
class FileStatus:
    name: str
    path: str
    state: str  # waiting, reading, embedding, indexed, unchanged, failed
    detail: str = ""


def ingest_with_progress(files: Sequence[Path], settings: Settings, embedder: Embedder,
                         interval: float = 0.3) -> Iterator[list[FileStatus]]:
    """Ingest these library files, yielding every file's state as it moves along, then the outcome of each."""
    paths = [str(Path(f)) for f in files]
    state = {p: "waiting" for p in paths}
    outcome: dict[str, object] = {}

    def progress(event: indexing.Progress) -> None:
        for p in paths[: event.files_done]:
            if state[p] in ("waiting", "reading"):
                state[p] = "embedding"
        if event.current in state and state[event.current] == "waiting":
            state[event.current] = "reading"

    def work() -> None:
        try:
            outcome["report"] = indexing.ingest([Path(p) for p in paths], settings, embedder, progress,
                                                on_wait=lambda: outcome.setdefault("waiting", True))
        except RagError as exc:
            outcome["error"] = str(exc)
        except Exception as exc:  # noqa: BLE001 - shown to the user beside the files, not lost in a log
            outcome["error"] = f"the ingest stopped unexpectedly ({type(exc).__name__}: {exc})"

    worker = threading.Thread(target=work, name="library-ingest", daemon=True)
    worker.start()
    while worker.is_alive():
        worker.join(interval)
        note = "waiting for another ingest to finish" if outcome.get("waiting") else ""
        yield [FileStatus(Path(p).name, p, state[p], note if state[p] == "waiting" else "") for p in paths]
    yield _final(paths, outcome, settings)


def _final(paths: list[str], outcome: dict, settings: Settings) -> list[FileStatus]:
    if "error" in outcome:
        return [FileStatus(Path(p).name, p, "failed", str(outcome["error"])) for p in paths]
    report: indexing.IngestReport = outcome["report"]
    failed = {f.path: f.reason for f in report.failed}
    counts = {e.path: e for e in entries(settings)}
    statuses = []
    for p in paths:
        entry = counts.get(p)
        if p in failed:
            if in_library(p, settings):  # a copy that cannot be indexed is not kept: a rebuild would only fail again
                Path(p).unlink(missing_ok=True)
            statuses.append(FileStatus(Path(p).name, p, "failed", failed[p]))
        elif entry is None:
            statuses.append(FileStatus(Path(p).name, p, "failed", "was not indexed; see the ingest log"))
        else:
            pages = f", {entry.pages} pages" if entry.pages else ""
            state = "unchanged" if p in report.unchanged else "indexed"
            statuses.append(FileStatus(entry.name, p, state, f"{entry.chunks} chunks{pages}"))
    return statuses


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def age(seconds_since_epoch: float) -> str:
    """'just now', '5 min ago', '3 h ago' or the date, for the library list."""
    elapsed = time.time() - seconds_since_epoch
    if elapsed < 60:
        return "just now"
    if elapsed < 3600:
        return f"{elapsed // 60:.0f} min ago"
    if elapsed < 86400:
        return f"{elapsed // 3600:.0f} h ago"
    return time.strftime("%Y-%m-%d", time.localtime(seconds_since_epoch))

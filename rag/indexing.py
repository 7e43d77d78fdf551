"""Ingest files and folders into the index: read, chunk, embed, and write a new generation atomically.

Parsing runs in a worker thread a few files ahead of the embedder, so a folder takes about as long
as embedding its chunks. Every finished file goes to the journal at once, so a killed run resumes.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from rag import loaders, store
from rag.loaders import ocr as ocr_engine
from rag.chunking import Chunk, chunk_sections
from rag.config import Settings
from rag.embeddings import Embedder, follow
from rag.errors import LoadError, StoreError
from rag.journal import Journal

PREFETCH_FILES = 4


@dataclass(frozen=True)
class Progress:
    files_done: int
    files_total: int
    chunks_done: int
    current: str
    ocr_pages: int = 0  # scanned pages and images read by OCR so far


@dataclass(frozen=True)
class Failure:
    path: str
    reason: str


@dataclass(frozen=True)
class IngestReport:
    """What one ingest run did, for the summary line and for tests."""

    added: tuple[str, ...] = ()
    updated: tuple[str, ...] = ()
    unchanged: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    failed: tuple[Failure, ...] = ()
    skipped: tuple[str, ...] = ()  # files of a type we do not read
    resumed: int = 0  # files taken from an interrupted run's journal
    embedded: int = 0  # chunks embedded in this run (the rest reused stored vectors)
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    generation: str | None = None

    @property
    def usable(self) -> bool:
        """False when this run was given nothing it could index."""
        return bool(self.added or self.updated or self.unchanged or self.removed)

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.updated)} updated", f"{len(self.unchanged)} unchanged",
                 f"{len(self.removed)} removed", f"{len(self.failed)} failed"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (unsupported type)")
        if self.resumed:
            parts.append(f"{self.resumed} resumed from an interrupted run")
        return (f"{', '.join(parts)}; the index holds {self.documents} documents in {self.chunks} chunks "
                f"({self.embedded} chunks embedded, {self.seconds:.1f} s).")


@dataclass(frozen=True)
class _Prepared:
    """A file read and, when it needs (re)indexing, chunked, by the worker thread."""

    path: str
    status: str  # "unchanged", "journal", "new" or "failed"
    sha256: str = ""
    size: int = 0
    pages: int | None = None
    chunks: tuple[Chunk, ...] = ()
    reason: str = ""


@dataclass
class _State:
    """The index's documents while a run changes them, with the chunks and vectors of those it (re)writes."""

    documents: dict[str, store.Document] = field(default_factory=dict)
    chunks: dict[str, list[Chunk]] = field(default_factory=dict)  # documents put in this run only
    vectors: dict[str, np.ndarray] = field(default_factory=dict)
    dim: int | None = None  # of the stored vectors; None before the first ingest
    stored: Callable[[str], tuple[list[Chunk], np.ndarray]] | None = None  # a committed document's chunks and vectors

    def put(self, document: store.Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        self.documents[document.path] = document
        self.chunks[document.path] = list(chunks)
        self.vectors[document.path] = vectors

    def drop(self, path: str) -> None:
        for table in (self.documents, self.chunks, self.vectors):
            table.pop(path, None)

    def previous(self, path: str) -> tuple[Sequence[Chunk], Sequence[np.ndarray]]:
        """What the document held before this version: put earlier in this run, else as committed."""
        if path in self.chunks:
            return self.chunks[path], self.vectors[path]
        if path in self.documents and self.stored is not None:
            return self.stored(path)
        return (), ()

    def puts(self) -> dict[str, tuple[store.Document, list[Chunk], np.ndarray]]:
        return {path: (self.documents[path], self.chunks[path], self.vectors[path]) for path in self.chunks}


def find_files(paths: Iterable[Path]) -> tuple[list[Path], list[Path], list[Failure], list[Path]]:
    """Expand files and folders into (supported files, skipped files, failures, folders given).

    Folders are walked recursively without following links to folders (so a link loop cannot trap
    the walk); hidden entries are skipped; a file reached twice through links is indexed once.
    """
    found: dict[Path, None] = {}
    skipped: list[Path] = []
    failures: list[Failure] = []
    roots: list[Path] = []
    for given in paths:
        path = Path(given).expanduser().absolute()
        if path.is_dir():
            roots.append(path.resolve())
            for folder, dirs, names in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if not name.startswith("."):
                        _classify(Path(folder) / name, found, skipped, failures)
        elif path.is_symlink() or path.exists():
            _classify(path, found, skipped, failures, explicit=True)
        else:
            failures.append(Failure(str(path), "no such file or folder; check the path"))
    return list(found), skipped, failures, roots


def _classify(path: Path, found: dict[Path, None], skipped: list[Path], failures: list[Failure],
              explicit: bool = False) -> None:
    if not loaders.is_supported(path):
        if explicit:
            failures.append(Failure(str(path), f"unsupported file type {path.suffix or '(none)'}; "
                                               f"supported: {', '.join(sorted(loaders.SUPPORTED_SUFFIXES))}"))
        else:
            skipped.append(path)
        return
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        loop = isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == 40
        failures.append(Failure(str(path), "is a symbolic link that loops back on itself; fix or remove the link" if loop
                                else "is a link to a file that does not exist; fix or remove the link"))
        return
    if target.is_file():
        found[target] = None
    elif explicit:
        failures.append(Failure(str(path), "is not a regular file"))


def ingest(paths: Sequence[Path], settings: Settings, embedder: Embedder,
           progress: Callable[[Progress], None] | None = None, on_wait: Callable[[], None] | None = None,
           fresh: bool = False) -> IngestReport:
    """Add new files, replace changed ones, drop files gone from the folders given, keep the rest.

    fresh=True ignores what the index holds (a rebuild of a damaged one): the new generation holds
    only `paths`, and replaces the old one when it is complete, not before.
    """
    started = time.perf_counter()
    files, skipped, failures, roots = find_files(paths)
    backend = store.choose(settings)
    with backend.lock(on_wait=on_wait):
        old_embedder, dim, documents = (None, None, {}) if fresh else backend.manifest()
        embedder = follow(embedder, old_embedder)  # new chunks are made the way the index's vectors were (int8 or not)
        if old_embedder is not None and old_embedder != embedder.name:
            raise StoreError(
                f"The index in {backend.describe()} was built with the embedder {old_embedder!r}, not {embedder.name!r}; "
                "use that embedder, or ingest into a new --index folder.")
        state = _State(dict(documents), dim=dim or embedder.dim, stored=backend.stored)
        journal = Journal(settings.index_dir)
        try:
            known = {path: doc.sha256 for path, doc in state.documents.items()}
            outcome = _run(files, settings, embedder, state, journal, known, progress)
            failures += outcome.failures
            seen = {str(f) for f in files}
            removed = [p for p in list(state.documents) if p not in seen and _under(p, roots)]
            for path in removed:
                state.drop(path)
            generation = backend.generation()
            if outcome.added or outcome.updated or removed or generation is None:
                generation = backend.commit(state.puts(), removed, embedder.name, state.dim, fresh=fresh)
            journal.clear()
        finally:
            journal.close()
    return IngestReport(tuple(outcome.added), tuple(outcome.updated), tuple(outcome.unchanged), tuple(removed),
                        tuple(failures), tuple(map(str, skipped)), outcome.resumed, outcome.embedded,
                        len(state.documents), sum(d.chunks for d in state.documents.values()),
                        time.perf_counter() - started, generation)


def remove(paths: Sequence[Path], settings: Settings) -> tuple[list[str], str | None]:
    """Remove documents (a file, or every file under a folder) from the index; returns what went."""
    targets = [Path(p).expanduser().absolute() for p in paths]
    targets += [t.resolve() for t in targets if t.exists()]
    backend = store.choose(settings)
    with backend.lock():
        embedder_name, dim, documents = backend.manifest()
        if embedder_name is None:
            raise StoreError(f"No index in {backend.describe()}; there is nothing to remove.")
        gone = [p for p in documents if any(p == str(t) or _under(p, [t]) for t in targets)]
        generation = backend.commit({}, gone, embedder_name, dim or 0) if gone else backend.generation()
    return gone, generation


def _under(path: str, roots: Sequence[Path]) -> bool:
    return any(path.startswith(str(root).rstrip(os.sep) + os.sep) for root in roots)


@dataclass
class _Outcome:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    resumed: int = 0
    embedded: int = 0


def _run(files: list[Path], settings: Settings, embedder: Embedder, state: _State, journal: Journal,
         known: dict[str, str], progress: Callable[[Progress], None] | None) -> _Outcome:
    outcome = _Outcome()
    journaled = journal.keys()
    batch: list[_Prepared] = []
    done = chunks_done = ocr_pages = 0
    reading = ""  # the file the parse thread is on

    def report(current: str) -> None:
        if progress:
            progress(Progress(done, len(files), chunks_done, current, ocr_pages))

    def page_read() -> None:  # called from the parse thread; a long scan moves the bar page by page
        nonlocal ocr_pages
        ocr_pages += 1
        report(reading)

    def starting(path: str) -> None:
        nonlocal reading
        reading = path

    ocr = loaders.OcrRun(settings.ocr, ocr_engine.choose(settings.ocr), settings.ocr_dpi, page_read)

    def record(path: str) -> None:
        (outcome.updated if path in known else outcome.added).append(path)

    def flush() -> None:
        nonlocal chunks_done
        for prepared, vectors in zip(batch, _embed_batch(batch, embedder, state, outcome)):
            document = store.Document(prepared.path, prepared.sha256, prepared.size, prepared.pages,
                                      len(prepared.chunks), time.time())
            journal.put(document, prepared.chunks, vectors)
            state.put(document, prepared.chunks, vectors)
            record(prepared.path)
            chunks_done += len(prepared.chunks)
        batch.clear()

    report(str(files[0]) if files else "")
    for prepared in _prepared_in_order(files, settings, embedder, known, journaled, ocr, starting):
        if prepared.status == "failed":
            outcome.failures.append(Failure(prepared.path, prepared.reason))
        elif prepared.status == "unchanged":
            outcome.unchanged.append(prepared.path)
        elif prepared.status == "journal":
            saved = journal.get(prepared.path, prepared.sha256, state.dim)
            if saved is None:  # unusable entry: this file is simply done again on the next run
                outcome.failures.append(Failure(prepared.path, "its saved work could not be reused; run the ingest again"))
            else:
                state.put(*saved)
                record(prepared.path)
                outcome.resumed += 1
        else:
            batch.append(prepared)
            # Big batches embed fastest (sentence-transformers sorts a batch by length, so it pads little).
            if sum(len(p.chunks) for p in batch) >= settings.embed_batch:
                flush()
        done += 1
        report(prepared.path)
    flush()
    report("")
    return outcome


def _prepared_in_order(files: list[Path], settings: Settings, embedder: Embedder, known: dict[str, str],
                       journaled: set[tuple[str, str]], ocr: loaders.OcrRun,
                       starting: Callable[[str], None]) -> Iterator[_Prepared]:
    """Read and chunk files in a worker thread, a few ahead, yielding them in order."""
    def prepare(path: Path) -> _Prepared:
        starting(str(path))
        return _prepare(path, settings, embedder, known, journaled, ocr)

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="parse") as pool:
        pending: deque[Future[_Prepared]] = deque()
        queue = iter(files)
        for path in queue:
            pending.append(pool.submit(prepare, path))
            if len(pending) >= PREFETCH_FILES:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _prepare(path: Path, settings: Settings, embedder: Embedder, known: dict[str, str],
             journaled: set[tuple[str, str]], ocr: loaders.OcrRun = loaders.OcrRun()) -> _Prepared:
    key = str(path)
    max_bytes = settings.max_file_mb * 1024 * 1024
    try:
        data = loaders.read_limited(path, max_bytes)
        digest = hashlib.sha256(data).hexdigest()
        if known.get(key) == digest:
            return _Prepared(key, "unchanged", digest, len(data))
        if (key, digest) in journaled:
            return _Prepared(key, "journal", digest, len(data))
        sections = loaders.load(path, data, max_bytes=max_bytes, max_pages=settings.max_pages, ocr=ocr)
        chunks = chunk_sections(sections, embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap)
    except LoadError as exc:
        return _Prepared(key, "failed", reason=exc.reason)
    except (RecursionError, MemoryError, ValueError, UnicodeError) as exc:  # a hostile file must not stop the folder
        return _Prepared(key, "failed", reason=f"could not be parsed ({type(exc).__name__}: {exc}); check the file")
    pages = max((s.page for s in sections if s.page is not None), default=None)
    return _Prepared(key, "new", digest, len(data), pages, tuple(chunks))


def _embed_batch(batch: list[_Prepared], embedder: Embedder, state: _State, outcome: _Outcome) -> list[np.ndarray]:
    """Vectors for each prepared file; chunks whose text the old version had keep their stored vectors."""
    reuse: dict[str, np.ndarray] = {}
    for prepared in batch:
        for chunk, vector in zip(*state.previous(prepared.path)):
            reuse[chunk.indexed_text] = vector
    texts = list(dict.fromkeys(c.indexed_text for p in batch for c in p.chunks if c.indexed_text not in reuse))
    if texts:
        reuse.update(zip(texts, embedder.embed(texts)))
        outcome.embedded += len(texts)
    return [np.vstack([reuse[c.indexed_text] for c in p.chunks]).astype(np.float32) if p.chunks
            else np.zeros((0, state.dim), dtype=np.float32) for p in batch]

"""Ingest files and folders into the index: load, chunk, embed, write a new generation atomically."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from rag import loaders, store
from rag.chunking import Chunk, chunk_sections
from rag.config import Settings
from rag.embeddings import Embedder
from rag.errors import LoadError, StoreError

Progress = Callable[[int, int, str], None]  # (done, total, current path)


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
    failed: tuple[Failure, ...] = ()
    skipped: tuple[str, ...] = ()  # files of a type we do not read
    documents: int = 0
    chunks: int = 0
    seconds: float = 0.0
    generation: str | None = None

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.updated)} updated", f"{len(self.unchanged)} unchanged",
                 f"{len(self.failed)} failed"]
        if self.skipped:
            parts.append(f"{len(self.skipped)} skipped (unsupported type)")
        return (f"{', '.join(parts)}; the index holds {self.documents} documents in {self.chunks} chunks "
                f"({self.seconds:.1f} s).")


@dataclass
class _Work:
    documents: dict[str, store.Document] = field(default_factory=dict)
    chunks: dict[str, list[Chunk]] = field(default_factory=dict)
    vectors: dict[str, np.ndarray] = field(default_factory=dict)


def find_files(paths: Iterable[Path]) -> tuple[list[Path], list[Path], list[Failure]]:
    """Expand files and folders (recursively, skipping hidden entries) into supported files, sorted."""
    found: dict[Path, None] = {}
    skipped: list[Path] = []
    missing: list[Failure] = []
    for path in paths:
        path = Path(path).expanduser()
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                if any(part.startswith(".") for part in child.relative_to(path).parts) or not child.is_file():
                    continue
                if loaders.is_supported(child):
                    found[child.resolve()] = None
                else:
                    skipped.append(child)
        elif path.is_file():
            if loaders.is_supported(path):
                found[path.resolve()] = None
            else:
                missing.append(Failure(str(path), f"unsupported file type {path.suffix or '(none)'}; "
                                                  f"supported: {', '.join(sorted(loaders.SUPPORTED_SUFFIXES))}"))
        else:
            missing.append(Failure(str(path), "no such file or folder; check the path"))
    return list(found), skipped, missing


def ingest(paths: Sequence[Path], settings: Settings, embedder: Embedder, progress: Progress | None = None) -> IngestReport:
    """Add new files, replace changed ones, keep unchanged ones without re-reading them."""
    started = time.perf_counter()
    files, skipped, failures = find_files(paths)
    with store.writer_lock(settings.index_dir):
        work, old_embedder = _load_existing(settings.index_dir)
        if old_embedder is not None and old_embedder != embedder.name:
            raise StoreError(
                f"The index in {settings.index_dir} was built with the embedder {old_embedder!r}, not {embedder.name!r}; "
                "use that embedder, or ingest into a new --index folder."
            )
        added, updated, unchanged = [], [], []
        for done, path in enumerate(files):
            if progress:
                progress(done, len(files), str(path))
            key = str(path)
            try:
                data = path.read_bytes()
            except OSError as exc:
                failures.append(Failure(key, f"cannot be read ({exc.strerror or exc}); check its permissions"))
                continue
            digest = hashlib.sha256(data).hexdigest()
            old = work.documents.get(key)
            if old is not None and old.sha256 == digest:
                unchanged.append(key)
                continue
            try:
                sections = loaders.load(path)
            except LoadError as exc:
                failures.append(Failure(key, exc.reason))
                continue
            chunks = chunk_sections(sections, embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap)
            work.vectors[key] = embedder.embed([c.indexed_text for c in chunks])
            work.chunks[key] = chunks
            pages = max((s.page for s in sections if s.page is not None), default=None)
            work.documents[key] = store.Document(key, digest, len(data), pages, len(chunks), time.time())
            (updated if old is not None else added).append(key)
        if progress:
            progress(len(files), len(files), "")
        generation = store.current_generation(settings.index_dir)
        if added or updated or generation is None:
            generation = _write(settings.index_dir, work, embedder)
    return IngestReport(tuple(added), tuple(updated), tuple(unchanged), tuple(failures), tuple(map(str, skipped)),
                        len(work.documents), sum(len(c) for c in work.chunks.values()),
                        time.perf_counter() - started, generation)


def _load_existing(index_dir: Path) -> tuple[_Work, str | None]:
    work = _Work()
    if store.current_generation(index_dir) is None:
        return work, None
    snapshot = store.load(index_dir)
    ids_by_path: dict[str, list[int]] = {}
    for chunk_id, chunk in enumerate(snapshot.chunks):
        ids_by_path.setdefault(chunk.path, []).append(chunk_id)
    for document in snapshot.documents:
        ids = ids_by_path.get(document.path, [])
        work.documents[document.path] = document
        work.chunks[document.path] = [snapshot.chunks[i] for i in ids]
        work.vectors[document.path] = snapshot.vectors_of(ids)
    return work, snapshot.embedder


def _write(index_dir: Path, work: _Work, embedder: Embedder) -> str:
    order = sorted(work.documents)
    chunks = [c for path in order for c in work.chunks[path]]
    parts = [work.vectors[path] for path in order if len(work.vectors[path])]
    vectors = np.vstack(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)
    return store.write(index_dir, [work.documents[p] for p in order], chunks, vectors, embedder.name)

"""The on-disk index: SQLite for documents and chunks, FAISS's own format for vectors, no pickle.

Layout of an index folder:

    CURRENT            names the generation in force ("gen-000007")
    gen-000007/        one complete, immutable snapshot
        chunks.sqlite  documents and chunks (text and metadata)
        dense.faiss    inner-product FAISS index; row i is chunk id i
        bm25.npz       BM25 postings of the chunks (rag.bm25.Postings: plain arrays, no pickle); older
                       generations have none, and their BM25 is built from the chunk texts at load
        meta.json      format version, the embedder that made the vectors, the analyzer of the postings,
                       SHA-256 of the other files
    LOCK               held by the one ingest that may write

A writer builds a new generation folder beside the old one and then replaces CURRENT with
os.replace, which is atomic, so a reader always finds either the old or the new snapshot whole.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import sqlite3
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from rag.bm25 import ANALYZER, Postings
from rag.chunking import Chunk
from rag.errors import StoreError

FORMAT_VERSION = 1
_SCHEMA = """
CREATE TABLE documents (path TEXT PRIMARY KEY, sha256 TEXT NOT NULL, size INTEGER NOT NULL,
                        pages INTEGER, chunks INTEGER NOT NULL, ingested_at REAL NOT NULL);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, path TEXT NOT NULL REFERENCES documents(path),
                     ordinal INTEGER NOT NULL, page INTEGER, heading TEXT NOT NULL, text TEXT NOT NULL,
                     place TEXT NOT NULL DEFAULT '', part TEXT NOT NULL DEFAULT '');
"""


@dataclass(frozen=True)
class Document:
    """One indexed file, as it was when ingested."""

    path: str
    sha256: str
    size: int
    pages: int | None
    chunks: int
    ingested_at: float


@dataclass(frozen=True)
class Snapshot:
    """One generation of the index, loaded whole into memory. Chunk id i is row i of `vectors`."""

    generation: str
    documents: tuple[Document, ...]
    chunks: tuple[Chunk, ...]
    vectors: "object"  # a faiss.Index; typed loosely so importing this module does not import faiss
    embedder: str
    dim: int
    # The stored BM25 postings of the chunks; None for a generation written without them (build them from the texts).
    postings: Postings | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.vectors.ntotal != len(self.chunks):
            raise StoreError(
                f"Index generation {self.generation} is inconsistent ({self.vectors.ntotal} vectors for "
                f"{len(self.chunks)} chunks); rebuild it with `python ingest.py --index DIR PATH...` into a new folder."
            )

    def all_vectors(self) -> np.ndarray:
        """Every stored vector, row i for chunk id i (reused when documents are unchanged)."""
        if not len(self.chunks):
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.vectors.reconstruct_n(0, len(self.chunks)).astype(np.float32)

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        """The stored vectors of these chunk ids, in order (reused when a document is unchanged)."""
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self.vectors.reconstruct(int(i)) for i in ids]).astype(np.float32)


def current_generation(index_dir: Path) -> str | None:
    """The generation CURRENT names, or None when the folder holds no index yet."""
    try:
        name = (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreError(f"Cannot read {index_dir / 'CURRENT'} ({exc.strerror}); check the folder's permissions.") from None
    return name or None


def load(index_dir: Path) -> Snapshot:
    """Load the generation in force. Raises StoreError with what to do when there is none."""
    import faiss

    for attempt in range(3):
        generation = current_generation(index_dir)
        if generation is None:
            raise StoreError(
                f"No index in {index_dir}; build one with `python ingest.py PATH... --index {index_dir}` "
                "(or set RAG_INDEX to the folder that holds it)."
            )
        folder = index_dir / generation
        try:
            meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT_VERSION:
                raise StoreError(f"Index {folder} has format {meta.get('format')}, this version reads {FORMAT_VERSION}; re-ingest into a new folder.")
            _check_digests(folder, meta.get("sha256") or {})
            documents, chunks = _read_sqlite(folder / "chunks.sqlite")
            vectors = faiss.read_index(str(folder / "dense.faiss"))
            if vectors.ntotal != len(chunks):
                raise StoreError(f"Index {folder} is damaged ({vectors.ntotal} vectors for {len(chunks)} chunks); {rebuild_hint(index_dir)}")
            postings = _read_postings(folder, meta, len(chunks))
        except FileNotFoundError:
            if current_generation(index_dir) != generation and attempt < 2:
                continue  # a writer replaced the generation while we read it; read the new one
            raise StoreError(f"Index generation {folder} is missing files; {rebuild_hint(index_dir)}") from None
        except (sqlite3.DatabaseError, json.JSONDecodeError, RuntimeError, KeyError, ValueError) as exc:
            raise StoreError(f"Index {folder} is damaged ({exc}); {rebuild_hint(index_dir)}") from None
        return Snapshot(generation, documents, chunks, vectors, meta["embedder"], int(meta["dim"]), postings)
    raise StoreError(f"Index in {index_dir} kept changing while loading; try again when the ingest has finished.")  # pragma: no cover


def write(index_dir: Path, documents: Sequence[Document], chunks: Sequence[Chunk], vectors: np.ndarray, embedder: str,
          postings: Postings | None = None) -> str:
    """Write a new generation and make it current atomically. Returns its name.

    `postings` are the chunks' BM25 postings when the caller kept them (LocalStore.commit); else they are counted here.
    """
    import faiss

    if vectors.ndim != 2 or len(chunks) != len(vectors):
        raise ValueError(f"{len(chunks)} chunks need a ({len(chunks)}, dim) array of vectors, got shape {vectors.shape}")
    if postings is None:
        postings = Postings.of_texts([c.indexed_text for c in chunks])
    if postings.size != len(chunks):
        raise ValueError(f"{len(chunks)} chunks need postings of as many documents, got {postings.size}")
    index_dir.mkdir(parents=True, exist_ok=True)
    previous = current_generation(index_dir)
    generation = _next_generation(index_dir)
    staging = index_dir / f"{generation}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        _write_sqlite(staging / "chunks.sqlite", documents, chunks)
        dim = int(vectors.shape[1])
        flat = faiss.IndexFlatIP(dim)
        if len(vectors):
            flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
        faiss.write_index(flat, str(staging / "dense.faiss"))
        postings.save(staging / POSTINGS)
        meta = {"format": FORMAT_VERSION, "embedder": embedder, "dim": dim, "chunks": len(chunks), "created": time.time(),
                "analyzer": ANALYZER}
        for name in DIGESTED:
            _fsync(staging / name)
        meta["sha256"] = {name: _sha256(staging / name) for name in DIGESTED}
        (staging / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
        _fsync(staging / "meta.json")
        os.replace(staging, index_dir / generation)
        _fsync_dir(index_dir)
        pointer = index_dir / "CURRENT.tmp"
        pointer.write_text(generation + "\n", encoding="utf-8")
        _fsync(pointer)
        os.replace(pointer, index_dir / "CURRENT")
        _fsync_dir(index_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove_old_generations(index_dir, keep={generation, previous})
    return generation


@contextlib.contextmanager
def writer_lock(index_dir: Path, wait: bool = True, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the index's write lock: a second ingest waits (or, with wait=False, is told why it cannot run)."""
    index_dir.mkdir(parents=True, exist_ok=True)
    with open(index_dir / "LOCK", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                raise StoreError(f"Another ingest is writing {index_dir}; wait for it to finish and run this one again.") from None
            if on_wait:
                on_wait()
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


POSTINGS = "bm25.npz"
DIGESTED = ("chunks.sqlite", "dense.faiss", POSTINGS)


def rebuild_hint(index_dir: Path) -> str:
    return (f"rebuild it with `python ingest.py --rebuild --index {index_dir}` (it re-reads the documents the index "
            "recorded and the library folder; add folders to include more)")


def _sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check_digests(folder: Path, digests: dict[str, str]) -> None:
    """A flipped byte or a truncated file is caught here, before anything is served from it.

    A file that meta.json has no digest for is not checked: older generations have no bm25.npz.
    """
    for name in DIGESTED:
        expected = digests.get(name)
        if expected is not None and _sha256(folder / name) != expected:
            raise ValueError(f"{name} does not match the checksum written with it")


def _read_postings(folder: Path, meta: dict, chunks: int) -> Postings | None:
    """The generation's BM25 postings, or None when it has none or another analyzer made them (built from texts then)."""
    if POSTINGS not in (meta.get("sha256") or {}) or meta.get("analyzer") != ANALYZER:
        return None
    try:
        postings = Postings.load(folder / POSTINGS)
    except (zipfile.BadZipFile, KeyError, EOFError) as exc:
        raise ValueError(f"{POSTINGS} cannot be read ({exc})") from None
    except ValueError as exc:
        raise ValueError(f"{POSTINGS} is not valid ({exc})") from None
    if postings.size != chunks:
        raise ValueError(f"{POSTINGS} has postings of {postings.size} chunks, the database {chunks}")
    return postings


def recorded_paths(index_dir: Path) -> list[str]:
    """The document paths the generation in force recorded, read even when the rest of it is damaged."""
    generation = current_generation(index_dir)
    if generation is None:
        return []
    try:
        con = sqlite3.connect(f"file:{index_dir / generation / 'chunks.sqlite'}?mode=ro", uri=True)
        try:
            return [row[0] for row in con.execute("SELECT path FROM documents ORDER BY path")]
        finally:
            con.close()
    except sqlite3.Error:
        return []


def _read_sqlite(path: Path) -> tuple[tuple[Document, ...], tuple[Chunk, ...]]:
    if not path.is_file():
        raise FileNotFoundError(path)
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        documents = tuple(Document(*row) for row in con.execute(
            "SELECT path, sha256, size, pages, chunks, ingested_at FROM documents ORDER BY path"))
        columns = {row[1] for row in con.execute("PRAGMA table_info(chunks)")}
        # Generations written before slides, sheets and attachments have no place or part: they are ''.
        extra = "place, part" if "place" in columns else "'', ''"
        rows = con.execute(f"SELECT id, path, ordinal, page, heading, text, {extra} FROM chunks ORDER BY id").fetchall()
    finally:
        con.close()
    chunks = []
    for expected, (chunk_id, doc, ordinal, page, heading, text, where, part) in enumerate(rows):
        if chunk_id != expected:
            raise sqlite3.DatabaseError(f"chunk ids are not contiguous at {expected}")
        chunks.append(Chunk(doc, text, ordinal, page, heading, where, part))
    return documents, tuple(chunks)


def _write_sqlite(path: Path, documents: Sequence[Document], chunks: Sequence[Chunk]) -> None:
    con = sqlite3.connect(path)
    try:
        con.executescript(_SCHEMA)
        con.executemany("INSERT INTO documents VALUES (?, ?, ?, ?, ?, ?)",
                        [(d.path, d.sha256, d.size, d.pages, d.chunks, d.ingested_at) for d in documents])
        con.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [(i, c.path, c.ordinal, c.page, c.heading, c.text, c.where, c.part) for i, c in enumerate(chunks)])
        con.commit()
    finally:
        con.close()


def _next_generation(index_dir: Path) -> str:
    numbers = [int(p.name[4:10]) for p in index_dir.glob("gen-*") if p.name[4:10].isdigit()]
    return f"gen-{max(numbers, default=0) + 1:06d}"


def _remove_old_generations(index_dir: Path, keep: set[str | None]) -> None:
    # The previous generation stays one round, for a reader that opened it just before the switch.
    for folder in index_dir.glob("gen-*"):
        if folder.name not in keep:
            shutil.rmtree(folder, ignore_errors=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        _fsync(path)


class LocalStore:
    """The default backend: this module's SQLite + FAISS generations in settings.index_dir, loaded whole for search.

    An ingest reads the generation in force once (manifest), reuses its vectors (stored) and writes
    the complete next generation (commit); unchanged documents are copied from the loaded one.
    """

    name = "local"

    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        self._snapshot: Snapshot | None = None
        self._ids: dict[str, list[int]] = {}

    def describe(self) -> str:
        return str(self.index_dir)

    def lock(self, wait: bool = True, on_wait: Callable[[], None] | None = None) -> contextlib.AbstractContextManager[None]:
        return writer_lock(self.index_dir, wait=wait, on_wait=on_wait)

    def generation(self) -> str | None:
        return current_generation(self.index_dir)

    def drop(self) -> None:
        """Nothing beyond the index folder, which the caller deletes with the library."""

    def load(self) -> Snapshot:
        return load(self.index_dir)

    def recorded_paths(self) -> list[str]:
        return recorded_paths(self.index_dir)

    def manifest(self) -> tuple[str | None, int | None, dict[str, Document]]:
        if current_generation(self.index_dir) is None:
            self._snapshot, self._ids = None, {}
            return None, None, {}
        self._snapshot = load(self.index_dir)
        self._ids = {}
        for chunk_id, chunk in enumerate(self._snapshot.chunks):
            self._ids.setdefault(chunk.path, []).append(chunk_id)
        return self._snapshot.embedder, self._snapshot.dim, {d.path: d for d in self._snapshot.documents}

    def stored(self, path: str) -> tuple[list[Chunk], np.ndarray]:
        ids = self._ids.get(path, []) if self._snapshot is not None else []
        if not ids:
            return [], np.zeros((0, self._snapshot.dim if self._snapshot else 0), dtype=np.float32)
        return [self._snapshot.chunks[i] for i in ids], self._snapshot.vectors_of(ids)

    def commit(self, put: dict[str, tuple[Document, Sequence[Chunk], np.ndarray]], removed: Sequence[str],
               embedder: str, dim: int, fresh: bool = False) -> str:
        """Write the next generation: the loaded one's documents, less `removed`, with `put` added or replaced."""
        old = self._snapshot if not fresh else None
        every = old.all_vectors() if old is not None else np.zeros((0, dim), dtype=np.float32)
        documents = {d.path: d for d in old.documents} if old is not None else {}
        for path in removed:
            documents.pop(path, None)
        documents.update({path: entry[0] for path, entry in put.items()})
        chunks: list[Chunk] = []
        parts: list[np.ndarray] = []
        origin: list[int] = []  # per new chunk: its id in the loaded generation, or -1 when it is new
        for path in sorted(documents):
            if path in put:
                chunks += put[path][1]
                parts.append(np.asarray(put[path][2], dtype=np.float32).reshape(-1, dim))
                origin += [-1] * len(put[path][1])
            else:
                ids = self._ids.get(path, [])
                chunks += [old.chunks[i] for i in ids]
                parts.append(every[ids])
                origin += ids
        vectors = np.vstack(parts) if parts else np.zeros((0, dim), dtype=np.float32)
        postings = _postings(chunks, origin, old.postings) if old is not None and old.postings is not None else None
        generation = write(self.index_dir, [documents[p] for p in sorted(documents)], chunks, vectors, embedder, postings)
        self._snapshot, self._ids = None, {}
        return generation


def _postings(chunks: Sequence[Chunk], origin: Sequence[int], loaded: Postings) -> Postings:
    """The BM25 postings of `chunks`: those of unchanged chunks (origin[i], their id in `loaded`) are kept, only
    the new ones (origin[i] == -1) are analysed."""
    origin = np.asarray(origin, dtype=np.int64)
    new = np.flatnonzero(origin < 0)
    place = np.full(loaded.size, -1, dtype=np.int64)
    place[origin[origin >= 0]] = np.flatnonzero(origin >= 0)
    counted = Postings.of_texts([chunks[i].indexed_text for i in new])
    return Postings.merge([(loaded, place), (counted, new)])

"""Work an unfinished ingest already did: each file's chunks and vectors, committed one file at a time.

An ingest writes every file it finishes here before it writes the new index generation. If the run
is killed, the index on disk is still the old generation, and the next run takes finished files
from the journal instead of parsing and embedding them again. The journal is emptied once a
generation that holds its files is in force. Vectors are stored as raw float32 bytes, not pickled.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.chunking import Chunk
from rag.store import Document

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (path TEXT NOT NULL, sha256 TEXT NOT NULL, size INTEGER NOT NULL, pages INTEGER,
                                  ingested_at REAL NOT NULL, PRIMARY KEY (path, sha256));
CREATE TABLE IF NOT EXISTS chunks (path TEXT NOT NULL, sha256 TEXT NOT NULL, ordinal INTEGER NOT NULL, page INTEGER,
                                   heading TEXT NOT NULL, text TEXT NOT NULL, place TEXT NOT NULL,
                                   part TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (path, sha256, ordinal));
"""


class Journal:
    """One SQLite file beside the index; each put() is one transaction, so a kill loses at most one file."""

    def __init__(self, index_dir: Path) -> None:
        self.path = index_dir / "journal.sqlite"
        try:
            self._con = self._open()
        except sqlite3.DatabaseError:
            # Only a cache of finished work: if it is damaged, start it again rather than fail the ingest.
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._con = self._open()

    def _open(self) -> sqlite3.Connection:
        con = sqlite3.connect(self.path, isolation_level=None)
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.executescript(_SCHEMA)
        con.execute("SELECT count(*) FROM files").fetchone()
        if "place" not in {row[1] for row in con.execute("PRAGMA table_info(chunks)")}:
            raise sqlite3.DatabaseError("a journal from an earlier version")  # redone from the files
        return con

    def keys(self) -> set[tuple[str, str]]:
        return set(self._con.execute("SELECT path, sha256 FROM files"))

    def put(self, document: Document, chunks: Sequence[Chunk], vectors: np.ndarray) -> None:
        rows = [(document.path, document.sha256, c.ordinal, c.page, c.heading, c.text, c.where, c.part,
                 np.asarray(v, dtype=np.float32).tobytes()) for c, v in zip(chunks, vectors)]
        with self._con:
            self._con.execute("BEGIN")
            self._con.execute("DELETE FROM chunks WHERE path = ? AND sha256 = ?", (document.path, document.sha256))
            self._con.execute("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)",
                              (document.path, document.sha256, document.size, document.pages, document.ingested_at))
            self._con.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    def get(self, path: str, sha256: str, dim: int) -> tuple[Document, list[Chunk], np.ndarray] | None:
        row = self._con.execute("SELECT size, pages, ingested_at FROM files WHERE path = ? AND sha256 = ?",
                                (path, sha256)).fetchone()
        if row is None:
            return None
        found = self._con.execute("SELECT ordinal, page, heading, text, place, part, vector FROM chunks WHERE path = ? AND sha256 = ? "
                                  "ORDER BY ordinal", (path, sha256)).fetchall()
        if any(len(blob) != dim * 4 for *_, blob in found):
            return None  # made with another embedder: do the work again
        chunks = [Chunk(path, text, ordinal, page, heading, where, part) for ordinal, page, heading, text, where, part, _ in found]
        vectors = (np.vstack([np.frombuffer(blob, dtype=np.float32) for *_, blob in found]) if found
                   else np.zeros((0, dim), dtype=np.float32))
        return Document(path, sha256, row[0], row[1], len(chunks), row[2]), chunks, vectors

    def clear(self) -> None:
        with self._con:
            self._con.execute("BEGIN")
            self._con.execute("DELETE FROM chunks")
            self._con.execute("DELETE FROM files")

    def close(self) -> None:
        self._con.close()

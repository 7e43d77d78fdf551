"""The index behind one small interface: the local SQLite + FAISS store (the default) or Milvus.

An ingest talks to a `Store`: it reads the manifest (which file, with which SHA-256, is indexed),
reuses the stored chunks and vectors of a changed file, and commits a batch of added, replaced and
removed documents as one new generation, all or nothing. Retrieval talks to a `View`: one
committed generation, searched by dense vector and by BM25 keywords, with path filters.

`choose(settings)` picks the backend: Milvus when settings.milvus_uri is set (or settings.store
says so), else the local one. Everything the local store always offered (`store.load`,
`store.write`, `store.Document`, `store.writer_lock`, ...) is still importable from here.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Callable, Protocol, Sequence

import numpy as np

from rag.chunking import Chunk
from rag.errors import ConfigError
from rag.store.local import (DIGESTED, FORMAT_VERSION, Document, LocalStore, Snapshot, current_generation, load,
                             rebuild_hint, recorded_paths, write, writer_lock)

if TYPE_CHECKING:  # pragma: no cover
    from rag.config import Settings

__all__ = ["BACKENDS", "DIGESTED", "FORMAT_VERSION", "Document", "LocalStore", "Snapshot", "Store", "View", "choose",
           "current_generation", "load", "rebuild_hint", "recorded_paths", "write", "writer_lock"]

BACKENDS = ("local", "milvus")


class View(Protocol):
    """One committed generation as retrieval reads it. Chunk ids are stable while a document is unchanged.

    The local Snapshot is searched in memory by rag.retrieve.Retriever (FAISS and our BM25); a
    remote view answers dense and keyword top-n itself (rag.retrieve.ViewRetriever).
    """

    generation: str
    documents: tuple[Document, ...]
    chunks: Sequence[Chunk]  # chunk id -> chunk; len() is the number of chunks
    embedder: str
    dim: int

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray: ...


class Store(Protocol):
    """What ingest and retrieval need from an index backend."""

    name: str

    def describe(self) -> str:
        """Where the index is, for messages ("/home/me/index", "milvus http://host:19530, collection docs")."""

    def lock(self, wait: bool = True, on_wait: Callable[[], None] | None = None) -> contextlib.AbstractContextManager[None]:
        """Held by the one ingest that may write."""

    def generation(self) -> str | None:
        """The committed generation, or None when nothing was ever committed."""

    def drop(self) -> None:
        """Delete what the index keeps outside its folder (Milvus collections), for a library being deleted."""

    def load(self) -> View:
        """The committed generation, for search; StoreError says what to do when there is none."""

    def recorded_paths(self) -> list[str]:
        """The documents the index recorded, read even when the rest of it is damaged (for --rebuild)."""

    def manifest(self) -> tuple[str | None, int | None, dict[str, Document]]:
        """(embedder, vector dimension, documents by path) of the committed generation; (None, None, {}) when empty."""

    def stored(self, path: str) -> tuple[list[Chunk], np.ndarray]:
        """A document's chunks and vectors as the manifest() just read found them (vectors of unchanged text are reused)."""

    def commit(self, put: dict[str, tuple[Document, Sequence[Chunk], np.ndarray]], removed: Sequence[str],
               embedder: str, dim: int, fresh: bool = False) -> str:
        """Add or replace the `put` documents and drop `removed` ones as one new generation; fresh=True drops all others."""


def choose(settings: "Settings") -> Store:
    """The backend the settings ask for: Milvus when a URI is set (or store="milvus"), else the local index folder."""
    name = settings.store or ("milvus" if settings.milvus_uri else "local")
    if name == "local":
        return LocalStore(settings.index_dir)
    if name == "milvus":
        if not settings.milvus_uri:
            raise ConfigError("The milvus store needs a URI: give --milvus URI or set RAG_MILVUS_URI "
                              "(a file path for Milvus Lite, http://host:19530 for a Milvus server).")
        from rag.store.milvus import MilvusStore

        return MilvusStore(settings.milvus_uri, settings.milvus_token, settings.milvus_collection, settings.index_dir,
                           settings.bm25_k1, settings.bm25_b)
    raise ConfigError(f"Unknown store backend {name!r}; the valid backends are {' and '.join(BACKENDS)} "
                      "(set RAG_STORE to one of them, or leave it empty).")

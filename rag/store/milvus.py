"""The index in Milvus through pymilvus's MilvusClient: a Milvus Lite file (PATH.db) or a server (http://host:19530).

Three collections per index, named after settings.milvus_collection (NAME):

    NAME            one row per chunk: the dense vector, text, terms (our analyzer's output), the sparse
                    BM25 vector Milvus makes from terms, path, folders (every folder above the file,
                    for --in), page, heading, place, part, ordinal, sha256, doc and generation
    NAME_documents  one row per document version (doc): path, sha256, size, pages, chunks, ingested_at
    NAME_manifest   a few rows (serial, committed generation, retired versions, embedder, dim)

BM25 runs in Milvus (its BM25 function over `terms`, a `standard` tokenizer), but `terms` holds the
text already analysed by rag.bm25.analyze (stemmed, stopwords dropped, joined by spaces), so the
words matched are the local index's on every Milvus version; fusion is rag.retrieve.fuse.

Generations: how a query never sees half of an ingest.
    Every row carries the generation G that wrote it and the document version `doc` it belongs
    to (a hash of path and G). The newest manifest row names the committed generation C and the
    versions R retired by the last commit whose rows may still exist. A row is visible iff
    generation <= C and doc not in R. An ingest (one at a time, under the lock) writes its new
    and changed documents with G = C + 1, invisible until the commit: one inserted manifest row
    (C = G, R = the old versions of changed and removed documents). A single row is inserted
    whole or not at all, so a query sees all of the old state or all of the new one. Only then are
    the retired rows deleted, and a last manifest row says R = {}. A kill at any moment leaves
    either rows of an uncommitted G (invisible; the next ingest deletes generation > C first) or
    retired rows still listed in R (invisible; deleted by the next ingest).
    A reader that read the manifest just before a commit could have its old rows deleted while
    it searches: ViewRetriever reads the committed generation again after each search and, if it
    moved, searches again on the new one (a sequence lock). Deletions only ever remove rows that
    are invisible in the newest committed generation, so a search that saw the same C before and
    after ran entirely on complete rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from rag.bm25 import analyze
from rag.chunking import Chunk
from rag.errors import ConfigError, StoreError
from rag.store.local import Document, writer_lock

VARCHAR = 65535  # Milvus's longest VARCHAR, in bytes
SHORT = 4096
BATCH = 256  # rows per insert request
_CHUNK_FIELDS = ["path", "text", "ordinal", "page", "heading", "place", "part"]
_clients: dict[tuple[str, str], Any] = {}
_clients_lock = threading.Lock()
_without_text_match: set[str] = set()  # servers that refused TEXT_MATCH
_loaded: set[tuple[str, str]] = set()  # (uri, collection) known to be loaded for search in this process


def client(uri: str, token: str = "") -> Any:
    """One MilvusClient per URI and token in this process (Milvus Lite allows one process per file)."""
    from pymilvus import MilvusClient

    logging.getLogger("pymilvus").setLevel(logging.ERROR)  # query_iterator warns about client-side timestamps
    with _clients_lock:
        if (uri, token) not in _clients:
            try:
                _clients[(uri, token)] = MilvusClient(uri=uri, token=token)
            except Exception as exc:  # noqa: BLE001 - pymilvus raises several kinds; the user needs one sentence
                raise StoreError(f"Cannot reach Milvus at {uri} ({_reason(exc)}); start it, or check --milvus / "
                                 "RAG_MILVUS_URI and RAG_MILVUS_TOKEN.") from None
        return _clients[(uri, token)]


def _reason(exc: Exception) -> str:
    return getattr(exc, "message", None) or str(exc).splitlines()[0][:300]


def _literal(value: str) -> str:
    """A Milvus filter string literal."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _list(values: Sequence[str]) -> str:
    return "[" + ", ".join(_literal(v) for v in values) + "]"


def _cut(text: str, limit: int = VARCHAR) -> str:
    """At most `limit` UTF-8 bytes, never inside a character."""
    data = text.encode("utf-8")
    return text if len(data) <= limit else data[:limit].decode("utf-8", "ignore")


def _folders(path: str) -> list[str]:
    """Every folder above a file, without the trailing slash ("" is the root), for --in filters."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))][-512:]


def _doc_id(path: str, generation: int) -> str:
    return hashlib.sha256(f"{path}\n{generation}".encode("utf-8")).hexdigest()[:32]


def _name(generation: int) -> str:
    return f"gen-{generation:06d}"


class MilvusStore:
    """The Store protocol on Milvus; the lock and the ingest journal stay in the local index folder."""

    name = "milvus"

    def __init__(self, uri: str, token: str, collection: str, index_dir: Path, k1: float = 1.2, b: float = 0.75) -> None:
        if not uri.startswith(("http://", "https://", "tcp://", "grpc://")) and not uri.endswith(".db"):
            raise ConfigError(f"--milvus {uri} is neither a server address (http://host:19530) nor a Milvus Lite "
                              "file (a path ending in .db); give one of them.")
        if not collection.replace("_", "a").isalnum() or not collection[0].isalpha():
            raise ConfigError(f"Milvus collection name {collection!r} must start with a letter and hold only letters, "
                              "digits and _; set RAG_MILVUS_COLLECTION to such a name.")
        if uri.endswith(".db"):
            Path(uri).expanduser().parent.mkdir(parents=True, exist_ok=True)
        self.uri, self.token, self.index_dir, self.k1, self.b = uri, token, index_dir, k1, b
        self.chunks_name, self.documents_name, self.manifest_name = collection, f"{collection}_documents", f"{collection}_manifest"
        self._versions: dict[str, str] = {}  # path -> doc of the committed version, read by manifest()

    @property
    def client(self) -> Any:
        return client(self.uri, self.token)

    def describe(self) -> str:
        return f"Milvus {self.uri}, collection {self.chunks_name}"

    def lock(self, wait: bool = True, on_wait: Callable[[], None] | None = None) -> contextlib.AbstractContextManager[None]:
        # One ingest at a time per index folder, as for the local store: run ingests into one Milvus from one machine.
        return writer_lock(self.index_dir, wait=wait, on_wait=on_wait)

    def drop(self) -> None:
        """Delete this index's collections (a library being deleted); held under lock() by the caller."""
        for name in (self.chunks_name, self.documents_name, self.manifest_name):
            if self._call("list its collections", self.client.has_collection, name):
                self._call("drop a collection", self.client.drop_collection, name)
            _loaded.discard((self.uri, name))

    # -- reading the manifest ---------------------------------------------------------------------------------

    def _call(self, what: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except (StoreError, ConfigError):
            raise
        except Exception as exc:  # noqa: BLE001
            raise StoreError(f"Milvus at {self.uri} could not {what} ({_reason(exc)}); check that it is running "
                             "and that --milvus / RAG_MILVUS_URI names it.") from None

    def _exists(self) -> bool:
        return bool(self._call("list its collections", self.client.has_collection, self.manifest_name))

    def _head(self) -> dict | None:
        """The newest manifest row, or None when this index was never committed."""
        if not self._exists():
            return None
        if (self.uri, self.manifest_name) not in _loaded:  # a Milvus Lite file opens with its collections released
            self._call("load its collections", self._load_collections)
        rows = self._call("read the manifest", self.client.query, self.manifest_name, filter="serial >= 0",
                          output_fields=["serial", "committed", "retired", "embedder", "dim"], limit=1000)
        if not rows:
            return None
        return max(rows, key=lambda r: r["serial"])

    def generation(self) -> str | None:
        head = self._head()
        return _name(head["committed"]) if head else None

    def _visible(self, head: dict) -> str:
        retired = json.loads(head["retired"])
        return f"generation <= {int(head['committed'])}" + (f" and doc not in {_list(retired)}" if retired else "")

    def _iterate(self, collection: str, expr: str, fields: list[str]) -> Iterator[dict]:
        iterator = self._call("read its rows", self.client.query_iterator, collection, batch_size=1000, filter=expr,
                              output_fields=fields)
        try:
            while batch := self._call("read its rows", iterator.next):
                yield from batch
        finally:
            iterator.close()

    def _documents(self, head: dict) -> list[tuple[str, Document]]:
        rows = self._iterate(self.documents_name, self._visible(head),
                             ["doc", "path", "sha256", "size", "pages", "chunks", "ingested_at"])
        found = [(r["doc"], Document(r["path"], r["sha256"], int(r["size"]), None if r["pages"] < 0 else int(r["pages"]),
                                     int(r["chunks"]), float(r["ingested_at"]))) for r in rows]
        return sorted(found, key=lambda item: item[1].path)

    def load(self) -> "MilvusView":
        head = self._head()
        if head is None:
            raise StoreError(f"No index in Milvus collection {self.chunks_name} at {self.uri}; build one with "
                             f"`python ingest.py PATH... --milvus {self.uri}`.")
        self._call("load its collections", self._load_collections)
        return MilvusView(self, head, tuple(d for _, d in self._documents(head)))

    def recorded_paths(self) -> list[str]:
        head = self._head()
        return [d.path for _, d in self._documents(head)] if head else []

    def manifest(self) -> tuple[str | None, int | None, dict[str, Document]]:
        head = self._head()
        if head is None:
            self._versions = {}
            return None, None, {}
        self._call("load its collections", self._load_collections)
        head = self._recover(head)
        found = self._documents(head)
        self._versions = {d.path: doc for doc, d in found}
        return head["embedder"], int(head["dim"]), {d.path: d for _, d in found}

    def stored(self, path: str) -> tuple[list[Chunk], np.ndarray]:
        doc = self._versions.get(path)
        if doc is None:
            return [], np.zeros((0, 0), dtype=np.float32)
        rows = sorted(self._iterate(self.chunks_name, f"doc == {_literal(doc)}", _CHUNK_FIELDS + ["vector"]),
                      key=lambda r: r["ordinal"])
        chunks = [_chunk(r) for r in rows]
        vectors = np.array([r["vector"] for r in rows], dtype=np.float32)
        return chunks, vectors.reshape(len(rows), -1)

    # -- writing ----------------------------------------------------------------------------------------------

    def commit(self, put: dict[str, tuple[Document, Sequence[Chunk], np.ndarray]], removed: Sequence[str],
               embedder: str, dim: int, fresh: bool = False) -> str:
        """Write `put` as generation C + 1, then switch to it with one manifest row, then delete what it retired."""
        self._call("create the index's collections", self._create, dim)
        head = self._recover(self._head())
        committed = int(head["committed"]) if head else 0
        serial = int(head["serial"]) if head else 0
        current = {d.path: doc for doc, d in self._documents(head)} if head else {}
        generation = committed + 1
        rows, documents, next_id = [], [], generation << 32
        for path in sorted(put):
            document, chunks, vectors = put[path]
            doc = _doc_id(path, generation)
            documents.append({"doc": doc, "path": _cut(path, SHORT), "sha256": document.sha256, "size": document.size,
                              "pages": -1 if document.pages is None else document.pages, "chunks": len(chunks),
                              "ingested_at": document.ingested_at, "generation": generation, "dummy": [0.0, 0.0]})
            for chunk, vector in zip(chunks, np.asarray(vectors, dtype=np.float32).reshape(len(chunks), -1)):
                rows.append(self._row(next_id, chunk, vector, doc, document.sha256, generation))
                next_id += 1
                if len(rows) >= BATCH:
                    self._call("store chunks", self.client.insert, self.chunks_name, rows)
                    rows = []
        if rows:
            self._call("store chunks", self.client.insert, self.chunks_name, rows)
        for start in range(0, len(documents), BATCH):
            self._call("store documents", self.client.insert, self.documents_name, documents[start:start + BATCH])
        retired = sorted(set(current.values()) if fresh else {current[p] for p in [*put, *removed] if p in current})
        # The switch: one row, inserted whole or not at all.
        self._manifest_row(serial + 1, generation, retired, embedder, dim)
        if retired:
            self._delete(f"doc in {_list(retired)}")
        self._manifest_row(serial + 2, generation, [], embedder, dim)
        self._call("tidy the manifest", self.client.delete, self.manifest_name, filter=f"serial < {serial + 2}")
        self._versions = {}
        return _name(generation)

    def _recover(self, head: dict | None) -> dict | None:
        """Delete what a killed ingest left (rows of a generation never committed, rows retired but not yet
        deleted); both are invisible already. Called under the writer lock. Returns the manifest head in force."""
        committed = int(head["committed"]) if head else 0
        if self.client.has_collection(self.chunks_name):
            self._delete(f"generation > {committed}")
        leftover = json.loads(head["retired"]) if head else []
        if leftover:
            self._delete(f"doc in {_list(leftover)}")
            self._manifest_row(int(head["serial"]) + 1, committed, [], head["embedder"], int(head["dim"]))
            head = self._head()
        return head

    def _row(self, chunk_id: int, chunk: Chunk, vector: np.ndarray, doc: str, sha256: str, generation: int) -> dict:
        return {"id": chunk_id, "vector": vector.tolist(), "text": _cut(chunk.text),
                "terms": _cut(" ".join(analyze(chunk.indexed_text))), "path": _cut(chunk.path, SHORT),
                "folders": [_cut(f, SHORT) for f in _folders(chunk.path)], "page": -1 if chunk.page is None else chunk.page,
                "heading": _cut(chunk.heading), "place": _cut(chunk.where, SHORT), "part": _cut(chunk.part, SHORT),
                "ordinal": chunk.ordinal, "sha256": sha256, "doc": doc, "generation": generation}

    def _manifest_row(self, serial: int, committed: int, retired: list[str], embedder: str, dim: int) -> None:
        self._call("commit the new generation", self.client.insert, self.manifest_name,
                   [{"serial": serial, "committed": committed, "retired": json.dumps(retired), "embedder": embedder,
                     "dim": dim, "dummy": [0.0, 0.0]}])

    def _delete(self, expr: str) -> None:
        for name in (self.chunks_name, self.documents_name):
            self._call("delete old rows", self.client.delete, name, filter=expr)

    def _create(self, dim: int) -> None:
        from pymilvus import DataType, Function, FunctionType, MilvusClient

        c = self.client
        if not c.has_collection(self.chunks_name):
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field("id", DataType.INT64, is_primary=True)
            schema.add_field("vector", DataType.FLOAT_VECTOR, dim=dim)
            schema.add_field("text", DataType.VARCHAR, max_length=VARCHAR)
            # Our analyzer's output; the standard tokenizer only splits it at the spaces we put there.
            schema.add_field("terms", DataType.VARCHAR, max_length=VARCHAR, enable_analyzer=True,
                             analyzer_params={"tokenizer": "standard"}, enable_match=True)
            schema.add_field("sparse", DataType.SPARSE_FLOAT_VECTOR)
            schema.add_field("path", DataType.VARCHAR, max_length=SHORT)
            schema.add_field("folders", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=512, max_length=SHORT)
            schema.add_field("page", DataType.INT64)
            schema.add_field("heading", DataType.VARCHAR, max_length=VARCHAR)
            schema.add_field("place", DataType.VARCHAR, max_length=SHORT)
            schema.add_field("part", DataType.VARCHAR, max_length=SHORT)
            schema.add_field("ordinal", DataType.INT64)
            schema.add_field("sha256", DataType.VARCHAR, max_length=64)
            schema.add_field("doc", DataType.VARCHAR, max_length=64)
            schema.add_field("generation", DataType.INT64)
            schema.add_function(Function(name="bm25", function_type=FunctionType.BM25, input_field_names=["terms"],
                                         output_field_names=["sparse"]))
            index = c.prepare_index_params()
            index.add_index("vector", index_type="AUTOINDEX", metric_type="IP")
            index.add_index("sparse", index_type="SPARSE_INVERTED_INDEX", metric_type="BM25",
                            params={"bm25_k1": self.k1, "bm25_b": self.b})
            c.create_collection(self.chunks_name, schema=schema, index_params=index, consistency_level="Strong")
        for name, fields in ((self.documents_name, [("doc", DataType.VARCHAR, {"max_length": 64, "is_primary": True}),
                                                    ("path", DataType.VARCHAR, {"max_length": SHORT}),
                                                    ("sha256", DataType.VARCHAR, {"max_length": 64}),
                                                    ("size", DataType.INT64, {}), ("pages", DataType.INT64, {}),
                                                    ("chunks", DataType.INT64, {}), ("ingested_at", DataType.DOUBLE, {}),
                                                    ("generation", DataType.INT64, {})]),
                             (self.manifest_name, [("serial", DataType.INT64, {"is_primary": True}),
                                                   ("committed", DataType.INT64, {}),
                                                   ("retired", DataType.VARCHAR, {"max_length": VARCHAR}),
                                                   ("embedder", DataType.VARCHAR, {"max_length": SHORT}),
                                                   ("dim", DataType.INT64, {})])):
            if c.has_collection(name):
                continue
            schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
            for field, kind, extra in fields:
                schema.add_field(field, kind, **extra)
            schema.add_field("dummy", DataType.FLOAT_VECTOR, dim=2)  # Milvus wants a vector field in every collection
            index = c.prepare_index_params()
            index.add_index("dummy", index_type="FLAT", metric_type="L2")
            c.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")
        self._load_collections()

    def _load_collections(self) -> None:
        for name in (self.chunks_name, self.documents_name, self.manifest_name):
            if (self.uri, name) not in _loaded and self.client.has_collection(name):
                state = self.client.get_load_state(name).get("state")
                if "Loaded" not in str(state):
                    self.client.load_collection(name)
                _loaded.add((self.uri, name))


def _chunk(row: dict) -> Chunk:
    return Chunk(row["path"], row["text"], int(row["ordinal"]), None if row["page"] < 0 else int(row["page"]),
                 row["heading"], row["place"], row["part"])


class _LazyChunks:
    """chunk id -> Chunk, fetched from Milvus when a search did not bring it already; len() counts every chunk."""

    def __init__(self, view: "MilvusView", size: int) -> None:
        self._view, self._size = view, size

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, chunk_id: int) -> Chunk:
        view = self._view
        if chunk_id not in view._chunks:
            rows = view.store._call("read a chunk", view.store.client.query, view.store.chunks_name,
                                    filter=f"id == {int(chunk_id)} and {view.visible}",
                                    output_fields=_CHUNK_FIELDS + ["vector"])
            if not rows:
                raise IndexError(chunk_id)
            view._remember(rows[0])
        return view._chunks[chunk_id]


class MilvusView:
    """One committed generation in Milvus, searched there: dense top-n, BM25 top-n, path filters."""

    def __init__(self, store: MilvusStore, head: dict, documents: tuple[Document, ...]) -> None:
        self.store, self.documents = store, documents
        self.generation = _name(int(head["committed"]))
        self.embedder, self.dim = head["embedder"], int(head["dim"])
        self.visible = store._visible(head)
        self._chunks: dict[int, Chunk] = {}
        self._vectors: dict[int, np.ndarray] = {}
        self._weights: dict[str, float | None] = {}
        self.chunks = _LazyChunks(self, sum(d.chunks for d in documents))

    def stale(self) -> bool:
        """Whether another generation was committed since this view was read (its rows may be going)."""
        return self.store.generation() != self.generation

    def reload(self) -> "MilvusView":
        return self.store.load()

    def _remember(self, row: dict) -> tuple[int, Chunk, np.ndarray]:
        chunk_id = int(row.get("id", 0))
        chunk, vector = _chunk(row), np.asarray(row["vector"], dtype=np.float32)
        if len(self._chunks) > 100_000:
            self._chunks.clear()
            self._vectors.clear()
        self._chunks[chunk_id], self._vectors[chunk_id] = chunk, vector
        return chunk_id, chunk, vector

    def _filter(self, within: Sequence[str] | None) -> str:
        if not within:
            return self.visible
        folders = sorted({str(p).rstrip("/") for p in within})
        return f"{self.visible} and (path in {_list(folders)} or array_contains_any(folders, {_list(folders)}))"

    def _search(self, what: str, data: Any, field: str, metric: str, n: int, within: Sequence[str] | None) -> list[dict]:
        found = self.store._call(what, self.store.client.search, self.store.chunks_name, data=[data], anns_field=field,
                                 limit=n, filter=self._filter(within), output_fields=_CHUNK_FIELDS + ["vector"],
                                 search_params={"metric_type": metric})
        return [{**hit["entity"], "id": hit["id"], "distance": hit["distance"]} for hit in found[0]]

    def dense(self, vector: np.ndarray, n: int, within: Sequence[str] | None = None) -> list[tuple[int, float]]:
        """The n chunks with the largest inner product (cosine: the vectors are unit length), best first."""
        hits = self._search("search by vector", np.asarray(vector, dtype=np.float32).tolist(), "vector", "IP", n, within)
        return [(self._remember(h)[0], float(h["distance"])) for h in hits]

    def keyword(self, terms: Sequence[str], n: int, within: Sequence[str] | None = None) -> list[tuple[int, float]]:
        """The n best BM25 matches for analysed terms, best first, with scores above zero.

        Milvus returns them best first; Milvus Lite 3.x reports the score negated, so its magnitude is the score.
        """
        if not terms:
            return []
        hits = self._search("search by keywords", " ".join(terms), "sparse", "BM25", n, within)
        return [(self._remember(h)[0], abs(float(h["distance"]))) for h in hits if h["distance"]]

    def vectors_of(self, ids: Sequence[int]) -> np.ndarray:
        missing = [int(i) for i in ids if int(i) not in self._vectors]
        if missing:
            rows = self.store._call("read vectors", self.store.client.query, self.store.chunks_name,
                                    filter=f"id in {missing} and {self.visible}", output_fields=_CHUNK_FIELDS + ["vector"])
            for row in rows:
                self._remember(row)
        if not len(ids):
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.vstack([self._vectors[int(i)] for i in ids]).astype(np.float32)

    def term_weight(self, term: str) -> float | None:
        """BM25's IDF of an analysed term in this generation (Lucene's, as rag/bm25.py), or None when no chunk has it."""
        if term not in self._weights:
            df, n = self._document_frequency(term), len(self.chunks)
            self._weights[term] = math.log(1 + (n - df + 0.5) / (df + 0.5)) if df else None
        return self._weights[term]

    def _document_frequency(self, term: str) -> int:
        """Chunks holding the term: counted by TEXT_MATCH, or where that is refused (the engine in milvus-lite
        2.5.1), as BM25 matches of the term alone, at most 16,384 (Milvus's largest limit; IDF is small there anyway)."""
        if self.store.uri not in _without_text_match:
            try:
                rows = self.store._call("count a term", self.store.client.query, self.store.chunks_name,
                                        filter=f"TEXT_MATCH(terms, {_literal(term)}) and {self.visible}",
                                        output_fields=["count(*)"])
                return int(rows[0]["count(*)"]) if rows else 0
            except StoreError:
                _without_text_match.add(self.store.uri)
        found = self.store._call("count a term", self.store.client.search, self.store.chunks_name, data=[term],
                                 anns_field="sparse", limit=16384, filter=self.visible, output_fields=["ordinal"],
                                 search_params={"metric_type": "BM25"})
        return sum(1 for hit in found[0] if hit["distance"])


def wait_until_ready(uri: str, token: str = "", timeout: float = 60.0) -> None:
    """Block until a Milvus server answers (for tests and scripts that start one)."""
    from pymilvus import MilvusClient

    deadline = time.time() + timeout
    while True:
        try:
            MilvusClient(uri=uri, token=token, timeout=2).list_collections()
            return
        except Exception:  # noqa: BLE001
            if time.time() > deadline:
                raise StoreError(f"Milvus at {uri} did not answer within {timeout:.0f} s.") from None
            time.sleep(0.2)

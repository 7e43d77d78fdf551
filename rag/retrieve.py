"""Query -> candidates from FAISS (dense) and BM25 (keywords), fused, then reranked; with path filters."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import numpy as np

from rag.bm25 import BM25, Postings, analyze
from rag.chunking import Chunk
from rag.config import Settings
from rag.embeddings import Embedder
from rag.store import Snapshot


@dataclass(frozen=True)
class Query:
    """A question as every stage needs it: its text, its unit vector and its analysed terms."""

    text: str
    vector: np.ndarray
    terms: tuple[str, ...]


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with the score of the last stage that ranked it, and its raw stage scores."""

    chunk: Chunk
    chunk_id: int
    score: float
    dense: float = 0.0  # cosine similarity with the query
    keyword: float = 0.0  # BM25 score


class Reranker(Protocol):
    """Reorders fused candidates; returns them best first with new scores."""

    def rerank(self, query: Query, hits: Sequence[Hit]) -> list[Hit]: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder scores each (query, passage) pair."""

    def __init__(self, path: str) -> None:
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(path, device="cpu", local_files_only=True)

    def rerank(self, query: Query, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        scores = self._model.predict([(query.text, h.chunk.indexed_text) for h in hits], show_progress_bar=False)
        rescored = [replace(h, score=float(s)) for h, s in zip(hits, np.asarray(scores).reshape(-1))]
        return sorted(rescored, key=lambda h: (-h.score, h.chunk_id))


class FeedbackReranker:
    """Dense pseudo-relevance feedback, needing no extra model.

    Rocchio's method (1971) applied to embeddings: the query vector moves towards the mean vector
    of the `depth` best fused candidates, q' = q + weight * mean(top), and the candidates are fused
    again with their cosine to q' in place of their cosine to q. Passages phrased unlike the question
    but like its best answers rise.
    """

    def __init__(self, snapshot: Snapshot, settings: Settings, depth: int = 1, weight: float = 0.3) -> None:
        self.snapshot, self.settings, self.depth, self.weight = snapshot, settings, depth, weight

    def rerank(self, query: Query, hits: Sequence[Hit]) -> list[Hit]:
        if len(hits) <= 1:
            return list(hits)
        ids = [h.chunk_id for h in hits]
        vectors = self.snapshot.vectors_of(ids)
        moved = query.vector + self.weight * vectors[: self.depth].mean(axis=0)
        moved /= np.linalg.norm(moved) or 1.0
        return fuse(hits, self.settings, dense=vectors @ moved)


def choose_reranker(snapshot: Snapshot, settings: Settings, cross_encoder: Reranker | None = None) -> Reranker | None:
    """A configured cross-encoder always; else the feedback reranker when settings.rerank is on; else none."""
    if cross_encoder is not None:
        return cross_encoder
    return FeedbackReranker(snapshot, settings) if settings.rerank else None


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int) -> dict[int, float]:
    """RRF (Cormack, Clarke and Buettcher, SIGIR 2009): score(d) = sum over rankings of 1 / (k + rank(d)), rank from 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            fused[item] = fused.get(item, 0.0) + 1.0 / (k + rank)
    return fused


def fuse(hits: Sequence[Hit], settings: Settings, dense: np.ndarray | None = None) -> list[Hit]:
    """Order candidates by the configured fusion of their dense and keyword scores.

    `dense` replaces the hits' own cosines in the fusion (the hits keep theirs, for abstention).

    "rrf": reciprocal rank fusion of the two rankings with constant settings.rrf_k.
    "weighted": w * minmax(dense) + (1 - w) * minmax(keyword) over the candidates, w = settings.dense_weight
    (the convex combination studied by Bruch, Gai and Ingber, "An Analysis of Fusion Functions for
    Hybrid Retrieval", 2023).
    """
    if not hits:
        return []
    cosine = np.array([h.dense for h in hits]) if dense is None else np.asarray(dense)
    if settings.retrieval == "dense":
        scores = cosine.tolist()
    elif settings.retrieval == "bm25":
        scores = [h.keyword for h in hits]
    elif settings.fusion == "rrf":
        by_dense = sorted(range(len(hits)), key=lambda i: (-cosine[i], hits[i].chunk_id))
        by_keyword = sorted((i for i in range(len(hits)) if hits[i].keyword > 0), key=lambda i: (-hits[i].keyword, hits[i].chunk_id))
        fused = reciprocal_rank_fusion([by_dense, by_keyword], settings.rrf_k)
        scores = [fused.get(i, 0.0) for i in range(len(hits))]
    else:
        keyword = _minmax(np.array([h.keyword for h in hits]))
        scores = (settings.dense_weight * _minmax(cosine) + (1 - settings.dense_weight) * keyword).tolist()
    rescored = [replace(h, score=float(s)) for h, s in zip(hits, scores)]
    return sorted(rescored, key=lambda h: (-h.score, h.chunk_id))


def _minmax(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


class Retriever:
    """Hybrid search over one snapshot; build a new Retriever when the snapshot changes."""

    def __init__(self, snapshot: Snapshot, embedder: Embedder, settings: Settings, reranker: Reranker | None = None) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        # The generation's stored postings; a generation written without them is analysed here (seconds at 100k chunks).
        postings = snapshot.postings
        if postings is None:
            postings = Postings.of_texts([c.indexed_text for c in snapshot.chunks])
        self._bm25 = BM25(postings, settings.bm25_k1, settings.bm25_b)
        self._paths = np.array([c.path for c in snapshot.chunks], dtype=object)
        self._masks: dict[tuple[str, ...], np.ndarray] = {}

    def term_weight(self, term: str) -> float | None:
        """The BM25 IDF of an analysed term in this snapshot, or None when no chunk has it."""
        return self._bm25.weight(term)

    def query(self, text: str) -> Query:
        return Query(text, self.embedder.embed([text])[0], tuple(analyze(text)))

    def search(self, text: str, k: int | None = None, within: Sequence[str] | None = None) -> list[Hit]:
        """The k best chunks for `text`, best first; `within` keeps only these files or folders."""
        k = k or self.settings.top_k
        if not self.snapshot.chunks or not text.strip():
            return []
        allowed = self._mask(within) if within else None
        if allowed is not None and not allowed.any():
            return []
        query = self.query(text)
        n = min(max(self.settings.candidates, k), len(self.snapshot.chunks))
        ids = self._dense_ids(query.vector, n, allowed) if self.settings.retrieval != "bm25" else []
        if self.settings.retrieval != "dense":
            ids += [i for i, _ in self._bm25.top(query.terms, n, allowed)]
        ids = list(dict.fromkeys(ids))
        cosine = self.snapshot.vectors_of(ids) @ query.vector
        keyword = self._bm25.scores(query.terms)[ids] if query.terms else np.zeros(len(ids))
        hits = [Hit(self.snapshot.chunks[i], i, 0.0, float(c), float(b)) for i, c, b in zip(ids, cosine, keyword)]
        hits = fuse(hits, self.settings)
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return hits[:k]

    def _dense_ids(self, vector: np.ndarray, n: int, allowed: np.ndarray | None) -> list[int]:
        import faiss

        params = None
        if allowed is not None:
            params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(np.flatnonzero(allowed).astype(np.int64)))
        _, ids = self.snapshot.vectors.search(vector.reshape(1, -1), n, params=params)
        return [int(i) for i in ids[0] if i >= 0]

    def _mask(self, within: Sequence[str]) -> np.ndarray:
        """Chunks whose file is one of `within` or lies under one of them (cached per filter)."""
        key = tuple(sorted(str(p).rstrip("/") for p in within))
        if key not in self._masks:
            folders = tuple(p + "/" for p in key)
            self._masks[key] = np.array([p in key or p.startswith(folders) for p in self._paths], dtype=bool)
        return self._masks[key]


class ViewRetriever:
    """Hybrid search over a remote view (Milvus), which answers dense and BM25 top-n itself; fused here by `fuse`.

    A candidate found by one retriever only has 0 for the other's score (the local Retriever scores
    every candidate with both). After each search the committed generation is read again; if it moved,
    the view's rows may be being deleted, so the search is done again on the new view (rag/store/milvus.py).
    """

    def __init__(self, snapshot, embedder: Embedder, settings: Settings, reranker: Reranker | None = None) -> None:
        self.snapshot = snapshot
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker

    def term_weight(self, term: str) -> float | None:
        return self.snapshot.term_weight(term)

    def query(self, text: str) -> Query:
        return Query(text, self.embedder.embed([text])[0], tuple(analyze(text)))

    def search(self, text: str, k: int | None = None, within: Sequence[str] | None = None) -> list[Hit]:
        k = k or self.settings.top_k
        if not len(self.snapshot.chunks) or not text.strip():
            return []
        query = self.query(text)
        for _ in range(3):
            hits = self._search(query, k, within)
            if not self.snapshot.stale():
                break
            self.snapshot = self.snapshot.reload()
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return hits[:k]

    def _search(self, query: Query, k: int, within: Sequence[str] | None) -> list[Hit]:
        n = max(self.settings.candidates, k)
        dense = self.snapshot.dense(query.vector, n, within) if self.settings.retrieval != "bm25" else []
        keyword = dict(self.snapshot.keyword(query.terms, n, within)) if self.settings.retrieval != "dense" else {}
        ids = list(dict.fromkeys([i for i, _ in dense] + list(keyword)))
        if not ids:
            return []
        cosine = self.snapshot.vectors_of(ids) @ query.vector
        hits = [Hit(self.snapshot.chunks[i], i, 0.0, float(c), float(keyword.get(i, 0.0))) for i, c in zip(ids, cosine)]
        return fuse(hits, self.settings)


def retriever_for(snapshot, embedder: Embedder, settings: Settings, reranker: Reranker | None = None):
    """The in-memory Retriever for a local Snapshot; the ViewRetriever for a view that searches itself."""
    if isinstance(snapshot, Snapshot):
        return Retriever(snapshot, embedder, settings, reranker)
    return ViewRetriever(snapshot, embedder, settings, reranker)

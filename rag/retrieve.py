"""Query -> candidates from FAISS (dense) and BM25 (keywords), fused by reciprocal rank, then reranked."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Protocol, Sequence

import numpy as np

from rag.chunking import Chunk
from rag.config import Settings
from rag.embeddings import Embedder
from rag.store import Snapshot

# A short English stopword list: words that carry no topic and would otherwise dominate BM25 matches.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
""".split())
_WORD = re.compile(r"\w+", re.UNICODE)


def analyze(text: str) -> list[str]:
    """The BM25 analyzer, used identically at index and query time: lower-case Unicode words, no stopwords."""
    return [t for t in _WORD.findall(text.lower()) if t not in STOPWORDS]


@dataclass(frozen=True)
class Hit:
    """A retrieved chunk with its chunk id and the score of the last stage that ranked it."""

    chunk: Chunk
    chunk_id: int
    score: float
    dense: float = 0.0  # cosine similarity with the query, kept for later stages


class Reranker(Protocol):
    """Reorders fused candidates; returns them best first with new scores."""

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]: ...


class CrossEncoderReranker:
    """A sentence-transformers CrossEncoder from a local folder scores each (query, passage) pair."""

    def __init__(self, path: str) -> None:
        from sentence_transformers import CrossEncoder

        self._model = CrossEncoder(path, device="cpu", local_files_only=True)

    def rerank(self, query: str, hits: Sequence[Hit]) -> list[Hit]:
        if not hits:
            return []
        scores = self._model.predict([(query, h.chunk.indexed_text) for h in hits], show_progress_bar=False)
        rescored = [replace(h, score=float(s)) for h, s in zip(hits, np.asarray(scores).reshape(-1))]
        return sorted(rescored, key=lambda h: -h.score)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int) -> dict[int, float]:
    """RRF (Cormack, Clarke and Buettcher, SIGIR 2009): score(d) = sum over rankings of 1 / (k + rank(d)), rank from 1."""
    fused: dict[int, float] = {}
    for ranking in rankings:
        for rank, chunk_id in enumerate(ranking, start=1):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + 1.0 / (k + rank)
    return fused


class Retriever:
    """Hybrid search over one snapshot; build a new Retriever when the snapshot changes."""

    def __init__(self, snapshot: Snapshot, embedder: Embedder, settings: Settings, reranker: Reranker | None = None) -> None:
        from rank_bm25 import BM25Okapi

        self.snapshot = snapshot
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        corpus = [analyze(c.indexed_text) for c in snapshot.chunks]
        # BM25Okapi with rank-bm25's defaults k1=1.5, b=0.75 (Robertson and Zaragoza, 2009).
        self._bm25 = BM25Okapi(corpus) if corpus and any(corpus) else None

    def search(self, query: str, k: int | None = None) -> list[Hit]:
        """The k best chunks for `query`, best first."""
        k = k or self.settings.top_k
        if not self.snapshot.chunks or not query.strip():
            return []
        n = min(self.settings.candidates, len(self.snapshot.chunks))
        query_vector = self.embedder.embed([query])
        similarities, ids = self.snapshot.vectors.search(query_vector, n)
        dense_ranking = [int(i) for i in ids[0] if i >= 0]
        cosine = {int(i): float(s) for i, s in zip(ids[0], similarities[0]) if i >= 0}
        keyword_ranking = self._keyword_ranking(query, n)
        fused = reciprocal_rank_fusion([dense_ranking, keyword_ranking], self.settings.rrf_k)
        missing = [i for i in fused if i not in cosine]
        if missing:  # keyword-only candidates still get their cosine, for thresholds and display
            cosine.update(zip(missing, (self.snapshot.vectors_of(missing) @ query_vector[0]).tolist()))
        hits = [Hit(self.snapshot.chunks[i], i, score, cosine[i]) for i, score in fused.items()]
        hits.sort(key=lambda h: (-h.score, h.chunk_id))
        if self.reranker is not None:
            hits = self.reranker.rerank(query, hits)
        return hits[:k]

    def _keyword_ranking(self, query: str, n: int) -> list[int]:
        terms = analyze(query)
        if self._bm25 is None or not terms:
            return []
        scores = self._bm25.get_scores(terms)
        top = np.argsort(-scores, kind="stable")[:n]
        return [int(i) for i in top if scores[i] > 0]

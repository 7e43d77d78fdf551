"""The retrieval configurations bench/retrieval.py compares; DEFAULT is what Settings() gives."""

from __future__ import annotations

from typing import Callable

from rag.config import Settings
from rag.retrieve import FeedbackReranker, Retriever, choose_reranker


def _retriever(rerank: str | None = None, **changes) -> Callable:
    def build(snapshot, embedder, base: Settings) -> Retriever:
        settings = base.with_(candidates=300, rerank=False, **changes)
        reranker = None
        if rerank == "default":
            reranker = choose_reranker(snapshot, base)
        elif rerank and rerank.startswith("feedback"):
            depth, weight = rerank.split(":")[1:]
            reranker = FeedbackReranker(snapshot, settings, int(depth), float(weight))
        return Retriever(snapshot, embedder, settings, reranker)

    return build


CONFIGS: dict[str, Callable] = {
    "bm25": _retriever(retrieval="bm25"),
    "dense": _retriever(retrieval="dense"),
    "hybrid rrf k=60": _retriever(fusion="rrf", rrf_k=60),
    "hybrid rrf k=20": _retriever(fusion="rrf", rrf_k=20),
    "hybrid weighted w=0.3": _retriever(fusion="weighted", dense_weight=0.3),
    "hybrid weighted w=0.5": _retriever(fusion="weighted", dense_weight=0.5),
    "hybrid weighted w=0.7": _retriever(fusion="weighted", dense_weight=0.7),
    "hybrid w=0.55 k1=0.9 b=0.9": _retriever(dense_weight=0.55, bm25_k1=0.9, bm25_b=0.9),
    "hybrid rrf + feedback 1/0.3": _retriever(fusion="rrf", rerank="feedback:1:0.3"),
    "hybrid w=0.5 + feedback 1/0.3": _retriever(rerank="feedback:1:0.3"),
    "hybrid w=0.5 + feedback 3/0.5": _retriever(rerank="feedback:3:0.5"),
    "hybrid w=0.5 + feedback 5/0.5": _retriever(rerank="feedback:5:0.5"),
    "default (Settings())": _retriever(rerank="default"),
}
DEFAULT = "default (Settings())"

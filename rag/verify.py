"""Support checks: is each answer sentence backed by a sentence of the source it cites? And the evidence.

A sentence is supported when one of its cited passages holds a sentence close to it, by

    support(a, p) = 0.5 * cosine(a, p) + 0.5 * |terms(a) & terms(p)| / |terms(a)|

over the passage's sentences p (terms: the BM25 analyzer's stems). The threshold comes from
bench/verification.py. Evidence needs no language model: the passage sentences closest to the
question, each with the number of the source it comes from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from rag import citations
from rag.bm25 import analyze
from rag.embeddings import Embedder

SUPPORT_THRESHOLD = 0.64  # bench/verification.py: separates loose paraphrases from hard negatives on corpus/
_MARKERS_AFTER_STOP = re.compile(r"([.!?])\s*((?:\[\d+(?:\s*,\s*\d+)*\])+)")
_SENTENCE_GAP = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Support:
    """The passage sentence that best backs an answer sentence, in source n."""

    n: int
    sentence: str
    score: float


@dataclass(frozen=True)
class SentenceCheck:
    text: str
    citations: tuple[int, ...]
    supported: bool
    support: tuple[Support, ...] = ()  # one per cited source, best first
    corrected: bool = False  # the citation was added or changed to the passage that supports the sentence


@dataclass(frozen=True)
class Evidence:
    n: int
    sentence: str
    score: float


def sentences(text: str) -> list[str]:
    """Split prose into sentences; markers written after the full stop ("Fact. [1]") stay with their sentence."""
    text = _MARKERS_AFTER_STOP.sub(r" \2\1", text)
    pieces = (p.strip().strip("-*").strip() for p in _SENTENCE_GAP.split(text))
    return [p for p in pieces if analyze(citations.strip(p))]


def support_scores(claims: Sequence[str], passages: Sequence[str], embedder: Embedder,
                   cache: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """support(claim, passage sentence) for every pair, shape (len(claims), len(passages)).

    `cache` keeps passage sentence vectors between calls, so checking an answer and choosing its
    evidence embed each passage sentence once.
    """
    if not claims or not passages:
        return np.zeros((len(claims), len(passages)), dtype=np.float32)
    cache = {} if cache is None else cache
    missing = [p for p in dict.fromkeys(passages) if p not in cache]
    vectors = embedder.embed([citations.strip(c) for c in claims] + missing)
    cache.update(zip(missing, vectors[len(claims):]))
    cosine = vectors[: len(claims)] @ np.vstack([cache[p] for p in passages]).T
    claim_terms = [set(analyze(citations.strip(c))) for c in claims]
    passage_terms = [set(analyze(p)) for p in passages]
    overlap = np.array([[len(a & p) / len(a) if a else 0.0 for p in passage_terms] for a in claim_terms])
    return (0.5 * cosine + 0.5 * overlap).astype(np.float32)


def ground(answer: str, passages: dict[int, str], embedder: Embedder, threshold: float = SUPPORT_THRESHOLD,
           cache: dict[str, np.ndarray] | None = None) -> list[SentenceCheck]:
    """A verdict for each answer sentence; citations are made to point at the passage that supports it.

    A sentence whose cited passage backs it keeps its citation. One that cites nothing, or cites
    a passage that does not back it, is given the source that does when one does (corrected=True);
    otherwise it stays unsupported, with the citations it had.
    """
    claims = sentences(answer)
    pool = [(n, s) for n, text in passages.items() for s in sentences(text)]
    scores = support_scores(claims, [s for _, s in pool], embedder, cache)
    checks = []
    for row, claim in zip(scores, claims):
        cited = tuple(n for n in citations.parse(claim) if n in passages)
        found = sorted((_best(row, pool, n) for n in cited if any(m == n for m, _ in pool)), key=lambda s: -s.score)
        if found and found[0].score >= threshold:
            checks.append(SentenceCheck(claim, cited, True, tuple(found)))
            continue
        best = max(range(len(pool)), key=lambda j: row[j], default=None)
        if best is not None and row[best] >= threshold:
            n = pool[best][0]
            text = citations.append_marker(citations.strip(claim), n)
            checks.append(SentenceCheck(text, (n,), True, (_best(row, pool, n),), corrected=True))
        else:
            checks.append(SentenceCheck(claim, cited, False, tuple(found)))
    return checks


def _best(row: np.ndarray, pool: list[tuple[int, str]], n: int) -> Support:
    j = max((j for j, (m, _) in enumerate(pool) if m == n), key=lambda j: row[j])
    return Support(n, pool[j][1], round(float(row[j]), 4))


def evidence(question: str, passages: dict[int, str], embedder: Embedder, k: int = 3,
             cache: dict[str, np.ndarray] | None = None) -> list[Evidence]:
    """The k passage sentences that best answer the question, by the same support score."""
    pool = [(n, s) for n, text in passages.items() for s in sentences(text) if len(analyze(s)) >= 3]
    if not pool:
        return []
    row = support_scores([question], [s for _, s in pool], embedder, cache)[0]
    best = np.argsort(-row, kind="stable")[:k]
    return [Evidence(pool[i][0], pool[i][1], round(float(row[i]), 4)) for i in best]

"""BM25 keyword scoring: one analyzer for index and query time, and BM25 over an in-memory inverted index.

rank-bm25 scores a query with a Python loop over every document, which costs about 30 ms per
query term at 100,000 chunks; the same formula over an inverted index touches only the postings of
the query's terms. Scoring follows Robertson and Zaragoza, "The Probabilistic Relevance Framework:
BM25 and Beyond" (2009), with the IDF that Lucene uses (always positive):

    idf(t)      = ln(1 + (N - n_t + 0.5) / (n_t + 0.5))
    score(q, d) = sum over query tokens t of idf(t) * tf(t, d) * (k1 + 1) / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

`idf="okapi"` gives rank-bm25's BM25Okapi instead (ln((N - n + 0.5) / (n + 0.5)), with negative
values replaced by epsilon times the mean IDF); the tests use it to check the scorer against rank-bm25.

`Postings` holds the raw counts (tf, |d|) term by term; an index generation stores them, so loading it
builds BM25 with a few array operations instead of analysing every chunk again.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

# English stopwords: words that carry no topic and would otherwise dominate keyword matches.
STOPWORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being below between
both but by can could did do does doing down during each few for from further had has have having he her
here hers herself him himself his how i if in into is it its itself just me more most my myself no nor not
now of off on once only or other our ours ourselves out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until up very was we
were what when where which while who whom why will with would you your yours yourself yourselves
""".split())
_WORD = re.compile(r"\w+", re.UNICODE)
# Names what analyze() does; stored postings made by another analyzer are not used (rag/store/local.py).
ANALYZER = "words, lower case, English stopwords, Snowball English stems; 1"


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: the Snowball English (Porter 2) stemmer, in C

    return Stemmer.Stemmer("english")


def analyze(text: str) -> list[str]:
    """Lower-cased Unicode words, stopwords dropped, Snowball-stemmed; used at index and query time alike."""
    words = [w for w in _WORD.findall(text.lower()) if w not in STOPWORDS]
    return _stemmer().stemWords(words) if words else []


class Postings:
    """The term frequencies of a tokenised collection, term-major: all BM25 needs, without the texts.

    The documents that contain term vocabulary[t] are docs[starts[t]:starts[t + 1]] (ascending), tf[j] times
    each; lengths[d] is document d's length in tokens. An index generation stores these (rag/store/local.py)
    so that loading it does not analyse every chunk again; k1, b and the IDF are applied when BM25 is built.
    """

    def __init__(self, vocabulary: Sequence[str], starts: np.ndarray, docs: np.ndarray, tf: np.ndarray,
                 lengths: np.ndarray) -> None:
        self.vocabulary = tuple(vocabulary)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.docs = np.asarray(docs, dtype=np.int32)
        self.tf = np.asarray(tf, dtype=np.int32)
        self.lengths = np.asarray(lengths, dtype=np.int32)
        terms, pairs, size = len(self.vocabulary), len(self.docs), len(self.lengths)
        if self.starts.shape != (terms + 1,) or self.starts[0] != 0 or self.starts[-1] != pairs:
            raise ValueError(f"postings of {terms} terms need {terms + 1} starts from 0 to {pairs}, got {self.starts.shape[0]}")
        if self.tf.shape != (pairs,) or np.any(np.diff(self.starts) <= 0):
            raise ValueError(f"postings are inconsistent: {pairs} documents, {self.tf.shape[0]} counts, or a term with none")
        if pairs and (int(self.docs.min()) < 0 or int(self.docs.max()) >= size or int(self.tf.min()) < 1):
            raise ValueError(f"postings name documents outside 0..{size - 1} or counts below 1")

    @property
    def size(self) -> int:
        """The number of documents."""
        return len(self.lengths)

    def terms(self) -> np.ndarray:
        """The term id of every posting (postings are sorted by term)."""
        return np.repeat(np.arange(len(self.vocabulary), dtype=np.int64), np.diff(self.starts))

    @classmethod
    def of(cls, documents: Sequence[Sequence[str]]) -> "Postings":
        """Count the tokens of each document."""
        vocabulary: dict[str, int] = {}
        term_ids: list[int] = []
        lengths = np.array([len(tokens) for tokens in documents], dtype=np.int32)
        for tokens in documents:
            term_ids.extend([vocabulary.setdefault(token, len(vocabulary)) for token in tokens])
        size = max(len(documents), 1)
        doc_ids = np.repeat(np.arange(len(documents), dtype=np.int64), lengths)
        # Sorting term * size + doc orders the pairs by term, then document; the counts are the tfs.
        keys, tf = np.unique(np.asarray(term_ids, dtype=np.int64) * size + doc_ids, return_counts=True)
        terms, docs = np.divmod(keys, size)
        return cls(list(vocabulary), np.searchsorted(terms, np.arange(len(vocabulary) + 1)), docs, tf, lengths)

    @classmethod
    def of_texts(cls, texts: Sequence[str]) -> "Postings":
        """Postings.of([analyze(t) for t in texts]), the same counts in about half the time: each distinct word is
        looked up once (stopword or stem), and the rest is a dict lookup per word in C (map)."""
        stem = _stemmer().stemWord
        vocabulary: dict[str, int] = {}
        known: dict[str, int] = dict.fromkeys(STOPWORDS, -1)  # word -> term id; -1 for a stopword
        ids: list[int] = []
        words_in = np.zeros(len(texts), dtype=np.int64)
        for d, text in enumerate(texts):
            words = _WORD.findall(text.lower())
            for word in sorted(set(words).difference(known)):  # sorted: the same vocabulary order on every run
                known[word] = vocabulary.setdefault(stem(word), len(vocabulary))
            ids.extend(map(known.__getitem__, words))
            words_in[d] = len(words)
        terms = np.array(ids, dtype=np.int64)
        docs = np.repeat(np.arange(len(texts), dtype=np.int64), words_in)
        indexed = terms >= 0
        terms, docs = terms[indexed], docs[indexed]
        size = max(len(texts), 1)
        keys, tf = np.unique(terms * size + docs, return_counts=True)
        terms, docs = np.divmod(keys, size)
        return cls(list(vocabulary), np.searchsorted(terms, np.arange(len(vocabulary) + 1)), docs, tf,
                   np.bincount(docs, weights=tf, minlength=len(texts)))

    @classmethod
    def merge(cls, parts: Sequence[tuple["Postings", np.ndarray]]) -> "Postings":
        """One collection from parts (postings, place): document d of those postings becomes document place[d] of
        the result, or is left out where place[d] is -1. The places given must be 0, 1, ... n - 1, each once.

        An ingest keeps the postings of unchanged chunks this way, and counts only the new ones (Postings.of).
        """
        vocabulary: dict[str, int] = {}
        placed = []
        for postings, place in parts:
            place = np.asarray(place, dtype=np.int64)
            if place.shape != (postings.size,):
                raise ValueError(f"{postings.size} documents need as many places, got shape {place.shape}")
            ids = np.array([vocabulary.setdefault(t, len(vocabulary)) for t in postings.vocabulary], dtype=np.int64)
            moved = place.astype(np.int32)[postings.docs]  # int32 halves this array (fewer pages to touch)
            kept = moved >= 0
            dropped = np.searchsorted(postings.starts, np.flatnonzero(~kept), side="right") - 1  # their terms
            per_term = np.diff(postings.starts) - np.bincount(dropped, minlength=len(ids))  # kept postings per term
            placed.append((postings, place, ids, moved, kept, per_term))
        size = sum(int(np.count_nonzero(place >= 0)) for _, place, *_ in placed)
        counts = np.zeros(len(vocabulary), dtype=np.int64)
        lengths = np.full(size, -1, dtype=np.int64)
        for postings, place, ids, _, _, per_term in placed:
            counts[ids] += per_term
            if len(place) and int(place.max()) >= size:
                raise ValueError(f"the places must give each of 0..{size - 1} once, got {int(place.max())}")
            lengths[place[place >= 0]] = postings.lengths[place >= 0]
        if np.any(lengths < 0):
            raise ValueError(f"the places must give each of 0..{size - 1} once")
        used = counts > 0  # terms that no kept document has are dropped
        compact = np.cumsum(used) - 1
        total = int(counts.sum())
        keys = np.empty(total, dtype=np.int64)  # term * size + document: sorting them orders by term, then document
        docs = np.empty(total, dtype=np.int32)
        tf = np.empty(total, dtype=np.int32)
        at = 0
        for postings, _, ids, moved, kept, _ in placed:  # written in place: at 100k chunks each array is tens of MB
            n = int(np.count_nonzero(kept))
            keys[at:at + n] = np.repeat(compact[ids], np.diff(postings.starts))[kept]
            keys[at:at + n] *= max(size, 1)
            docs[at:at + n] = moved[kept]
            keys[at:at + n] += docs[at:at + n]
            tf[at:at + n] = postings.tf[kept]
            at += n
        order = np.argsort(keys, kind="stable")
        names = [term for term, i in vocabulary.items() if used[i]]
        starts = np.concatenate([[0], np.cumsum(counts[used])])
        return cls(names, starts, docs[order], tf[order], lengths)

    def save(self, path: Path) -> None:
        """Plain arrays in a .npz, read back without pickle; the vocabulary is UTF-8, each term ended by a newline."""
        text = "".join(term + "\n" for term in self.vocabulary)
        if text.count("\n") != len(self.vocabulary):
            raise ValueError("a term of the vocabulary holds a newline; analyze() never makes one")
        words = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
        with open(path, "wb") as handle:
            np.savez(handle, vocabulary=words, starts=self.starts, docs=self.docs, tf=self.tf, lengths=self.lengths)

    @classmethod
    def load(cls, path: Path) -> "Postings":
        """Read what save() wrote; ValueError when the file is not that."""
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in ("vocabulary", "starts", "docs", "tf", "lengths")}
        terms = arrays.pop("vocabulary").tobytes().decode("utf-8").split("\n")
        return cls(terms[:-1], **arrays)


class BM25:
    """BM25 over tokenised documents (or their Postings); scores come from the postings of the query's terms only."""

    def __init__(self, documents: "Sequence[Sequence[str]] | Postings", k1: float = 1.2, b: float = 0.75,
                 idf: str = "lucene", epsilon: float = 0.25) -> None:
        if k1 < 0 or not 0 <= b <= 1:
            raise ValueError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={k1}, b={b}")
        if idf not in ("lucene", "okapi"):
            raise ValueError(f"idf must be 'lucene' or 'okapi', got {idf!r}")
        postings = documents if isinstance(documents, Postings) else Postings.of(documents)
        self.size = postings.size
        self.vocabulary = {term: i for i, term in enumerate(postings.vocabulary)}
        terms, docs = postings.terms(), postings.docs
        tf = postings.tf.astype(np.float32)
        lengths = postings.lengths.astype(np.float32)
        avgdl = float(lengths.mean()) if self.size else 0.0
        norm = k1 * (1 - b + b * lengths[docs] / avgdl) if avgdl else np.full(len(docs), k1, dtype=np.float32)
        df = np.diff(postings.starts).astype(np.float64)
        idfs = self._idf(df, idf, epsilon)
        self._term_idf = idfs
        self._weights = (idfs[terms] * tf * (k1 + 1) / (tf + norm)).astype(np.float32)
        self._docs = docs
        self._starts = postings.starts

    def _idf(self, df: np.ndarray, kind: str, epsilon: float) -> np.ndarray:
        n = self.size
        if kind == "lucene":
            return np.log(1 + (n - df + 0.5) / (df + 0.5))
        raw = np.log(n - df + 0.5) - np.log(df + 0.5)
        floor = epsilon * raw.mean() if len(raw) else 0.0
        return np.where(raw < 0, floor, raw)

    def weight(self, term: str) -> float | None:
        """The IDF of an analysed term, or None when no document has it."""
        index = self.vocabulary.get(term)
        return None if index is None else float(self._term_idf[index])

    def scores(self, query: Sequence[str]) -> np.ndarray:
        """The score of every document for the query tokens (repeated tokens count again, as in rank-bm25)."""
        out = np.zeros(self.size, dtype=np.float32)
        for token in query:
            term = self.vocabulary.get(token)
            if term is not None:
                start, end = self._starts[term], self._starts[term + 1]
                out[self._docs[start:end]] += self._weights[start:end]
        return out

    def top(self, query: Sequence[str], n: int, allowed: np.ndarray | None = None) -> list[tuple[int, float]]:
        """The n best (document, score) pairs with a score above zero, best first; `allowed` masks documents."""
        scores = self.scores(query)
        if allowed is not None:
            scores = np.where(allowed, scores, 0.0)
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > n:
            candidates = candidates[np.argpartition(-scores[candidates], n - 1)[:n]]
        order = candidates[np.lexsort((candidates, -scores[candidates]))]
        return [(int(i), float(scores[i])) for i in order]

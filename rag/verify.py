"""Support checks: is each answer sentence backed by a sentence of the source it cites, about what was asked?

A sentence is supported when one of its cited passages holds a sentence close to it, by

    support(a, p) = 0.5 * cosine(a, p) + 0.5 * |terms(a) & terms(p)| / |terms(a)|

over the passage's sentences p (terms: the BM25 analyzer's stems), and when the window around p
(its heading and the sentence before it) is about what the question asks: see `in_scope`. The
threshold comes from bench/verification.py, the scope rule from tests/hard_cases.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rag import citations
from rag.bm25 import analyze
from rag.embeddings import Embedder

SUPPORT_THRESHOLD = 0.64  # bench/verification.py: separates loose paraphrases from hard negatives on corpus/
_MARKERS_AFTER_STOP = re.compile(r"([.!?])\s*((?:\[\d+(?:\s*,\s*\d+)*\])+)")
_SENTENCE_GAP = re.compile(r"(?<=[.!?])\s+|\n+")
_FENCE = re.compile(r"```.*?(?:```|$)", re.S)  # a code block, closed or still being written


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


def sentences(text: str) -> list[str]:
    """Split prose into sentences; markers written after the full stop ("Fact. [1]") stay with their sentence.

    A fenced code block stays whole, as one piece: its lines are not sentences. A sentence repeated
    word for word is kept once.
    """
    out: list[str] = []
    position = 0
    for fence in _FENCE.finditer(text):
        out += _prose(text[position:fence.start()])
        out.append(fence.group().strip())
        position = fence.end()
    out += _prose(text[position:])
    seen: set[str] = set()
    kept = []
    for piece in out:
        key = " ".join(citations.strip(piece).lower().split())
        if key not in seen:
            seen.add(key)
            kept.append(piece)
    return kept


def _prose(text: str) -> list[str]:
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


_QUANTITY = re.compile(r"(?<![\w.-])(\d+(?:[.,]\d+)*)[\s-]?([A-Za-z]+)")
# Names written as one word: acronyms and CamelCase (DPO, WordPiece), identifiers (Q4_0, k1, 175B) and hyphenated
# compounds with a short or numbered part (top-p, GPT-2, all-MiniLM-L6-v2, multi-query).
_NAME = re.compile(r"(?<![\w-])(?:[A-Za-z0-9]+(?:[-_][A-Za-z0-9]+)+|[A-Z][a-z]*[A-Z]\w*|\w*\d\w*[A-Za-z]\w*|[A-Za-z]+\d\w*)(?![\w-])")
_FOCUS_COVERAGE = 0.5  # tests/hard_cases.md: the IDF-weighted share of the question's topic words a window must hold


def _numbers(text: str) -> set[str]:
    """The numbers written as numbers ("8,192-token", "0.60", "1/62"), not the digits of names (Q4_0, GPT-2, BM25)."""
    out = set()
    for token in re.findall(r"[\w.,-]+", text):
        if token[0].isdigit():
            out.add(_number(re.match(r"\d+(?:[.,]\d+)*", token).group().rstrip(".,")))
    return out


def new_numbers(claim: str, question: str) -> set[str]:
    """Numbers the claim gives that the question did not ("64" for "how many heads does Llama 2 70B use"), not names' digits."""
    return _numbers(citations.strip(claim)) - _numbers(question)


def _number(text: str) -> str:
    """A number as written without grouping or trailing zeros: "0.60" and "0.6", "1,000" and "1000" are one."""
    plain = text.replace(",", "")
    return plain.rstrip("0").rstrip(".") if "." in plain else plain


def names(text: str) -> set[str]:
    """The names a sentence uses, lower-cased: "DPO", "top-p", "GPT-2", "Q4_0", "WordPiece"."""
    return {n.lower() for n in _NAME.findall(text) if any(c.isalpha() for c in n) and len(n) > 1}


def sibling_names(text: str) -> set[str]:
    """Names that have siblings one character away: with a digit, an underscore or a short part (top-p, GPT-2, Q4_0)."""
    return {n for n in names(text) if any(c.isdigit() or c == "_" for c in n) or min(map(len, re.split(r"[-_]", n))) <= 2}


def _symbols(text: str) -> set[str]:
    """Letters that stand alone as symbols ("the b parameter", "top k"), lower-cased; not "a", "I" or "LoRA's" s."""
    return {c.lower() for c in re.findall(r"(?<![\w'’-])[A-Za-z](?![\w'’-])", text)} - {"a", "i"}


def _parts(terms: set[str]) -> set[str]:
    return terms | {p for t in terms for p in t.split("_") if p}


def names_identifier(term: str) -> bool:
    """An analysed term that names one of several siblings: q4_0, k1, fp16, or a symbol such as b or p."""
    return (any(c.isalpha() for c in term) and any(c.isdigit() or c == "_" for c in term)) or (len(term) == 1 and term.isalpha())


@dataclass(frozen=True)
class Focus:
    """What a question is about: the names and numbers it gives, and its topic words with their weights.

    Only words the index knows count: a word no document uses ("how big does it get") is phrasing.
    Weights are the words' IDF, so "many" or "use" weigh little beside "min_p" or "pooling".
    """

    terms: dict[str, float]
    required: frozenset[str]  # identifier terms (q4_0, b) every in-scope window holds
    named: frozenset[str]  # names as written (top-p, gpt-2, wordpiece)
    numbers: frozenset[str]

    @classmethod
    def of(cls, question: str, weight: Callable[[str], float | None]) -> "Focus":
        terms = {t: w for t in dict.fromkeys(analyze(question)) if (w := weight(t))}
        symbols = _symbols(question)
        required = {t for t in terms if not t.isdigit() and (len(t) > 1 and names_identifier(t) or t in symbols)}
        return cls(terms, frozenset(required),
                   frozenset(n for n in sibling_names(question) if all(weight(t) for t in analyze(n))),
                   frozenset(_numbers(question)))


def focus_of(question: str, material: Sequence[str]) -> Focus:
    """The focus of a question over `material` alone (no index at hand): every known word weighs the same."""
    known = set().union(*(analyze(text) for text in material)) if material else set()
    return Focus.of(question, lambda t: 1.0 if t in known else None)


def in_scope(claim: str, sentence: str, scope: str, focus: Focus | None) -> bool:
    """Whether a claim backed by a sentence of `scope` (the sentence, the one before it and its heading) is about
    what the question asks, and takes no figure or name from elsewhere.

    The claim's numbers and figures with their units must be in the supporting sentence itself, its
    names in the scope ("34 bytes" sits beside Q8_0; "Top-p keeps the k most probable tokens" on a
    sentence about top-k fails).
    The scope must hold the names, identifiers and numbers the question gives ("Q4_0", "b",
    "500 of 1,000"), and most of the weight of its other topic words.
    """
    bare = citations.strip(claim)
    if not _numbers(bare) <= _numbers(sentence) or not quantities(bare) <= quantities(sentence):
        return False
    numbers = _numbers(scope)
    lowered = scope.lower()
    if any(n not in lowered for n in names(bare)):
        return False
    if focus is None:
        return True
    held = set(analyze(scope))
    parts = _parts(held)
    if not focus.numbers <= numbers or any(n not in lowered for n in focus.named):
        return False
    if any(t not in held and not set(t.split("_")) <= parts for t in focus.required):
        return False
    total = sum(focus.terms.values())
    return not total or sum(w for t, w in focus.terms.items() if t in held) / total >= _FOCUS_COVERAGE


def quantities(text: str) -> set[tuple[str, str]]:
    """(number, stem of the word after it): "32-bit" is ("32", "bit"), "34 bytes" ("34", "byte").

    A claim's "32-bit integers" must not pass on a passage's "32 weights" and "8-bit integers".
    """
    return {(_number(number), analyze(word)[0]) for number, word in _QUANTITY.findall(text) if analyze(word)}


def windows_of(text: str, heading: str = "") -> list[tuple[str, str]]:
    """(sentence, scope) for each sentence of a whole passage: the scope is the heading, the sentence before and it."""
    own = sentences(text)
    return [(s, " ".join(p for p in (heading, own[i - 1] if i else "", s) if p)) for i, s in enumerate(own)]


def ground(answer: str, passages: dict[int, str | Sequence[str]], embedder: Embedder, threshold: float = SUPPORT_THRESHOLD,
           cache: dict[str, np.ndarray] | None = None, question: str = "", headings: dict[int, str] | None = None,
           weight: Callable[[str], float | None] | None = None) -> list[SentenceCheck]:
    """A verdict for each answer sentence; citations are made to point at the passage that supports it.

    `passages` maps a source number to its whole text, or to its evidence windows. A sentence is
    supported by a passage sentence that scores at least `threshold` with it and whose window is in
    scope (`in_scope`) for `question`. One that cites nothing, or cites a passage that does not back
    it, is given the source that does when one does (corrected=True); otherwise it stays
    unsupported, with the citations it had. `weight` gives a term's IDF in the index (None for a
    term it lacks); without it the question's focus is taken from the passages alone.
    """
    claims = sentences(answer)
    pool: list[tuple[int, str, str]] = []  # (source, sentence, its scope)
    for n, text in passages.items():
        heading = (headings or {}).get(n, "")
        if isinstance(text, str):
            pool += [(n, s, scope) for s, scope in windows_of(text, heading)]
        else:
            for window in text:
                scope = " ".join(p for p in (heading, window) if p)
                pool += [(n, s, scope) for s in sentences(window)]
    focus = None
    if question:
        focus = Focus.of(question, weight) if weight else focus_of(question, [scope for _, _, scope in pool])
    scores = support_scores(claims, [s for _, s, _ in pool], embedder, cache)
    checks = []
    for row, claim in zip(scores, claims):
        fits = np.array([in_scope(claim, sentence, scope, focus) for _, sentence, scope in pool], dtype=bool)
        row = np.where(fits, row, np.minimum(row, threshold - 1e-3))  # out of scope: never enough
        cited = tuple(n for n in citations.parse(claim) if n in passages)
        found = sorted((_best(row, pool, n) for n in cited if any(m == n for m, _, _ in pool)), key=lambda s: -s.score)
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


def _best(row: np.ndarray, pool: list[tuple[int, str, str]], n: int) -> Support:
    j = max((j for j, (m, _, _) in enumerate(pool) if m == n), key=lambda j: row[j])
    return Support(n, pool[j][1], round(float(row[j]), 4))

"""Evidence before generation: the passage sentences that answer the question, each with what it needs to stand alone.

The bundled 135M model cannot be trusted to find a fact in five whole chunks, so the system finds
it: every sentence of the retrieved passages is scored against the question, the best are kept
with the sentence before them when they lean on it ("That is 34 bytes ..." needs "Q8_0 stores
..."), near-identical sentences from different files collapse into one that lists every file, and
the model is given only these windows, numbered by source, within a small token budget.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from rag.bm25 import analyze
from rag.chunking import Chunk, place
from rag.embeddings import Embedder
from rag.verify import names_identifier, sentences, support_scores

# A sentence that opens with one of these words leans on the sentence before it for its subject.
_LEANS = frozenset("""it its this that these those they them their such both each either neither here so thus
hence then there also however but instead otherwise which whose latter former same another other""".split())
_SHORT_WORDS = 6  # a sentence this short rarely names its own subject
# Near-identical: the same stems (Jaccard) or the same meaning (cosine of the embeddings).
_SAME_TERMS = 0.85
_SAME_VECTOR = 0.96
_COST_PER_WINDOW = 4
_SIBLING_PENALTY = 0.15  # per identifier of the question missing from a window  # separators and the source marker, in tokens
# Entries of a contents page or back-of-book index: a few words, then page numbers ("Fonts, 41, 112").
_ENTRY = re.compile(r"[^\W\d][^\n]{0,80}?[\s,.]+(?:\d{1,4}(?:\s*[-–]\s*\d{1,4})?(?:\s*,\s*|\s+|$)){1,12}")
_PAGE_NUMBER = re.compile(r"(?<![\w.,])\d{1,4}(?![\w.]\w)")
_PROSE_END = re.compile(r"[a-z)]{2}[.!?](?=\s+[A-Z]|\s*$)")


@dataclass(frozen=True)
class Place:
    """Where a sentence is written: file, page and heading path."""

    path: str
    page: int | None
    heading: str
    where: str = ""
    part: str = ""

    @property
    def label(self) -> str:
        return place(self.path, self.page, self.heading, self.where, self.part)


@dataclass(frozen=True)
class Window:
    """Sentences that answer the question, in document order, with the context they need to stand alone.

    `lead` is the best answering sentence, `text` what the model and the person read. `also` names
    other files holding the same sentence (the PDF and the note it was made from, say).
    """

    text: str
    lead: str
    chunk_id: int
    place: Place
    score: float
    also: tuple[Place, ...] = ()

    def __post_init__(self) -> None:
        if not self.text.strip() or self.lead not in self.text:
            raise ValueError(f"a window must contain its lead sentence, got {self.lead!r} in {self.text!r}")


def is_listing(text: str) -> bool:
    """Whether a passage lists rather than explains: a contents page or an index, whatever its heading says.

    Such a page is mostly entries of a few words followed by page numbers, with almost no sentence
    that ends in a full stop. It matches every keyword of a question and answers none.
    """
    words = text.split()
    if len(words) < 12:
        return False
    lines = [line for line in text.splitlines() if line.strip()]
    if sum("; " in line for line in lines) * 2 >= len(lines):
        return False  # table rows ("Month: March; Category: Travel; Amount: 1240"): index entries use commas
    found = [int(n) for n in _PAGE_NUMBER.findall(text)]
    numbers = len(found)
    # Page numbers run into the tens and hundreds; the small numbers of code and data examples do not.
    if numbers < 6 or numbers / len(words) < 0.12 or sorted(found)[numbers // 2] < 10:
        return False
    covered = sum(len(m.group()) for m in _ENTRY.finditer(text))
    prose = len(_PROSE_END.findall(text))
    return covered / max(len(text), 1) >= 0.6 and prose <= 1


def leans_on_previous(sentence: str) -> bool:
    """A sentence that needs the one before it: it opens with a pronoun or link word, or is very short."""
    words = re.findall(r"[A-Za-z]+", sentence)
    return bool(words) and (words[0].lower() in _LEANS or len(sentence.split()) < _SHORT_WORDS)


@dataclass
class _Candidate:
    chunk_id: int
    chunk: Chunk
    index: int  # of the sentence in its chunk
    sentences: list[str]  # the chunk's sentences
    before: str  # the sentence before the chunk's first one, from the previous chunk ("" if none)
    score: float = 0.0

    @property
    def sentence(self) -> str:
        return self.sentences[self.index]

    def span(self) -> tuple[int, int]:
        """Sentence indices of the window, -1 meaning the sentence from the previous chunk."""
        return self.widen(self.index), self.index

    def widen(self, start: int) -> int:
        """Move the start back while the first sentence leans on the one before it (at most three)."""
        for _ in range(3):
            if start < 0 or not leans_on_previous(self.sentences[start]) or (start == 0 and not self.before):
                break
            start -= 1
        return start


def select(question: str, chunks: Sequence[tuple[int, Chunk]], embedder: Embedder, count_tokens: Callable[[str], int],
           budget: int, previous: Callable[[int], Chunk | None] = lambda _: None, floor: float = 0.3,
           cache: dict[str, np.ndarray] | None = None) -> list[Window]:
    """The windows that best answer `question`, best first, within `budget` tokens in all.

    `chunks` are (chunk id, chunk) pairs, retrieved and in rank order; `previous(chunk_id)` gives the
    chunk before it in the same document, so a first sentence can borrow its subject across the
    chunk boundary. A sentence scores verify.support_scores against the question, half on its own
    and half with its context, less _SIBLING_PENALTY for each identifier of the question its window
    lacks; one that scores under best - `floor` is left out however much room is left.
    """
    cache = {} if cache is None else cache
    candidates = []
    for chunk_id, chunk in chunks:
        if is_listing(chunk.text):
            continue
        own = sentences(chunk.text)
        before = ""
        if own and leans_on_previous(own[0]):
            before = _sentence_before(own[0], previous(chunk_id))
        candidates += [_Candidate(chunk_id, chunk, i, own, before) for i, s in enumerate(own) if len(analyze(s)) >= 2]
    if not candidates:
        return []
    texts = [_text(c, *c.span()) for c in candidates]
    # A sentence is scored half alone and half with its context: the context gives it a subject,
    # but must not lift a sentence that says nothing of the question itself.
    scored = support_scores([question], [_scored_text(c, t) for c, t in zip(candidates, texts)], embedder, cache)[0]
    alone = support_scores([question], [_scored_text(c, c.sentence) for c in candidates], embedder, cache)[0]
    # A window that lacks an identifier the question names (Q4_1, k1, fp16) is about a sibling.
    material = set().union(*(analyze(chunk.indexed_text) for _, chunk in chunks))
    named = {t for t in analyze(question) if names_identifier(t) and t in material}
    for candidate, text, score, own in zip(candidates, texts, scored, alone):
        held = set(analyze(_scored_text(candidate, text)))
        missing = sum(t not in held for t in named)
        candidate.score = float(0.5 * score + 0.5 * own) - _SIBLING_PENALTY * missing
    order = sorted(range(len(candidates)), key=lambda i: (-candidates[i].score, i))
    best = candidates[order[0]].score
    vectors = cache
    chosen: list[_Chosen] = []
    used = 0
    for i in order:
        candidate = candidates[i]
        if candidate.score < best - floor:
            break
        if any(w.first.chunk_id == candidate.chunk_id and w.start <= candidate.index <= w.end for w in chosen):
            continue  # already shown, as the context of a better sentence
        twin = _twin(candidate, texts[i], chosen, vectors)
        if twin is not None:
            where = _place(candidate.chunk)
            if where.path != twin.first.chunk.path and where not in twin.also:
                twin.also.append(where)
            continue
        start, end = candidate.span()
        context = _text(candidate, start, end - 1) if end > start else ""
        if context and any(_same(context_sentence, shown) for context_sentence in sentences(context)
                           for w in chosen if w.first.chunk_id != candidate.chunk_id
                           for shown in sentences(_text(w.first, w.start, w.end))):
            continue  # its context is on screen already, from another file
        touching = next((w for w in chosen if w.first.chunk_id == candidate.chunk_id
                         and start <= w.end + 1 and w.start <= end + 1), None)
        if touching is not None:  # one window of consecutive sentences reads better than two
            wider = (candidate.widen(min(start, touching.start)), max(end, touching.end))
            extra = count_tokens(_text(candidate, *wider)) - count_tokens(_text(candidate, touching.start, touching.end))
            if used + extra <= budget:
                touching.start, touching.end = wider
                touching.leads.append((candidate.sentence, _scored_text(candidate, texts[i])))
                used += extra
            continue
        cost = count_tokens(_text(candidate, start, end)) + _COST_PER_WINDOW
        if used + cost > budget:
            continue
        used += cost
        chosen.append(_Chosen(candidate, start, end, [(candidate.sentence, _scored_text(candidate, texts[i]))], []))
    return [Window(_text(w.first, w.start, w.end), w.first.sentence, w.first.chunk_id, _place(w.first.chunk),
                   round(w.first.score, 4), tuple(w.also)) for w in chosen]


@dataclass
class _Chosen:
    first: _Candidate  # the best sentence of the window
    start: int
    end: int
    leads: list[tuple[str, str]]  # (sentence, scored text) of every answering sentence in the window
    also: list[Place]


def _same(a: str, b: str) -> bool:
    """Near-identical sentences: the same stems, give or take a few (the PDF and the note it was made from)."""
    x, y = set(analyze(a)), set(analyze(b))
    return bool(x) and len(x & y) / len(x | y) >= _SAME_TERMS


def _twin(candidate: _Candidate, text: str, chosen: list[_Chosen], vectors: dict[str, np.ndarray]) -> _Chosen | None:
    """The chosen window whose answering sentence says the same as this one, if any."""
    mine = vectors.get(_scored_text(candidate, text))
    for window in chosen:
        for sentence, scored in window.leads:
            if _same(candidate.sentence, sentence):
                return window
            theirs = vectors.get(scored)
            if mine is not None and theirs is not None and float(mine @ theirs) >= _SAME_VECTOR:
                return window
    return None


def _place(chunk: Chunk) -> Place:
    return Place(chunk.path, chunk.page, chunk.heading, chunk.where, chunk.part)


def _text(candidate: _Candidate, start: int, end: int) -> str:
    parts = ([candidate.before] if start == -1 else []) + candidate.sentences[max(start, 0): end + 1]
    return " ".join(parts)


def _scored_text(candidate: _Candidate, text: str) -> str:
    # The heading's last part names the topic of a bullet list ("Reading the quant type names").
    heading = candidate.chunk.heading.split(" > ")[-1] if candidate.chunk.heading else ""
    return f"{heading}: {text}" if heading else text


def _sentence_before(first: str, chunk: Chunk | None) -> str:
    """The sentence that comes before `first` in the document, from the previous chunk (which may overlap)."""
    if chunk is None:
        return ""
    earlier = sentences(chunk.text)
    if first in earlier:  # the chunks overlap: the sentence before it is in there too
        k = earlier.index(first)
        return earlier[k - 1] if k > 0 else ""
    return earlier[-1] if earlier else ""


@dataclass(frozen=True)
class Evidence:
    """A window as the person sees it: under the number of its source, with every other file that says the same."""

    n: int
    sentence: str  # the window's text
    score: float
    lead: str = ""  # the sentence in it that answers best
    also: tuple[str, ...] = ()  # labels of other places holding the same sentence

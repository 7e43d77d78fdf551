"""Sections -> chunks bounded by the embedder's token count, split at paragraphs, then sentences, then words."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator

from rag.loaders import Section

TokenCounter = Callable[[str], int]

_PARAGRAPH = re.compile(r"\n\s*\n")
_SPACES = re.compile(r"\s+")
_WORD = re.compile(r"\S+")
# Hostile input (a 100 MB line, one giant "word") must never reach the tokenizer whole: a sentence longer
# than this is counted word by word, and a word longer than this is cut into pieces of this many characters.
_MAX_COUNTED_CHARS = 20_000
_MAX_WORD_CHARS = 100
_MAX_HEADING_CHARS = 1_000
# A sentence ends at . ! or ? followed by space and a capital, digit, quote or bracket.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[\"'(\[A-Z0-9])")


def place(path: str, page: int | None, heading: str, where: str = "", part: str = "") -> str:
    """"notes.pdf, page 3, Sampling > Temperature": where a person finds a passage.

    `where` names places that are not pages ("slide 4", "sheet Expenses, rows 2-14"); `part` a
    document inside the file, such as an e-mail's attachment ("report.pdf (attachment of mail.eml)").
    """
    name = Path(path).name
    parts = [f"{part} (attachment of {name})" if part else name]
    if where:
        parts.append(where)
    elif page is not None:
        parts.append(f"page {page}")
    if heading and heading.lower() not in where.lower():
        parts.append(heading)
    return ", ".join(parts)


@dataclass(frozen=True)
class Chunk:
    """A passage small enough to embed whole, with where it came from."""

    path: str
    text: str
    ordinal: int
    page: int | None = None
    heading: str = ""
    where: str = ""  # see Section.where; for table rows, the rows this chunk holds
    part: str = ""  # see Section.part

    def __post_init__(self) -> None:
        if not self.text.strip():
            raise ValueError(f"empty chunk {self.ordinal} of {self.path}")

    @property
    def label(self) -> str:
        return place(self.path, self.page, self.heading, self.where, self.part)

    @property
    def spot(self) -> tuple[int | None, str, str]:
        """Page, place and part: chunks merge only when all three are the same."""
        return self.page, self.where, self.part

    @property
    def indexed_text(self) -> str:
        """What is embedded and keyword-indexed: the heading path gives a short passage its topic."""
        return f"{self.heading}\n{self.text}" if self.heading else self.text


@dataclass(frozen=True)
class _Unit:
    text: str
    tokens: int
    starts_paragraph: bool


def chunk_sections(sections: Iterable[Section], count_tokens: TokenCounter, max_tokens: int, overlap: int,
                   min_tokens: int = 24) -> list[Chunk]:
    """Chunk every section of one document, numbering chunks in document order.

    count_tokens must count the way the embedder does (special tokens included), so that no chunk
    is silently truncated when embedded. Neighbouring chunks of a section share up to `overlap`
    tokens of whole sentences (or whole words, when one sentence is longer than the overlap).
    A chunk under `min_tokens` (a heading's one-line intro, a stray line) joins a neighbour on the
    same page, so that fragments do not crowd the index.
    """
    if not 0 <= overlap < max_tokens:
        raise ValueError(f"overlap must be between 0 and max_tokens - 1, got {overlap}")
    chunks: list[Chunk] = []
    for section in sections:
        too_long = len(section.heading) > _MAX_HEADING_CHARS
        prefix_cost = count_tokens(section.heading) - count_tokens("") + 1 if section.heading and not too_long else 0
        budget = max_tokens - prefix_cost
        if too_long or budget < max(8, overlap + 1):
            budget, heading = max_tokens, ""  # an absurdly long heading is dropped rather than starving the text
        else:
            heading = section.heading
        if section.rows:
            for text, first, last in _pack_rows(section, count_tokens, budget):
                rows = f"row {first}" if first == last else f"rows {first}\u2013{last}"
                chunks.append(Chunk(section.path, text, len(chunks), section.page, heading,
                                    f"{section.where}, {rows}" if section.where else rows, section.part))
            continue
        for text in _pack(_units(section.text, count_tokens, budget), count_tokens, budget, overlap):
            chunks.append(Chunk(section.path, text, len(chunks), section.page, heading, section.where, section.part))
    merged = _merge_fragments(chunks, count_tokens, max_tokens, min_tokens)
    return [replace(c, ordinal=i) for i, c in enumerate(merged)]


def _merge_fragments(chunks: list[Chunk], count_tokens: TokenCounter, max_tokens: int, min_tokens: int) -> list[Chunk]:
    out: list[Chunk] = []
    pending: Chunk | None = None  # a fragment waiting to join the next chunk
    for chunk in chunks:
        if pending is not None:
            joined = _joined(pending, chunk)
            if pending.spot == chunk.spot and _fits(joined, count_tokens, max_tokens):
                chunk = joined
            else:
                out.append(pending)
            pending = None
        if count_tokens(chunk.text) < min_tokens:
            if out and out[-1].spot == chunk.spot:
                joined = _joined(out[-1], chunk)
                if _fits(joined, count_tokens, max_tokens):
                    out[-1] = joined
                    continue
            pending = chunk
            continue
        out.append(chunk)
    if pending is not None:
        out.append(pending)
    return out


def _fits(chunk: Chunk, count_tokens: TokenCounter, max_tokens: int) -> bool:
    # The length cap stops text the tokenizer sees nothing in (control characters) from merging without end.
    return len(chunk.indexed_text) <= _MAX_COUNTED_CHARS and count_tokens(chunk.indexed_text) <= max_tokens


def _joined(first: Chunk, second: Chunk) -> Chunk:
    """Two neighbours as one chunk under the heading path they share (the deeper one for a parent's intro)."""
    a, b = first.heading.split(" > "), second.heading.split(" > ")
    if b[: len(a)] == a:
        heading = second.heading
    else:
        common = []
        for x, y in zip(a, b):
            if x != y:
                break
            common.append(x)
        heading = " > ".join(common)
    return Chunk(first.path, f"{first.text}\n\n{second.text}", first.ordinal, first.page, heading, first.where, first.part)


def _pack_rows(section: Section, count_tokens: TokenCounter, budget: int) -> Iterator[tuple[str, int, int]]:
    """(text, first row, last row) for runs of whole rows that fit the budget, without overlap.

    A row longer than the budget on its own is the only thing ever cut, at words, and each piece
    still names its row.
    """
    special = count_tokens("")
    run: list[str] = []
    numbers: list[int] = []
    used = 0
    for row, number in zip(section.text.split("\n\n"), section.rows):
        row = _SPACES.sub(" ", row).strip()
        if not row:
            continue
        cost = max(1, count_tokens(row) - special) if len(row) <= _MAX_COUNTED_CHARS else budget + 1
        if run and used + cost + 2 + special > budget:
            yield "\n\n".join(run), numbers[0], numbers[-1]
            run, numbers, used = [], [], 0
        if cost + special > budget:
            for piece, _ in _split_words(row, count_tokens, budget - special):
                yield piece, number, number
            continue
        run.append(row)
        numbers.append(number)
        used += cost + 2
    if run:
        yield "\n\n".join(run), numbers[0], numbers[-1]


def _units(text: str, count_tokens: TokenCounter, budget: int) -> list[_Unit]:
    """Sentences, each marked when it opens a paragraph; a sentence over budget becomes word runs."""
    special = count_tokens("")
    units: list[_Unit] = []
    for paragraph in _PARAGRAPH.split(text):
        paragraph = _SPACES.sub(" ", paragraph).strip()  # not " ".join(split()): no list of millions of words
        if not paragraph:
            continue
        first = True
        for sentence in _SENTENCE_END.split(paragraph):
            # At least one token, so that a chunk holds at most `budget` units, whatever the tokenizer drops.
            cost = max(1, count_tokens(sentence) - special) if len(sentence) <= _MAX_COUNTED_CHARS else budget
            pieces = [(sentence, cost)] if cost + special <= budget else _split_words(sentence, count_tokens, budget - special)
            for piece, piece_cost in pieces:
                units.append(_Unit(piece, piece_cost, first))
                first = False
    return units


def _split_words(sentence: str, count_tokens: TokenCounter, budget: int) -> list[tuple[str, int]]:
    special = count_tokens("")
    pieces: list[tuple[str, int]] = []
    words: list[str] = []
    used = 0
    for match in _WORD.finditer(sentence):
        for word, cost in _word_parts(match.group(), count_tokens, special, budget):
            if words and used + cost > budget:
                pieces.append((" ".join(words), used))
                words, used = [], 0
            words.append(word)
            used += cost
    if words:
        pieces.append((" ".join(words), used))
    return pieces


def _word_parts(word: str, count_tokens: TokenCounter, special: int, budget: int) -> Iterator[tuple[str, int]]:
    """A word as pieces of at most _MAX_WORD_CHARS characters, each halved until it fits the budget."""
    for start in range(0, len(word), _MAX_WORD_CHARS):
        todo = [word[start:start + _MAX_WORD_CHARS]]
        while todo:
            part = todo.pop()
            cost = max(1, count_tokens(part) - special)
            if cost > budget and len(part) > 1:
                half = len(part) // 2
                todo += [part[half:], part[:half]]  # the first half is popped first
            else:
                yield part, cost


def _join(units: list[_Unit]) -> str:
    out = ""
    for i, unit in enumerate(units):
        out += unit.text if i == 0 else ("\n\n" if unit.starts_paragraph else " ") + unit.text
    return out


def _pack(units: list[_Unit], count_tokens: TokenCounter, budget: int, overlap: int) -> list[str]:
    special = count_tokens("")
    texts: list[str] = []
    current: list[_Unit] = []
    fresh = 0  # units in `current` that did not come from the previous chunk's overlap
    used = 0  # tokens of the units in `current`, kept as a running sum (re-adding them is quadratic)
    i = 0
    while i < len(units) or fresh:
        unit = units[i] if i < len(units) else None
        if unit is not None and not (current and used + unit.tokens + special > budget):
            current.append(unit)
            used += unit.tokens
            fresh += 1
            i += 1
            continue
        if fresh == 0:
            current, used = [], 0  # the carried overlap cannot sit beside this unit; start clean
            continue
        # Piece counts do not always add up to the real count; hand units back until it fits.
        while len(current) > 1 and count_tokens(_join(current)) > budget:
            current.pop()
            i -= 1
            fresh -= 1
            if fresh == 0:
                current = [units[i]]
                fresh = 1
                i += 1
                break
        texts.append(_join(current))
        current = _overlap_tail(current, overlap, count_tokens) if i < len(units) else []
        used = sum(u.tokens for u in current)
        fresh = 0
    return texts


def _overlap_tail(units: list[_Unit], overlap: int, count_tokens: TokenCounter) -> list[_Unit]:
    if overlap == 0:
        return []
    tail: list[_Unit] = []
    used = 0
    for unit in reversed(units):
        if used + unit.tokens > overlap:
            break
        tail.insert(0, unit)
        used += unit.tokens
    if tail:
        return tail
    special = count_tokens("")
    words = units[-1].text.split()
    kept: list[str] = []
    for word in reversed(words):
        cost = max(1, count_tokens(word) - special)
        if used + cost > overlap:
            break
        kept.insert(0, word)
        used += cost
    return [_Unit(" ".join(kept), used, False)] if kept else []

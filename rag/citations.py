"""[n] markers in an answer -> the numbered sources they name; markers naming no source are removed."""

from __future__ import annotations

import re
from typing import Sequence

from rag.retrieve import analyze

# [1], [1, 2], [1][2] and the common model variants [Source 1] / [source 1, 2].
_MARKER = re.compile(r"\[(?:sources?\s*)?(\d+(?:\s*[,;]\s*(?:sources?\s*)?\d+)*)\]", re.IGNORECASE)
_SENTENCE_GAP = re.compile(r"((?<=[.!?])\s+|\n\s*)")  # captured, so splitting keeps the layout


def parse(text: str) -> list[int]:
    """Every number cited in `text`, in order of first appearance."""
    seen: dict[int, None] = {}
    for match in _MARKER.finditer(text):
        for number in re.findall(r"\d+", match.group(1)):
            seen[int(number)] = None
    return list(seen)


def clean(text: str, n_sources: int) -> str:
    """Rewrite markers to the canonical [n] form, dropping numbers outside 1..n_sources."""

    def fix(match: re.Match[str]) -> str:
        numbers = [int(x) for x in re.findall(r"\d+", match.group(1))]
        valid = [n for n in dict.fromkeys(numbers) if 1 <= n <= n_sources]
        return "".join(f"[{n}]" for n in valid)

    cleaned = _MARKER.sub(fix, text)
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip()


def attach(text: str, passages: Sequence[str], min_overlap: float = 0.5) -> str:
    """Cite, for each uncited sentence, the passage that contains most of its words.

    Small models often answer from the sources without writing markers. A sentence gets [n] only
    when at least `min_overlap` of its content words occur in passage n, so a citation added here
    still points at text that says what the sentence says.
    """
    vocabularies = [set(analyze(p)) for p in passages]
    out = []
    for position, sentence in enumerate(_SENTENCE_GAP.split(text.strip())):
        if position % 2:  # a separator
            out.append(sentence)
            continue
        terms = set(analyze(_MARKER.sub("", sentence)))
        if _MARKER.search(sentence) or len(terms) < 3:
            out.append(sentence)
            continue
        overlaps = [len(terms & vocab) / len(terms) for vocab in vocabularies]
        best = max(range(len(overlaps)), key=overlaps.__getitem__, default=None)
        if best is None or overlaps[best] < min_overlap:
            out.append(sentence)
            continue
        body = sentence.rstrip()
        end = len(body.rstrip(".!?:;"))
        out.append(f"{body[:end]} [{best + 1}]{body[end:]}")
    return "".join(out)

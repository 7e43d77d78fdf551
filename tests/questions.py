"""The question files under tests/, read without pytest so that bench/ can use them too."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

# question -- FILE [p.N] -- fact | alternative | ...
CORPUS_LINE = re.compile(r"(.+?) -- (\S+)(?: p\.(\d+))? -- (.+?)\s*$")
VERDICTS = {"supported": True, "unsupported": False}


@dataclass(frozen=True)
class Expected:
    """A corpus question, the file (and PDF page) that answers it, and the facts a right answer holds.

    A right answer contains at least one of `facts` (lower case, whitespace-normalised substring match);
    the first one is worded as the file itself words it.
    """

    question: str
    file: str
    page: int | None
    facts: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.page is not None and self.page < 1:
            raise ValueError(f"page numbers start at 1, got {self.page} for {self.question!r}")
        if not self.facts or not all(f.strip() for f in self.facts):
            raise ValueError(f"every question needs non-empty facts, got {self.facts!r} for {self.question!r}")


@dataclass(frozen=True)
class HardCase:
    """One answer sentence (no citation markers), the file it would cite, and whether it rightly answers the question."""

    question: str
    claim: str
    file: str
    supported: bool

    def __post_init__(self) -> None:
        if not (self.question.strip() and self.claim.strip() and self.file.strip()):
            raise ValueError(f"a hard case needs a question, a claim and a file, got {self!r}")


def _lines(name: str) -> list[tuple[int, str]]:
    """(line number, text) of the lines that are neither blank nor # comments."""
    rows = enumerate((HERE / name).read_text(encoding="utf-8").splitlines(), start=1)
    return [(n, line.strip()) for n, line in rows if line.strip() and not line.lstrip().startswith("#")]


def corpus_facts() -> list[Expected]:
    """Every question of tests/corpus_questions.md with its expected file, page and facts."""
    rows = []
    for number, line in _lines("corpus_questions.md"):
        match = CORPUS_LINE.match(line)
        if not match:
            raise ValueError(f"corpus_questions.md line {number}: expected "
                             f"'question -- FILE [p.N] -- fact | alternative', got {line!r}")
        question, file, page, facts = match.groups()
        rows.append(Expected(question, file, int(page) if page else None,
                             tuple(f.strip() for f in facts.split("|"))))
    return rows


def corpus_questions() -> list[tuple[str, str, int | None]]:
    """(question, expected file name, expected page or None) from tests/corpus_questions.md."""
    return [(e.question, e.file, e.page) for e in corpus_facts()]


def hard_cases() -> list[HardCase]:
    """The cases of tests/hard_cases.md: 'question -- claim -- FILE -- supported|unsupported'."""
    cases = []
    for number, line in _lines("hard_cases.md"):
        parts = [p.strip() for p in line.split(" -- ")]
        if len(parts) != 4 or parts[3] not in VERDICTS:
            raise ValueError(f"hard_cases.md line {number}: expected "
                             f"'question -- claim -- FILE -- supported|unsupported', got {line!r}")
        question, claim, file, verdict = parts
        cases.append(HardCase(question, claim, file, VERDICTS[verdict]))
    return cases

"""The question files under tests/, read without pytest so that bench/ can use them too."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parent


def corpus_questions() -> list[tuple[str, str, int | None]]:
    """(question, expected file name, expected page or None) from tests/corpus_questions.md."""
    rows = []
    for line in (HERE / "corpus_questions.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"(.+?) -- (\S+)(?: p\.(\d+))?\s*$", line)
        if match:
            rows.append((match.group(1), match.group(2), int(match.group(3)) if match.group(3) else None))
    return rows

"""[n] markers in an answer -> the numbered sources they name; markers naming no source are removed."""

from __future__ import annotations

import re


# [1], [1, 2], [1][2] and the common model variants [Source 1] / [source 1, 2].
_MARKER = re.compile(r"\[(?:sources?\s*)?(\d+(?:\s*[,;]\s*(?:sources?\s*)?\d+)*)\]", re.IGNORECASE)


def parse(text: str) -> list[int]:
    """Every number cited in `text`, in order of first appearance."""
    seen: dict[int, None] = {}
    for match in _MARKER.finditer(text):
        for number in re.findall(r"\d+", match.group(1)):
            seen[int(number)] = None
    return list(seen)


def strip(text: str) -> str:
    """The text without its citation markers."""
    return re.sub(r"\s+([.,;:!?])", r"\1", _MARKER.sub("", text)).strip()


def clean(text: str, n_sources: int) -> str:
    """Rewrite markers to the canonical [n] form, dropping numbers outside 1..n_sources."""

    def fix(match: re.Match[str]) -> str:
        numbers = [int(x) for x in re.findall(r"\d+", match.group(1))]
        valid = [n for n in dict.fromkeys(numbers) if 1 <= n <= n_sources]
        return "".join(f"[{n}]" for n in valid)

    cleaned = _MARKER.sub(fix, text)
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", cleaned)).strip()


def append_marker(sentence: str, n: int) -> str:
    """The sentence with [n] placed before its final punctuation."""
    body = sentence.rstrip()
    end = len(body.rstrip(".!?:;"))
    return f"{body[:end]} [{n}]{body[end:]}"


def quoted(text: str) -> str:
    """Document text to quote beside citations: its own bracketed numbers ("a[0, 5]") get full-width brackets,
    so that they are never read as citations."""
    return _MARKER.sub(lambda m: f"［{m.group(1)}］", text)

"""PDF -> one section per page, without the running headers, footers and contents pages that repeat."""

from __future__ import annotations

import io
import re
from collections import Counter

from rag.errors import LoadError

_DOT_LEADER_LINE = re.compile(r"^.{2,}?(?:\.{2,}|\s{2,}|\u2026+)\s*\d{1,4}$|^.{2,}\s\d{1,4}$")


def pdf_pages(path: str, data: bytes, max_pages: int) -> list[tuple[int, str]]:
    """(page number, text) for every page with text, headers/footers and contents pages removed."""
    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = reader.decrypt("")
            except (NotImplementedError, ImportError) as exc:
                raise LoadError(path, f"the PDF uses encryption this install cannot open ({exc}); save an unprotected copy") from None
            if not opened:
                raise LoadError(path, "the PDF is protected by a password; save an unprotected copy and ingest that")
        if len(reader.pages) > max_pages:
            raise LoadError(path, f"the PDF has {len(reader.pages)} pages, more than the limit of {max_pages}; "
                                  "raise RAG_MAX_PAGES to index it")
        pages = [(n, _tidy(page.extract_text() or "")) for n, page in enumerate(reader.pages, start=1)]
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError, RecursionError) as exc:
        raise LoadError(path, f"the PDF is damaged or not a PDF ({exc}); re-export or re-download it") from None
    pages = [(n, text) for n, text in _without_running_lines(pages) if text.strip()]
    if not pages:
        raise LoadError(path, "no extractable text; scanned? Run OCR on it first (for example with ocrmypdf)")
    content = [(n, text) for n, text in pages if not _is_contents_page(text)]
    return content or pages


def _tidy(text: str) -> str:
    # pypdf keeps the layout's line breaks; re-join words hyphenated across lines.
    return re.sub(r"(\w)-\n(\w)", r"\1\2", text).strip()


def _shape(line: str) -> str:
    """A line with its numbers blanked, so "Page 3 of 9" and "Page 4 of 9" count as the same header."""
    return re.sub(r"\d+", "#", " ".join(line.split())).lower()


def _without_running_lines(pages: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Drop first and last lines that recur on at least half of the pages (3 pages or more)."""
    if len(pages) < 3:
        return pages
    edges: Counter[str] = Counter()
    for _, text in pages:
        lines = [line for line in text.splitlines() if line.strip()]
        edges.update({_shape(line) for line in lines[:2] + lines[-2:]})
    running = {shape for shape, count in edges.items() if count >= max(3, len(pages) // 2)}
    if not running:
        return pages
    cleaned = []
    for number, text in pages:
        lines = text.splitlines()
        kept_positions = [i for i, line in enumerate(lines) if line.strip()]
        edge = set(kept_positions[:2] + kept_positions[-2:])
        kept = [line for i, line in enumerate(lines) if not (i in edge and _shape(line) in running)]
        cleaned.append((number, "\n".join(kept).strip()))
    return cleaned


def _is_contents_page(text: str) -> bool:
    """A table of contents: most lines end in a page number after dot leaders or a gap."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) < 5:
        return False
    listed = sum(1 for line in lines if _DOT_LEADER_LINE.match(line))
    return listed / len(lines) >= 0.6 and bool(re.search(r"contents|inhalt|sommaire|índice|\.{4,}", text, re.I))

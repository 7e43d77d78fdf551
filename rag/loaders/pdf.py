"""PDF -> one section per page, without the running headers, footers and contents pages that repeat."""

from __future__ import annotations

import io
import re
from collections import Counter
from typing import TYPE_CHECKING, Callable

from rag.errors import LoadError

if TYPE_CHECKING:
    from rag.loaders.ocr import Ocr

# Contents lines are short; longer lines are not tried, since the lazy ".{2,}?" backtracks quadratically.
_CONTENTS_LINE_CHARS = 300
_DOT_LEADER_LINE = re.compile(r"^.{2,}?(?:\.{2,}|\s{2,}|\u2026+)\s*\d{1,4}$|^.{2,}\s\d{1,4}$")


def pdf_pages(path: str, data: bytes, max_pages: int, max_unpacked: int, ocr: "Ocr | None" = None,
              engine: str = "auto", dpi: int = 300, on_page: Callable[[], None] | None = None) -> list[tuple[int, str, bool]]:
    """(page number, text, read by OCR) for every page with text, headers/footers and contents pages removed.

    The pages' content streams may unpack to at most `max_unpacked` bytes in all, checked before any
    text is extracted, since extraction costs about a second per megabyte of content. A page with no
    text layer but an image on it (a scan) is rendered and read by `ocr`, calling `on_page` after each.
    """
    import pypdf
    from pypdf.errors import LimitReachedError, PyPdfError

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
        _check_unpacked_size(path, reader.pages, max_unpacked)
        pages = [(n, _tidy(page.extract_text() or "")) for n, page in enumerate(reader.pages, start=1)]
        scanned = [n for n, text in pages if not text.strip() and _has_image(reader.pages[n - 1])]
    except LoadError:
        raise
    except LimitReachedError as exc:  # pypdf's own caps (75 MB per stream, 2 million tokens per content stream)
        raise LoadError(path, f"the PDF is too large to unpack safely ({exc}); it may be a decompression bomb") from None
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, AssertionError, IndexError, OSError, RecursionError) as exc:
        raise LoadError(path, f"the PDF is damaged or not a PDF ({exc}); re-export or re-download it") from None
    read = {}
    if scanned and ocr is not None:
        read = _ocr_pages(path, data, scanned, ocr, dpi, on_page)
        pages = [(n, read.get(n, text)) for n, text in pages]
    pages = [(n, text) for n, text in _without_running_lines(pages) if text.strip()]
    if not pages:
        if scanned and ocr is None:
            from rag.loaders.ocr import why_not

            raise LoadError(path, f"the PDF has no text layer ({len(scanned)} scanned pages) and {why_not(engine)}")
        if scanned:
            raise LoadError(path, f"OCR found no text on its {len(scanned)} scanned pages; check that they are readable")
        raise LoadError(path, "no extractable text: its pages hold neither text nor images")
    content = [(n, text) for n, text in pages if not _is_contents_page(text)]
    return [(n, text, n in read) for n, text in content or pages]


def _has_image(page) -> bool:
    """The page draws an image or a form (a scanner's page image is one of these)."""
    resources = page.get("/Resources")
    objects = resources.get_object().get("/XObject") if resources is not None else None
    return bool(objects) and len(objects.get_object()) > 0


def _ocr_pages(path: str, data: bytes, numbers: list[int], ocr: "Ocr", dpi: int,
               on_page: Callable[[], None] | None) -> dict[int, str]:
    """Render the pages with PDFium and read them; each page is scaled down to fit the pixel limit."""
    import pypdfium2

    from rag.loaders.ocr import MAX_PIXELS, read_page

    texts: dict[int, str] = {}
    try:
        document = pypdfium2.PdfDocument(data)
    except pypdfium2.PdfiumError as exc:
        raise LoadError(path, f"the PDF's scanned pages cannot be rendered for OCR ({exc}); re-export it") from None
    try:
        for number in numbers:
            page = document[number - 1]
            width, height = page.get_size()  # in points, 72 to the inch
            scale = min(dpi / 72, (MAX_PIXELS / max(width * height, 1.0)) ** 0.5)
            image = page.render(scale=scale, grayscale=True).to_pil()
            image.info["dpi"] = (scale * 72, scale * 72)  # Tesseract guesses wrong without it and reads blocks out of order
            texts[number] = _tidy(read_page(path, ocr, image, number))
            page.close()
            if on_page:
                on_page()
    except pypdfium2.PdfiumError as exc:
        raise LoadError(path, f"a scanned page cannot be rendered for OCR ({exc}); re-export the PDF") from None
    finally:
        document.close()
    return texts


def _check_unpacked_size(path: str, pages, max_unpacked: int) -> None:
    """LoadError when the page content streams inflate to more than `max_unpacked` bytes together."""
    total = 0
    for number, page in enumerate(pages, start=1):
        contents = page.get_contents()
        total += len(contents.get_data()) if contents is not None else 0
        if total > max_unpacked:
            raise LoadError(path, f"the PDF's page content unpacks to more than the limit of {max_unpacked / 2**20:.0f} MB "
                                  f"(by page {number}); it may be a decompression bomb; raise RAG_MAX_FILE_MB to index it")


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
    listed = sum(1 for line in lines if len(line) <= _CONTENTS_LINE_CHARS and _DOT_LEADER_LINE.match(line))
    return listed / len(lines) >= 0.6 and bool(re.search(r"contents|inhalt|sommaire|índice|\.{4,}", text, re.I))

"""File -> sections of text with their metadata (page, slide, sheet and rows, chapter, heading path), for every format we read.

One module per family of formats: pdf (with ocr for scans), web (saved pages), word, slides,
sheets, ebook and mail; archive checks the zip containers before a library opens them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rag.errors import LoadError

if TYPE_CHECKING:
    from rag.loaders.ocr import Ocr

SUPPORTED_SUFFIXES = {".pdf": "pdf", ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
                      ".html": "html", ".htm": "html", ".docx": "docx", ".pptx": "pptx", ".xlsx": "xlsx",
                      ".csv": "csv", ".tsv": "tsv", ".epub": "epub", ".eml": "eml", ".mbox": "mbox",
                      ".png": "image", ".jpg": "image", ".jpeg": "image", ".tif": "image", ".tiff": "image"}
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
DEFAULT_MAX_PAGES = 5000

# Greedy body, trailing " #" stripped in Python: a lazy body before "[ \t#]*$" backtracks quadratically on long lines.
_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+)$")
_FENCE = re.compile(r"^\s*(```|~~~)")
# Single-byte Latin code pages that detectors confuse with each other on short texts.
_LATIN_GUESSES = {"cp1250", "cp1252", "latin_1", "iso8859_1", "iso8859_2", "iso8859_15", "mac_roman", "cp850"}


@dataclass(frozen=True)
class Section:
    """A run of text from one place in a document: a PDF page, or the body under one heading."""

    path: str
    text: str
    page: int | None = None
    heading: str = ""
    where: str = ""  # the place when it is not a page: "slide 4", "sheet Expenses", "chapter 3", "message 12"
    part: str = ""  # a document inside the file: the name of an e-mail's attachment
    rows: tuple[int, ...] = ()  # a table's row numbers, one per paragraph of `text`; chunks then keep rows whole

    def __post_init__(self) -> None:
        if self.page is not None and self.page < 1:
            raise ValueError(f"page numbers start at 1, got {self.page}")
        if self.rows and len(self.rows) != self.text.count("\n\n") + 1:
            raise ValueError(f"{len(self.rows)} row numbers for {self.text.count(chr(10) * 2) + 1} rows in {self.path}")


@dataclass(frozen=True)
class OcrRun:
    """How scans and images are read in one ingest: the engine (None when there is none) and its setting."""

    engine: str = "off"  # the setting: auto, tesseract, rapidocr or off; named in the reason when no engine runs
    reader: "Ocr | None" = None
    dpi: int = 300
    on_page: Callable[[], None] | None = None  # called after each page read by OCR (the progress bar counts them)


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def load(path: Path, data: bytes | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
         max_pages: int = DEFAULT_MAX_PAGES, ocr: OcrRun = OcrRun()) -> list[Section]:
    """Read one file (or its bytes, when already read) into sections; LoadError says why not."""
    name = str(path)
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise LoadError(name, f"unsupported file type {path.suffix or '(none)'}; supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}")
    if data is None:
        data = read_limited(path, max_bytes)
    if not data.strip():
        raise LoadError(name, "the file is empty")
    sections = _read(name, kind, data, max_bytes, max_pages, ocr)
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise LoadError(name, "no text found in the file")
    return sections


def _read(name: str, kind: str, data: bytes, max_bytes: int, max_pages: int, ocr: OcrRun) -> list[Section]:
    if kind == "pdf":
        from rag.loaders.pdf import pdf_pages

        pages = pdf_pages(name, data, max_pages, max_bytes, ocr.reader, ocr.engine, ocr.dpi, ocr.on_page)
        return [Section(name, text, page=n, where=f"page {n} (read by OCR)" if scanned else "") for n, text, scanned in pages]
    if kind == "image":
        from rag.loaders.ocr import image_pages

        pages = image_pages(name, data, ocr.reader, ocr.engine, max_pages, ocr.on_page)
        single = len(pages) == 1
        return [Section(name, text, page=None if single else n, where="read by OCR" if single else f"page {n} (read by OCR)")
                for n, text in pages]
    if kind == "docx":
        from rag.loaders.word import docx_sections

        return [Section(name, text, heading=h) for h, text in docx_sections(name, data, max_bytes)]
    if kind == "pptx":
        from rag.loaders.slides import slide_sections

        return [Section(name, text, heading=title, where=f"slide {n}")
                for n, title, text in slide_sections(name, data, max_bytes, max_pages)]
    if kind == "xlsx":
        from rag.loaders.sheets import workbook_sheets

        return [_rows_section(name, rows, heading=sheet, where=f"sheet {sheet}")
                for sheet, rows in workbook_sheets(name, data, max_bytes)]
    if kind == "epub":
        from rag.loaders.ebook import epub_chapters

        return [Section(name, text, heading=heading, where=f"chapter {n}")
                for n, _title, parts in epub_chapters(name, data, max_bytes, max_pages) for heading, text in parts]
    if kind in ("eml", "mbox"):
        from rag.loaders import mail

        def attachment(file_name: str, payload: bytes) -> list[Section]:
            return load(Path(file_name), payload, max_bytes, max_pages, ocr)

        if kind == "eml":
            return mail.eml_sections(name, data, attachment)
        return mail.mbox_sections(name, data, attachment, max_pages)
    text = decode_text(name, data)
    if kind in ("csv", "tsv"):
        from rag.loaders.sheets import csv_rows

        rows = csv_rows(name, text, "\t" if kind == "tsv" else None)
        return [_rows_section(name, rows)] if rows else []
    if kind == "html":
        from rag.loaders.web import page_sections

        return [Section(name, body, heading=h) for h, body in page_sections(text)]
    if kind == "markdown":
        return split_markdown(name, text)
    return [Section(name, text.strip())]


def _rows_section(name: str, rows: list[tuple[int, str]], heading: str = "", where: str = "") -> Section:
    return Section(name, "\n\n".join(text for _, text in rows), heading=heading, where=where,
                   rows=tuple(number for number, _ in rows))


def read_limited(path: Path, max_bytes: int) -> bytes:
    """The file's bytes, or LoadError when it cannot be read or is over the size limit."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise LoadError(name, f"the file is {size / 2**20:.0f} MB, over the limit of {max_bytes / 2**20:.0f} MB; "
                                  "raise RAG_MAX_FILE_MB to index it")
        return path.read_bytes()
    except OSError as exc:
        if exc.errno == 40:  # ELOOP
            raise LoadError(name, "is a symbolic link that loops back on itself; fix or remove the link") from None
        raise LoadError(name, f"cannot be read ({exc.strerror or exc}); check that it exists and is readable") from None


def decode_text(name: str, data: bytes) -> str:
    """UTF-8 (with or without BOM), UTF-16/32 with BOM, else the encoding the bytes most likely use."""
    for bom, codec in ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"),
                       (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16")):
        if data.startswith(bom):
            return data.decode(codec, errors="replace")
    if b"\x00" in data[:8192]:
        raise LoadError(name, "looks like binary data, not text; rename it or remove it from the folder")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data[:1_000_000]).best()
    if best is None:
        raise LoadError(name, "looks like binary data, not text (no text encoding fits); rename it or remove it")
    if best.encoding in _LATIN_GUESSES:
        # On laptops, Latin text that is not UTF-8 is nearly always Windows-1252.
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            pass
    return data.decode(best.encoding, errors="replace")


def split_markdown(path: str, text: str) -> list[Section]:
    """One section per heading; the heading path ("Title > Part > Sub") goes with the body under it."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        joined = "\n".join(body).strip()
        if joined:
            sections.append(Section(path, joined, heading=" > ".join(title for _, title in stack)))
        body.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match:
            flush()
            level = len(match.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, (match.group(2).rstrip(" \t#") or match.group(2)[:1]).strip()))
        else:
            body.append(line)
    flush()
    return sections

"""File -> sections of text with their metadata (PDF page numbers, heading paths), for every format we read."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rag.errors import LoadError

SUPPORTED_SUFFIXES = {".pdf": "pdf", ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text",
                      ".html": "html", ".htm": "html", ".docx": "docx"}
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

    def __post_init__(self) -> None:
        if self.page is not None and self.page < 1:
            raise ValueError(f"page numbers start at 1, got {self.page}")


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES


def load(path: Path, data: bytes | None = None, max_bytes: int = DEFAULT_MAX_BYTES,
         max_pages: int = DEFAULT_MAX_PAGES) -> list[Section]:
    """Read one file (or its bytes, when already read) into sections; LoadError says why not."""
    name = str(path)
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise LoadError(name, f"unsupported file type {path.suffix or '(none)'}; supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}")
    if data is None:
        data = read_limited(path, max_bytes)
    if not data.strip():
        raise LoadError(name, "the file is empty")
    if kind == "pdf":
        sections = [Section(name, text, page=n) for n, text in _pdf(name, data, max_pages, max_bytes)]
    elif kind == "docx":
        sections = [Section(name, text, heading=h) for h, text in _docx(name, data, max_bytes)]
    else:
        text = decode_text(name, data)
        if kind == "html":
            sections = [Section(name, body, heading=h) for h, body in _html(text)]
        elif kind == "markdown":
            sections = split_markdown(name, text)
        else:
            sections = [Section(name, text.strip())]
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise LoadError(name, "no text found in the file")
    return sections


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


def _pdf(name: str, data: bytes, max_pages: int, max_bytes: int) -> list[tuple[int, str]]:
    from rag.load_pdf import pdf_pages

    return pdf_pages(name, data, max_pages, max_unpacked=max_bytes)


def _docx(name: str, data: bytes, max_bytes: int) -> list[tuple[str, str]]:
    from rag.load_docx import docx_sections

    return docx_sections(name, data, max_bytes)


def _html(text: str) -> list[tuple[str, str]]:
    from rag.load_html import html_sections

    return html_sections(text)

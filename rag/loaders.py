"""File -> sections of text with their metadata (PDF page numbers, Markdown heading paths)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rag.errors import LoadError

SUPPORTED_SUFFIXES = {".pdf": "pdf", ".md": "markdown", ".markdown": "markdown", ".txt": "text", ".text": "text"}

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t#]*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


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


def load(path: Path) -> list[Section]:
    """Read one file into sections. Raises LoadError with a reason a person can act on."""
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise LoadError(str(path), f"unsupported file type {path.suffix or '(none)'}; supported: {', '.join(sorted(SUPPORTED_SUFFIXES))}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(str(path), f"cannot be read ({exc.strerror or exc}); check that the file exists and is readable") from None
    if not data.strip():
        raise LoadError(str(path), "the file is empty")
    if kind == "pdf":
        sections = _load_pdf(path, data)
    else:
        text = decode_text(path, data)
        sections = _split_markdown(str(path), text) if kind == "markdown" else [Section(str(path), text.strip())]
    sections = [s for s in sections if s.text.strip()]
    if not sections:
        raise LoadError(str(path), "no text found in the file")
    return sections


def decode_text(path: Path, data: bytes) -> str:
    """Decode a text file: UTF-8 (with or without BOM), UTF-16 with BOM, else Windows-1252."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    if b"\x00" in data[:4096]:
        raise LoadError(str(path), "looks like binary data, not text; rename it or remove it from the folder")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Most non-UTF-8 text on laptops is Windows-1252; bytes it leaves undefined fall back to Latin-1.
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            return data.decode("latin-1")


def _load_pdf(path: Path, data: bytes) -> list[Section]:
    import io

    import pypdf
    from pypdf.errors import PdfReadError

    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise LoadError(str(path), "the PDF is encrypted with a password; save an unprotected copy and ingest that")
        sections = []
        for number, page in enumerate(reader.pages, start=1):
            text = page.extract_text() or ""
            if text.strip():
                sections.append(Section(str(path), _tidy_pdf_text(text), page=number))
    except LoadError:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise LoadError(str(path), f"the PDF is damaged or not a PDF ({exc}); re-export or re-download it") from None
    if not sections:
        raise LoadError(str(path), "no extractable text; scanned? Run OCR on it first (for example ocrmypdf)")
    return sections


def _tidy_pdf_text(text: str) -> str:
    # pypdf keeps the PDF's line breaks; re-join words hyphenated across lines.
    return re.sub(r"(\w)-\n(\w)", r"\1\2", text).strip()


def _split_markdown(path: str, text: str) -> list[Section]:
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
            stack.append((level, match.group(2).strip()))
        else:
            body.append(line)
    flush()
    return sections

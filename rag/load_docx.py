"""DOCX -> sections split at heading paragraphs, read straight from the document's XML (no macros run)."""

from __future__ import annotations

import re
import zipfile
import zlib
from xml.etree import ElementTree

from rag.errors import LoadError

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre|titolo|encabezado|kop)\s*(\d)$", re.I)


def docx_sections(path: str, data: bytes, max_bytes: int) -> list[tuple[str, str]]:
    """(heading path, body text) for each run of paragraphs under a heading; tables become "a | b" rows."""
    import io

    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            try:
                info = archive.getinfo("word/document.xml")
            except KeyError:
                raise LoadError(path, "not a Word document (no word/document.xml inside); save it again as .docx") from None
            if info.file_size > max_bytes:
                raise LoadError(path, f"the document's text part unpacks to {info.file_size:,} bytes, over the limit of "
                                      f"{max_bytes:,}; it may be a decompression bomb")
            xml = _read_bounded(path, archive, info, max_bytes)
        root = ElementTree.fromstring(xml)
    except LoadError:
        raise
    except (RuntimeError, NotImplementedError) as exc:  # zipfile: encrypted member, unknown compression method
        raise LoadError(path, f"the Word file is encrypted or uses an unsupported packing ({exc}); save it again without a password") from None
    except (zipfile.BadZipFile, zlib.error, ElementTree.ParseError, OSError, ValueError, EOFError) as exc:
        raise LoadError(path, f"the Word file is damaged or not a .docx ({exc}); open and save it again") from None
    body = root.find(f"{_W}body")
    if body is None:
        return []
    sections: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    paragraphs: list[str] = []

    def flush() -> None:
        text = "\n\n".join(p for p in paragraphs if p)
        if text:
            sections.append((" > ".join(t for _, t in stack), text))
        paragraphs.clear()

    for element in body:
        if element.tag == f"{_W}p":
            level = _heading_level(element)
            text = _paragraph_text(element)
            if level is not None and text:
                flush()
                while stack and stack[-1][0] >= level:
                    stack.pop()
                stack.append((level, text))
            else:
                paragraphs.append(text)
        elif element.tag == f"{_W}tbl":
            for row in element.iter(f"{_W}tr"):
                cells = [" ".join(_paragraph_text(p) for p in cell.iter(f"{_W}p")).strip() for cell in row.iter(f"{_W}tc")]
                paragraphs.append(" | ".join(cells))
    flush()
    return sections


def _read_bounded(path: str, archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    """The member's bytes, inflated 1 MB at a time: archive.read() inflates all the compressed data at once,
    so a header that understates the size would still unpack a bomb in memory before the CRC check fails."""
    parts: list[bytes] = []
    total = 0
    with archive.open(info) as member:
        while piece := member.read(2**20):
            total += len(piece)
            if total > max_bytes:  # zipfile stops at the declared size; this holds even if it did not
                raise LoadError(path, f"the document's text part unpacks to more than the limit of {max_bytes:,} bytes; "
                                      "it may be a decompression bomb")
            parts.append(piece)
    return b"".join(parts)


def _heading_level(paragraph: ElementTree.Element) -> int | None:
    """0 for the document title, 1-9 for headings, None for body text."""
    style = paragraph.find(f"{_W}pPr/{_W}pStyle")
    name = (style.get(f"{_W}val") or "") if style is not None else ""
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else None


def _paragraph_text(paragraph: ElementTree.Element) -> str:
    parts = []
    for node in paragraph.iter():
        if node.tag == f"{_W}t" and node.text:
            parts.append(node.text)
        elif node.tag == f"{_W}tab":
            parts.append(" ")
        elif node.tag in (f"{_W}br", f"{_W}cr"):
            parts.append("\n")
    return " ".join("".join(parts).split())

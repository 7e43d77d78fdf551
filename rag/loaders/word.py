"""DOCX -> sections split at heading paragraphs, read straight from the document's XML parts (no macros run).

What Word shows is read, once: the body in document order (content controls, text boxes and nested
tables included), then the footnotes, the endnotes, and the headers and footers, each distinct
paragraph of those once however many pages repeat it. Not read: deleted or moved-away text
(tracked changes), field codes, runs marked hidden, comments, the VML copy that Word keeps of
every drawing for old readers (mc:Fallback), and the table of contents (it repeats the headings).
"""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
import zlib
from typing import Iterator
from xml.etree import ElementTree

from rag.errors import LoadError

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_R = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
# ISO 29500 Strict files name the same elements in other namespaces; read them as the transitional ones.
_STRICT = ((b"http://purl.oclc.org/ooxml/wordprocessingml/main", _W[1:-1].encode()),
           (b"http://purl.oclc.org/ooxml/officeDocument/relationships", _R[1:-1].encode()))
_HEADING_STYLE = re.compile(r"^(?:heading|überschrift|titre|titolo|encabezado|kop)\s*(\d)$", re.I)
_MAX_DEPTH = 32  # tables in cells, text boxes in text boxes: real documents stay far below this

FOOTNOTES, ENDNOTES, HEADERS = "Footnotes", "Endnotes", "Header and footer"

# Not read inside a paragraph: properties, tracked deletions and moves, the old-reader copy of a drawing,
# a content control's settings, field codes (w:instrText) and deleted text (w:delText, a tag of its own anyway).
_SKIP = {f"{_W}pPr", f"{_W}rPr", f"{_W}del", f"{_W}moveFrom", f"{_MC}Fallback", f"{_W}sdtPr", f"{_W}sdtEndPr",
         f"{_W}instrText", f"{_W}delText"}
_CHARACTERS = {f"{_W}tab": " ", f"{_W}ptab": " ", f"{_W}br": "\n", f"{_W}cr": "\n", f"{_W}noBreakHyphen": "-"}


def docx_sections(path: str, data: bytes, max_bytes: int) -> list[tuple[str, str]]:
    """(heading path, body text) for each run of paragraphs under a heading, then the notes and the headers/footers;
    tables become "a | b" rows, one per paragraph. Every part is inflated through a bound: `max_bytes` for all together."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            parts = _Parts(path, archive, max_bytes)
            document = parts.xml("word/document.xml")
            if document is None:
                raise LoadError(path, "not a Word document (no word/document.xml inside); save it again as .docx")
            styles = _heading_styles(parts.xml("word/styles.xml"))
            by_id, by_type = _relationships(parts.xml("word/_rels/document.xml.rels"))
            notes = [(title, parts.xml(by_type[kind])) for title, kind in ((FOOTNOTES, "footnotes"), (ENDNOTES, "endnotes"))
                     if kind in by_type]
            headers = [parts.xml(name) for name in _header_parts(document, by_id)]
    except LoadError:
        raise
    except (RuntimeError, NotImplementedError) as exc:  # zipfile: encrypted member, unknown compression method
        raise LoadError(path, f"the Word file is encrypted or uses an unsupported packing ({exc}); save it again without a password") from None
    except (zipfile.BadZipFile, zlib.error, ElementTree.ParseError, OSError, ValueError, EOFError) as exc:
        raise LoadError(path, f"the Word file is damaged or not a .docx ({exc}); open and save it again") from None
    body = document.find(f"{_W}body")
    sections = _body_sections(path, body, styles) if body is not None else []
    for title, part in notes:
        texts = [" ".join(t for _, t in _blocks(path, note, styles) if t) for note in _notes(part)]
        if any(texts):
            sections.append((title, "\n\n".join(t for t in texts if t)))
    lines = dict.fromkeys(t for part in headers if part is not None for _, t in _blocks(path, part, styles) if t)
    if lines:
        sections.append((HEADERS, "\n\n".join(lines)))
    return sections


class _Parts:
    """The archive's XML parts, each inflated through the bound; all of them together at most `max_bytes`."""

    def __init__(self, path: str, archive: zipfile.ZipFile, max_bytes: int) -> None:
        self.path, self.archive, self.max_bytes, self.left = path, archive, max_bytes, max_bytes

    def xml(self, name: str) -> ElementTree.Element | None:
        """The part parsed, or None when the archive has no such part."""
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            return None
        what = "text part" if name == "word/document.xml" else f"part {name}"
        if info.file_size > self.left:
            raise LoadError(self.path, f"the document's {what} unpacks to {info.file_size:,} bytes, over the limit of "
                                       f"{self.max_bytes:,} for all its parts; it may be a decompression bomb")
        data = self._inflate(info, what)
        self.left -= len(data)
        for strict, transitional in _STRICT:
            data = data.replace(strict, transitional)
        return ElementTree.fromstring(data)

    def _inflate(self, info: zipfile.ZipInfo, what: str) -> bytes:
        """The member's bytes, inflated 1 MB at a time: archive.read() inflates all the compressed data at once,
        so a header that understates the size would still unpack a bomb in memory before the CRC check fails."""
        pieces: list[bytes] = []
        total = 0
        with self.archive.open(info) as member:
            while piece := member.read(2**20):
                total += len(piece)
                if total > self.left:  # zipfile stops at the declared size; this holds even if it did not
                    raise LoadError(self.path, f"the document's {what} unpacks to more than the limit of "
                                               f"{self.max_bytes:,} bytes for all its parts; it may be a decompression bomb")
                pieces.append(piece)
        return b"".join(pieces)


def _relationships(rels: ElementTree.Element | None) -> tuple[dict[str, str], dict[str, str]]:
    """The document's parts by relationship id ("rId7" -> word/header1.xml) and by kind ("footnotes" -> word/footnotes.xml)."""
    by_id: dict[str, str] = {}
    by_type: dict[str, str] = {}
    for rel in rels.iter(_REL) if rels is not None else ():
        target = rel.get("Target", "")
        if rel.get("TargetMode") == "External" or not target:
            continue
        name = target.lstrip("/") if target.startswith("/") else posixpath.normpath(posixpath.join("word", target))
        by_id[rel.get("Id", "")] = name
        by_type.setdefault(rel.get("Type", "").rsplit("/", 1)[-1], name)
    return by_id, by_type


def _header_parts(document: ElementTree.Element, targets: dict[str, str]) -> list[str]:
    """The header and footer parts the sections name, each once, in the order the sections name them."""
    names = []
    for properties in document.iter(f"{_W}sectPr"):
        for ref in properties:
            if ref.tag in (f"{_W}headerReference", f"{_W}footerReference") and ref.get(f"{_R}id") in targets:
                names.append(targets[ref.get(f"{_R}id")])
    return list(dict.fromkeys(names))


def _notes(part: ElementTree.Element | None) -> list[ElementTree.Element]:
    """The footnotes or endnotes, without the separator lines Word keeps among them."""
    if part is None:
        return []
    return [note for note in part if note.tag in (f"{_W}footnote", f"{_W}endnote")
            and note.get(f"{_W}type", "normal") == "normal"]


def _body_sections(path: str, body: ElementTree.Element, styles: dict[str, int]) -> list[tuple[str, str]]:
    sections: list[tuple[str, str]] = []
    stack: list[tuple[int, str]] = []
    carried = 0  # how many headings from the bottom of the stack a section already has in its path
    paragraphs: list[str] = []

    def emit(text: str) -> None:
        nonlocal carried
        sections.append((" > ".join(t for _, t in stack), text))
        carried = len(stack)

    def flush() -> None:
        text = "\n\n".join(p for p in paragraphs if p)
        if text:
            emit(text)
        paragraphs.clear()

    def pop() -> None:
        nonlocal carried
        _, heading = stack.pop()
        if carried > len(stack):
            carried = len(stack)
        else:  # a heading with nothing under it is kept, as a line under its parent
            emit(heading)

    for level, text in _blocks(path, body, styles, top=True):
        if level is not None and text:
            flush()
            while stack and stack[-1][0] >= level:
                pop()
            stack.append((level, text))
        else:
            paragraphs.append(text)
    flush()
    while stack:
        pop()
    return sections


def _blocks(path: str, container: ElementTree.Element, styles: dict[str, int], top: bool = False,
            depth: int = 0) -> Iterator[tuple[int | None, str]]:
    """(heading level or None, text) for each paragraph and table row of a body, cell, text box or note, in order.
    Only the body's own paragraphs (`top`) are headings; a text box's paragraphs follow the one that anchors it."""
    if depth > _MAX_DEPTH:
        raise LoadError(path, f"the Word file nests tables or text boxes more than {_MAX_DEPTH} deep; "
                              "it is damaged or not a real document")
    for node in _unwrapped(container):
        if node.tag == f"{_W}p":
            text, boxes = _paragraph(node)
            yield (_heading_level(node, styles) if top else None), text
            for box in boxes:
                yield from _blocks(path, box, styles, depth=depth + 1)
        elif node.tag == f"{_W}tbl":
            for row in _unwrapped(node):
                if row.tag != f"{_W}tr" or row.find(f"{_W}trPr/{_W}del") is not None:
                    continue  # a row deleted with changes tracked
                cells = [" ".join(t for _, t in _blocks(path, cell, styles, depth=depth + 1) if t)
                         for cell in _unwrapped(row) if cell.tag == f"{_W}tc"]
                if any(cells):
                    yield None, " | ".join(cells)


def _unwrapped(element: ElementTree.Element) -> Iterator[ElementTree.Element]:
    """The element's children, with content controls, custom XML and alternate content opened in place
    (a content control's content, the first mc:Choice); a table of contents is left out."""
    stack = list(reversed(element))
    while stack:
        node = stack.pop()
        if node.tag == f"{_W}sdt":
            gallery = node.find(f"{_W}sdtPr/{_W}docPartObj/{_W}docPartGallery")
            content = node.find(f"{_W}sdtContent")
            if content is not None and (gallery is None or gallery.get(f"{_W}val") != "Table of Contents"):
                stack.extend(reversed(content))
        elif node.tag in (f"{_W}customXml", f"{_W}ins", f"{_W}moveTo"):
            stack.extend(reversed(node))
        elif node.tag == f"{_MC}AlternateContent":
            stack.extend(reversed(_chosen(node)))
        else:
            yield node


def _paragraph(paragraph: ElementTree.Element) -> tuple[str, list[ElementTree.Element]]:
    """The paragraph's visible text on one line, and the text boxes anchored in it (read as paragraphs of their own).
    A loop with a stack, not recursion: a hostile file may nest runs a hundred thousand deep."""
    parts: list[str] = []
    boxes: list[ElementTree.Element] = []
    stack = list(reversed(paragraph))
    while stack:
        node = stack.pop()
        tag = node.tag
        if tag == f"{_W}t":
            parts.append(node.text or "")
        elif tag in _CHARACTERS:
            parts.append(_CHARACTERS[tag])
        elif tag == f"{_W}txbxContent":
            boxes.append(node)
        elif tag in _SKIP or (tag == f"{_W}r" and _hidden(node)):
            continue
        elif tag == f"{_MC}AlternateContent":
            stack.extend(reversed(_chosen(node)))
        else:
            stack.extend(reversed(node))
    return " ".join("".join(parts).split()), boxes


def _chosen(alternate: ElementTree.Element) -> list[ElementTree.Element]:
    """The content of the first mc:Choice (what Word shows), or of mc:Fallback when there is no choice."""
    for branch in (f"{_MC}Choice", f"{_MC}Fallback"):
        found = alternate.find(branch)
        if found is not None:
            return list(found)
    return []


def _hidden(run: ElementTree.Element) -> bool:
    """True for a run formatted hidden (Word shows it only with formatting marks on)."""
    vanish = run.find(f"{_W}rPr/{_W}vanish")
    return vanish is not None and vanish.get(f"{_W}val", "true") not in ("0", "false", "off")


def _heading_styles(styles: ElementTree.Element | None) -> dict[str, int]:
    """Paragraph style id -> heading level (0 for the title): by the style's name, which styles.xml keeps in English
    ("heading 1") whatever the id a translated Word gave it ("berschrift1"), or by its outline level, or its base's."""
    if styles is None:
        return {}
    own: dict[str, int | None] = {}  # None: the style says nothing, its base decides; -1: body text (outline level 9)
    based_on: dict[str, str] = {}
    for style in styles.iter(f"{_W}style"):
        if style.get(f"{_W}type", "paragraph") != "paragraph":
            continue
        style_id = style.get(f"{_W}styleId", "")
        name, outline, base = style.find(f"{_W}name"), style.find(f"{_W}pPr/{_W}outlineLvl"), style.find(f"{_W}basedOn")
        level = _level_by_name((name.get(f"{_W}val") or "") if name is not None else "")
        outline_level = (outline.get(f"{_W}val") or "") if outline is not None else ""
        if level is None and outline_level.isdecimal():
            level = int(outline_level) + 1 if int(outline_level) < 9 else -1
        own[style_id] = level
        if base is not None:
            based_on[style_id] = base.get(f"{_W}val", "")
    levels: dict[str, int] = {}
    for style_id in own:
        current, seen = style_id, 0
        while own.get(current) is None and current in based_on and seen < 10:  # a loop of bases is not followed forever
            current, seen = based_on[current], seen + 1
        level = own.get(current)
        if level is not None and level >= 0:
            levels[style_id] = level
    return levels


def _level_by_name(name: str) -> int | None:
    if name.lower() == "title":
        return 0
    match = _HEADING_STYLE.match(name)
    return int(match.group(1)) if match else None


def _heading_level(paragraph: ElementTree.Element, styles: dict[str, int]) -> int | None:
    """0 for the document title, 1-9 for headings, None for body text."""
    style = paragraph.find(f"{_W}pPr/{_W}pStyle")
    style_id = (style.get(f"{_W}val") or "") if style is not None else ""
    return styles[style_id] if style_id in styles else _level_by_name(style_id)

"""Build the sample multi-page PDF (llm-handbook.pdf) from Markdown notes, using only the standard library."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

PAGE_WIDTH = 595
PAGE_HEIGHT = 842
FONT_SIZE = 11
LEADING = 14
MARGIN_LEFT = 50
MARGIN_TOP = 72

HERE = Path(__file__).parent
SOURCE_NOTES = ["tokenization.md", "sampling.md", "quantization-and-gguf.md"]
OUTPUT_NAME = "llm-handbook.pdf"


def pdf_string(text: str) -> bytes:
    """Encode text as a PDF literal string in WinAnsi (cp1252), escaping \\, ( and )."""
    raw = text.encode("cp1252", errors="replace")
    raw = raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")
    raw = raw.replace(b"\r", b"\\r").replace(b"\n", b"\\n").replace(b"\t", b" ")
    return b"(" + raw + b")"


def page_content(lines: list[str]) -> bytes:
    """Return the content stream that draws the given lines top to bottom."""
    start_y = PAGE_HEIGHT - MARGIN_TOP
    ops = [
        b"BT",
        b"/F1 %d Tf" % FONT_SIZE,
        b"%d TL" % LEADING,
        b"%d %d Td" % (MARGIN_LEFT, start_y),
    ]
    for i, line in enumerate(lines):
        if i > 0:
            ops.append(b"T*")
        if line.strip():
            ops.append(pdf_string(line) + b" Tj")
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


def write_pdf(path: str | Path, pages: list[list[str]], title: str | None = None) -> None:
    """Write a PDF with one A4 page per list of text lines, in 11 pt Helvetica."""
    if not pages:
        pages = [[]]
    objects: list[bytes] = []  # objects[i] is the body of object number i + 1

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    catalog_id = add(b"")  # filled in once the pages tree exists
    pages_id = add(b"")
    font_id = add(
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica "
        b"/Encoding /WinAnsiEncoding >>"
    )
    info_id = None
    if title is not None:
        info_id = add(b"<< /Title " + pdf_string(title) + b" /Producer (make_pdf.py) >>")

    page_ids: list[int] = []
    for lines in pages:
        stream = page_content(lines)
        content_id = add(
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"endstream"
        )
        page_ids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %d %d] "
                b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>"
                % (pages_id, PAGE_WIDTH, PAGE_HEIGHT, font_id, content_id)
            )
        )

    kids = b" ".join(b"%d 0 R" % pid for pid in page_ids)
    objects[pages_id - 1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, len(page_ids))
    objects[catalog_id - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id

    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: list[int] = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"

    xref_offset = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    trailer = b"<< /Size %d /Root %d 0 R" % (len(objects) + 1, catalog_id)
    if info_id is not None:
        trailer += b" /Info %d 0 R" % info_id
    out += b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref_offset

    Path(path).write_bytes(bytes(out))


def _clean_inline(text: str) -> str:
    """Remove simple inline Markdown markup (bold, italics, code, links)."""
    text = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\*\*(.+?)\*\*", r"\1", text)
    text = re.sub(r"`([^`]*)`", r"\1", text)
    return text


def _wrap(text: str, width: int, indent: str = "", hanging: str = "") -> list[str]:
    """Wrap text at word boundaries; a word longer than the width stays whole."""
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=hanging,
        break_long_words=False,
        break_on_hyphens=False,
    ) or [indent.rstrip()]


def _blocks(markdown_text: str) -> list[tuple[str, list[str]]]:
    """Split Markdown into (kind, lines) blocks: h1, heading, para, list, code."""
    blocks: list[tuple[str, list[str]]] = []
    para: list[str] = []
    items: list[str] = []
    in_fence = False
    fence: list[str] = []

    def flush() -> None:
        if para:
            blocks.append(("para", [" ".join(para)]))
            para.clear()
        if items:
            blocks.append(("list", list(items)))
            items.clear()

    for raw in markdown_text.splitlines():
        line = raw.rstrip()
        if line.lstrip().startswith("```"):
            if in_fence:
                blocks.append(("code", list(fence)))
                fence.clear()
            else:
                flush()
            in_fence = not in_fence
            continue
        if in_fence:
            fence.append(line)
            continue
        if not line.strip():
            flush()
            continue
        heading = re.match(r"^(#{1,6})\s+(.*)$", line)
        if heading:
            flush()
            kind = "h1" if len(heading.group(1)) == 1 else "heading"
            blocks.append((kind, [_clean_inline(heading.group(2).strip())]))
            continue
        if line.startswith("    ") and not para and not items:
            blocks.append(("code", [line[4:]]))
            continue
        bullet = re.match(r"^\s*(?:[-*+]|\d+\.)\s+(.*)$", line)
        if bullet:
            if para:
                flush()
            items.append(_clean_inline(bullet.group(1)))
        elif items:
            items[-1] += " " + _clean_inline(line.strip())
        else:
            para.append(_clean_inline(line.strip()))
    flush()
    if fence:
        blocks.append(("code", fence))

    # Merge consecutive one-line indented code blocks into one block.
    merged: list[tuple[str, list[str]]] = []
    for kind, lines in blocks:
        if kind == "code" and merged and merged[-1][0] == "code":
            merged[-1][1].extend(lines)
        else:
            merged.append((kind, lines))
    return merged


def markdown_to_pages(
    markdown_text: str, width_chars: int = 90, lines_per_page: int = 50
) -> list[list[str]]:
    """Wrap Markdown into plain text lines and paginate; each '# ' heading starts a page."""
    pages: list[list[str]] = []
    current: list[str] = []

    def new_page() -> None:
        nonlocal current
        while current and not current[-1].strip():
            current.pop()
        if current:
            pages.append(current)
        current = []

    pending: list[list[str]] = []  # headings waiting to be kept with the next block

    def emit(block_lines: list[str]) -> None:
        """Add pending headings plus a block, each preceded by a blank line unless at page top.

        The headings and the first two lines of the block must fit on the current page,
        otherwise they all start a new page (so a heading is never stranded at the bottom).
        """
        group = pending + [block_lines]
        needed = sum(len(g) for g in group[:-1]) + min(len(block_lines), 2) + len(group)
        if current and len(current) + needed > lines_per_page:
            new_page()
        for part in group:
            if current:
                current.append("")
            for index, line in enumerate(part):
                left = len(part) - index
                # Avoid a lone last line of a block at the top of the next page.
                widow = len(current) == lines_per_page - 1 and left == 2 and index >= 2
                if len(current) >= lines_per_page or widow:
                    new_page()
                current.append(line)
        pending.clear()

    for kind, lines in _blocks(markdown_text):
        if kind in ("h1", "heading"):
            if kind == "h1":
                if pending:
                    emit([])
                new_page()
            pending.append(_wrap(lines[0], width_chars))
        elif kind == "para":
            emit(_wrap(lines[0], width_chars))
        elif kind == "list":
            wrapped: list[str] = []
            for item in lines:
                wrapped.extend(_wrap(item, width_chars, indent="- ", hanging="  "))
            emit(wrapped)
        else:  # code
            wrapped = []
            for line in lines:
                wrapped.extend(_wrap(line, width_chars, indent="    ", hanging="      "))
            emit(wrapped)
    if pending:
        emit([])
    new_page()
    return pages


def build(out_path: Path = HERE / OUTPUT_NAME) -> int:
    """Build the handbook from the three source notes; returns its page count."""
    text = "\n\n".join((HERE / name).read_text(encoding="utf-8") for name in SOURCE_NOTES)
    pages = markdown_to_pages(text)
    write_pdf(out_path, pages, title="LLM Handbook: Tokenization, Sampling, Quantization")
    return len(pages)


def main() -> None:
    """Build llm-handbook.pdf next to this script."""
    out_path = HERE / OUTPUT_NAME
    print(f"wrote {out_path} ({build(out_path)} pages)")


if __name__ == "__main__":
    main()

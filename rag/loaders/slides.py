"""PowerPoint (.pptx) -> one section per slide, titled by the slide's title, speaker notes included (python-pptx)."""

from __future__ import annotations

import io

from rag.errors import LoadError
from rag.loaders.archive import checked_zip

NOTES = "Speaker notes:"


def slide_sections(path: str, data: bytes, max_bytes: int, max_pages: int) -> list[tuple[int, str, str]]:
    """(slide number, title, text) in slide order; text runs top to bottom, tables as "a | b" rows."""
    from lxml.etree import LxmlError
    from pptx import Presentation
    from pptx.exc import PackageNotFoundError

    checked_zip(path, data, max_bytes, "presentation")
    try:
        deck = Presentation(io.BytesIO(data))
        slides = list(deck.slides)
        if len(slides) > max_pages:
            raise LoadError(path, f"the presentation has {len(slides)} slides, more than the limit of {max_pages}; "
                                  "raise RAG_MAX_PAGES to index it")
        out = []
        for number, slide in enumerate(slides, start=1):
            title_shape = slide.shapes.title
            title = _one_line(title_shape.text_frame.text) if title_shape is not None and title_shape.has_text_frame else ""
            title_id = title_shape.shape_id if title_shape is not None else None
            blocks = [text for shape in _in_reading_order(slide.shapes) if shape.shape_id != title_id
                      for text in _shape_text(shape)]
            if slide.has_notes_slide:
                notes = slide.notes_slide.notes_text_frame
                if notes is not None and notes.text.strip():
                    blocks.append(f"{NOTES} {' '.join(notes.text.split())}")
            out.append((number, title, "\n\n".join(b for b in blocks if b)))
        return out
    except LoadError:
        raise
    except (PackageNotFoundError, KeyError, ValueError, TypeError, AttributeError, LxmlError, IndexError, ZeroDivisionError) as exc:
        raise LoadError(path, f"the presentation is damaged or not a .pptx ({type(exc).__name__}: {exc}); "
                              "open and save it again") from None


def _in_reading_order(shapes) -> list:
    """Top to bottom, then left to right; shapes without a position keep their place at the end."""
    placed = [s for s in shapes if s.top is not None and s.left is not None]
    return sorted(placed, key=lambda s: (s.top, s.left)) + [s for s in shapes if s not in placed]


def _shape_text(shape, depth: int = 0) -> list[str]:
    if depth > 20:  # groups nested this deep are not a real slide
        return []
    if shape.shape_type is not None and int(shape.shape_type) == 6:  # MSO_SHAPE_TYPE.GROUP
        return [t for inner in _in_reading_order(shape.shapes) for t in _shape_text(inner, depth + 1)]
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = [" | ".join(_one_line(cell.text) for cell in row.cells) for row in shape.table.rows]
        return ["\n".join(r for r in rows if r.strip(" |"))]
    if shape.has_text_frame:
        lines = [_one_line(p.text if hasattr(p, "text") else "") for p in shape.text_frame.paragraphs]
        return ["\n".join(line for line in lines if line)]
    return []


def _one_line(text: str) -> str:
    return " ".join(text.split())

"""HTML -> sections split at h1-h6, with visible text only (no scripts, styles or hidden templates)."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP = {"script", "style", "noscript", "template", "svg", "head", "iframe", "object"}
_BLOCK = {"p", "div", "li", "ul", "ol", "tr", "table", "section", "article", "main", "header", "footer", "nav",
          "aside", "blockquote", "pre", "dd", "dt", "dl", "figure", "figcaption", "form", "hr", "br"}
_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_OPENER = re.compile(r"<(!--|!\[)?")
_COMMENT_CLOSE = re.compile(r"--\s*>")  # what html.parser looks for after "<!--"
_SECTION_CLOSE = re.compile(r"]\s*>")  # the least that ends a "<![CDATA[" or other marked section
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.sections: list[tuple[str, str]] = []  # (heading path, text)
        self.title = ""
        self._stack: list[tuple[int, str]] = []
        self._text: list[str] = []
        self._heading: list[str] | None = None
        self._heading_level = 0
        self._skip_depth = 0
        self._in_title = False
        self._cells = 0  # cells seen in the current table row

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        if self._skip_depth:  # inside a skipped element: only count nesting
            self._skip_depth += tag not in _VOID
            return
        if (tag in _SKIP or any(name == "hidden" for name, _ in attrs)) and tag not in _VOID:
            self._skip_depth = 1
            return
        if tag in _HEADINGS:
            self._flush()
            self._heading, self._heading_level = [], _HEADINGS[tag]
        elif tag in _BLOCK:
            self._text.append("\n\n" if tag in ("p", "div", "section", "article", "blockquote", "pre", "table") else "\n")
            self._cells = 0
        elif tag in ("td", "th"):
            self._text.append(" | " if self._cells else "")
            self._cells += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("br", "hr") and not self._skip_depth:
            self._text.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        if self._skip_depth:
            self._skip_depth -= tag not in _VOID
            return
        if tag in _HEADINGS and self._heading is not None:
            title = " ".join("".join(self._heading).split())
            while self._stack and self._stack[-1][0] >= self._heading_level:
                self._stack.pop()
            if title:
                self._stack.append((self._heading_level, title))
            self._heading = None
        elif tag in _BLOCK:
            self._text.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        if self._skip_depth:
            return
        (self._heading if self._heading is not None else self._text).append(data)

    def _flush(self) -> None:
        raw = "".join(self._text)
        paragraphs = [" ".join(p.split()) for p in raw.split("\n\n")]
        text = "\n\n".join(p for p in paragraphs if p)
        if text:
            self.sections.append((" > ".join(t for _, t in self._stack), text))
        self._text = []

    def close(self) -> None:
        super().close()
        self._flush()


def _last_start(pattern: re.Pattern[str], text: str) -> int:
    last = -1
    for match in pattern.finditer(text):
        last = match.start()
    return last


def _escape_unclosed(text: str) -> str:
    """Turn "<" into "&lt;" where no closer follows anywhere, so html.parser reads it as the text it is anyway.

    html.parser (CPython 3.11) rescans to the end of the document for every "</", "<!", "<![CDATA[" or
    "<!--" that never closes, which is quadratic: a 1 MB file of "</" takes minutes. After the last
    closer of its kind, such an opener can only ever be text, so escaping it changes nothing visible.
    """
    last_gt = text.rfind(">")
    last_comment, last_section = _last_start(_COMMENT_CLOSE, text), _last_start(_SECTION_CLOSE, text)
    out: list[str] = []
    done = 0
    for match in _OPENER.finditer(text):
        start, kind = match.start(), match.group(1)
        closer = last_comment if kind == "!--" else last_section if kind == "![" else last_gt
        if closer < match.end():
            out.append(text[done:start])
            out.append("&lt;")
            done = start + 1
    out.append(text[done:])
    return "".join(out)


def html_sections(text: str) -> list[tuple[str, str]]:
    """(heading path, body text) in document order; the page title heads text before the first heading."""
    collector = _Collector()
    collector.feed(_escape_unclosed(text))
    collector.close()
    title = " ".join(collector.title.split())
    return [(heading or title, body) for heading, body in collector.sections]

"""HTML -> sections split at h1-h6, with visible text only (no scripts, styles or hidden templates); for saved pages, the main content only."""

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
    return _sections(_escape_unclosed(text))


def _sections(markup: str, title: str | None = None) -> list[tuple[str, str]]:
    """The collector's sections; text before the first heading goes under `title`, else under the page's <title>."""
    collector = _Collector()
    collector.feed(markup)
    collector.close()
    title = " ".join((collector.title if title is None else title).split())
    return [(heading or title, body) for heading, body in collector.sections]


# What trafilatura is asked for (trafilatura 2.3.1, core.bare_extraction):
_EXTRACT = dict(
    favor_recall=True,  # an index wants every paragraph; bench/webpages.py: as good as balanced, better than precision
    include_comments=False,  # readers' comments under a post are not the page's content
    include_tables=True,  # tables are content (parameters, prices, timetables)
    include_formatting=True,  # keeps inline <code> and emphasis in their sentences
    include_links=False,  # link text stays, targets are not indexed
    include_images=False,
    deduplicate=False,  # trafilatura's dedup is a process-wide cache: it would drop a paragraph seen in an earlier file
    with_metadata=False,  # no date, author or site-name search: only the <title>, read below
    prune_xpath=["//*[@hidden]", "//template"],  # left out by html_sections; trafilatura keeps their text
)
# Page furniture: HTML5 and ARIA landmarks, and the class or id names that menus, banners and footers carry. A page
# with none of these (a generated help page, a note saved as HTML) is all content, and trafilatura's rescue stages
# for short pages flatten it into one paragraph without headings, so such a page is read whole.
_FURNITURE = ("self::nav or self::header or self::footer or self::aside or self::menu or @role='navigation'"
              " or @role='banner' or @role='contentinfo' or @role='complementary' or @role='search'"
              " or re:test(concat(@id, ' ', @class), 'nav|menu|footer|sidebar|cookie|consent|banner|breadcrumb', 'i')")
_HAS_FURNITURE = f"boolean(//*[{_FURNITURE}])"
_HEADING_TAGS = tuple(f"h{i}" for i in range(1, 7))
_CONTENT_HEADINGS = f"count(//*[{' or '.join(f'self::{h}' for h in _HEADING_TAGS)}][not(ancestor::*[{_FURNITURE}])])"
# When trafilatura finds no content frame (no <main>, <article> or content class: DocBook and Doxygen pages) it
# gathers the page's loose paragraphs and drops every heading; bench/webpages.py shows it then keeps a tenth of the
# headings and less text than the plain reader. Keeping under a quarter of the headings outside the furniture
# marks that case, and the whole page is read instead: its structure is worth more than its few furniture lines.
_MIN_HEADINGS_KEPT = 0.25
_REGEXP_NS = {"re": "http://exslt.org/regular-expressions"}
# libxml2's HTML parser stops reading at 256 nested elements and drops the rest of the page, silently.
_LIBXML2_MAX_DEPTH = 255
# Bounds on what goes to trafilatura, whose time grows with the element count (100-200 microseconds each here, more
# when deeply nested: 30 to 55 seconds for a 3 MB page of 260,000 nested divs). The largest page of Python's manual,
# os.html, has 16,000 elements and takes 1.5 s. Past either bound the plain reader, a second or two a megabyte, is used.
_MAX_EXTRACT_CHARS = 5_000_000
_MAX_EXTRACT_ELEMENTS = 50_000
_TEI_TAGS = {"list": "ul", "item": "li", "quote": "blockquote", "lb": "br", "row": "tr", "hi": "span", "ref": "span",
             "del": "span", "graphic": "span", "main": "div", "body": "div", "doc": "div"}
_INLINE_PARENTS = {"p", "head", "hi", "ref", "del", "cell", "item"}


def page_sections(text: str) -> list[tuple[str, str]]:
    """A saved web page's main content as (heading path, body text); menus, banners and footers left out.

    trafilatura finds the main content; its markup goes through the same collector as html_sections, so
    headings still split sections and the page title heads the text before the first one. A page without
    furniture, one trafilatura cannot read, or where it finds nothing, is read whole by html_sections.
    """
    if len(text) <= _MAX_EXTRACT_CHARS:
        try:
            main = _main_content(text)
        except Exception:  # noqa: BLE001 - any failure of the extractor on odd input means: read the whole page
            main = None
        if main is not None and (sections := _sections(*main)):
            return sections
    return html_sections(text)


def _main_content(text: str) -> tuple[str, str] | None:
    """(the main content as simple HTML, the page title), or None where the whole page is to be read."""
    import trafilatura  # heavy: lxml, justext, htmldate

    tree = trafilatura.load_html(text)  # None for a fragment without <html> or anything it cannot parse
    if tree is None or _too_big(tree) or not tree.xpath(_HAS_FURNITURE, namespaces=_REGEXP_NS):
        return None
    title = tree.find(".//title")
    headings = tree.xpath(_CONTENT_HEADINGS, namespaces=_REGEXP_NS)
    document = trafilatura.bare_extraction(tree, **_EXTRACT)  # works on a copy: `tree` stays as parsed
    if document is None or document.body is None:
        return None
    if headings and sum(1 for _ in document.body.iter("head", *_HEADING_TAGS)) < _MIN_HEADINGS_KEPT * headings:
        return None
    return _markup(document.body), "" if title is None else "".join(title.itertext())


def _too_big(tree) -> bool:
    """More elements than trafilatura reads in seconds, or nested as deep as libxml2 reads (so the page is cut)."""
    from lxml import etree

    depth = elements = 0
    for event, _ in etree.iterwalk(tree, events=("start", "end")):
        if event == "end":
            depth -= 1
            continue
        depth += 1
        elements += 1
        if depth >= _LIBXML2_MAX_DEPTH or elements > _MAX_EXTRACT_ELEMENTS:
            return True
    return False


def _markup(body) -> str:
    """trafilatura's XML (head, list, item, row, cell, code...) as the HTML the collector reads."""
    from lxml import etree

    for code in list(body.iter("code")):  # first, while the parents still have trafilatura's names
        parent = code.getparent()
        if parent is None or parent.tag not in _INLINE_PARENTS or "\n" in "".join(code.itertext()):
            code.tag = "pre"  # a block of code is a paragraph of its own; inline code stays in its sentence
    for element in body.iter():
        tag = element.tag
        if not isinstance(tag, str):  # a comment or processing instruction
            continue
        if tag == "head":
            level = element.get("rend", "")
            element.tag = level if re.fullmatch(r"h[1-6]", level) else "h3"
        elif tag == "cell":
            element.tag = "th" if element.get("role") == "head" else "td"
        else:
            element.tag = _TEI_TAGS.get(tag, tag)
        element.attrib.clear()
    return etree.tostring(body, method="html", encoding="unicode")

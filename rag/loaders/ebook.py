"""E-books (.epub) -> one run of sections per chapter, in the reading order of the book's spine, titled from its contents.

An EPUB is a zip of XHTML files plus two small XML files that name them (the container and the
package document); the standard library reads those, and the HTML reader reads the chapters.
EbookLib would do the same under the AGPL, which this project cannot take.
"""

from __future__ import annotations

import posixpath
from urllib.parse import unquote, urldefrag
from xml.etree import ElementTree

from rag.errors import LoadError
from rag.loaders.archive import checked_zip, read_member

_CONTAINER = "{urn:oasis:names:tc:opendocument:xmlns:container}"
_OPF = "{http://www.idpf.org/2007/opf}"
_NCX = "{http://www.daisy.org/z3986/2005/ncx/}"
_XHTML = "{http://www.w3.org/1999/xhtml}"
_EPUB = "{http://www.idpf.org/2007/ops}"
_HTML_TYPES = {"application/xhtml+xml", "text/html", "application/x-dtbook+xml"}


def epub_chapters(path: str, data: bytes, max_bytes: int, max_pages: int) -> list[tuple[int, str, list[tuple[str, str]]]]:
    """(chapter number, chapter title, [(heading path, text)]) for each spine document with text."""
    from rag.loaders.web import html_sections
    from rag.loaders import decode_text

    archive = checked_zip(path, data, max_bytes, "e-book")
    try:
        names = set(archive.namelist())
        if "META-INF/encryption.xml" in names and b"EncryptedData" in archive.read("META-INF/encryption.xml"):
            raise LoadError(path, "the e-book is locked by DRM; only DRM-free e-books can be read")
        container = _xml(path, read_member(path, archive, "META-INF/container.xml", "e-book"))
        rootfile = container.find(f".//{_CONTAINER}rootfile")
        if rootfile is None or not rootfile.get("full-path"):
            raise LoadError(path, "the e-book names no package document in META-INF/container.xml; it is damaged")
        opf_path = rootfile.get("full-path", "")
        package = _xml(path, read_member(path, archive, opf_path, "e-book"))
        base = posixpath.dirname(opf_path)
        manifest = {item.get("id"): item for item in package.iter(f"{_OPF}item")}
        spine = package.find(f"{_OPF}spine")
        if spine is None:
            raise LoadError(path, "the e-book has no reading order (no spine in its package document); it is damaged")
        titles = _contents_titles(path, archive, manifest, spine, base)
        order = [manifest[ref.get("idref")] for ref in spine.iter(f"{_OPF}itemref") if ref.get("idref") in manifest]
        if len(order) > max_pages:
            raise LoadError(path, f"the e-book has {len(order)} chapters, more than the limit of {max_pages}; raise RAG_MAX_PAGES")
        chapters = []
        for item in order:
            if item.get("media-type") not in _HTML_TYPES:
                continue
            href = _resolve(base, item.get("href", ""))
            if href not in names:
                continue
            sections = html_sections(decode_text(path, archive.read(href)))
            if not sections:
                continue
            title = titles.get(href) or sections[0][0]
            chapters.append((len(chapters) + 1, title, [(_under(title, heading), text) for heading, text in sections]))
        return chapters
    except LoadError:
        raise
    except (KeyError, ValueError, OSError, RecursionError) as exc:
        raise LoadError(path, f"the e-book is damaged ({type(exc).__name__}: {exc}); download or export it again") from None
    finally:
        archive.close()


def _xml(path: str, data: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(data)
    except ElementTree.ParseError as exc:
        raise LoadError(path, f"the e-book's package files are not valid XML ({exc}); it is damaged") from None


def _resolve(base: str, href: str) -> str:
    return posixpath.normpath(posixpath.join(base, unquote(urldefrag(href)[0])))


def _contents_titles(path: str, archive, manifest: dict, spine: ElementTree.Element, base: str) -> dict[str, str]:
    """Chapter file -> its first title in the book's contents: the EPUB 3 nav document, else the EPUB 2 NCX."""
    titles: dict[str, str] = {}
    nav = next((item for item in manifest.values() if "nav" in (item.get("properties") or "").split()), None)
    ncx = manifest.get(spine.get("toc")) or next(
        (item for item in manifest.values() if item.get("media-type") == "application/x-dtbncx+xml"), None)
    try:
        if nav is not None:
            nav_path = _resolve(base, nav.get("href", ""))
            root = _xml(path, archive.read(nav_path))
            toc = next((n for n in root.iter(f"{_XHTML}nav") if n.get(f"{_EPUB}type") == "toc"), None)
            for link in (toc if toc is not None else root).iter(f"{_XHTML}a"):
                target = _resolve(posixpath.dirname(nav_path), link.get("href", ""))
                titles.setdefault(target, " ".join("".join(link.itertext()).split()))
        elif ncx is not None:
            ncx_path = _resolve(base, ncx.get("href", ""))
            root = _xml(path, archive.read(ncx_path))
            for point in root.iter(f"{_NCX}navPoint"):
                label, content = point.find(f"{_NCX}navLabel/{_NCX}text"), point.find(f"{_NCX}content")
                if label is not None and content is not None:
                    target = _resolve(posixpath.dirname(ncx_path), content.get("src", ""))
                    titles.setdefault(target, " ".join((label.text or "").split()))
    except (KeyError, LoadError):
        return {}  # the contents are a convenience: chapters still read without their titles
    return {k: v for k, v in titles.items() if v}


def _under(title: str, heading: str) -> str:
    """The chapter title above the chapter's own headings, said once."""
    if not heading or heading == title:
        return title
    if heading.split(" > ")[0] == title:
        return heading
    return f"{title} > {heading}" if title else heading

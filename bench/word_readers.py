"""Our .docx reader against python-docx on real Word files nobody here wrote: word recall, wrong words, paragraph order.

    python bench/word_readers.py [--workdir /tmp/rag-bench/docx] [--offline] [--json]

The files come from other projects' test folders, fetched at bench time with the registries'
own clients: the sdists of python-docx 1.2.0, PyDocX 0.9.10 and docx-revisions 0.1.5 (pip), the
npm package of mammoth 1.13.0 (npm pack), and Debian's r-cran-officer (apt-get download). A file
that is not a zip holding a parseable word/document.xml is skipped and named. --offline reuses
the files of an earlier run.

The reference for each file is built by neither reader: the w:t text of the document, of the
headers and footers its relationships name and of its footnotes and endnotes (separators left out),
without deleted or moved-away text (w:del, w:moveFrom; w:delText and w:instrText are other tags),
without the mc:Fallback copy of a drawing and without runs marked hidden (w:vanish).

For each reader, as a multiset of lower-cased words (\\w+):
  recall   the share of the reference's words it gives back
  wrong    the words it gives beyond the reference: field codes, deleted text, duplicates
  order    of the body paragraphs (3 words or more, each text once in the document) that it gives
           back, the share in document order (the longest increasing run of their positions)

"ours" is rag.loaders.word.docx_sections, each section's new heading counted once (not the names
it gives the sections of notes and of headers). "python-docx" is what a user of python-docx 1.2
writes: document.iter_inner_content() (paragraph text, tables as the text of row.cells), then
each section's header and footer, and the first-page and even-page ones where the section or the
settings turn them on. python-docx 1.2 has no footnote API (document.comments is there, but
comments are not in the reference).

The reference follows the same rules our reader was written to, so "ours" at 100% says it keeps
them, not that the rules are right; the rows per feature (text boxes, notes, merged and nested
cells, tracked changes) are where the two readers differ. A table of contents, which our reader
leaves out on purpose, would count against it here; none of these files has one.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DEFAULT_WORKDIR = Path("/tmp/rag-bench/docx")
PIP_SDISTS = ("python-docx==1.2.0", "PyDocX==0.9.10", "docx-revisions==0.1.5")
NPM_PACKAGES = ("mammoth@1.13.0",)
DEBIAN_PACKAGES = ("r-cran-officer",)
_NAMESPACES = ("http://schemas.openxmlformats.org/wordprocessingml/2006/main",
               "http://purl.oclc.org/ooxml/wordprocessingml/main")  # transitional and strict
_MC = "{http://schemas.openxmlformats.org/markup-compatibility/2006}"
_REL = "{http://schemas.openxmlformats.org/package/2006/relationships}Relationship"
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Reference:
    """What a person sees in one file: its words, and its body paragraphs in document order."""

    words: Counter
    paragraphs: tuple[str, ...]
    features: str


@dataclass(frozen=True)
class Score:
    """One reader on one file."""

    recall: int  # reference words given back
    wrong: int  # words beyond the reference
    found: int  # order-checked body paragraphs given back
    in_order: int  # ... of those, how many in document order
    error: str = ""


# --- fetching ----------------------------------------------------------------------------------------------------


def fetch(workdir: Path, offline: bool) -> Path:
    """The folder of .docx files, one subfolder per package they came from; downloaded unless `offline`."""
    files = workdir / "files"
    if offline:
        if not files.is_dir():
            raise SystemExit(f"no files under {files}: run once without --offline")
        return files
    downloads = workdir / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    if files.exists():
        shutil.rmtree(files)  # exactly the files of this run
    for spec in PIP_SDISTS:
        name = spec.split("==")[0]
        _run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", name, "-d", str(downloads), spec])
    for spec in NPM_PACKAGES:
        _run(["npm", "pack", "--silent", spec], cwd=downloads)
    _run(["apt-get", "download", *DEBIAN_PACKAGES], cwd=downloads)
    for archive in sorted(downloads.iterdir()):
        _unpack_docx(archive, files / re.sub(r"(\.tar\.gz|\.tgz|_all\.deb|\.deb)$", "", archive.name))
    return files


def _run(command: list[str], cwd: Path | None = None) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")


def _unpack_docx(archive: Path, into: Path) -> None:
    """Copy out the .docx files an sdist, npm tarball or Debian package holds, keeping their paths."""
    if archive.suffix == ".deb":
        with tempfile.TemporaryDirectory() as tree:
            _run(["dpkg-deb", "-x", str(archive), tree])
            for path in Path(tree).rglob("*.docx"):
                target = into / path.relative_to(tree)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
        return
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.isfile() and member.name.lower().endswith(".docx"):
                target = into / Path(member.name).relative_to(Path(member.name).parts[0])
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())


# --- the reference -----------------------------------------------------------------------------------------------


def _local(tag: object) -> str:
    """The WordprocessingML name of a tag ("p", "t", ...), or "" for any other namespace."""
    if not isinstance(tag, str) or "}" not in tag:
        return ""
    namespace, name = tag[1:].split("}", 1)
    return name if namespace in _NAMESPACES else ""


def _hidden(run: ElementTree.Element) -> bool:
    for child in run:
        if _local(child.tag) == "rPr":
            for prop in child:
                if _local(prop.tag) == "vanish":
                    return not any(v in ("0", "false", "off") for v in prop.attrib.values())
    return False


def _visible_text(root: ElementTree.Element) -> tuple[str, list[str]]:
    """All visible w:t text with a line break at every paragraph's start and end, and each paragraph's own text."""
    out: list[str] = []
    paragraphs: list[list[str]] = []
    open_paragraphs: list[list[str]] = []
    stack: list[tuple[ElementTree.Element, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        name = _local(node.tag)
        if leaving:
            out.append("\n")
            open_paragraphs.pop()
            continue
        if node.tag == f"{_MC}Fallback" or name in ("del", "moveFrom") or (name == "r" and _hidden(node)):
            continue
        if name in ("footnote", "endnote") and any(k.endswith("}type") and v != "normal" for k, v in node.attrib.items()):
            continue  # the separator lines
        if name == "p":
            out.append("\n")
            paragraphs.append([])
            open_paragraphs.append(paragraphs[-1])
            stack.append((node, True))
        elif name == "t" and node.text:
            out.append(node.text)
            if open_paragraphs:
                open_paragraphs[-1].append(node.text)
        elif name in ("tab", "br", "cr", "noBreakHyphen"):
            shown = "-" if name == "noBreakHyphen" else " "
            out.append(shown)
            if open_paragraphs:
                open_paragraphs[-1].append(shown)
        stack.extend((child, False) for child in reversed(node))
    return "".join(out), ["".join(p) for p in paragraphs]


def reference(data: bytes) -> Reference:
    """The words a person sees, built from the XML parts themselves; ValueError when the file is not readable."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        document = ElementTree.fromstring(archive.read("word/document.xml"))
    except (zipfile.BadZipFile, KeyError, ElementTree.ParseError) as exc:
        raise ValueError(f"{type(exc).__name__}: {exc}") from None
    text, paragraphs = _visible_text(document)
    features = Counter(_local(node.tag) for node in document.iter())
    names = set(archive.namelist())
    kinds: list[str] = []
    if "word/_rels/document.xml.rels" in names:
        rels = ElementTree.fromstring(archive.read("word/_rels/document.xml.rels"))
        for rel in rels.iter(_REL):
            kind = rel.get("Type", "").rsplit("/", 1)[-1]
            target = "word/" + rel.get("Target", "").removeprefix("/word/").lstrip("/")
            if kind in ("header", "footer", "footnotes", "endnotes") and target in names:
                part_text = _visible_text(ElementTree.fromstring(archive.read(target)))[0]
                if _WORD.search(part_text):
                    kinds.append("hdr/ftr" if kind in ("header", "footer") else kind)
                text += "\n" + part_text
    marks = {"tbl": "tables", "txbxContent": "text box", "sdt": "sdt", "del": "deleted", "instrText": "field",
             "hyperlink": "links", "numPr": "lists", "vanish": "hidden"}
    kinds += [label for tag, label in marks.items() if features[tag]]
    counts = Counter(_words(p) for p in paragraphs)
    unique = tuple(p for p in (_words(p) for p in paragraphs) if len(p.split()) >= 3 and counts[p] == 1)
    return Reference(Counter(_WORD.findall(text.casefold())), unique, ", ".join(dict.fromkeys(kinds)))


def _words(text: str) -> str:
    return " ".join(_WORD.findall(text.casefold()))


# --- the two readers ---------------------------------------------------------------------------------------------


def read_ours(data: bytes) -> str:
    from rag.loaders.word import ENDNOTES, FOOTNOTES, HEADERS, docx_sections

    out: list[str] = []
    previous: list[str] = []
    for heading, text in docx_sections("bench.docx", data, 100 * 2**20):
        path = heading.split(" > ") if heading and heading not in (FOOTNOTES, ENDNOTES, HEADERS) else []
        shared = 0
        while shared < min(len(path), len(previous)) and path[shared] == previous[shared]:
            shared += 1
        out.extend(path[shared:])  # a heading is in the text once, where it starts
        out.append(text)
        previous = path
    return "\n".join(out)


def read_python_docx(data: bytes) -> str:
    import docx
    from docx.table import Table

    document = docx.Document(io.BytesIO(data))
    out: list[str] = []

    def blocks(container) -> None:
        for block in container.iter_inner_content():
            if isinstance(block, Table):
                out.extend(" | ".join(cell.text for cell in row.cells) for row in block.rows)
            else:
                out.append(block.text)

    blocks(document)
    even = document.settings.odd_and_even_pages_header_footer
    for section in document.sections:
        parts = [section.header, section.footer]
        if section.different_first_page_header_footer:
            parts += [section.first_page_header, section.first_page_footer]
        if even:
            parts += [section.even_page_header, section.even_page_footer]
        for part in parts:
            blocks(part)
    return "\n".join(out)


READERS: dict[str, Callable[[bytes], str]] = {"ours": read_ours, "python-docx": read_python_docx}


def score(ref: Reference, read: Callable[[bytes], str], data: bytes) -> Score:
    try:
        text = read(data)
    except Exception as exc:  # a reader that fails on a real file scores nothing there, and says why
        return Score(0, 0, 0, 0, f"{type(exc).__name__}: {str(exc)[:80]}")
    got = Counter(_WORD.findall(text.casefold()))
    flat = f" {_words(text)} "
    positions = [p for p in (flat.find(f" {para} ") for para in ref.paragraphs) if p >= 0]
    return Score(sum((got & ref.words).values()), sum((got - ref.words).values()), len(positions), _increasing(positions))


def _increasing(values: list[int]) -> int:
    """The length of the longest strictly increasing subsequence (patience sorting)."""
    tails: list[int] = []
    for value in values:
        at = bisect_left(tails, value)
        tails[at:at + 1] = [value]
    return len(tails)


# --- the table ---------------------------------------------------------------------------------------------------


def _cells(s: Score, total: int) -> list[str]:
    if s.error:
        return [f"error: {s.error}", "", ""]
    return [f"{s.recall / total:.1%}" if total else "-", str(s.wrong), f"{s.in_order}/{s.found}" if s.found else "-"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR, help=f"where the files go (default {DEFAULT_WORKDIR})")
    parser.add_argument("--offline", action="store_true", help="reuse the files of an earlier run, download nothing")
    parser.add_argument("--json", action="store_true", help="end with the whole result as one JSON line")
    args = parser.parse_args()

    files = fetch(args.workdir, args.offline)
    rows: list[tuple[str, Reference, dict[str, Score]]] = []
    skipped: list[str] = []
    for path in sorted(files.rglob("*.docx")):
        name = str(path.relative_to(files))
        data = path.read_bytes()
        try:
            ref = reference(data)
        except ValueError as exc:
            skipped.append(f"{name} ({exc})")
            continue
        rows.append((name, ref, {reader: score(ref, read, data) for reader, read in READERS.items()}))

    header = ["file", "has", "words"] + [f"{r} {m}" for r in READERS for m in ("recall", "wrong", "order")]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for name, ref, scores in rows:
        total = sum(ref.words.values())
        print("| " + " | ".join([name, ref.features, str(total)] + [c for s in scores.values() for c in _cells(s, total)]) + " |")
    total = sum(sum(ref.words.values()) for _, ref, _ in rows)
    summary: dict[str, dict[str, float | int]] = {}
    for reader in READERS:
        scores = [s[reader] for _, _, s in rows]
        found, in_order = sum(s.found for s in scores), sum(s.in_order for s in scores)
        summary[reader] = {"recall": sum(s.recall for s in scores) / total, "wrong": sum(s.wrong for s in scores),
                           "order": in_order / found if found else 1.0, "errors": sum(1 for s in scores if s.error),
                           "perfect_files": sum(1 for (_, ref, _), s in zip(rows, scores)
                                                if not s.error and s.recall == sum(ref.words.values()) and s.wrong == 0)}
    print("| **total** | " + f"{len(rows)} files | {total} | " + " | ".join(
        f"**{v['recall']:.1%}** | **{v['wrong']}** | **{v['order']:.1%}**" for v in summary.values()) + " |")
    print()
    for reader, v in summary.items():
        print(f"{reader}: {v['perfect_files']}/{len(rows)} files read exactly (every word, nothing more); {v['errors']} errors")
    for entry in skipped:
        print(f"skipped, not a readable .docx: {entry}")
    if args.json:
        print(json.dumps({"files": len(rows), "words": total, "skipped": skipped, "readers": summary}))


if __name__ == "__main__":
    main()

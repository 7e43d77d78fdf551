"""Hostile and malformed documents: every file loads or is refused by name with a reason, in bounded time and memory.

Fuzzing runs RAG_FUZZ_EXAMPLES examples per test (default 40); a long run also tries the 100 MB cases
that are slow rather than dangerous. A few tests guard against hangs (quadratic parsing): they run the
load in a child process and fail if it has not finished within minutes, where the guarded code takes a second.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import tracemalloc
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from rag import loaders
from rag.chunking import chunk_sections
from rag.errors import LoadError
from tests.conftest import CORPUS, WordCounter, make_pdf_module

EXAMPLES = int(os.environ.get("RAG_FUZZ_EXAMPLES", "0") or 0)
LONG_RUN = EXAMPLES > 0
FUZZ = settings(max_examples=EXAMPLES or 40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HANG_SECONDS = 60  # a hang detector, not a timing goal: the guarded loads take about a second
MAX_TOKENS, OVERLAP = 64, 8
WORDS = WordCounter()
DOCX_NS = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def load_or_reason(name: str, data: bytes, **limits) -> list[loaders.Section] | None:
    """Sections, or None when refused with a LoadError that names the file and gives a reason."""
    try:
        sections = loaders.load(Path(name), data, **limits)
    except LoadError as exc:
        assert exc.reason.strip() and name in str(exc)
        return None
    assert sections and all(s.text.strip() for s in sections)
    return sections


def check_chunks(sections, count_tokens=WORDS, max_tokens=MAX_TOKENS, overlap=OVERLAP) -> None:
    for chunk in chunk_sections(sections, count_tokens, max_tokens, overlap):
        assert count_tokens(chunk.indexed_text) <= max_tokens, chunk.text[:200]


def finishes(work, seconds: float = HANG_SECONDS):
    """work()'s result, computed in a forked child that is killed if it runs past `seconds` (a regex hang holds the GIL)."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)

    def run() -> None:
        try:
            sender.send(("ok", work()))
        except LoadError as exc:  # its two-argument constructor does not survive pickling
            sender.send(("load", (exc.path, exc.reason)))
        except BaseException as exc:  # noqa: BLE001 - reported by the test below
            sender.send(("other", f"{type(exc).__name__}: {exc}"))

    child = context.Process(target=run, daemon=True)
    child.start()
    try:
        if not receiver.poll(seconds):
            pytest.fail(f"still running after {seconds} s: a hang")
        kind, value = receiver.recv()
    finally:
        child.kill()
        child.join()
    if kind == "load":
        raise LoadError(*value)
    assert kind == "ok", value
    return value


def raw_pdf(contents: list[bytes]) -> bytes:
    """A PDF with one page per content stream, each stream Flate-compressed."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for content in contents:
        packed = zlib.compress(content, 9)
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream")
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << /Font << /F1 3 0 R >> >> "
                       b"/Contents %d 0 R >>" % len(objects))
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def docx_bytes(xml: bytes | None = None, chunks=None, members: dict[str, bytes] | None = None) -> bytes:
    """A zip with word/document.xml (given whole, or streamed from `chunks` so a bomb never sits in memory)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in (members or {}).items():
            archive.writestr(name, body)
        if xml is not None:
            archive.writestr("word/document.xml", xml)
        elif chunks is not None:
            with archive.open("word/document.xml", "w", force_zip64=True) as member:
                for piece in chunks:
                    member.write(piece)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def small_pdf(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("pdf") / "small.pdf"
    make_pdf_module().write_pdf(path, [["Apples grow in orchards.", "Boats (sail) in \\ the harbour."], ["Page two text."]])
    return path.read_bytes()


# --- 1. fuzzing: load() returns sections or raises LoadError, nothing else -----------------------------------


def mutate(data, raw: bytearray, kind: str, flips: int) -> bytearray:
    """A truncated copy, or one with up to `flips` bytes overwritten; other kinds leave it as it is."""
    if kind == "truncate":
        return raw[: data.draw(st.integers(0, len(raw)))]
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, flips))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    return raw


@FUZZ
@given(data=st.data())
def test_fuzzed_pdf_loads_or_is_reported(small_pdf, data):
    kind = data.draw(st.sampled_from(["truncate", "flip", "splice", "random"]))
    raw = mutate(data, bytearray(small_pdf), kind, 20)
    if kind == "splice":
        at = data.draw(st.integers(0, len(raw)))
        raw[at:at] = data.draw(st.binary(max_size=200) | st.sampled_from(
            [b"<<", b">>", b"[", b"9999999999 0 R", b"/Count -5", b"stream\n", b"endobj", b"/Kids [2 0 R]"]))
    else:
        raw = b"%PDF-1." + data.draw(st.binary(max_size=2000))
    sections = load_or_reason("fuzz.pdf", bytes(raw))
    if sections:
        check_chunks(sections)


_TAG = st.sampled_from(["<div>", "</div>", "<p>", "<h1>", "</h1>", "<h2 class='x'>", "<script>", "</script>", "<style>",
                        "<!--", "-->", "<![CDATA[", "]]>", "<!DOCTYPE", "</", "<", ">", "&amp;", "&#x41;", "&#99999999;",
                        "&", "<br/>", "<td>", "<tr>", "<table>", "<title>", "</title>", "<a href='", "\"", "<?xml", "?>",
                        "<template>", "<div hidden>", "<svg>", "</svg>"])


@FUZZ
@given(parts=st.lists(_TAG | st.text(max_size=30), max_size=200), depth=st.integers(0, 3000))
def test_fuzzed_html_loads_or_is_reported(parts, depth):
    page = "<div>" * depth + "".join(parts) + "<span>" * depth
    sections = load_or_reason("fuzz.html", page.encode("utf-8", "surrogatepass"))
    if sections:
        check_chunks(sections)


@FUZZ
@given(text=st.text(st.characters(codec="utf-8"), max_size=3000) | st.binary(max_size=3000).map(lambda b: b.decode("latin-1")),
       suffix=st.sampled_from([".md", ".txt"]))
def test_fuzzed_text_and_markdown_load_or_are_reported(text, suffix):
    sections = load_or_reason("fuzz" + suffix, text.encode("utf-8"))
    if sections:
        check_chunks(sections)


_XML = st.sampled_from([f"<w:document {DOCX_NS}><w:body>", "</w:body></w:document>", "<w:p>", "</w:p>", "<w:r><w:t>",
                        "</w:t></w:r>", "<w:pPr><w:pStyle w:val='Heading1'/></w:pPr>", "<w:tbl><w:tr><w:tc>",
                        "</w:tc></w:tr></w:tbl>", "<w:tab/>", "<w:br/>", "<!DOCTYPE x [<!ENTITY a 'aaaa'>]>", "&a;",
                        "<?xml version='1.0'?>", "<", "&", "]]>"])


@FUZZ
@given(data=st.data())
def test_fuzzed_docx_loads_or_is_reported(data):
    kind = data.draw(st.sampled_from(["xml", "truncate", "flip", "random"]))
    xml = "".join(data.draw(st.lists(_XML | st.text(max_size=20), max_size=60))).encode("utf-8", "surrogatepass")
    raw = mutate(data, bytearray(docx_bytes(xml)), kind, 10)
    if kind == "random":
        raw = b"PK\x03\x04" + data.draw(st.binary(max_size=1000))
    sections = load_or_reason("fuzz.docx", bytes(raw))
    if sections:
        check_chunks(sections)


@FUZZ
@given(text=st.text(max_size=4000), heading=st.text(max_size=300))
def test_fuzzed_sections_chunk_within_the_real_token_budget(embedder, text, heading):
    check_chunks([loaders.Section("fuzz.txt", text, heading=heading)], embedder.count_tokens, 48, 8)


# --- 2. per-file limits: unbounded work is refused by name, with a reason -------------------------------------


def test_pdf_with_thousands_of_empty_pages_is_stopped_by_the_page_limit(tmp_path):
    path = tmp_path / "pages.pdf"
    make_pdf_module().write_pdf(path, [[]] * 6000)
    with pytest.raises(LoadError, match="pages.pdf: the PDF has 6000 pages, more than the limit of 5000"):
        loaders.load(path)  # the default limit, DEFAULT_MAX_PAGES
    make_pdf_module().write_pdf(path, [["text"]] * 300)
    with pytest.raises(LoadError, match="300 pages, more than the limit of 100"):
        loaders.load(path, max_pages=100)


def test_pdf_flate_bomb_over_pypdfs_stream_limit_is_reported():
    # 200 MB of content in a 200 KB file: pypdf stops at 75 MB with LimitReachedError, which is not a PdfReadError.
    bomb = raw_pdf([b"BT /F1 11 Tf 50 700 Td (hello) Tj ET\n" + b" " * 200_000_000])
    assert len(bomb) < 300_000
    with pytest.raises(LoadError, match="bomb.pdf: .*decompression bomb"):
        loaders.load(Path("bomb.pdf"), bomb)


def test_pdf_content_unpacking_past_the_size_limit_is_refused_before_extraction():
    # 20 MB of text operators in a ~50 KB file: under pypdf's own caps, but extracting it would take a minute.
    content = b"BT /F1 11 Tf 50 700 Td " + b"(hello world) Tj T* " * 1_000_000 + b"ET\n"
    bomb = raw_pdf([b"BT /F1 11 Tf 50 700 Td (first page) Tj ET\n", content])
    with pytest.raises(LoadError, match=r"bomb.pdf: the PDF's page content unpacks to more than the limit of 5 MB \(by page 2\)"):
        finishes(lambda: loaders.load(Path("bomb.pdf"), bomb, max_bytes=5 * 2**20))


def test_docx_decompression_bomb_is_refused_without_unpacking_it():
    bomb = docx_bytes(chunks=(b" " * 2**20 for _ in range(200)))  # 200 MB of spaces
    assert len(bomb) < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(LoadError, match="bomb.docx: the document's text part unpacks to 209,715,200 bytes.*bomb"):
            loaders.load(Path("bomb.docx"), bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak:,} bytes allocated: the bomb was unpacked"


def test_docx_whose_header_understates_the_size_is_not_unpacked_in_full():
    xml = f"<w:document {DOCX_NS}><w:body><w:p><w:r><w:t>".encode() + b"x" * 50_000_000 + b"</w:t></w:r></w:p></w:body></w:document>"
    raw = bytearray(docx_bytes(xml))
    del xml
    lie = 1000
    local, central = raw.find(b"PK\x03\x04"), raw.rfind(b"PK\x01\x02")
    raw[local + 22: local + 26] = lie.to_bytes(4, "little")  # uncompressed size in the local header
    raw[central + 24: central + 28] = lie.to_bytes(4, "little")  # ... and in the central directory
    tracemalloc.start()
    try:
        with pytest.raises(LoadError, match="liar.docx: the Word file is damaged"):
            loaders.load(Path("liar.docx"), bytes(raw))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak:,} bytes allocated: the lying member was unpacked"


def test_deeply_nested_html_loads_without_recursion_error():
    page = ("<div>" * 100_000 + "deep text" + "</div>" * 100_000).encode()
    sections = loaders.load(Path("deep.html"), page)
    assert [s.text for s in sections] == ["deep text"]


def test_deeply_nested_docx_xml_is_loaded_or_reported():
    xml = (f"<w:document {DOCX_NS}><w:body><w:p>" + "<w:r>" * 100_000 + "<w:t>deep</w:t>" + "</w:r>" * 100_000
           + "</w:p></w:body></w:document>").encode()
    assert load_or_reason("deep.docx", docx_bytes(xml)) is not None


def test_docx_entity_expansion_is_reported():
    lol = "".join(f"<!ENTITY l{i} '{'&l%d;' % (i - 1) * 10}'>" for i in range(1, 10))
    xml = f"<?xml version='1.0'?><!DOCTYPE w:document [<!ENTITY l0 'lol'>{lol}]><w:document {DOCX_NS}><w:body><w:p><w:r><w:t>&l9;</w:t></w:r></w:p></w:body></w:document>"
    with pytest.raises(LoadError, match="laughs.docx: the Word file is damaged"):
        loaders.load(Path("laughs.docx"), docx_bytes(xml.encode()))


@pytest.mark.parametrize("opener", ["</", "<![CDATA[", "<!", "<!--a>", "<?"])
def test_html_with_a_million_unclosed_markers_does_not_hang(opener):
    # html.parser rescans to the end for each of these: ~5 minutes for "</" * 10**6 without the escaping.
    page = ("<p>intro</p>" + opener * 1_000_000).encode()
    sections = finishes(lambda: loaders.load(Path("open.html"), page))
    assert sections[0].text.startswith("intro")


def test_markdown_heading_with_a_huge_run_of_spaces_does_not_hang():
    # The old lazy heading pattern backtracked quadratically: hours for this 1 MB line.
    note = b"# Title" + b" " * 1_000_000 + b"end\nbody text\n"
    sections = finishes(lambda: loaders.load(Path("note.md"), note))
    assert sections[0].heading.startswith("Title") and sections[0].heading.endswith("end")
    assert sections[0].text == "body text"


def test_pdf_line_of_a_million_dots_does_not_hang(tmp_path):
    # The contents-page test is tried on short lines only; its lazy pattern is quadratic on long ones.
    path = tmp_path / "dots.pdf"
    make_pdf_module().write_pdf(path, [["one", "two", "three", "four", "Chapter" + "." * 300_000 + "x"]])
    sections = finishes(lambda: loaders.load(path))
    assert sections[0].text.startswith("one")


class RecordingCounter(WordCounter):
    """WordCounter that remembers the longest text it was asked to count."""

    def __init__(self) -> None:
        self.longest = 0

    def __call__(self, text: str) -> int:
        self.longest = max(self.longest, len(text))
        return super().__call__(text)


@pytest.mark.parametrize("spaced", [True, False], ids=["words", "one-giant-word"])
def test_huge_single_line_is_chunked_without_counting_it_whole(spaced):
    size = 100 * 2**20 - 1 if (LONG_RUN or not spaced) else 10 * 2**20  # just under Settings.max_file_mb
    line = (b"word " * (size // 5) if spaced else b"x" * size)
    sections = loaders.load(Path("line.txt"), line, max_bytes=100 * 2**20)
    del line
    counter = RecordingCounter()
    chunks = chunk_sections(sections, counter, 200, 40)
    assert counter.longest <= 20_000, f"the tokenizer was given {counter.longest:,} characters at once"
    assert all(counter(c.indexed_text) <= 200 for c in chunks)
    # A giant "word" is cut into 100-character pieces, so no chunk holds megabytes behind one "token".
    assert max(len(c.text) for c in chunks) <= 200 * 101
    assert sum(len(c.text.replace(" ", "")) for c in chunks) >= size * (0.8 if spaced else 1)


def test_giant_word_of_punctuation_fits_the_real_token_budget(embedder):
    # Each "!" is one token, so even a 100-character piece is over a 32-token budget and must be halved.
    sections = [loaders.Section("bang.txt", "start " + "!" * 200_000 + " end")]
    chunks = chunk_sections(sections, embedder.count_tokens, 32, 4)
    assert all(embedder.count_tokens(c.text) <= 32 for c in chunks)
    assert sum(c.text.count("!") for c in chunks) >= 200_000


def test_huge_heading_is_dropped_without_counting_it():
    counter = RecordingCounter()
    chunks = chunk_sections([loaders.Section("h.html", "body text", heading="title " * 1_000_000)], counter, 64, 8)
    assert counter.longest <= 20_000 and [c.heading for c in chunks] == [""]


def test_paragraphs_the_tokenizer_drops_still_make_bounded_chunks():
    # A counter that sees no token in "\x01" (as BERT's normaliser drops control characters): without the
    # one-token floor per unit and the length cap on merging fragments, all 20,000 paragraphs pile into one chunk.
    def count(text: str) -> int:
        return len(text.replace("\x01", " ").split()) + 2

    chunks = chunk_sections([loaders.Section("ctl.txt", "\x01\n\n" * 20_000)], count, 64, 8)
    assert max(len(c.text) for c in chunks) <= 20_000
    assert sum(c.text.count("\x01") for c in chunks) >= 20_000  # all kept (overlap repeats some)

"""Hostile slides, sheets, e-books, e-mail and images: each loads or is refused by name, in bounded time and memory."""

from __future__ import annotations

import io
import tracemalloc
import zipfile
import zlib
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

from rag import loaders
from rag.errors import LoadError
from rag.loaders import sheets
from tests import documents
from tests.test_hostile import FUZZ, check_chunks, finishes, load_or_reason, mutate


class _Reads:
    """A stand-in OCR engine: fuzzing tests the loaders around OCR, not Tesseract."""

    name = "stand-in"

    def read(self, image) -> str:
        return f"an image of {image.size[0]} by {image.size[1]} pixels"


STAND_IN = loaders.OcrRun("auto", _Reads())


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("samples")
    made = {"pptx": documents.slides(folder / "a.pptx"), "xlsx": documents.workbook(folder / "a.xlsx"),
            "epub": documents.ebook(folder / "a.epub"), "eml": documents.mail(folder / "a.eml"),
            "png": documents.page_image(folder / "a.png"), "csv": documents.table_csv(folder / "a.csv")}
    return {kind: path.read_bytes() for kind, path in made.items()}


# --- 1. fuzzing ----------------------------------------------------------------------------------------------


@FUZZ
@given(data=st.data(), kind=st.sampled_from(["pptx", "xlsx", "epub", "eml", "png", "csv"]))
def test_fuzzed_new_formats_load_or_are_reported(samples, data, kind):
    how = data.draw(st.sampled_from(["truncate", "flip", "flip", "random"]))
    raw = mutate(data, bytearray(samples[kind]), how, 12)
    if how == "random":
        raw = bytearray(samples[kind][:4]) + data.draw(st.binary(max_size=2000))
    sections = load_or_reason(f"fuzz.{kind}", bytes(raw), ocr=STAND_IN)
    if sections:
        check_chunks(sections)


_MIME = st.sampled_from(["Content-Type: multipart/mixed; boundary=b\n", "--b\n", "--b--\n", "Subject: =?utf-8?q?x=41?=\n",
                         "Content-Type: message/rfc822\n", "Content-Transfer-Encoding: base64\n", "Content-Type: text/html\n",
                         "Content-Disposition: attachment; filename=\"a.pdf\"\n", "From x Mon Jan 1 00:00:00 2026\n", "\n",
                         "Content-Type: text/plain; charset=x-unknown\n", "=?", "\r\n", "JVBERi0xLjQK\n"])


@FUZZ
@given(parts=st.lists(_MIME | st.text(max_size=40), max_size=120), suffix=st.sampled_from(["eml", "mbox"]))
def test_fuzzed_mail_loads_or_is_reported(parts, suffix):
    raw = "".join(parts).encode("utf-8", "surrogatepass")
    if suffix == "mbox":
        raw = b"From a Mon Jan  5 10:00:00 2026\n" + raw
    sections = load_or_reason(f"fuzz.{suffix}", raw)
    if sections:
        check_chunks(sections)


@FUZZ
@given(text=st.text(st.sampled_from(',;\t"\n\r ab1'), max_size=3000))
def test_fuzzed_csv_loads_or_is_reported(text):
    sections = load_or_reason("fuzz.csv", text.encode())
    if sections:
        check_chunks(sections)


# --- 2. bombs and limits -------------------------------------------------------------------------------------


def _zip_with(member: str, pieces, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in (extra or {}).items():
            archive.writestr(name, body)
        with archive.open(member, "w", force_zip64=True) as stream:
            for piece in pieces:
                stream.write(piece)
    return buffer.getvalue()


@pytest.mark.parametrize("suffix,member", [("pptx", "ppt/slides/slide1.xml"), ("xlsx", "xl/worksheets/sheet1.xml"),
                                           ("epub", "OEBPS/ch1.xhtml")])
def test_zip_bomb_is_refused_without_unpacking_it(suffix, member):
    bomb = _zip_with(member, (b" " * 2**20 for _ in range(200)))  # 200 MB of spaces in under a megabyte
    assert len(bomb) < 1_000_000
    tracemalloc.start()
    try:
        with pytest.raises(LoadError, match=rf"bomb.{suffix}: the \w[\w-]+ unpacks to 200 MB, over the limit of 100 MB.*bomb"):
            loaders.load(Path(f"bomb.{suffix}"), bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak:,} bytes allocated: the bomb was unpacked"


@pytest.mark.parametrize("suffix", ["pptx", "xlsx", "epub"])
def test_zip_member_whose_header_understates_its_size_is_not_unpacked_in_full(suffix):
    raw = bytearray(_zip_with("payload.xml", [b"x" * 50_000_000]))
    lie = 1000
    local, central = raw.find(b"PK\x03\x04"), raw.rfind(b"PK\x01\x02")
    # zip64 sizes live in an extra field; the 32-bit fields say 0xFFFFFFFF. Write a plain, lying size instead.
    raw[local + 22: local + 26] = lie.to_bytes(4, "little")
    raw[central + 24: central + 28] = lie.to_bytes(4, "little")
    tracemalloc.start()
    try:
        with pytest.raises(LoadError, match=rf"liar.{suffix}: the .+ is damaged"):
            loaders.load(Path(f"liar.{suffix}"), bytes(raw))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, f"{peak:,} bytes allocated: the lying member was unpacked"


def test_huge_sheet_is_refused_with_the_limit_named(monkeypatch):
    monkeypatch.setattr(sheets, "MAX_CELLS", 1_000)
    rows = "\n".join(f"{n},{n * 2},{n * 3}" for n in range(1, 500))
    with pytest.raises(LoadError, match="huge.csv: the table has more than 1,000 cells; split it"):
        loaders.load(Path("huge.csv"), ("a,b,c\n" + rows).encode())


def test_sheet_that_claims_every_column_loads_quickly(tmp_path):
    book = documents.workbook(tmp_path / "wide.xlsx")
    with zipfile.ZipFile(book) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    for name, body in members.items():
        if name.startswith("xl/worksheets/"):
            members[name] = body.replace(b'<dimension ref="A1:C8"/>', b'<dimension ref="A1:XFD1048576"/>')
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    data = buffer.getvalue()
    sections = finishes(lambda: loaders.load(Path("wide.xlsx"), data), seconds=60)
    assert "Category: Travel; Amount: 1240" in sections[1].text


def test_csv_with_a_giant_field_is_reported():
    giant = b'a,b\n"' + b"x" * 2_000_000 + b'",1\n'
    with pytest.raises(LoadError, match="giant.csv: the table cannot be read as CSV"):
        loaders.load(Path("giant.csv"), giant)


def test_deep_mime_nesting_is_refused_or_read_in_bounded_time():
    depth = 5_000
    head = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(depth))
    raw = ("Subject: deep\n" + head + "Content-Type: text/plain\n\nthe bottom\n").encode()

    def work():
        try:
            return loaders.load(Path("deep.eml"), raw)
        except LoadError as exc:
            return exc.reason

    outcome = finishes(work)
    assert outcome == "the message nests its parts too deeply to be real mail; it was not read" or outcome[0].heading == "deep"


def test_message_attached_inside_messages_stops_at_the_depth_limit():
    message = EmailMessage()
    message["Subject"] = "level 0"
    message.set_content("bottom")
    for level in range(1, 30):
        outer = EmailMessage()
        outer["Subject"] = f"level {level}"
        outer.set_content("forwarding")
        outer.add_attachment(message)
        message = outer
    sections = finishes(lambda: loaders.load(Path("chain.eml"), bytes(message)))
    assert 1 < len(sections) <= 10 and sections[0].heading == "level 29"


def test_bomb_attached_to_a_mail_leaves_the_mail_readable():
    message = EmailMessage()
    message["Subject"] = "Quarterly deck"
    message.set_content("The deck is attached.")
    message.add_attachment(_zip_with("ppt/slides/slide1.xml", (b" " * 2**20 for _ in range(200))),
                           maintype="application", subtype="octet-stream", filename="deck.pptx")
    [section] = loaders.load(Path("deck.eml"), bytes(message))
    assert "Attachments: deck.pptx (not read)" in section.text and "The deck is attached." in section.text


def test_image_that_claims_billions_of_pixels_is_refused_before_decoding():
    header = b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + (100_000).to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    png = header + zlib.crc32(header[12:]).to_bytes(4, "big") + b"\x00\x00\x00\x00IEND\xaeB`\x82"
    with pytest.raises(LoadError, match="huge.png: the image is (100000 x 100000 pixels, over the limit|too large)"):
        loaders.load(Path("huge.png"), png, ocr=STAND_IN)


def test_mbox_without_a_from_line_is_named():
    with pytest.raises(LoadError, match="box.mbox: not an mbox mailbox"):
        loaders.load(Path("box.mbox"), b"Subject: hi\n\nbody\n")


def test_epub_with_entity_expansion_is_reported(tmp_path):
    laughs = ('<?xml version="1.0"?><!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">' +
              "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">' for i in range(8)) +
              ']><package xmlns="http://www.idpf.org/2007/opf"><metadata>&i;</metadata></package>')
    book = documents.ebook(tmp_path / "laughs.epub")
    with zipfile.ZipFile(book) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["OEBPS/content.opf"] = laughs.encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in members.items():
            archive.writestr(name, body)
    with pytest.raises(LoadError, match="laughs.epub: the e-book's package files are not valid XML"):
        finishes(lambda: loaders.load(Path("laughs.epub"), buffer.getvalue()))


@pytest.mark.parametrize("name,data,reason", [
    ("broken.pptx", b"PK\x03\x04 not really", "the presentation is damaged"),
    ("broken.xlsx", b"PK\x03\x04 not really", "the workbook is damaged"),
    ("broken.epub", b"PK\x03\x04 not really", "the e-book is damaged"),
    ("broken.png", b"\x89PNG\r\n\x1a\n not an image", "the image is damaged"),
])
def test_damaged_files_are_named_with_a_reason(name, data, reason):
    with pytest.raises(LoadError, match=f"{name}: {reason}"):
        loaders.load(Path(name), data, ocr=STAND_IN)


def test_zip_without_the_parts_of_its_format_is_named():
    empty = _zip_with("readme.txt", [b"hello"])
    with pytest.raises(LoadError, match="x.epub: the e-book has no META-INF/container.xml inside"):
        loaders.load(Path("x.epub"), empty)
    with pytest.raises(LoadError, match="x.pptx: the presentation is damaged"):
        loaders.load(Path("x.pptx"), empty)
    with pytest.raises(LoadError, match="x.xlsx: the workbook is damaged"):
        loaders.load(Path("x.xlsx"), empty)

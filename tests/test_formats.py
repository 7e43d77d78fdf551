"""Scans, images, slides, sheets, e-books and e-mail: each read with its place (page, slide, sheet and rows, chapter, attachment)."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from rag import loaders
from rag.chunking import chunk_sections
from rag.errors import LoadError
from rag.loaders import ocr
from tests import documents
from tests.conftest import WordCounter


@pytest.fixture(scope="module")
def tesseract() -> loaders.OcrRun:
    # make install puts Tesseract on the machine; a missing engine is a failed install, not a skipped test.
    assert ocr.available("tesseract"), "tesseract is not installed; run `make install`"
    return loaders.OcrRun("auto", ocr.choose("auto"), 300)


def words(text: str) -> set[str]:
    return set("".join(c.lower() if c.isalnum() else " " for c in text).split())


def test_scanned_pdf_is_read_by_ocr_with_its_page_numbers(tmp_path, tesseract):
    scan = documents.scanned_pdf(tmp_path / "scan.pdf", pages=[1, 2])
    import pypdf

    assert not "".join(p.extract_text() or "" for p in pypdf.PdfReader(scan).pages).strip(), "the scan has a text layer"
    counted = []
    sections = loaders.load(scan, ocr=loaders.OcrRun("auto", tesseract.reader, 300, lambda: counted.append(1)))
    assert [s.page for s in sections] == [1, 2]
    assert len(counted) == 2, "every OCR page is counted for the progress bar"
    assert "Kudo and Richardson in 2018" in " ".join(sections[1].text.split())
    assert sections[1].where == "page 2 (read by OCR)"
    truth = words(_text_layer(2))
    found = words(sections[1].text)
    assert len(truth & found) / len(truth) > 0.95, truth - found


def _text_layer(page: int) -> str:
    import pypdf

    return pypdf.PdfReader(documents.HANDBOOK).pages[page - 1].extract_text()


def test_scanned_pdf_without_ocr_is_named_with_the_reason(tmp_path):
    scan = documents.scanned_pdf(tmp_path / "scan.pdf", pages=[1])
    with pytest.raises(LoadError, match=r"scan.pdf: the PDF has no text layer \(1 scanned pages\) and OCR is off"):
        loaders.load(scan, ocr=loaders.OcrRun("off"))
    with pytest.raises(LoadError, match="no OCR engine is installed; run `make install`"):
        loaders.load(scan, ocr=loaders.OcrRun("auto", None))


def test_pdf_with_text_and_scanned_pages_reads_both(tmp_path, tesseract):
    import pypdf

    mixed = pypdf.PdfWriter()
    mixed.append(str(documents.HANDBOOK), pages=[2])  # page 3 of the handbook, with its text layer
    mixed.append(str(documents.scanned_pdf(tmp_path / "scan.pdf", pages=[5])))
    mixed.write(tmp_path / "mixed.pdf")
    sections = loaders.load(tmp_path / "mixed.pdf", ocr=tesseract)
    assert [(s.page, s.where) for s in sections] == [(1, ""), (2, "page 2 (read by OCR)")]
    assert "14 GB" in sections[1].text


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tiff"])
def test_image_is_read_by_ocr(tmp_path, tesseract, suffix):
    image = documents.page_image(tmp_path / f"page{suffix}", page=5)
    [section] = loaders.load(image, ocr=tesseract)
    assert section.page is None and section.where == "read by OCR"
    assert "7-billion-parameter model therefore needs about 14 GB" in " ".join(section.text.split())


def test_multipage_tiff_keeps_its_page_numbers(tmp_path, tesseract):
    first, second = documents.render_pages(documents.HANDBOOK, [3, 5])
    first.save(tmp_path / "scan.tiff", save_all=True, append_images=[second])
    sections = loaders.load(tmp_path / "scan.tiff", ocr=tesseract)
    assert [(s.page, s.where) for s in sections] == [(1, "page 1 (read by OCR)"), (2, "page 2 (read by OCR)")]
    assert "14 GB" in sections[1].text and "14 GB" not in sections[0].text


def test_image_without_ocr_is_named_with_the_reason(tmp_path):
    image = documents.page_image(tmp_path / "page.png")
    with pytest.raises(LoadError, match="page.png: an image is read by OCR, and OCR is off"):
        loaders.load(image)


def test_slides_are_sections_titled_by_their_titles_with_notes(tmp_path):
    sections = loaders.load(documents.slides(tmp_path / "deck.pptx"))
    assert [(s.where, s.heading) for s in sections] == [("slide 1", "City transport review 2026"),
                                                        ("slide 2", "Harbour Line timetable"), ("slide 3", "Depots")]
    assert sections[1].text == documents.SLIDE_FACT, "the title is the heading, not repeated in the text"
    assert "Kelvin Quay | 18" in sections[2].text
    assert f"Speaker notes: {documents.NOTES_FACT}" in sections[2].text
    chunk = chunk_sections(sections, WordCounter(), 200, 40)[1]
    assert chunk.label == "deck.pptx, slide 2, Harbour Line timetable"


def test_workbook_rows_keep_their_headers_and_cite_sheet_and_rows(tmp_path):
    sections = loaders.load(documents.workbook(tmp_path / "budget.xlsx"))
    assert [s.where for s in sections] == ["sheet Income", "sheet Expenses"]
    expenses = sections[1]
    assert "Month: March; Category: Travel; Amount: 1240" in expenses.text.split("\n\n")
    assert expenses.rows == (2, 3, 4, 5, 6, 7, 8)
    [chunk] = chunk_sections([expenses], WordCounter(), 200, 40)
    assert chunk.label == "budget.xlsx, sheet Expenses, rows 2\u20138"


def test_big_sheet_is_chunked_by_whole_rows(tmp_path):
    rows = [(n, f"Item: part {n}; Price: {n * 3}; Supplier: Northwind number {n}") for n in range(2, 302)]
    section = loaders._rows_section("parts.csv", rows)
    counter = WordCounter()
    chunks = chunk_sections([section], counter, 60, 10)
    assert len(chunks) > 10
    seen = []
    for chunk in chunks:
        lines = chunk.text.split("\n\n")
        assert all(line.startswith("Item: part ") and "Supplier: Northwind number" in line for line in lines), "a row was cut"
        numbers = [int(line.split()[2].rstrip(";")) for line in lines]
        assert chunk.where == f"rows {numbers[0]}\u2013{numbers[-1]}"
        assert counter(chunk.indexed_text) <= 60
        seen += numbers
    assert seen == list(range(2, 302)), "every row once, in order, no overlap"


def test_csv_rows_name_their_columns(tmp_path):
    [section] = loaders.load(documents.table_csv(tmp_path / "log.csv"))
    assert "Date: 2026-04-09; Machine: Boiler B2; Technician: Amara Osei; Note: replaced the pressure valve" in section.text
    assert section.rows == (2, 3, 4)


def test_tsv_and_semicolon_csv_are_read(tmp_path):
    (tmp_path / "a.tsv").write_text("Name\tRoom\nAda\t4.12\n")
    (tmp_path / "b.csv").write_text("Name;Room\nGrace;2.07\n")
    assert loaders.load(tmp_path / "a.tsv")[0].text == "Name: Ada; Room: 4.12"
    assert loaders.load(tmp_path / "b.csv")[0].text == "Name: Grace; Room: 2.07"


def test_epub_chapters_in_reading_order_with_their_titles(tmp_path):
    sections = loaders.load(documents.ebook(tmp_path / "book.epub"))
    assert [(s.where, s.heading) for s in sections] == [("chapter 1", "The Lighthouse"), ("chapter 2", "The Storm"),
                                                        ("chapter 3", "The Return")]
    assert documents.EPUB_FACT in sections[1].text
    assert chunk_sections(sections, WordCounter(), 200, 40)[1].label == "book.epub, chapter 2, The Storm"


def test_epub_with_drm_is_named(tmp_path):
    book = documents.ebook(tmp_path / "locked.epub")
    import zipfile

    with zipfile.ZipFile(book, "a") as archive:
        archive.writestr("META-INF/encryption.xml", "<encryption><EncryptedData/></encryption>")
    with pytest.raises(LoadError, match="locked.epub: the e-book is locked by DRM"):
        loaders.load(book)


def test_mail_has_subject_sender_date_and_its_attachment_as_its_own_part(tmp_path):
    sections = loaders.load(documents.mail(tmp_path / "roof.eml"))
    head, attachment = sections
    assert head.heading == "Roof repair: inspection report" and head.part == ""
    assert "From: Priya Natarajan <priya@example.org>" in head.text and "Date: Tue, 14 Apr 2026" in head.text
    assert "Attachments: inspection.pdf" in head.text and "please find attached" in head.text
    assert attachment.part == "inspection.pdf" and attachment.page == 1 and attachment.path == str(tmp_path / "roof.eml")
    assert documents.MAIL_FACT in " ".join(attachment.text.split())
    label = chunk_sections([attachment], WordCounter(), 200, 40)[0].label
    assert label == "inspection.pdf (attachment of roof.eml), page 1"


def test_mail_with_html_body_and_attached_message(tmp_path):
    inner = EmailMessage()
    inner["Subject"] = "Gate code"
    inner.set_content("The gate code for the yard is 4471.")
    outer = EmailMessage()
    outer["Subject"] = "Fwd: gate"
    outer.set_content("<html><body><p>See the <b>forwarded</b> note.</p><script>x()</script></body></html>", subtype="html")
    outer.add_attachment(inner)
    outer.add_attachment(b"\x00\x01binary", maintype="application", subtype="octet-stream", filename="tool.bin")
    (tmp_path / "fwd.eml").write_bytes(bytes(outer))
    sections = loaders.load(tmp_path / "fwd.eml")
    assert "See the forwarded note." in sections[0].text and "x()" not in sections[0].text
    assert "Attachments: Gate code.eml, tool.bin (not read)" in sections[0].text
    forwarded = [s for s in sections if s.part == "Gate code.eml"]
    assert forwarded and "4471" in forwarded[0].text and forwarded[0].heading == "Gate code"


def test_mbox_messages_are_numbered(tmp_path):
    messages = []
    for n, subject in enumerate(["Boiler service", "Window cleaning"], start=1):
        m = EmailMessage()
        m["Subject"], m["From"] = subject, "office@example.org"
        m.set_content(f"Visit number {n}.\nFrom now on we come on Mondays.\n")
        messages.append(b"From office@example.org Mon Jan  5 10:00:00 2026\n" + bytes(m).replace(b"\nFrom now", b"\n>From now"))
    (tmp_path / "box.mbox").write_bytes(b"\n".join(messages))
    sections = loaders.load(tmp_path / "box.mbox")
    assert [(s.where, s.heading) for s in sections] == [("message 1", "Boiler service"), ("message 2", "Window cleaning")]
    assert "From now on we come on Mondays." in sections[1].text, "the mbox quoting of 'From ' lines is undone"


def test_every_new_suffix_is_supported():
    for suffix in (".pptx", ".xlsx", ".csv", ".tsv", ".epub", ".eml", ".mbox", ".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        assert loaders.is_supported(Path("x" + suffix)), suffix


def test_ocr_setting_is_checked():
    with pytest.raises(ValueError, match="unknown OCR engine 'easyocr'; use one of auto, tesseract, rapidocr, off"):
        ocr.choose("easyocr")
    assert ocr.choose("off") is None


def test_rapidocr_reads_a_page_when_installed(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime", reason="the optional engine: pip install '.[rapidocr]'")
    run = loaders.OcrRun("rapidocr", ocr.choose("rapidocr"), 300)
    assert run.reader.name == "rapidocr"
    [section] = loaders.load(documents.page_image(tmp_path / "page.png", page=5), ocr=run)
    assert "14GB" in section.text.replace(" ", "") and "Quantization" in section.text

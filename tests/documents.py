"""Documents of every format we read, built in the test from real files or written with the formats' own libraries.

Each holds one fact no other holds, so a question about it can only be answered by that file.
"""

from __future__ import annotations

import io
import zipfile
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HANDBOOK = ROOT / "corpus" / "llm-handbook.pdf"

SLIDE_FACT = "The Harbour Line tram runs every 7 minutes on weekdays and every 12 minutes on Sundays."
NOTES_FACT = "Remind the board that the Kelvin Quay depot closes for repairs in August."
EPUB_FACT = "During the storm the keeper lit forty-two lamps along the northern cliff."
CSV_FACT = ("2026-04-09", "Boiler B2", "Amara Osei", "replaced the pressure valve")
MAIL_FACT = "The inspector found that the north gutter is cracked along 3 metres and must be replaced before winter."
WEB_FACT = "Feed the sourdough starter with 50 grams of rye flour every 12 hours."
BOILERPLATE = ("Accept all cookies", "Subscribe to our newsletter", "Crumb and Company Ltd", "Shop our flour range",
               "Privacy policy")


def render_pages(pdf: Path, pages: list[int], dpi: int = 200) -> list:
    """Pages of a real text PDF as greyscale images, the way a scanner sees them."""
    import pypdfium2

    document = pypdfium2.PdfDocument(str(pdf))
    try:
        return [document[n - 1].render(scale=dpi / 72, grayscale=True).to_pil() for n in pages]
    finally:
        document.close()


def scanned_pdf(out: Path, pages: list[int] = [1, 2], source: Path = HANDBOOK) -> Path:
    """An image-only PDF (no text layer) made from pages of a text PDF."""
    images = [image.convert("L") for image in render_pages(source, pages)]
    images[0].save(out, format="PDF", save_all=True, append_images=images[1:], resolution=200)
    return out


def page_image(out: Path, page: int = 5, source: Path = HANDBOOK) -> Path:
    """A photo-like image of one page (.png, .jpg or .tiff, by the suffix of `out`)."""
    [image] = render_pages(source, [page])
    image.save(out)
    return out


def slides(out: Path) -> Path:
    from pptx import Presentation
    from pptx.util import Inches

    deck = Presentation()
    first = deck.slides.add_slide(deck.slide_layouts[0])
    first.shapes.title.text = "City transport review 2026"
    first.placeholders[1].text = "Board meeting, spring session"
    second = deck.slides.add_slide(deck.slide_layouts[1])
    second.shapes.title.text = "Harbour Line timetable"
    second.placeholders[1].text = SLIDE_FACT
    third = deck.slides.add_slide(deck.slide_layouts[5])
    third.shapes.title.text = "Depots"
    table = third.shapes.add_table(3, 2, Inches(1), Inches(2), Inches(6), Inches(2)).table
    for r, row in enumerate([("Depot", "Trams"), ("Kelvin Quay", "18"), ("Marsh Road", "11")]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    third.notes_slide.notes_text_frame.text = NOTES_FACT
    deck.save(out)
    return out


def workbook(out: Path) -> Path:
    import openpyxl

    book = openpyxl.Workbook()
    income = book.active
    income.title = "Income"
    income.append(["Month", "Source", "Amount"])
    for month, amount in (("January", 5200), ("February", 5200), ("March", 5350)):
        income.append([month, "Salary", amount])
    spend = book.create_sheet("Expenses")
    spend.append(["Month", "Category", "Amount"])
    rows = [("January", "Rent", 1450), ("January", "Travel", 310), ("February", "Rent", 1450), ("February", "Travel", 95),
            ("March", "Rent", 1450), ("March", "Travel", 1240), ("March", "Groceries", 388)]
    for row in rows:
        spend.append(list(row))
    book.save(out)
    return out


def table_csv(out: Path) -> Path:
    rows = [("Date", "Machine", "Technician", "Note"), ("2026-03-02", "Chiller C1", "Lena Brandt", "cleaned the condenser"),
            CSV_FACT, ("2026-05-17", "Pump P4", "Lena Brandt", "replaced the seal")]
    out.write_text("\n".join(",".join(row) for row in rows) + "\n", encoding="utf-8")
    return out


def ebook(out: Path, chapters: list[tuple[str, str]] | None = None) -> Path:
    """An EPUB 3 with a nav document; chapter files are listed in the spine in reading order."""
    chapters = chapters or [("The Lighthouse", "The keeper arrived on the island in early spring and counted the steps."),
                            ("The Storm", EPUB_FACT + " The sea rose over the jetty before midnight."),
                            ("The Return", "When the supply boat came back in May, the keeper went home.")]
    items = "".join(f'<item id="c{i}" href="text/ch{i}.xhtml" media-type="application/xhtml+xml"/>' for i in range(len(chapters)))
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    nav_links = "".join(f'<li><a href="text/ch{i}.xhtml">{title}</a></li>' for i, (title, _) in enumerate(chapters))
    with zipfile.ZipFile(out, "w") as book:
        book.writestr(zipfile.ZipInfo("mimetype"), "application/epub+zip")
        book.writestr("META-INF/container.xml", '<?xml version="1.0"?><container version="1.0" '
                      'xmlns="urn:oasis:names:tc:opendocument:xmlns:container"><rootfiles>'
                      '<rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles></container>')
        book.writestr("OEBPS/content.opf", '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
                      '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>The Keeper</dc:title></metadata>'
                      f'<manifest><item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>{items}'
                      f'</manifest><spine>{spine}</spine></package>')
        book.writestr("OEBPS/nav.xhtml", '<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
                      f'<body><nav epub:type="toc"><ol>{nav_links}</ol></nav></body></html>')
        for i, (title, text) in enumerate(chapters):
            book.writestr(f"OEBPS/text/ch{i}.xhtml", f'<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title>'
                          f'</head><body><h1>{title}</h1><p>{text}</p></body></html>')
    return out


def text_pdf(pages: list[list[str]]) -> bytes:
    """A small text PDF, written by the corpus's own PDF writer."""
    import sys
    import tempfile

    sys.path.insert(0, str(ROOT / "corpus"))
    try:
        from make_pdf import write_pdf
    finally:
        sys.path.pop(0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "out.pdf"
        write_pdf(path, pages)
        return path.read_bytes()


def mail(out: Path) -> Path:
    """A message with a PDF attachment that holds the fact; the body only points at it."""
    message = EmailMessage()
    message["Subject"] = "Roof repair: inspection report"
    message["From"] = "Priya Natarajan <priya@example.org>"
    message["To"] = "housing@example.org"
    message["Date"] = "Tue, 14 Apr 2026 09:30:00 +0100"
    message.set_content("Hello,\n\nplease find attached the inspection report for the roof of block D.\n\nPriya\n")
    report = text_pdf([["Roof inspection, block D", "", MAIL_FACT, "", "The flashing around the chimney is sound."]])
    message.add_attachment(report, maintype="application", subtype="pdf", filename="inspection.pdf")
    out.write_bytes(bytes(message))
    return out


def web_page(out: Path) -> Path:
    """A saved page as a browser keeps it: menus, a cookie banner, a sidebar and a footer around one article."""
    menu = "".join(f'<li><a href="/{w.lower()}">{w}</a></li>' for w in ("Home", "Recipes", "Shop our flour range", "About"))
    out.write_text(f"""<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Keeping a sourdough starter</title>
<script>window.dataLayer = [];</script></head><body>
<div id="cookie-banner" class="cookie-consent"><p>We use cookies to improve your experience.</p><button>Accept all cookies</button></div>
<header class="site-header"><nav class="main-nav"><ul>{menu}</ul></nav></header>
<main><article><h1>Keeping a sourdough starter</h1>
<p>A starter is a culture of wild yeast and lactic acid bacteria that leavens bread without commercial yeast.
It needs regular feeding to stay active, and a warm kitchen speeds it up.</p>
<h2>Feeding</h2><p>{WEB_FACT} Discard half of the starter before each feed so that it does not outgrow its jar.</p>
<h2>Storing</h2><p>Between bakes the starter can rest in the fridge for up to a week; feed it twice before baking again.</p>
</article></main>
<aside class="sidebar"><h3>Newsletter</h3><p>Subscribe to our newsletter for weekly recipes.</p></aside>
<footer class="site-footer"><p>Crumb and Company Ltd, 12 Mill Lane.</p><a href="/privacy">Privacy policy</a></footer>
</body></html>""", encoding="utf-8")
    return out


def every_format(folder: Path) -> dict[str, Path]:
    """One file of each new format in `folder`, by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    return {"scan": scanned_pdf(folder / "scanned-tokenization.pdf"), "image": page_image(folder / "quantization-page.png"),
            "slides": slides(folder / "transport-review.pptx"), "workbook": workbook(folder / "household-budget.xlsx"),
            "csv": table_csv(folder / "maintenance-log.csv"), "ebook": ebook(folder / "the-keeper.epub"),
            "mail": mail(folder / "roof-repair.eml"), "web": web_page(folder / "sourdough-starter.html")}


def docx_bytes() -> bytes:
    """Not used by the formats above; kept small for tests that need a Word file inside a mail."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
                         '<w:body><w:p><w:r><w:t>The spare key is in the blue box.</w:t></w:r></w:p></w:body></w:document>')
    return buffer.getvalue()

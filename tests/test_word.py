import io
import zipfile
from pathlib import Path

import pytest

from rag import loaders
from rag.errors import LoadError
from rag.loaders.word import ENDNOTES, FOOTNOTES, HEADERS, docx_sections

W = "http://schemas.openxmlformats.org/wordprocessingml/2006/main"
NS = (f'xmlns:w="{W}" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships" '
      'xmlns:mc="http://schemas.openxmlformats.org/markup-compatibility/2006" '
      'xmlns:wp="http://schemas.openxmlformats.org/drawingml/2006/wordprocessingDrawing" '
      'xmlns:a="http://schemas.openxmlformats.org/drawingml/2006/main" '
      'xmlns:wps="http://schemas.microsoft.com/office/word/2010/wordprocessingShape" xmlns:v="urn:schemas-microsoft-com:vml"')
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
LIMIT = 10 * 2**20
DATE_CODE = r' DATE \@ "d MMMM yyyy" '


def p(text: str, style: str = "") -> str:
    props = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
    return f"<w:p>{props}<w:r><w:t xml:space=\"preserve\">{text}</w:t></w:r></w:p>"


def docx(body: str, parts: dict[str, str] | None = None, rels: dict[str, tuple[str, str]] | None = None,
         styles: str | None = None) -> bytes:
    """A .docx of the body's XML, with extra parts and the document's relationships {id: (type, target)}."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", f"<w:document {NS}><w:body>{body}</w:body></w:document>")
        if rels:
            entries = "".join(f'<Relationship Id="{i}" Type="{REL}/{kind}" Target="{target}"/>'
                              for i, (kind, target) in rels.items())
            package = "http://schemas.openxmlformats.org/package/2006/relationships"
            archive.writestr("word/_rels/document.xml.rels", f'<Relationships xmlns="{package}">{entries}</Relationships>')
        if styles:
            archive.writestr("word/styles.xml", f"<w:styles {NS}>{styles}</w:styles>")
        for name, xml in (parts or {}).items():
            archive.writestr(name, xml)
    return buffer.getvalue()


def text_box(words: str) -> str:
    """A run holding a text box the way Word writes it: the DrawingML shape, and its VML copy as the fallback."""
    box = f"<w:txbxContent>{p(words)}</w:txbxContent>"
    return (f"<w:r><mc:AlternateContent><mc:Choice Requires=\"wps\"><w:drawing><wp:anchor><a:graphic><a:graphicData>"
            f"<wps:wsp><wps:txbx>{box}</wps:txbx></wps:wsp></a:graphicData></a:graphic></wp:anchor></w:drawing></mc:Choice>"
            f"<mc:Fallback><w:pict><v:shape><v:textbox>{box}</v:textbox></v:shape></w:pict></mc:Fallback>"
            f"</mc:AlternateContent></w:r>")


def field(instruction: str, result: str) -> str:
    return (f'<w:r><w:fldChar w:fldCharType="begin"/></w:r>'
            f'<w:r><w:instrText xml:space="preserve">{instruction}</w:instrText></w:r>'
            f'<w:r><w:fldChar w:fldCharType="separate"/></w:r><w:r><w:t>{result}</w:t></w:r>'
            f'<w:r><w:fldChar w:fldCharType="end"/></w:r>')


def notes(kind: str, *texts: str) -> str:
    separators = (f'<w:{kind} w:type="separator" w:id="-1"><w:p><w:r><w:separator/></w:r></w:p></w:{kind}>'
                  f'<w:{kind} w:type="continuationSeparator" w:id="0"><w:p><w:r><w:t>SEPARATOR</w:t></w:r></w:p></w:{kind}>')
    return f"<w:{kind}s {NS}>{separators}" + "".join(f'<w:{kind} w:id="{n}">{p(t)}</w:{kind}>'
                                                     for n, t in enumerate(texts, start=1)) + f"</w:{kind}s>"


def header_footer(tag: str, text: str) -> str:
    return f"<w:{tag} {NS}>{p(text)}</w:{tag}>"


def section_properties(*refs: tuple[str, str, str]) -> str:
    return "<w:sectPr>" + "".join(f'<w:{tag}Reference w:type="{kind}" r:id="{rid}"/>' for tag, kind, rid in refs) + "</w:sectPr>"


@pytest.fixture(scope="module")
def full_document() -> list[tuple[str, str]]:
    """One document with each thing Word shows, or keeps without showing, that a reader can get wrong."""
    first_section = section_properties(("header", "default", "rIdH1"), ("footer", "default", "rIdF1"))
    body = "".join([
        p("Annual report", "Title"),
        p("Opening words of the report."),
        # A content control at body level, as Word's cover pages and forms put them.
        '<w:sdt><w:sdtPr><w:alias w:val="Summary box"/></w:sdtPr><w:sdtContent>'
        + p("Inside a content control.") + "</w:sdtContent></w:sdt>",
        # A table of contents repeats the headings with page numbers: not read.
        '<w:sdt><w:sdtPr><w:docPartObj><w:docPartGallery w:val="Table of Contents"/></w:docPartObj></w:sdtPr>'
        "<w:sdtContent>" + p("Contents") + p("Costs 2") + "</w:sdtContent></w:sdt>",
        p("Costs", "Heading1"),
        f"<w:p><w:r><w:t>The anchor paragraph.</w:t></w:r>{text_box('Boxed words here.')}</w:p>",
        "<w:p><w:r><w:t xml:space=\"preserve\">The price is </w:t></w:r>"
        "<w:del w:id=\"1\" w:author=\"A\"><w:r><w:delText>forty</w:delText></w:r></w:del>"
        "<w:ins w:id=\"2\" w:author=\"A\"><w:r><w:t>twelve</w:t></w:r></w:ins>"
        "<w:r><w:t xml:space=\"preserve\"> euros</w:t></w:r>"
        "<w:r><w:footnoteReference w:id=\"1\"/></w:r><w:r><w:t>.</w:t></w:r></w:p>",
        f"<w:p><w:r><w:t xml:space=\"preserve\">Printed on </w:t></w:r>{field(DATE_CODE, '3 May 2024')}"
        f"<w:r><w:t xml:space=\"preserve\">, see </w:t></w:r>"
        f"<w:hyperlink r:id=\"rIdLink\"><w:r><w:t>the website</w:t></w:r></w:hyperlink></w:p>",
        "<w:p><w:r><w:t xml:space=\"preserve\">Shown </w:t></w:r><w:r><w:rPr><w:vanish/></w:rPr><w:t>secretly hidden</w:t></w:r>"
        "<w:r><w:t>text.</w:t></w:r></w:p>",
        f"<w:p><w:pPr>{first_section}</w:pPr><w:r><w:t>End of the first section.</w:t></w:r></w:p>",
        p("Second section text."),
        # The second section names the same header again, and a first-page header with the same text.
        section_properties(("header", "default", "rIdH1"), ("header", "first", "rIdH2"), ("footer", "default", "rIdF1")),
    ])
    parts = {"word/footnotes.xml": notes("footnote", "A footnote explains the price."),
             "word/endnotes.xml": notes("endnote", "An endnote at the very end."),
             "word/header1.xml": header_footer("hdr", "Acme confidential"),
             "word/header2.xml": header_footer("hdr", "Acme confidential"),
             "word/footer1.xml": header_footer("ftr", "Acme Ltd, 1 High Street")}
    rels = {"rIdFn": ("footnotes", "footnotes.xml"), "rIdEn": ("endnotes", "endnotes.xml"),
            "rIdH1": ("header", "header1.xml"), "rIdH2": ("header", "header2.xml"), "rIdF1": ("footer", "footer1.xml")}
    return docx_sections("full.docx", docx(body, parts, rels), LIMIT)


def test_body_content_control_text_box_and_links_are_read_in_order(full_document):
    body = dict(full_document)
    assert body["Annual report"] == "Opening words of the report.\n\nInside a content control."
    costs = body["Annual report > Costs"].split("\n\n")
    assert costs[:2] == ["The anchor paragraph.", "Boxed words here."]  # the box follows its anchor, once
    assert "Printed on 3 May 2024, see the website" in costs


def test_text_box_is_read_once_not_again_from_its_fallback_copy(full_document):
    assert sum(text.count("Boxed words") for _, text in full_document) == 1


def test_deleted_text_field_codes_hidden_runs_and_contents_are_not_read(full_document):
    everything = " ".join(f"{h} {t}" for h, t in full_document)
    assert "The price is twelve euros." in everything  # the insertion is read, the deletion is not
    for absent in ("forty", "DATE", "MMMM", "secretly hidden", "Costs 2", "Contents", "SEPARATOR"):
        assert absent not in everything, absent
    assert "Shown text." in everything


def test_notes_and_headers_come_after_the_body_in_their_own_sections(full_document):
    headings = [h for h, _ in full_document]
    assert headings[-3:] == [FOOTNOTES, ENDNOTES, HEADERS]
    sections = dict(full_document)
    assert sections[FOOTNOTES] == "A footnote explains the price."
    assert sections[ENDNOTES] == "An endnote at the very end."
    # Three references to two identical headers and one footer: each line once, not once per page or section.
    assert sections[HEADERS] == "Acme confidential\n\nAcme Ltd, 1 High Street"


def test_second_section_is_read_after_the_first(full_document):
    text = dict(full_document)["Annual report > Costs"]
    assert text.index("End of the first section.") < text.index("Second section text.")


def test_nested_table_is_read_once_inside_its_cell():
    inner = "<w:tbl><w:tr><w:tc>" + p("inner a") + "</w:tc><w:tc>" + p("inner b") + "</w:tc></w:tr></w:tbl>"
    body = ("<w:tbl><w:tr><w:tc>" + p("outer") + "</w:tc><w:tc>" + inner + "</w:tc></w:tr>"
            "<w:tr><w:tc><w:p/></w:tc><w:tc><w:p/></w:tc></w:tr></w:tbl>")  # an empty row leaves no " | " line
    assert docx_sections("t.docx", docx(body), LIMIT) == [("", "outer | inner a | inner b")]


def test_headings_are_found_by_style_name_whatever_the_translated_style_id():
    styles = ('<w:style w:type="paragraph" w:styleId="berschrift1"><w:name w:val="heading 1"/></w:style>'
              '<w:style w:type="paragraph" w:styleId="Kapitel"><w:name w:val="Kapitel"/><w:basedOn w:val="berschrift1"/></w:style>'
              '<w:style w:type="paragraph" w:styleId="Gliederung"><w:name w:val="Gliederung"/>'
              '<w:pPr><w:outlineLvl w:val="1"/></w:pPr></w:style>'
              # Based on a heading, but at outline level 9, "body text": not a heading.
              '<w:style w:type="paragraph" w:styleId="Hinweis"><w:name w:val="Hinweis"/><w:basedOn w:val="berschrift1"/>'
              '<w:pPr><w:outlineLvl w:val="9"/></w:pPr></w:style>')
    body = (p("Einleitung", "berschrift1") + p("Text eins.") + p("Teil", "Gliederung") + p("Text zwei.")
            + p("Anhang", "Kapitel") + p("Text drei.") + p("Ein Hinweis.", "Hinweis"))
    assert docx_sections("de.docx", docx(body, styles=styles), LIMIT) == [
        ("Einleitung", "Text eins."), ("Einleitung > Teil", "Text zwei."), ("Anhang", "Text drei.\n\nEin Hinweis.")]


def test_headings_with_nothing_under_them_are_kept():
    body = p("Alpha", "Heading1") + p("Beta", "Heading1") + p("Gamma", "Heading2") + p("gamma text") + p("Delta", "Heading1")
    assert docx_sections("h.docx", docx(body), LIMIT) == [
        ("", "Alpha"), ("Beta > Gamma", "gamma text"), ("", "Delta")]


def test_strict_open_xml_is_read_like_transitional():
    strict = "http://purl.oclc.org/ooxml/wordprocessingml/main"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("word/document.xml", f'<w:document xmlns:w="{strict}"><w:body>{p("Strict words.")}</w:body></w:document>')
    assert docx_sections("strict.docx", buffer.getvalue(), LIMIT) == [("", "Strict words.")]


def test_parts_together_over_the_limit_are_refused_as_a_bomb():
    parts = {"word/footnotes.xml": notes("footnote", "x" * 600_000)}
    data = docx(p("Body."), parts, {"rIdFn": ("footnotes", "footnotes.xml")})
    assert docx_sections("ok.docx", data, 2 * 2**20)[-1][0] == FOOTNOTES
    with pytest.raises(LoadError, match="big.docx: the document's part word/footnotes.xml unpacks to .* bomb"):
        docx_sections("big.docx", data, 500_000)


def test_tables_nested_past_any_real_depth_are_reported_not_a_crash():
    body = "<w:tbl><w:tr><w:tc>" * 500 + p("deep") + "</w:tc></w:tr></w:tbl>" * 500
    with pytest.raises(LoadError, match="deep.docx: the Word file nests tables or text boxes more than 32 deep"):
        loaders.load(Path("deep.docx"), docx(body))


def test_document_written_by_python_docx_reads_headers_once(tmp_path):
    docx_lib = pytest.importorskip("docx")
    document = docx_lib.Document()
    document.add_heading("Travel policy", level=1)
    document.add_paragraph("Book trains over planes.")
    table = document.add_table(rows=2, cols=2)
    for row, (a, b) in zip(table.rows, [("city", "allowance"), ("Paris", "120")]):
        row.cells[0].text, row.cells[1].text = a, b
    document.sections[0].header.paragraphs[0].text = "Internal use only"
    document.add_section()  # its header is linked to the first: python-docx itself would give the text twice
    document.add_paragraph("Second section.")
    path = tmp_path / "policy.docx"
    document.save(path)
    sections = loaders.load(path)
    assert [(s.heading, s.text) for s in sections] == [
        ("Travel policy", "Book trains over planes.\n\ncity | allowance\n\nParis | 120\n\nSecond section."),
        (HEADERS, "Internal use only")]

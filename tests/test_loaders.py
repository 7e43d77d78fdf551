import io
import os
import zipfile

import pytest

from rag import loaders
from rag.errors import LoadError
from tests.conftest import CORPUS, make_pdf_module


def test_markdown_sections_carry_their_heading_path(tmp_path):
    note = tmp_path / "note.md"
    note.write_text("# Title\nintro\n## Part\nbody\n### Sub\ndeep\n```\n# not a heading\n```\n## Other\nend\n")
    sections = loaders.load(note)
    assert [(s.heading, s.text.splitlines()[0]) for s in sections] == [
        ("Title", "intro"), ("Title > Part", "body"), ("Title > Part > Sub", "deep"), ("Title > Other", "end")]
    assert "# not a heading" in sections[2].text


def test_pdf_keeps_page_numbers():
    sections = loaders.load(CORPUS / "llm-handbook.pdf")
    pages = [s.page for s in sections]
    assert pages == sorted(pages) and pages[0] == 1 and len(pages) >= 5
    page4 = next(s for s in sections if s.page == 4)
    assert "0.03" in page4.text  # the min-p example the PDF places on page 4


def test_pdf_running_headers_footers_and_contents_pages_are_dropped(tmp_path):
    body = ["Apples grow in orchards.", "Boats sail in the harbour.", "Clocks measure the time of day.",
            "Dogs bark at the postman.", "Eagles nest on high cliffs."]
    contents = ["Contents"] + [f"Chapter {i} ........ {i + 1}" for i in range(1, 6)]
    pages = [["Acme Handbook 2026", *contents, "Page 1 of 6"]]
    pages += [["Acme Handbook 2026", line, f"Page {n + 2} of 6"] for n, line in enumerate(body)]
    path = tmp_path / "book.pdf"
    make_pdf_module().write_pdf(path, pages)
    sections = loaders.load(path)
    assert [s.page for s in sections] == [2, 3, 4, 5, 6]  # the contents page is gone, numbering kept
    assert [s.text for s in sections] == body  # header and "Page n of 6" footer removed


def test_html_gives_text_and_headings_without_scripts_or_styles(tmp_path):
    page = tmp_path / "saved.html"
    page.write_text("""<html><head><title>Saved page</title><style>body{color:red}</style>
        <script>var secret = "do not index";</script></head><body>
        <p>Lead paragraph &amp; intro.</p>
        <h1>Main</h1><p>First <b>bold</b> words.</p><div hidden>invisible text</div>
        <h2>Detail</h2><ul><li>one</li><li>two</li></ul><table><tr><td>a</td><td>b</td></tr></table>
        </body></html>""")
    sections = loaders.load(page)
    assert [s.heading for s in sections] == ["Saved page", "Main", "Main > Detail"]
    assert sections[0].text == "Lead paragraph & intro."
    assert sections[1].text == "First bold words."
    joined = " ".join(s.text for s in sections)
    assert "secret" not in joined and "color" not in joined and "invisible" not in joined
    assert "one" in sections[2].text and "a | b" in sections[2].text


def make_docx(path, paragraphs, table=None):
    """A minimal .docx: [(style or None, text)] paragraphs and an optional table of rows."""
    w = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'
    body = ""
    for style, text in paragraphs:
        props = f'<w:pPr><w:pStyle w:val="{style}"/></w:pPr>' if style else ""
        body += f"<w:p>{props}<w:r><w:t>{text}</w:t></w:r></w:p>"
    if table:
        rows = "".join("<w:tr>" + "".join(f"<w:tc><w:p><w:r><w:t>{c}</w:t></w:r></w:p></w:tc>" for c in row) + "</w:tr>"
                       for row in table)
        body += f"<w:tbl>{rows}</w:tbl>"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", f"<w:document {w}><w:body>{body}</w:body></w:document>")
    path.write_bytes(buffer.getvalue())


def test_docx_gives_paragraphs_headings_and_tables(tmp_path):
    path = tmp_path / "report.docx"
    make_docx(path, [("Title", "Report"), (None, "Opening words."), ("Heading1", "Costs"),
                     (None, "It costs ten euros."), ("Heading2", "Detail"), (None, "Per month.")],
              table=[["item", "price"], ["tea", "3"]])
    sections = loaders.load(path)
    assert [(s.heading, s.text) for s in sections] == [
        ("Report", "Opening words."), ("Report > Costs", "It costs ten euros."),
        ("Report > Costs > Detail", "Per month.\n\nitem | price\n\ntea | 3")]


@pytest.mark.parametrize("text, codec", [
    ("Caf\u00e9 cr\u00e8me \u2013 na\u00efve", "cp1252"),
    ("Gr\u00fc\u00dfe aus K\u00f6ln, sch\u00f6ne Stra\u00dfe", "cp1252"),
    ("\u041f\u0440\u0438\u0432\u0435\u0442, \u043a\u0430\u043a \u0434\u0435\u043b\u0430? \u042d\u0442\u043e \u0442\u0435\u0441\u0442 \u043a\u043e\u0434\u0438\u0440\u043e\u0432\u043a\u0438.", "cp1251"),
    ("\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3067\u3059\u3002\u30a8\u30f3\u30b3\u30fc\u30c7\u30a3\u30f3\u30b0", "shift_jis"),
    ("UTF-16 with a byte order mark: \u00e9\u00e8", "utf-16"),
])
def test_text_that_is_not_utf8_is_decoded_correctly(tmp_path, text, codec):
    path = tmp_path / "old.txt"
    path.write_bytes(text.encode(codec))
    [section] = loaders.load(path)
    assert section.text == text


def _encrypted(tmp_path, name, password):
    import pypdf

    reader = pypdf.PdfReader(CORPUS / "llm-handbook.pdf")
    writer = pypdf.PdfWriter()
    for page in reader.pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password="owner-secret", algorithm="AES-256")
    path = tmp_path / name
    with open(path, "wb") as handle:
        writer.write(handle)
    return path


def test_encrypted_pdf_with_empty_password_opens(tmp_path):
    sections = loaders.load(_encrypted(tmp_path, "open.pdf", ""))
    assert len(sections) >= 5 and "0.03" in next(s.text for s in sections if s.page == 4)


def test_encrypted_pdf_with_a_password_is_reported(tmp_path):
    with pytest.raises(LoadError, match="locked.pdf: the PDF is protected by a password"):
        loaders.load(_encrypted(tmp_path, "locked.pdf", "hunter2"))


@pytest.mark.parametrize("name, data, reason", [
    ("empty.md", b"", "empty"),
    ("blank.txt", b"  \n\n ", "empty"),
    ("binary.txt", bytes(range(256)) * 4, "binary"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj <<", "damaged"),
    ("broken.docx", b"PK\x03\x04 not a zip", "damaged"),
    ("talk.key", b"PK\x03\x04", "unsupported"),
])
def test_bad_files_get_a_reason_naming_the_file(tmp_path, name, data, reason):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(LoadError) as caught:
        loaders.load(path)
    assert reason in caught.value.reason
    assert name in str(caught.value)


def test_truncated_pdf_is_reported(tmp_path):
    data = (CORPUS / "llm-handbook.pdf").read_bytes()
    path = tmp_path / "cut.pdf"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(LoadError, match="cut.pdf: the PDF is damaged"):
        loaders.load(path)


def test_pdf_without_text_layer_says_scanned(tmp_path):
    path = tmp_path / "scan.pdf"
    make_pdf_module().write_pdf(path, [[], []])
    with pytest.raises(LoadError, match="no extractable text: its pages hold neither text nor images"):
        loaders.load(path)


def test_unreadable_files_are_reported(tmp_path, monkeypatch):
    with pytest.raises(LoadError, match="cannot be read"):
        loaders.load(tmp_path / "missing.md")
    locked = tmp_path / "locked.md"
    locked.write_text("# secret")
    # Tests run as root, where chmod 000 does not stop a read; simulate the permission error instead.
    real_read = type(locked).read_bytes

    def deny(self):
        if self.name == "locked.md":
            raise PermissionError(13, "Permission denied")
        return real_read(self)

    monkeypatch.setattr(type(locked), "read_bytes", deny)
    with pytest.raises(LoadError, match="locked.md: cannot be read \\(Permission denied\\)"):
        loaders.load(locked)


def test_symlink_loop_is_reported(tmp_path):
    os.symlink(tmp_path / "b.md", tmp_path / "a.md")
    os.symlink(tmp_path / "a.md", tmp_path / "b.md")
    with pytest.raises(LoadError, match="a.md: is a symbolic link that loops"):
        loaders.load(tmp_path / "a.md")


def test_very_large_file_is_stopped_by_the_size_limit(tmp_path):
    big = tmp_path / "huge.txt"
    with open(big, "wb") as handle:
        handle.truncate(3 * 1024 * 1024)  # sparse: 3 MB of NUL bytes without writing them
    with pytest.raises(LoadError, match="huge.txt: the file is 3 MB, over the limit of 2 MB"):
        loaders.load(big, max_bytes=2 * 1024 * 1024)


def test_pdf_with_too_many_pages_is_stopped(tmp_path):
    path = tmp_path / "long.pdf"
    make_pdf_module().write_pdf(path, [["page text"]] * 12)
    with pytest.raises(LoadError, match="12 pages, more than the limit of 10"):
        loaders.load(path, max_pages=10)

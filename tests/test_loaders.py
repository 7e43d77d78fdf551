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


def test_text_in_windows_1252_is_decoded(tmp_path):
    old = tmp_path / "old.txt"
    old.write_bytes("Caf\u00e9 cr\u00e8me \u2013 na\u00efve".encode("cp1252"))
    [section] = loaders.load(old)
    assert section.text == "Caf\u00e9 cr\u00e8me \u2013 na\u00efve"


@pytest.mark.parametrize("name, data, reason", [
    ("empty.md", b"", "empty"),
    ("blank.txt", b"  \n\n ", "empty"),
    ("binary.txt", bytes(range(256)) * 4, "binary"),
    ("broken.pdf", b"%PDF-1.4\n1 0 obj <<", "damaged"),
    ("notes.docx", b"PK\x03\x04", "unsupported"),
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
    with pytest.raises(LoadError, match="scanned"):
        loaders.load(path)


def test_unreadable_file_is_reported(tmp_path):
    with pytest.raises(LoadError, match="cannot be read"):
        loaders.load(tmp_path / "missing.md")

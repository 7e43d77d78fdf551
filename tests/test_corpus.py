from tests.conftest import CORPUS, make_pdf_module


def test_the_committed_pdf_is_what_the_script_makes(tmp_path):
    out = tmp_path / "handbook.pdf"
    pages = make_pdf_module().build(out)
    assert pages >= 5
    assert out.read_bytes() == (CORPUS / "llm-handbook.pdf").read_bytes(), "run `make pdf` and commit the PDF"


def test_the_sample_library_has_at_least_eight_notes():
    notes = sorted(CORPUS.glob("*.md"))
    assert len(notes) >= 8
    for note in notes:
        text = note.read_text(encoding="utf-8")
        assert text.startswith("# ") and text.count("\n## ") >= 3, note.name

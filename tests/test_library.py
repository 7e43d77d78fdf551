"""The app's library: safe upload names, type and size limits, per-file ingest progress, removal."""

import pytest

from rag import library
from rag.errors import LoadError


@pytest.mark.parametrize("given, safe", [
    ("../../etc/passwd.md", "passwd.md"),
    ("/etc/cron.d/evil.txt", "evil.txt"),
    ("C:\\Users\\me\\notes.TXT", "notes.txt"),
    (".bashrc.md", "bashrc.md"),
    ("..", "document"),
    ("report <final>|v2.pdf", "report _final_v2.pdf"),
    ("\u00e9t\u00e9.md", "\u00e9t\u00e9.md"),
])
def test_upload_names_cannot_leave_the_library(given, safe):
    assert library.safe_name(given) == safe


def test_a_very_long_name_is_shortened_and_keeps_its_type():
    name = library.safe_name("x" * 500 + ".pdf")
    assert name.endswith(".pdf") and len(name) <= library.MAX_NAME + 4


def test_uploads_land_inside_the_library_whatever_their_name(tmp_path, settings_factory):
    settings = settings_factory(tmp_path / "index", library_dir=tmp_path / "library")
    source = tmp_path / "upload.bin"
    source.write_text("# Note\nSome text.\n")
    for hostile in ("../../outside.md", "/tmp/absolute.md", "sub/dir/nested.md"):
        stored = library.add_upload(source, hostile, settings)
        assert stored.parent == settings.library_dir
    assert not (tmp_path / "outside.md").exists() and not (settings.library_dir / "sub").exists()


def test_the_same_file_twice_is_kept_once_and_a_namesake_gets_a_new_name(tmp_path, settings_factory):
    settings = settings_factory(tmp_path / "index", library_dir=tmp_path / "library")
    first, second = tmp_path / "a.md", tmp_path / "b.md"
    first.write_text("one")
    second.write_text("two")
    kept = library.add_upload(first, "notes.md", settings)
    assert library.add_upload(first, "notes.md", settings) == kept
    other = library.add_upload(second, "notes.md", settings)
    assert other.name == "notes-2.md" and other.read_text() == "two" and kept.read_text() == "one"
    assert sorted(p.name for p in settings.library_dir.iterdir()) == ["notes-2.md", "notes.md"]  # no leftovers


def test_wrong_types_and_oversized_files_are_refused_by_name(tmp_path, settings_factory):
    settings = settings_factory(tmp_path / "index", library_dir=tmp_path / "library", max_file_mb=1)
    program = tmp_path / "tool.exe"
    program.write_bytes(b"MZ")
    with pytest.raises(LoadError, match=r"tool\.exe.*\.exe.*not indexed.*\.pdf"):
        library.add_upload(program, "tool.exe", settings)
    big = tmp_path / "big.txt"
    big.write_bytes(b"a" * (1024 * 1024 + 1))
    with pytest.raises(LoadError, match=r"big\.txt.*over the 1 MB limit"):
        library.add_upload(big, "big.txt", settings)
    assert not settings.library_dir.exists() or not any(settings.library_dir.iterdir())


def test_ingest_reports_every_file_and_drops_copies_it_cannot_read(tmp_path, embedder, settings_factory):
    settings = settings_factory(tmp_path / "index", library_dir=tmp_path / "library")
    good, bad = tmp_path / "good.md", tmp_path / "bad.pdf"
    good.write_text("# Birds\nThe swift spends most of its life in the air.\n")
    bad.write_bytes(b"%PDF-1.4 this is not really a PDF")
    stored = [library.add_upload(good, "good.md", settings), library.add_upload(bad, "bad.pdf", settings)]
    updates = list(library.ingest_with_progress(stored, settings, embedder, interval=0.05))
    final = {s.name: s for s in updates[-1]}
    assert final["good.md"].state == "indexed" and final["good.md"].detail == "1 chunks"
    assert final["bad.pdf"].state == "failed" and "PDF" in final["bad.pdf"].detail
    assert all(len(u) == 2 for u in updates)  # every update names every file
    assert not (settings.library_dir / "bad.pdf").exists()  # a copy that cannot be indexed is not kept
    again = list(library.ingest_with_progress(stored[:1], settings, embedder, interval=0.05))[-1]
    assert again[0].state == "unchanged"
    assert [e.name for e in library.entries(settings)] == ["good.md"]


def test_removing_deletes_the_uploaded_copy_but_never_the_users_own_file(tmp_path, embedder, settings_factory):
    from rag.indexing import ingest

    settings = settings_factory(tmp_path / "index", library_dir=tmp_path / "library")
    own = tmp_path / "mine" / "own.md"
    own.parent.mkdir()
    own.write_text("# Mine\nKept where the user put it.\n")
    upload = tmp_path / "up.md"
    upload.write_text("# Uploaded\nA copy in the library.\n")
    copy = library.add_upload(upload, "up.md", settings)
    ingest([own, copy], settings, embedder)
    assert {e.name: e.uploaded for e in library.entries(settings)} == {"own.md": False, "up.md": True}
    assert library.remove_document(str(own), settings) == [str(own)]
    assert library.remove_document(str(copy), settings) == [str(copy)]
    assert own.exists() and not copy.exists()
    assert library.entries(settings) == []


def test_slides_sheets_and_mail_are_uploaded_indexed_reingested_and_removed(tmp_path, embedder, settings_factory):
    from tests import documents

    settings = settings_factory(tmp_path / "index", library_dir=tmp_path / "library")
    made = [documents.slides(tmp_path / "deck.pptx"), documents.workbook(tmp_path / "budget.xlsx"),
            documents.mail(tmp_path / "roof.eml"), documents.ebook(tmp_path / "book.epub")]
    stored = [library.add_upload(path, path.name, settings) for path in made]
    final = {s.name: s for s in list(library.ingest_with_progress(stored, settings, embedder, interval=0.05))[-1]}
    assert {name: s.state for name, s in final.items()} == {p.name: "indexed" for p in made}
    again = list(library.ingest_with_progress(stored, settings, embedder, interval=0.05))[-1]
    assert {s.state for s in again} == {"unchanged"}
    from rag import store

    labels = {c.label for c in store.load(settings.index_dir).chunks}
    assert "deck.pptx, slide 2, Harbour Line timetable" in labels
    assert "inspection.pdf (attachment of roof.eml), page 1" in labels
    assert library.remove_document(str(stored[0]), settings) == [str(stored[0])]
    assert not any(c.path.endswith("deck.pptx") for c in store.load(settings.index_dir).chunks)

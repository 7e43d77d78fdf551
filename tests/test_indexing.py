import os

import pytest

from rag import store
from rag.errors import StoreError
from rag.indexing import find_files, ingest


@pytest.fixture
def folder(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Alpha\nThe alpha note talks about apples and orchards in spring.\n")
    (docs / "sub" / "b.txt").write_text("Bravo text about boats, harbours and the tides of the sea.\n")
    (docs / ".hidden").mkdir()
    (docs / ".hidden" / "c.md").write_text("# hidden\nnever indexed\n")
    (docs / "image.png").write_bytes(b"\x89PNG")
    return docs


def test_folders_are_searched_recursively_skipping_hidden_entries(folder):
    files, skipped, failures = find_files([folder, folder / "nope.md"])
    assert [f.name for f in files] == ["a.md", "b.txt"]
    assert [s.name for s in skipped] == ["image.png"]
    assert failures[0].path.endswith("nope.md") and "no such file" in failures[0].reason


def test_reingesting_is_idempotent_and_changes_replace_chunks(folder, tmp_path, embedder, settings_factory):
    settings = settings_factory(tmp_path / "index")
    first = ingest([folder], settings, embedder)
    assert (len(first.added), first.documents) == (2, 2)
    again = ingest([folder], settings, embedder)
    assert (again.added, again.updated, len(again.unchanged)) == ((), (), 2)
    assert again.generation == first.generation  # nothing changed, nothing written

    (folder / "a.md").write_text("# Alpha\nThe alpha note now talks about pears only.\n")
    changed = ingest([folder], settings, embedder)
    assert [os.path.basename(p) for p in changed.updated] == ["a.md"]
    snapshot = store.load(settings.index_dir)
    texts = [c.text for c in snapshot.chunks if c.path.endswith("a.md")]
    assert texts == ["The alpha note now talks about pears only."]  # old chunk gone, no duplicate
    assert snapshot.vectors.ntotal == len(snapshot.chunks) == changed.chunks


def test_one_bad_file_is_reported_and_the_rest_is_indexed(folder, tmp_path, embedder, settings_factory):
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 garbage")
    (folder / "empty.md").write_bytes(b"")
    report = ingest([folder], settings_factory(tmp_path / "index"), embedder)
    assert sorted(os.path.basename(f.path) for f in report.failed) == ["broken.pdf", "empty.md"]
    assert report.documents == 2
    assert "2 failed" in report.summary()


def test_an_index_made_by_another_embedder_is_not_mixed(folder, tmp_path, embedder, settings_factory):
    settings = settings_factory(tmp_path / "index")
    ingest([folder / "a.md"], settings, embedder)

    class Other:
        name, dim, max_tokens = "other-model", embedder.dim, 256
        count_tokens = staticmethod(embedder.count_tokens)
        embed = staticmethod(embedder.embed)

    with pytest.raises(StoreError, match="other-model"):
        ingest([folder], settings, Other())

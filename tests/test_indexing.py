import os

import numpy as np
import pytest

from rag import store
from rag.errors import StoreError
from rag.indexing import find_files, ingest, remove
from rag.journal import Journal


@pytest.fixture
def folder(tmp_path):
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "a.md").write_text("# Alpha\nThe alpha note talks about apples and orchards in spring.\n")
    (docs / "sub" / "b.txt").write_text("Bravo text about boats, harbours and the tides of the sea.\n")
    (docs / ".hidden").mkdir()
    (docs / ".hidden" / "c.md").write_text("# hidden\nnever indexed\n")
    (docs / "image.svg").write_bytes(b"<svg/>")
    return docs


class CountingEmbedder:
    """The real embedder, counting what it is asked to embed."""

    def __init__(self, real):
        self.real, self.calls = real, []
        self.name, self.dim, self.max_tokens = real.name, real.dim, real.max_tokens

    def count_tokens(self, text):
        return self.real.count_tokens(text)

    def embed(self, texts):
        self.calls.append(list(texts))
        return self.real.embed(texts)


def names(paths):
    return sorted(os.path.basename(p) for p in paths)


def test_folders_are_walked_skipping_hidden_entries_and_link_loops(folder):
    os.symlink(folder / "loop1.md", folder / "loop2.md")
    os.symlink(folder / "loop2.md", folder / "loop1.md")
    os.symlink(folder, folder / "sub" / "back")  # a folder link back up: not followed
    os.symlink(folder / "a.md", folder / "again.md")  # the same file twice: indexed once
    files, skipped, failures, roots = find_files([folder, folder / "nope.md"])
    assert [f.name for f in files] == ["a.md", "b.txt"]
    assert [s.name for s in skipped] == ["image.svg"]
    reasons = {os.path.basename(f.path): f.reason for f in failures}
    assert "loops back" in reasons["loop1.md"] and "loops back" in reasons["loop2.md"]
    assert "no such file" in reasons["nope.md"]
    assert roots == [folder.resolve()]


def test_reingesting_is_idempotent(folder, tmp_path, embedder, settings_factory):
    settings = settings_factory(tmp_path / "index")
    first = ingest([folder], settings, embedder)
    assert (len(first.added), first.documents) == (2, 2)
    before = store.load(settings.index_dir)
    counting = CountingEmbedder(embedder)
    again = ingest([folder], settings, counting)
    assert (again.added, again.updated, again.removed, len(again.unchanged)) == ((), (), (), 2)
    assert counting.calls == []  # nothing parsed or embedded again
    assert again.generation == first.generation  # nothing changed, nothing written
    after = store.load(settings.index_dir)
    assert after.chunks == before.chunks and np.array_equal(after.all_vectors(), before.all_vectors())


def test_a_changed_file_replaces_its_chunks_and_reuses_unchanged_vectors(folder, tmp_path, embedder, settings_factory):
    settings = settings_factory(tmp_path / "index", chunk_tokens=40, chunk_overlap=0)
    long = "# Long\n" + "\n\n".join(f"Paragraph {i} tells a separate story about item {i}, in enough words to fill "
                                    f"a chunk of its own with ordinary text." for i in range(6))
    (folder / "a.md").write_text(long)
    ingest([folder], settings, embedder)
    old = [c.text for c in store.load(settings.index_dir).chunks if c.path.endswith("a.md")]
    (folder / "a.md").write_text(long.replace("Paragraph 5 tells", "Paragraph 5 now tells"))
    counting = CountingEmbedder(embedder)
    changed = ingest([folder], settings, counting)
    assert names(changed.updated) == ["a.md"]
    assert changed.embedded == 1 and len(counting.calls[0]) == 1  # only the edited chunk
    snapshot = store.load(settings.index_dir)
    new = [c.text for c in snapshot.chunks if c.path.endswith("a.md")]
    assert len(new) == len(old) and new[-1].startswith("Paragraph 5 now") and new[:-1] == old[:-1]
    assert len({(c.path, c.ordinal) for c in snapshot.chunks}) == len(snapshot.chunks)  # no duplicates
    assert snapshot.vectors.ntotal == len(snapshot.chunks) == changed.chunks


def test_files_gone_from_a_folder_leave_the_index_and_remove_is_explicit(folder, tmp_path, embedder, settings_factory):
    settings = settings_factory(tmp_path / "index")
    extra = tmp_path / "extra.md"
    extra.write_text("# Extra\nA note kept outside the folder, about cherries.\n")
    ingest([folder, extra], settings, embedder)
    (folder / "sub" / "b.txt").unlink()
    report = ingest([folder], settings, embedder)
    assert names(report.removed) == ["b.txt"]
    assert names(d.path for d in store.load(settings.index_dir).documents) == ["a.md", "extra.md"]  # not under folder
    gone, _ = remove([extra], settings)
    assert names(gone) == ["extra.md"]
    assert names(d.path for d in store.load(settings.index_dir).documents) == ["a.md"]


def test_one_bad_file_is_reported_and_the_rest_is_indexed(folder, tmp_path, embedder, settings_factory):
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7 garbage")
    (folder / "empty.md").write_bytes(b"")
    report = ingest([folder], settings_factory(tmp_path / "index"), embedder)
    assert names(f.path for f in report.failed) == ["broken.pdf", "empty.md"]
    assert report.documents == 2 and report.usable
    assert "2 failed" in report.summary()


def test_a_file_that_turns_bad_keeps_its_previous_version(folder, tmp_path, embedder, settings_factory):
    settings = settings_factory(tmp_path / "index")
    ingest([folder], settings, embedder)
    (folder / "a.md").write_bytes(b"\x00\x01binary now")
    report = ingest([folder], settings, embedder)
    assert names(f.path for f in report.failed) == ["a.md"] and report.removed == ()
    assert any("apples" in c.text for c in store.load(settings.index_dir).chunks)


def test_an_interrupted_run_resumes_from_the_journal(folder, tmp_path, embedder, settings_factory):
    settings = settings_factory(tmp_path / "index")
    for i in range(3):
        (folder / f"n{i}.md").write_text(f"# Note {i}\nNote number {i} is about subject {i} and nothing else.\n")

    class Crashing(CountingEmbedder):
        def embed(self, texts):
            if self.calls:
                raise KeyboardInterrupt  # as if killed while embedding the second batch
            return super().embed(texts)

    with pytest.raises(KeyboardInterrupt):  # one file per batch: the first is finished before the "kill"
        ingest([folder], settings.with_(embed_batch=1), Crashing(embedder))
    assert store.current_generation(settings.index_dir) is None  # nothing half-written was made current
    assert len(Journal(settings.index_dir).keys()) == 1
    counting = CountingEmbedder(embedder)
    report = ingest([folder], settings, counting)
    assert report.resumed == 1 and report.documents == 5
    assert sum(len(c) for c in counting.calls) == report.chunks - 1  # the finished file was not embedded again
    assert Journal(settings.index_dir).keys() == set()


def test_an_index_made_by_another_embedder_is_not_mixed(folder, tmp_path, embedder, settings_factory):
    settings = settings_factory(tmp_path / "index")
    ingest([folder / "a.md"], settings, embedder)

    class Other(CountingEmbedder):
        pass

    other = Other(embedder)
    other.name = "other-model"
    with pytest.raises(StoreError, match="other-model"):
        ingest([folder], settings, other)


def test_two_ingests_at_once_take_turns_and_both_land(tmp_path, embedder, settings_factory):
    import threading

    settings = settings_factory(tmp_path / "index")
    (tmp_path / "one.md").write_text("# One\nThe first note is about violins and cellos.\n")
    (tmp_path / "two.md").write_text("# Two\nThe second note is about trumpets and horns.\n")
    entered, release = threading.Event(), threading.Event()

    class Slow(CountingEmbedder):
        def embed(self, texts):
            entered.set()
            release.wait(30)  # hold the write lock until the second ingest is waiting for it
            return super().embed(texts)

    waited = threading.Event()
    first = threading.Thread(target=ingest, args=([tmp_path / "one.md"], settings, Slow(embedder)))
    first.start()
    assert entered.wait(30)
    second = threading.Thread(target=ingest, args=([tmp_path / "two.md"], settings, embedder),
                              kwargs={"on_wait": waited.set})
    second.start()
    assert waited.wait(30)  # the second was told to wait, and did not write beside the first
    release.set()
    first.join(60)
    second.join(60)
    assert names(d.path for d in store.load(settings.index_dir).documents) == ["one.md", "two.md"]

"""The same ingest and retrieval guarantees on both store backends, local and Milvus, chosen by the `backend` fixture."""

from pathlib import Path

import numpy as np
import pytest

from rag import store
from rag.errors import ConfigError
from rag.indexing import ingest, remove
from rag.pipeline import Pipeline
from rag.retrieve import ViewRetriever
from tests.conftest import CORPUS
from tests.test_indexing import CountingEmbedder, folder, names  # noqa: F401 - folder is a fixture


def test_choose_names_the_valid_backends(tmp_path, settings_factory):
    with pytest.raises(ConfigError, match="valid backends are local and milvus"):
        store.choose(settings_factory(tmp_path, store="qdrant"))
    with pytest.raises(ConfigError, match="needs a URI"):
        store.choose(settings_factory(tmp_path, store="milvus"))
    with pytest.raises(ConfigError, match="ending in .db"):
        store.choose(settings_factory(tmp_path, milvus_uri=str(tmp_path / "milvus-folder")))
    assert store.choose(settings_factory(tmp_path)).name == "local"  # the default stays the local index
    assert store.choose(settings_factory(tmp_path, milvus_uri="http://127.0.0.1:19530")).name == "milvus"


def test_corpus_search_ask_and_path_filters(backend, tmp_path, embedder):
    settings = backend(tmp_path / "index")
    report = ingest([CORPUS], settings, embedder)
    assert not report.failed and report.documents == 11
    pipeline = Pipeline(settings, embedder=embedder)
    assert len(pipeline.retriever.snapshot.chunks) == report.chunks
    top = pipeline.search("LoRA rank r and alpha", 3)
    assert len(top) == 3 and Path(top[0].chunk.path).name == "fine-tuning-and-lora.md"
    assert top[0].keyword > 0 and top[0].dense > 0.3  # both retrievers contributed, scores positive on every backend
    only = str(CORPUS / "sampling.md")
    assert {h.chunk.path for h in pipeline.search("memory formula of the KV cache", within=[only])} == {only}
    assert all(h.chunk.path.startswith(str(CORPUS) + "/") for h in pipeline.search("KV cache", within=[str(CORPUS)]))
    assert pipeline.search("KV cache", within=[str(tmp_path / "elsewhere")]) == []
    assert pipeline.retriever.term_weight("cach") > 0 and pipeline.retriever.term_weight("zzzqqq") is None
    answer = pipeline.ask("What is the formula for the memory used by the KV cache?")
    assert not answer.abstained and answer.cited
    assert "kv-cache.md" in [Path(s.path).name for s in answer.sources]
    assert pipeline.ask("What is the capital of Peru?").abstained


def test_reingest_change_and_removal_keep_the_manifest(backend, folder, tmp_path, embedder):  # noqa: F811
    settings = backend(tmp_path / "index", chunk_tokens=40, chunk_overlap=0)
    long = "# Long\n" + "\n\n".join(f"Paragraph {i} tells a separate story about item {i}, in enough words to fill "
                                    f"a chunk of its own with ordinary text." for i in range(6))
    (folder / "a.md").write_text(long)
    extra = tmp_path / "extra.md"
    extra.write_text("# Extra\nA note kept outside the folder, about cherries.\n")
    first = ingest([folder, extra], settings, embedder)
    assert (len(first.added), first.documents) == (3, 3)
    backend_store = store.choose(settings)

    counting = CountingEmbedder(embedder)
    again = ingest([folder, extra], settings, counting)
    assert (again.added, again.updated, again.removed, len(again.unchanged)) == ((), (), (), 3)
    assert counting.calls == [] and again.generation == first.generation  # nothing embedded, nothing written

    (folder / "a.md").write_text(long.replace("Paragraph 5 tells", "Paragraph 5 now tells"))
    counting = CountingEmbedder(embedder)
    changed = ingest([folder, extra], settings, counting)
    assert names(changed.updated) == ["a.md"] and changed.embedded == 1  # only the edited chunk
    view = backend_store.load()
    assert view.generation == changed.generation != first.generation
    pipeline = Pipeline(settings, embedder=embedder)
    texts = [h.chunk.text for h in pipeline.search("Paragraph 5 tells a separate story about item 5", 10)]
    assert any("Paragraph 5 now tells" in t for t in texts) and not any(t.startswith("Paragraph 5 tells") for t in texts)
    assert len(view.chunks) == changed.chunks == sum(d.chunks for d in view.documents)

    (folder / "sub" / "b.txt").unlink()
    report = ingest([folder], settings, embedder)
    assert names(report.removed) == ["b.txt"]
    gone, _ = remove([extra], settings)
    assert names(gone) == ["extra.md"]
    view = backend_store.load()
    assert names(d.path for d in view.documents) == ["a.md"]
    assert not pipeline.search("boats harbours tides cherries", within=[str(extra), str(folder / "sub")])
    if backend_store.name == "milvus":  # the replaced and removed versions' rows are gone, not only hidden
        rows = backend_store.client.query(backend_store.chunks_name, filter="id >= 0", output_fields=["count(*)"])
        assert rows[0]["count(*)"] == len(view.chunks)


def test_a_search_on_a_view_replaced_meanwhile_is_done_again_on_the_new_one(tmp_path, embedder, settings_factory, milvus_uri):
    settings = settings_factory(tmp_path / "index", milvus_uri=milvus_uri, milvus_collection="replaced_meanwhile")
    note = tmp_path / "note.md"
    note.write_text("# Ships\nThe old note says the harbour closes at nine.\n")
    ingest([note], settings, embedder)
    retriever = ViewRetriever(store.choose(settings).load(), embedder, settings)
    note.write_text("# Ships\nThe new note says the harbour closes at ten.\n")
    report = ingest([note], settings, embedder)  # deletes the rows the old view searches
    hits = retriever.search("when does the harbour close", 3)
    assert [h.chunk.text for h in hits] == ["The new note says the harbour closes at ten."]
    assert retriever.snapshot.generation == report.generation


def test_milvus_lite_file(tmp_path, embedder, settings_factory, folder):  # noqa: F811
    pytest.importorskip("milvus_lite")
    settings = settings_factory(tmp_path / "index", milvus_uri=str(tmp_path / "milvus" / "index.db"))
    report = ingest([folder], settings, embedder)
    assert report.documents == 2
    hits = Pipeline(settings, embedder=embedder).search("apples in the orchard", 1)
    assert Path(hits[0].chunk.path).name == "a.md"
    view = store.choose(settings).load()
    assert np.allclose(np.linalg.norm(view.vectors_of([hits[0].chunk_id]), axis=1), 1.0, atol=1e-3)


def test_an_ingest_stopped_between_the_switch_and_the_deletion_is_tidied_by_the_next(tmp_path, embedder, settings_factory,
                                                                                       milvus_uri, monkeypatch):
    from rag.store.milvus import MilvusStore

    settings = settings_factory(tmp_path / "index", milvus_uri=milvus_uri, milvus_collection="stopped_after_switch")
    note = tmp_path / "note.md"
    note.write_text("# Ships\nThe old note says the harbour closes at nine.\n")
    ingest([note], settings, embedder)
    original = MilvusStore._manifest_row

    def switch_then_die(self, serial, committed, retired, embedder_name, dim):
        original(self, serial, committed, retired, embedder_name, dim)
        if retired:
            raise KeyboardInterrupt  # as if killed right after the switch, before the old rows were deleted

    monkeypatch.setattr(MilvusStore, "_manifest_row", switch_then_die)
    note.write_text("# Ships\nThe new note says the harbour closes at ten.\n")
    with pytest.raises(KeyboardInterrupt):
        ingest([note], settings, embedder)
    monkeypatch.setattr(MilvusStore, "_manifest_row", original)
    backend_store = store.choose(settings)
    count = lambda: backend_store.client.query(backend_store.chunks_name, filter="id >= 0", output_fields=["count(*)"])[0]["count(*)"]
    assert count() == 2  # the old version's row is still there ...
    hits = Pipeline(settings, embedder=embedder).search("when does the harbour close", 3)
    assert [h.chunk.text for h in hits] == ["The new note says the harbour closes at ten."]  # ... but never seen
    assert ingest([note], settings, embedder).unchanged  # the next ingest, with nothing to do, deletes it
    assert count() == 1

import sqlite3

import numpy as np
import pytest

from rag import store
from rag.chunking import Chunk
from rag.errors import StoreError


def _data(n: int, dim: int = 8, tag: str = "a"):
    rng = np.random.default_rng(n)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    chunks = [Chunk(f"/docs/{tag}.md", f"text {tag} {i}", i, None, "H") for i in range(n)]
    documents = [store.Document(f"/docs/{tag}.md", "sha", 10, None, n, 1.0)]
    return documents, chunks, vectors


def test_round_trip_keeps_chunks_and_vectors(tmp_path):
    documents, chunks, vectors = _data(5)
    generation = store.write(tmp_path, documents, chunks, vectors, "emb")
    snapshot = store.load(tmp_path)
    assert snapshot.generation == generation
    assert snapshot.chunks == tuple(chunks)
    assert snapshot.documents == tuple(documents)
    assert np.allclose(snapshot.vectors_of([0, 4]), vectors[[0, 4]])
    assert (snapshot.embedder, snapshot.dim) == ("emb", 8)


def test_a_failed_write_leaves_the_old_index_in_force(tmp_path, monkeypatch):
    store.write(tmp_path, *_data(3, tag="old"), "emb")
    import faiss

    def broken(*args):
        raise OSError("disk full")

    monkeypatch.setattr(faiss, "write_index", broken)
    with pytest.raises(OSError):
        store.write(tmp_path, *_data(7, tag="new"), "emb")
    snapshot = store.load(tmp_path)
    assert [c.path for c in snapshot.chunks] == ["/docs/old.md"] * 3
    assert not list(tmp_path.glob("*.tmp"))  # the half-written staging folder is gone


def test_old_generations_are_pruned_but_the_previous_one_stays(tmp_path):
    names = [store.write(tmp_path, *_data(2 + i), "emb") for i in range(4)]
    remaining = sorted(p.name for p in tmp_path.glob("gen-*"))
    assert remaining == names[-2:]
    assert store.current_generation(tmp_path) == names[-1]


def test_missing_index_says_how_to_build_one(tmp_path):
    with pytest.raises(StoreError, match="ingest.py"):
        store.load(tmp_path / "nowhere")


def test_damaged_database_is_reported_not_served(tmp_path):
    generation = store.write(tmp_path, *_data(3), "emb")
    (tmp_path / generation / "chunks.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError, match="damaged"):
        store.load(tmp_path)


def test_vectors_and_chunks_must_agree(tmp_path):
    generation = store.write(tmp_path, *_data(3), "emb")
    con = sqlite3.connect(tmp_path / generation / "chunks.sqlite")
    con.execute("DELETE FROM chunks WHERE id = 2")
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="damaged|inconsistent"):
        store.load(tmp_path)


def test_a_second_writer_is_told_why_it_cannot_run(tmp_path):
    with store.writer_lock(tmp_path):
        with pytest.raises(StoreError, match="Another ingest"):
            with store.writer_lock(tmp_path, wait=False):
                pass
    with store.writer_lock(tmp_path, wait=False):  # free again once the first is done
        pass

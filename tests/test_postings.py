"""BM25 postings stored in the generation: the same scores as postings rebuilt from the texts, old generations, damage."""

import json
import shutil

import numpy as np
import pytest

from rag import store
from rag.bm25 import BM25, Postings, analyze
from rag.chunking import Chunk
from rag.errors import StoreError
from rag.retrieve import Retriever
from tests.conftest import corpus_questions
from tests.test_faults import flip_byte


def _rebuilt(snapshot) -> BM25:
    return BM25([analyze(c.indexed_text) for c in snapshot.chunks])


def _same_bm25(stored: BM25, rebuilt: BM25, queries: list[list[str]]) -> None:
    for terms in queries:
        assert np.allclose(stored.scores(terms), rebuilt.scores(terms), rtol=1e-6, atol=1e-6), terms
        top, expected = stored.top(terms, 20), rebuilt.top(terms, 20)
        assert [i for i, _ in top] == [i for i, _ in expected], terms
        assert [s for _, s in top] == pytest.approx([s for _, s in expected], rel=1e-6)
        for term in terms:
            assert stored.weight(term) == rebuilt.weight(term)


def _strip_postings(index) -> None:
    """Make the generation in force look as the code before stored postings wrote it."""
    folder = index / store.current_generation(index)
    (folder / "bm25.npz").unlink()
    meta = json.loads((folder / "meta.json").read_text())
    del meta["sha256"]["bm25.npz"], meta["analyzer"]
    (folder / "meta.json").write_text(json.dumps(meta))


def _synthetic(n: int, tag: str, seed: int):
    rng = np.random.default_rng(seed)
    words = "cache tokens memory heads sampling temperature fusion rank matrices gradient loss layer".split()
    # Every seventh chunk has no terms at all (stopwords only, no heading): its length is 0.
    chunks = [Chunk(f"/docs/{tag}.md", " ".join(rng.choice(words, size=int(rng.integers(1, 15)))), i, None, f"{tag} {i}")
              if i % 7 else Chunk(f"/docs/{tag}.md", "the and of", i, None, "") for i in range(n)]
    vectors = rng.standard_normal((n, 8)).astype(np.float32)
    return store.Document(f"/docs/{tag}.md", f"{seed:064x}", 1, None, n, 0.0), chunks, vectors


def test_stored_postings_score_as_postings_rebuilt_from_the_texts(corpus_index):
    snapshot = store.load(corpus_index)
    assert snapshot.postings is not None and snapshot.postings.size == len(snapshot.chunks)
    queries = [analyze(question) for question, _, _ in corpus_questions()]
    queries += [["lora", "lora", "rank"], ["nosuchterm"], []]
    _same_bm25(BM25(snapshot.postings), _rebuilt(snapshot), queries)


def test_an_old_generation_without_postings_loads_and_searches_the_same(corpus_index, tmp_path, embedder,
                                                                         settings_factory):
    old = tmp_path / "index"
    shutil.copytree(corpus_index, old)
    _strip_postings(old)
    snapshot = store.load(old)
    assert snapshot.postings is None
    settings = settings_factory(old, retrieval="bm25", rerank=False)
    rebuilt = Retriever(snapshot, embedder, settings)
    stored = Retriever(store.load(corpus_index), embedder, settings)
    for question, _, _ in corpus_questions():
        expected, hits = rebuilt.search(question, k=8), stored.search(question, k=8)
        assert hits, question
        assert [h.chunk_id for h in hits] == [h.chunk_id for h in expected], question
        assert [h.keyword for h in hits] == pytest.approx([h.keyword for h in expected], rel=1e-6)


def test_an_ingest_keeps_the_postings_of_unchanged_documents_and_counts_the_new(tmp_path):
    local = store.LocalStore(tmp_path)
    parts = {tag: _synthetic(n, tag, seed) for tag, n, seed in (("a", 30, 1), ("b", 40, 2), ("c", 25, 3))}
    local.manifest()
    local.commit({path: part for path, part in ((p[0].path, p) for p in parts.values())}, [], "emb", 8)
    changed = _synthetic(35, "b", 9)
    added = _synthetic(10, "ab", 4)
    local.manifest()
    local.commit({changed[0].path: changed, added[0].path: added}, ["/docs/c.md"], "emb", 8)
    snapshot = store.load(tmp_path)
    assert [c.path for c in snapshot.chunks] == ["/docs/a.md"] * 30 + ["/docs/ab.md"] * 10 + ["/docs/b.md"] * 35
    words = "cache tokens memory heads sampling temperature fusion rank matrices gradient loss layer a b ab c".split()
    _same_bm25(BM25(snapshot.postings), _rebuilt(snapshot), [analyze(w) for w in words] + [analyze(" ".join(words))])
    rebuilt = Postings.of([analyze(c.indexed_text) for c in snapshot.chunks])
    assert sorted(snapshot.postings.vocabulary) == sorted(rebuilt.vocabulary)  # "c 0".."c 24" are gone
    assert np.array_equal(snapshot.postings.lengths, rebuilt.lengths)


def test_an_ingest_over_an_old_generation_writes_postings(tmp_path):
    local = store.LocalStore(tmp_path)
    part = _synthetic(20, "a", 1)
    local.manifest()
    local.commit({part[0].path: part}, [], "emb", 8)
    _strip_postings(tmp_path)
    added = _synthetic(5, "b", 2)
    local.manifest()
    local.commit({added[0].path: added}, [], "emb", 8)
    snapshot = store.load(tmp_path)
    assert snapshot.postings is not None
    _same_bm25(BM25(snapshot.postings), _rebuilt(snapshot), [["cach"], ["rank", "layer"], ["b"]])


def test_counting_texts_gives_the_postings_of_their_analysed_tokens(corpus_index):
    texts = [c.indexed_text for c in store.load(corpus_index).chunks]
    texts += ["The Caf\u00e9s and the KV-Caches were running", "of the and", "", "Running RUNS run 42 4_2 \u00fcber"]
    counted, analysed = Postings.of_texts(texts), Postings.of([analyze(t) for t in texts])
    assert sorted(counted.vocabulary) == sorted(analysed.vocabulary)
    assert np.array_equal(counted.lengths, analysed.lengths)
    for term in analysed.vocabulary:
        assert np.array_equal(BM25(counted).scores([term]), BM25(analysed).scores([term])), term


def test_merge_places_documents_and_save_load_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    docs = [list(rng.choice([f"w{i}" for i in range(50)], size=int(rng.integers(0, 20)))) for _ in range(120)]
    order = rng.permutation(len(docs))
    left, right = order[:70], order[70:]
    merged = Postings.merge([(Postings.of([docs[i] for i in left]), left), (Postings.of([docs[i] for i in right]), right)])
    merged.save(tmp_path / "p.npz")
    loaded = Postings.load(tmp_path / "p.npz")
    assert loaded.vocabulary == merged.vocabulary and np.array_equal(loaded.docs, merged.docs)
    for terms in (["w1"], ["w3", "w7", "w3"], ["w49", "none"]):
        assert np.array_equal(BM25(loaded).scores(terms), BM25(docs).scores(terms))
        assert np.allclose(BM25(loaded, idf="okapi").scores(terms), BM25(docs, idf="okapi").scores(terms))
    with pytest.raises(ValueError, match="each of"):
        Postings.merge([(Postings.of(docs[:3]), np.array([0, 0, 1]))])
    with pytest.raises(ValueError, match="newline"):
        Postings.of([["two\nlines"]]).save(tmp_path / "bad.npz")


def _written(tmp_path) -> str:
    document, chunks, vectors = _synthetic(200, "a", 5)
    return store.write(tmp_path, [document], chunks, vectors, "emb")


def test_a_damaged_postings_file_is_named_and_never_served(tmp_path):
    generation = _written(tmp_path)
    flip_byte(tmp_path / generation / "bm25.npz")
    with pytest.raises(StoreError) as refused:
        store.load(tmp_path)
    message = str(refused.value)
    assert "damaged" in message and "bm25.npz" in message and "ingest.py --rebuild" in message


def test_a_missing_postings_file_is_reported_when_meta_json_names_it(tmp_path):
    generation = _written(tmp_path)
    (tmp_path / generation / "bm25.npz").unlink()
    with pytest.raises(StoreError, match="missing files.*ingest.py --rebuild"):
        store.load(tmp_path)


def test_postings_of_another_analyzer_are_not_used(tmp_path):
    generation = _written(tmp_path)
    meta_path = tmp_path / generation / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta["analyzer"] = "some older analyzer"
    meta_path.write_text(json.dumps(meta))
    assert store.load(tmp_path).postings is None  # the Retriever analyses the texts with today's analyzer

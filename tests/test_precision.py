"""Embedding precision and runtime: auto's rule, ONNX Runtime's float32 and int8 against torch's float32, the
export made once, and an index always ingested into and queried the way it was made."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rag.config import Settings
from rag.embeddings import (LazyEmbedder, auto_precision, embedder_id, follow, recorded_precision)
from rag.errors import ConfigError
from tests.conftest import CORPUS

TWO_NOTES = ("kv-cache.md", "sampling.md")


@pytest.mark.parametrize("features, int8_ok, expected", [
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, False, "float32"),  # bfloat16 only when asked for (torch, slow start)
    ({"avx2", "amx_bf16"}, False, "float32"),
    ({"avx2"}, True, "int8"),  # int8, once it meets the quality bounds
    ({"avx2", "avx512f", "avx512_vnni", "avx512_bf16"}, True, "int8"),
    ({"avx2"}, False, "float32"),  # bounds not met: float32 (on ONNX Runtime), never bfloat16 without hardware support
    (set(), True, "float32"),  # no AVX2: the int8 kernels would run a slow path
])
def test_auto_follows_the_cpu_features_and_the_quality_bounds(features, int8_ok, expected):
    assert auto_precision(frozenset(features), int8_ok=int8_ok) == expected


def test_the_index_id_records_int8_only():
    assert embedder_id("minilm", "int8") == "minilm@int8" and recorded_precision("minilm@int8") == "int8"
    # float32 and bfloat16 vectors are interchangeable; every index made before int8 existed reads as float
    assert embedder_id("minilm", "bfloat16") == embedder_id("minilm", "float32") == "minilm"
    assert recorded_precision("minilm") == "float"


def test_precision_setting_accepts_int8_and_names_the_choices():
    assert Settings(embed_precision="int8").embed_precision == "int8"
    with pytest.raises(ConfigError, match="auto, float32, bfloat16 or int8"):
        Settings(embed_precision="int4")


def test_lazy_embedder_follows_an_index_without_loading_torch_weights():
    lazy = LazyEmbedder("/models/minilm/model", "float32")
    assert lazy.name == "minilm"
    followed = follow(lazy, "minilm@int8")
    assert followed.name == "minilm@int8" and followed.precision == "int8" and not followed.loaded
    assert follow(lazy, "minilm@int8") is followed  # kept: a reloaded index does not load the model again
    assert follow(lazy, "minilm") is lazy and follow(lazy, None) is lazy
    assert follow(lazy, "other-model") is lazy  # another model altogether: the caller reports the mismatch
    auto = LazyEmbedder("/models/minilm/model", "auto")
    assert follow(auto, "minilm").name == "minilm"  # an existing index names the path: auto is not resolved (no torch)


@pytest.fixture(scope="module")
def cache_dir():
    from rag.config import Settings

    return Settings.load({}).cache_dir  # the test run's own (tests/conftest.py)


@pytest.fixture(scope="module")
def int8_embedder(cache_dir):
    from rag.config import bundled_embedder_path
    from rag.embeddings import load_embedder

    return load_embedder(bundled_embedder_path(), "int8", cache_dir=cache_dir)


@pytest.fixture(scope="module")
def torch_float32():
    from rag.config import bundled_embedder_path
    from rag.embeddings import load_embedder

    return load_embedder(bundled_embedder_path(), "float32", "torch")


def _notes(tmp_path, names=TWO_NOTES):
    folder = tmp_path / "notes"
    folder.mkdir()
    for name in names:
        shutil.copy(CORPUS / name, folder / name)
    return folder


def _vectors(index_dir):
    from rag import store

    snapshot = store.load(index_dir)
    return snapshot, snapshot.vectors.reconstruct_n(0, snapshot.vectors.ntotal)


def test_int8_vectors_agree_with_float32_on_corpus_chunks(corpus_index, int8_embedder, torch_float32):
    from rag import store

    texts = [c.indexed_text for c in store.load(corpus_index).chunks[::10]]
    reference = torch_float32.embed(texts)
    cosines = np.sum(int8_embedder.embed(texts) * reference, axis=1)
    assert cosines.min() >= 0.99, cosines.min()
    assert cosines.mean() < 0.9999  # really quantized, not float32 under another name
    assert int8_embedder.name.endswith("@int8") and int8_embedder.runtime == "onnx"


def test_onnx_float32_gives_torch_float32_vectors_and_token_counts(corpus_index, cache_dir, torch_float32):
    from rag import store
    from rag.config import bundled_embedder_path
    from rag.embeddings import load_embedder

    onnx = load_embedder(bundled_embedder_path(), "float32", cache_dir=cache_dir)
    assert onnx.runtime == "onnx" and onnx.name == torch_float32.name  # one family: the index records the same name
    texts = [c.indexed_text for c in store.load(corpus_index).chunks[::7]] + ["", "a", "word " * 400]  # empty, tiny, truncated
    cosines = np.sum(onnx.embed(texts) * torch_float32.embed(texts), axis=1)
    assert cosines.min() > 0.9999, cosines.min()
    assert [onnx.count_tokens(t) for t in texts] == [torch_float32.count_tokens(t) for t in texts]
    assert onnx.dim == torch_float32.dim and onnx.max_tokens == torch_float32.max_tokens
    assert onnx.embed([]).shape == (0, onnx.dim)


def test_the_onnx_files_are_made_once_and_reused(tmp_path):
    from rag.config import bundled_embedder_path
    from rag.embeddings.onnx_runtime import INT8_FILE, onnx_files

    first = onnx_files(bundled_embedder_path(), tmp_path)
    made = {p.name: p.stat().st_mtime_ns for p in first.iterdir()}
    assert set(made) == {"model.onnx", INT8_FILE}
    again = onnx_files(bundled_embedder_path(), tmp_path)
    assert again == first and {p.name: p.stat().st_mtime_ns for p in again.iterdir()} == made
    assert not [p for p in (tmp_path / "onnx").iterdir() if ".making-" in p.name]  # nothing half-made left aside


def test_a_model_onnx_runtime_cannot_run_is_named_or_left_to_torch(tmp_path, cache_dir):
    import json

    from rag.config import bundled_embedder_path
    from rag.embeddings import load_embedder
    from rag.embeddings.onnx_runtime import OnnxUnsupported, check_layout

    model = tmp_path / "cls-model"
    shutil.copytree(bundled_embedder_path(), model)
    pooling = model / "1_Pooling" / "config.json"
    config = json.loads(pooling.read_text()) | {"pooling_mode_mean_tokens": False, "pooling_mode_cls_token": True}
    pooling.write_text(json.dumps(config))
    with pytest.raises(OnnxUnsupported, match="pooling_mode_cls_token"):
        check_layout(model)
    with pytest.raises(ConfigError, match=r"cannot run on ONNX Runtime.*RAG_EMBED_RUNTIME=torch"):
        load_embedder(str(model), "int8", cache_dir=cache_dir)
    fallback = load_embedder(str(model), "float32", cache_dir=cache_dir)  # float32 runs it on torch instead
    assert fallback.runtime == "torch" and fallback.embed(["a cat"]).shape == (1, fallback.dim)


def test_an_int8_index_is_ingested_into_and_queried_with_int8(tmp_path, settings_factory, embedder, int8_embedder):
    from rag.indexing import ingest
    from rag.pipeline import Pipeline

    folder = _notes(tmp_path, TWO_NOTES[:1])
    settings = settings_factory(tmp_path / "index")
    ingest([folder], settings, int8_embedder)
    shutil.copy(CORPUS / TWO_NOTES[1], folder / TWO_NOTES[1])
    ingest([folder], settings, embedder)  # a float embedder, as RAG_EMBED_PRECISION=auto gives here: the index wins
    snapshot, vectors = _vectors(settings.index_dir)
    assert snapshot.embedder.endswith("@int8")
    texts = [c.indexed_text for c in snapshot.chunks if c.path.endswith(TWO_NOTES[1])]
    new = vectors[[i for i, c in enumerate(snapshot.chunks) if c.path.endswith(TWO_NOTES[1])]]
    # The new file's chunks are int8 ones too: close to int8's vectors (not equal: an int8 input scale is one per
    # batch, so a text's vector moves a little with its batch-mates), farther from float32's than float weights go.
    assert np.sum(new * int8_embedder.embed(texts), axis=1).min() > 0.995
    assert np.sum(new * int8_embedder.at_precision("float32").embed(texts), axis=1).min() < 0.999

    pipeline = Pipeline(settings, embedder=embedder)
    assert pipeline.retriever.embedder.precision == "int8"
    hits = pipeline.search("How much memory does the KV cache take?")
    assert hits and hits[0].chunk.path.endswith("kv-cache.md")


def test_a_float32_index_stays_float32_when_auto_would_pick_int8(tmp_path, settings_factory, int8_embedder, torch_float32):
    from rag.indexing import ingest
    from rag.pipeline import Pipeline

    folder = _notes(tmp_path, TWO_NOTES[:1])
    settings = settings_factory(tmp_path / "index")
    float32 = torch_float32
    ingest([folder], settings, float32)  # what every index made before int8 holds: the name alone
    shutil.copy(CORPUS / TWO_NOTES[1], folder / TWO_NOTES[1])
    ingest([folder], settings, int8_embedder)  # an AVX2-only machine whose auto picks int8
    snapshot, vectors = _vectors(settings.index_dir)
    assert snapshot.embedder == float32.name and "@" not in snapshot.embedder
    cosines = np.sum(vectors * float32.embed([c.indexed_text for c in snapshot.chunks]), axis=1)
    assert cosines.min() > 0.999  # float weights (float32, or bfloat16 where it is native), not int8

    pipeline = Pipeline(settings, embedder=int8_embedder)
    assert pipeline.retriever.embedder.precision in ("float32", "bfloat16")
    hits = pipeline.search("What does top-p sampling keep?")
    assert hits and hits[0].chunk.path.endswith("sampling.md")

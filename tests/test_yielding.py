"""The app's own indexing waits while an answer is being written, and makes the same vectors."""

from __future__ import annotations

import threading
import time

import numpy as np

from rag.yielding import AnswerGate, YieldingEmbedder


class Counting:
    name, dim, max_tokens = "counting", 3, 256

    def __init__(self) -> None:
        self.calls: list[float] = []

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def embed(self, texts):
        self.calls.append(time.perf_counter())
        rows = np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_the_vectors_are_the_same_and_in_the_order_given():
    texts = [("a" * n) + " text" * (n % 7) for n in range(1, 100)]
    plain = Counting().embed(texts)
    inner = Counting()
    courteous = YieldingEmbedder(inner, AnswerGate(), batch=8)
    assert np.array_equal(courteous.embed(texts), plain)
    assert len(inner.calls) == 13  # 99 texts in batches of 8
    assert courteous.name == "counting" and courteous.dim == 3 and courteous.count_tokens("a b") == 2


def test_embedding_waits_while_an_answer_is_written_and_goes_on_after():
    gate, inner = AnswerGate(), Counting()
    courteous = YieldingEmbedder(inner, gate, batch=4)
    released = []
    with gate.writing():
        worker = threading.Thread(target=lambda: courteous.embed([f"text {i}" for i in range(12)]))
        worker.start()
        time.sleep(0.5)
        assert inner.calls == []  # nothing embedded while the model writes
        released.append(time.perf_counter())
    worker.join(10)
    assert len(inner.calls) == 3 and inner.calls[0] >= released[0]
    assert gate.waited >= 0.4


def test_a_long_answer_does_not_starve_indexing():
    gate, inner = AnswerGate(), Counting()
    courteous = YieldingEmbedder(inner, gate, batch=4, patience=0.2)
    with gate.writing():
        started = time.perf_counter()
        courteous.embed([f"text {i}" for i in range(8)])
    assert len(inner.calls) == 2 and time.perf_counter() - started < 5


def test_an_upload_into_an_int8_index_is_embedded_the_index_s_way(tmp_path):
    from rag.embeddings import LazyEmbedder, follow

    lazy = LazyEmbedder(str(tmp_path / "all-MiniLM-L6-v2"), "float32")
    courteous = YieldingEmbedder(lazy, AnswerGate())
    followed = follow(courteous, "all-MiniLM-L6-v2@int8")
    assert isinstance(followed, YieldingEmbedder) and followed.name == "all-MiniLM-L6-v2@int8"
    assert followed.gate is courteous.gate
    assert follow(courteous, "all-MiniLM-L6-v2") is courteous

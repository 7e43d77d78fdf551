"""The app's own indexing gives way to the answer being written.

On a laptop's few cores an upload being embedded and llama.cpp writing an answer fight for the
same cores, and llama.cpp's threads wait for each other at every layer: one of them descheduled
stalls them all, so the answer crawls. The Pipeline marks the time its model writes with an
`AnswerGate`; the embedder the app hands to its upload queue and folder watcher is a
`YieldingEmbedder`, which embeds in small batches and waits between them while an answer is being
written (at most `patience` seconds per batch, so indexing never starves under a stream of
questions). Queries are embedded by the plain embedder and never wait. Batches of 8: the batch in
flight when an answer starts is all it has to share the cores with (bench/busy_answer.py: 0.93 of
idle tokens/s with 8, first token as when idle; an upload takes about 13% longer).
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Iterator, Sequence

import numpy as np

from rag.embeddings import Embedder


class AnswerGate:
    """Counts the answers being written; others can wait until none is."""

    def __init__(self) -> None:
        self._writing = 0
        self._changed = threading.Condition()
        self.waited = 0.0  # seconds indexing spent waiting for answers, for the bench

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        with self._changed:
            self._writing += 1
        try:
            yield
        finally:
            with self._changed:
                self._writing -= 1
                self._changed.notify_all()

    @property
    def busy(self) -> bool:
        return self._writing > 0

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no answer is being written (True), or `timeout` seconds (False)."""
        started = time.perf_counter()
        with self._changed:
            idle = self._changed.wait_for(lambda: self._writing == 0, timeout=timeout)
        self.waited += time.perf_counter() - started
        return idle


class YieldingEmbedder:
    """An embedder that waits between small batches while an answer is being written."""

    def __init__(self, embedder: Embedder, gate: AnswerGate, batch: int = 8, patience: float = 120.0) -> None:
        self.inner = embedder
        self.gate = gate
        self.batch = batch
        self.patience = patience

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model_name(self) -> str | None:  # what rag.embeddings.follow compares with an index's embedder id
        return getattr(self.inner, "model_name", None)

    @property
    def dim(self) -> int:
        return self.inner.dim

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def at_precision(self, precision: str) -> "YieldingEmbedder":
        """The same courtesy around the model at another precision (an index made another way)."""
        change = getattr(self.inner, "at_precision", None)
        inner = self.inner if change is None else change(precision)
        return self if inner is self.inner else YieldingEmbedder(inner, self.gate, self.batch, self.patience)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return self.inner.embed(texts)
        # Sorted by length so that each small batch pads little, then put back in the order given.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        parts = []
        for start in range(0, len(order), self.batch):
            if self.gate.busy:
                self.gate.wait_idle(self.patience)
            parts.append(self.inner.embed([texts[i] for i in order[start:start + self.batch]]))
        vectors = np.concatenate(parts)
        out = np.empty_like(vectors)
        out[order] = vectors
        return out

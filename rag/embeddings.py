"""Text -> unit-length vectors, with the embedder's own token counter for chunking."""

from __future__ import annotations

import copy
import os
import threading
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from rag.errors import ConfigError


class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows and counts tokens its own way."""

    name: str
    dim: int
    max_tokens: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...

    def count_tokens(self, text: str) -> int: ...


def embedder_name(path: str) -> str:
    """The name an index records for the embedder in `path` (the bundled one lives in a folder called model)."""
    folder = Path(path).expanduser()
    return folder.parent.name if folder.name == "model" else folder.name


class LazyEmbedder:
    """Loads the model on first use, so an ingest with nothing new to embed never pays for torch."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.name = embedder_name(path)
        self._loaded: SentenceTransformerEmbedder | None = None
        self._lock = threading.Lock()

    def _model(self) -> "SentenceTransformerEmbedder":
        with self._lock:
            if self._loaded is None:
                self._loaded = SentenceTransformerEmbedder(self.path)
            return self._loaded

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    @property
    def dim(self) -> int:
        return self._model().dim

    @property
    def max_tokens(self) -> int:
        return self._model().max_tokens

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return self._model().embed(texts)

    def count_tokens(self, text: str) -> int:
        return self._model().count_tokens(text)


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, never from a hub."""

    def __init__(self, path: str, batch_size: int = 32) -> None:
        folder = Path(path).expanduser()
        if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
            raise ConfigError(
                f"Embedder folder {folder} does not hold a sentence-transformers model (no config.json or "
                "modules.json); point --embedder or RAG_EMBEDDER at a model folder, or leave it empty for the bundled one."
            )
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # the weight-loading bar is noise in a CLI

        self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        # A copy for counting: the parse thread counts tokens while the model encodes, and one fast
        # tokenizer used from two threads at once fails with "Already borrowed".
        self._tokenizer = copy.deepcopy(self._model.tokenizer)
        self.name = embedder_name(path)
        self.dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
                       else self._model.get_sentence_embedding_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self.batch_size = batch_size

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text`, special tokens included, without truncation."""
        return len(self._tokenizer(text, add_special_tokens=True, truncation=False, verbose=False)["input_ids"])

"""Text -> unit-length vectors, with the embedder's own token counter for chunking."""

from __future__ import annotations

import os
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
        self._tokenizer = self._model.tokenizer
        self.name = folder.name if folder.name != "model" else folder.parent.name
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

"""The embedder on torch through sentence-transformers: float32, or bfloat16 where the CPU multiplies it in hardware."""

from __future__ import annotations

import copy
import os
from typing import Sequence

import numpy as np

from rag.embeddings import check_model_folder, embedder_id, embedder_name, resolve_precision
from rag.errors import ConfigError


class SentenceTransformerEmbedder:
    """A sentence-transformers model loaded from a local folder, never from a hub."""

    runtime = "torch"

    def __init__(self, path: str, batch_size: int = 32, precision: str = "auto") -> None:
        folder = check_model_folder(path)
        self.precision = resolve_precision(precision)
        if self.precision == "int8":
            raise ConfigError("int8 embedding runs on ONNX Runtime, not torch; set RAG_EMBED_RUNTIME to auto or onnx, "
                              "or RAG_EMBED_PRECISION to float32 or bfloat16.")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # the weight-loading bar is noise in a CLI

        self._model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)
        self.path = path
        self.dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
                       else self._model.get_sentence_embedding_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self.batch_size = batch_size
        # bfloat16 matrix products where the CPU has them: 2x faster on AVX512-BF16, and the vectors
        # agree with float32 ones to a cosine of 0.99998 (bench/precision.py, README "Speed").
        self.model_name = embedder_name(path)
        self.name = embedder_id(self.model_name, self.precision)
        self._siblings: dict[str, object] = {}
        # A copy of the Rust tokenizer for counting: the parse thread counts while the model encodes, one
        # tokenizer used from two threads at once fails with "Already borrowed", and calling it directly
        # skips the transformers wrapper, which costs more than the count itself.
        self._counter = copy.deepcopy(self._model.tokenizer.backend_tokenizer)
        self._counter.no_truncation()
        self._counter.no_padding()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            vectors = self._model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                         convert_to_numpy=True, show_progress_bar=False)
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def at_precision(self, precision: str):
        """This model at another precision (loaded once, then kept); itself when that is the one it has."""
        from rag.embeddings import sibling

        return sibling(self, precision)

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text`, special tokens included, without truncation."""
        return len(self._counter.encode(text, add_special_tokens=True).ids)

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


PRECISIONS = ("auto", "float32", "bfloat16")


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere bfloat16 is slower."""
    try:
        import torch

        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (ImportError, AttributeError, RuntimeError):
        try:
            flags = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
        return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"Embedding precision {precision!r} is not one of {', '.join(PRECISIONS)}; set RAG_EMBED_PRECISION to one of them.")
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


class LazyEmbedder:
    """Loads the model on first use, so an ingest with nothing new to embed never pays for torch."""

    def __init__(self, path: str, precision: str = "auto") -> None:
        self.path = path
        self.precision = precision
        self.name = embedder_name(path)
        self._loaded: SentenceTransformerEmbedder | None = None
        self._lock = threading.Lock()

    def _model(self) -> "SentenceTransformerEmbedder":
        with self._lock:
            if self._loaded is None:
                self._loaded = SentenceTransformerEmbedder(self.path, precision=self.precision)
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

    def __init__(self, path: str, batch_size: int = 32, precision: str = "auto") -> None:
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
        self.name = embedder_name(path)
        self.dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
                       else self._model.get_sentence_embedding_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self.batch_size = batch_size
        # bfloat16 matrix products where the CPU has them: 1.8x faster on AVX512-BF16, and the vectors
        # agree with float32 ones to a cosine of 0.99997 (bench/ingest_speed.py, README "Speed").
        self.precision = resolve_precision(precision)
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

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text`, special tokens included, without truncation."""
        return len(self._counter.encode(text, add_special_tokens=True).ids)

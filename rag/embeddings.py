"""Text -> unit-length vectors, with the embedder's own token counter for chunking."""

from __future__ import annotations

import copy
import functools
import os
import threading
import warnings
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


PRECISIONS = ("auto", "float32", "bfloat16", "int8")
# float32 and bfloat16 vectors agree to a cosine of 0.99998 and are interchangeable in one index; int8 ones agree to
# about 0.992, so an index made with them records it in its embedder id ("all-minilm-l6-v2@int8") and is queried so.
INT8_SUFFIX = "@int8"
# Whether int8 met the quality bounds (cosine to float32 >= 0.99 on every corpus chunk, SciFact nDCG@10 within 0.005
# of float32) for the bundled embedder: bench/precision.py measures it; auto picks int8 only while this holds.
INT8_MEETS_BOUNDS = False


def cpu_features() -> frozenset[str]:
    """The CPU features the kernels will use: avx2, avx512f, avx512_vnni, avx512_bf16, amx_bf16.

    Read from torch where it can say, so that ATEN_CPU_CAPABILITY=avx2 and ONEDNN_MAX_CPU_ISA=AVX2
    (an AVX2-only machine emulated) count; from /proc/cpuinfo otherwise.
    """
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    found = {f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags}
    try:
        import torch

        capability = torch.backends.cpu.get_cpu_capability()  # DEFAULT, AVX2 or AVX512, as ATEN_CPU_CAPABILITY allows
        if capability != "AVX512":
            found -= {"avx512f", "avx512_vnni"}
        if capability == "DEFAULT":
            found.discard("avx2")
        if not (torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()):
            found -= {"avx512_bf16", "amx_bf16"}
    except (ImportError, AttributeError, RuntimeError):
        pass
    return frozenset(found)


def native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); elsewhere bfloat16 is slower."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_features())


def auto_precision(features: frozenset[str] | set[str], int8_ok: bool = INT8_MEETS_BOUNDS) -> str:
    """The fastest path that keeps quality, from bench/precision.py: bfloat16 where the CPU has it in hardware
    (2.5x float32 there, cosine 0.99998), int8 on other AVX2 CPUs once it meets the bounds, float32 otherwise
    (bfloat16 without hardware support runs at a third of float32's speed)."""
    if {"avx512_bf16", "amx_bf16"} & set(features):
        return "bfloat16"
    if int8_ok and "avx2" in features:
        return "int8"
    return "float32"


def resolve_precision(precision: str) -> str:
    """float32, bfloat16 or int8 for a setting; "float" (an index made with float weights) is the faster of the first two."""
    if precision not in PRECISIONS and precision != "float":
        raise ConfigError(f"Embedding precision {precision!r} is not one of {', '.join(PRECISIONS)}; set RAG_EMBED_PRECISION to one of them.")
    if precision == "auto":
        return auto_precision(cpu_features())
    if precision == "float":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


def recorded_precision(embedder_id: str) -> str:
    """The precision family an index's embedder id records: "int8", or "float" (float32 or bfloat16, and every
    index made before int8 existed)."""
    return "int8" if embedder_id.endswith(INT8_SUFFIX) else "float"


def embedder_id(name: str, precision: str) -> str:
    """What an index records for vectors made by the embedder `name` at `precision` (resolved)."""
    return name + INT8_SUFFIX if precision == "int8" else name


def follow(embedder: Embedder, recorded: str | None) -> Embedder:
    """The embedder that makes vectors the way the index that records `recorded` was made.

    The same model at the index's precision, so that new chunks and queries match the vectors
    already there; `embedder` itself when it already does, when the index is empty, or when it is
    another model altogether (the caller reports that).
    """
    model = getattr(embedder, "model_name", None)  # read without resolving "auto", which would load torch
    if recorded is None or model is None or recorded.removesuffix(INT8_SUFFIX) != model:
        return embedder
    return embedder.at_precision(recorded_precision(recorded))


class LazyEmbedder:
    """Loads the model on first use, so an ingest with nothing new to embed never pays for torch."""

    def __init__(self, path: str, precision: str = "auto") -> None:
        self.path = path
        self.precision = precision
        self.model_name = embedder_name(path)
        self._loaded: SentenceTransformerEmbedder | None = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        if self.precision == "auto":  # resolving it reads the CPU through torch; the other precisions need no torch
            return embedder_id(self.model_name, resolve_precision("auto"))
        return embedder_id(self.model_name, "int8" if self.precision == "int8" else "float32")

    def at_precision(self, precision: str) -> "LazyEmbedder":
        """This model at `precision` ("float": float32 or bfloat16), still unloaded; itself when it has that one."""
        floats = ("float32", "bfloat16") + (("auto",) if not INT8_MEETS_BOUNDS else ())  # auto is a float path today
        same = precision == self.precision or (precision == "float" and self.precision in floats)
        return self if same else LazyEmbedder(self.path, precision)

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


def quantize_int8(model, keep_float: Sequence[str] = ()) -> int:
    """Swap `model`'s Linear layers for int8 ones in place (except those whose names end with one of
    `keep_float`); returns how many were swapped. Weights: int8 per output channel, in 7 bits; inputs:
    8 bits per call, scaled to each call's range (dynamic quantization, Jacob et al. 2018, arXiv:1712.05877).

    Per channel, not per tensor (cosine to float32 0.96 -> 0.99 on the corpus); full 8-bit inputs
    instead of torch's default 7 (0.98 -> 0.99); 7-bit weights because AVX2 without VNNI adds
    u8 x s8 pairs into saturating int16 (vpmaddubsw), which 8-bit weights and inputs overflow.
    """
    import torch

    int8_linear = _int8_linear_class()
    swapped = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if isinstance(child, torch.nn.Linear) and not any(full.endswith(k) for k in keep_float):
                setattr(parent, child_name, int8_linear(child))
                swapped += 1
    return swapped


def _int8_keep_float(model) -> tuple[str, ...]:
    """The feed-forward output projections of the first half of a BERT-style encoder: the layers whose inputs
    have outliers that 8 bits flatten (each alone costs the most cosine; bench/precision.py), kept in float32."""
    import re

    layers = {int(m[1]) for name, _ in model.named_modules() if (m := re.search(r"\blayer\.(\d+)\.output\.dense$", name))}
    return tuple(f"layer.{i}.output.dense" for i in sorted(layers)[: (len(layers) + 1) // 2])


@functools.cache
def _int8_linear_class():
    """The int8 layer, defined on first use so that importing this module does not import torch."""
    import torch

    class Int8Linear(torch.nn.Module):
        """y = x W^T + b with W in 7-bit int8 per output channel and x quantized to 8 bits at each call."""

        def __init__(self, linear: "torch.nn.Linear") -> None:
            super().__init__()
            weight = linear.weight.detach().float()
            scales = (weight.abs().amax(dim=1) / 63).clamp(min=1e-12).double()
            zeros = torch.zeros(weight.shape[0], dtype=torch.long)
            with warnings.catch_warnings():  # deprecated for torchao in 2.13 (pinned in constraints.txt), still there
                warnings.simplefilter("ignore")
                quantized = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
            bias = linear.bias.detach().float() if linear.bias is not None else None
            self.packed = torch.ops.quantized.linear_prepack(quantized, bias)
            self.in_features, self.out_features = linear.in_features, linear.out_features

        def forward(self, x: "torch.Tensor") -> "torch.Tensor":
            return torch.ops.quantized.linear_dynamic(x.float(), self.packed, reduce_range=False)

    return Int8Linear


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
        self.path = path
        self.dim = int(self._model.get_embedding_dimension() if hasattr(self._model, "get_embedding_dimension")
                       else self._model.get_sentence_embedding_dimension())
        self.max_tokens = int(self._model.max_seq_length)
        self.batch_size = batch_size
        # bfloat16 matrix products where the CPU has them: 1.8x faster on AVX512-BF16, and the vectors
        # agree with float32 ones to a cosine of 0.99997 (bench/ingest_speed.py, README "Speed").
        self.precision = resolve_precision(precision)
        if self.precision == "int8":  # 1.4x float32 on AVX2 (emulated), cosine 0.99 to it: bench/precision.py
            quantize_int8(self._model, keep_float=_int8_keep_float(self._model))
        self.model_name = embedder_name(path)
        self.name = embedder_id(self.model_name, self.precision)
        self._siblings: dict[str, SentenceTransformerEmbedder] = {}
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

    def at_precision(self, precision: str) -> "SentenceTransformerEmbedder":
        """This model at another precision (loaded once, then kept); itself when that is the one it has."""
        if precision == "float" and self.precision != "int8":
            return self
        wanted = resolve_precision(precision)
        if wanted == self.precision:
            return self
        if wanted not in self._siblings:
            self._siblings[wanted] = SentenceTransformerEmbedder(self.path, self.batch_size, wanted)
        return self._siblings[wanted]

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text`, special tokens included, without truncation."""
        return len(self._counter.encode(text, add_special_tokens=True).ids)

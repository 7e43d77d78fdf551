"""Text -> unit-length vectors, with the embedder's own token counter for chunking.

Two runtimes, one module each: `onnx_runtime.py` (float32 and int8, the default where it runs) and
`sentence_transformer.py` (torch: float32, and bfloat16 where the CPU has it in hardware). This
module holds the Protocol, the precision rules, which index gets which path, and `load_embedder`.
"""

from __future__ import annotations

import functools
import os
import sys
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


PRECISIONS = ("auto", "float32", "bfloat16", "int8")
# float32 and bfloat16 vectors agree to a cosine of 0.99998 and are interchangeable in one index; int8 ones agree to
# about 0.992, so an index made with them records it in its embedder id ("all-minilm-l6-v2@int8") and is queried so.
INT8_SUFFIX = "@int8"
# Whether int8 met the quality bounds (cosine to float32 >= 0.99 on every corpus chunk, SciFact nDCG@10 within 0.005
# of float32) for the bundled embedder: bench/precision.py measures it; auto picks int8 only while this holds.
INT8_MEETS_BOUNDS = False


@functools.cache  # the CPU and the emulation variables do not change while a process runs
def cpu_features() -> frozenset[str]:
    """The CPU features the kernels will use: avx2, avx512f, avx512_vnni, avx512_bf16, amx_bf16.

    From /proc/cpuinfo, less what ATEN_CPU_CAPABILITY=avx2 or ONEDNN_MAX_CPU_ISA=AVX2 (an AVX2-only
    machine emulated, bench/precision.py --avx2) take away; read without importing torch.
    """
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    found = {f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16") if f in flags}
    capability = os.environ.get("ATEN_CPU_CAPABILITY", "").lower()
    isa = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if capability in ("avx2", "default") or isa.startswith(("AVX2", "SSE")):
        found -= {"avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16"}
    if capability == "default" or isa.startswith("SSE"):
        found.discard("avx2")
    if isa.startswith("AVX512_CORE") and "AMX" not in isa and "BF16" not in isa:
        found -= {"avx512_bf16", "amx_bf16"}
    return frozenset(found)


def auto_precision(features: frozenset[str] | set[str], int8_ok: bool = INT8_MEETS_BOUNDS) -> str:
    """The path `auto` takes (bench/precision.py, bench/ingest_speed.py): int8 on ONNX Runtime on AVX2 CPUs while
    it meets the quality bounds, else float32, which runs on ONNX Runtime: a cold ingest 1.8x torch's float32 with
    the same vectors, and no torch to import, so `ask` prints its first line in 0.6 s instead of 4.6 s.
    bfloat16 (torch) ingests about 10% faster still where the CPU has it in hardware (AVX512-BF16, AMX), but
    costs that start-up and torch's memory; RAG_EMBED_PRECISION=bfloat16 chooses it. `features` is kept so that
    the rule stays one place if a CPU feature decides again."""
    if int8_ok and "avx2" in features:
        return "int8"
    return "float32"


def resolve_precision(precision: str) -> str:
    """float32, bfloat16 or int8 for a setting; "float" (an index made with float weights, float32 or bfloat16) is float32."""
    if precision not in PRECISIONS and precision != "float":
        raise ConfigError(f"Embedding precision {precision!r} is not one of {', '.join(PRECISIONS)}; set RAG_EMBED_PRECISION to one of them.")
    if precision == "auto":
        return auto_precision(cpu_features())
    if precision == "float":
        return "float32"
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


RUNTIMES = ("auto", "onnx", "torch")


def check_model_folder(path: str) -> Path:
    """The model folder, or a sentence saying it holds no sentence-transformers model."""
    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file() and not (folder / "modules.json").is_file():
        raise ConfigError(
            f"Embedder folder {folder} does not hold a sentence-transformers model (no config.json or "
            "modules.json); point --embedder or RAG_EMBEDDER at a model folder, or leave it empty for the bundled one."
        )
    return folder


def load_embedder(path: str, precision: str = "auto", runtime: str = "auto", batch_size: int = 32,
                  cache_dir: Path | None = None) -> Embedder:
    """The embedder for a model folder at a precision: ONNX Runtime for float32 and int8 (1.8x and 3.3x torch's
    float32 here, bench/precision.py), torch for bfloat16 or when RAG_EMBED_RUNTIME=torch. A float32 model that
    ONNX Runtime cannot run the sentence-transformers way (another pooling, extra layers) runs on torch."""
    if runtime not in RUNTIMES:
        raise ConfigError(f"Embedding runtime {runtime!r} is not one of {', '.join(RUNTIMES)}; set RAG_EMBED_RUNTIME to one of them.")
    wanted = resolve_precision(precision)
    from rag.embeddings.sentence_transformer import SentenceTransformerEmbedder

    if wanted == "bfloat16" or runtime == "torch":
        return SentenceTransformerEmbedder(path, batch_size, wanted)
    try:
        from rag.embeddings.onnx_runtime import OnnxEmbedder, OnnxUnsupported
    except ImportError as exc:  # an install without onnxruntime
        unsupported: Exception = exc
    else:
        try:
            return OnnxEmbedder(path, batch_size, wanted, cache_dir)
        except OnnxUnsupported as exc:
            unsupported = exc
    if wanted == "int8" or runtime == "onnx":
        raise ConfigError(f"The embedder in {path} cannot run on ONNX Runtime ({unsupported}); "
                          "set RAG_EMBED_PRECISION=float32 and RAG_EMBED_RUNTIME=torch.")
    print(f"Embedding with torch: {unsupported}", file=sys.stderr)
    return SentenceTransformerEmbedder(path, batch_size, wanted)


def sibling(embedder, precision: str) -> Embedder:
    """`embedder`'s model at `precision` ("float": float32 or bfloat16), loaded once and kept; itself when it has it."""
    if precision == "float" and embedder.precision != "int8":
        return embedder
    wanted = resolve_precision(precision)
    if wanted == embedder.precision:
        return embedder
    if wanted not in embedder._siblings:
        embedder._siblings[wanted] = load_embedder(embedder.path, wanted, "auto", embedder.batch_size,
                                                   getattr(embedder, "cache_dir", None))
    return embedder._siblings[wanted]


class LazyEmbedder:
    """Loads the model on first use, so an ingest with nothing new to embed never pays for it."""

    def __init__(self, path: str, precision: str = "auto", runtime: str = "auto", cache_dir: Path | None = None) -> None:
        self.path = path
        self.precision = precision
        self.runtime = runtime
        self.cache_dir = cache_dir
        self.model_name = embedder_name(path)
        self._loaded: Embedder | None = None
        self._siblings: dict[str, LazyEmbedder] = {}
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return embedder_id(self.model_name, resolve_precision(self.precision))

    def at_precision(self, precision: str) -> "LazyEmbedder":
        """This model at `precision` ("float": float32 or bfloat16), still unloaded; itself when it has that one."""
        mine = resolve_precision(self.precision)
        same = precision == self.precision or (precision == "float" and mine != "int8") or \
            (precision != "float" and resolve_precision(precision) == mine)
        if same:
            return self
        with self._lock:  # kept, so that each reload of the index does not load the model again
            return self._siblings.setdefault(precision, LazyEmbedder(self.path, precision, self.runtime, self.cache_dir))

    def _model(self) -> Embedder:
        with self._lock:
            if self._loaded is None:
                self._loaded = load_embedder(self.path, self.precision, self.runtime, cache_dir=self.cache_dir)
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


def embedder_for(settings) -> Embedder:
    """The embedder the settings name (model folder, precision, runtime, cache), loaded now."""
    return load_embedder(settings.embedder_path, settings.embed_precision, settings.embed_runtime, cache_dir=settings.cache_dir)


def lazy_embedder(settings) -> LazyEmbedder:
    """The embedder the settings name (model folder, precision, runtime, cache), loaded on first use."""
    return LazyEmbedder(settings.embedder_path, settings.embed_precision, settings.embed_runtime, settings.cache_dir)


def __getattr__(name: str):
    """The two runtimes' classes, imported on first use (`from rag.embeddings import SentenceTransformerEmbedder`)."""
    if name == "SentenceTransformerEmbedder":
        from rag.embeddings.sentence_transformer import SentenceTransformerEmbedder

        return SentenceTransformerEmbedder
    if name == "OnnxEmbedder":
        from rag.embeddings.onnx_runtime import OnnxEmbedder

        return OnnxEmbedder
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

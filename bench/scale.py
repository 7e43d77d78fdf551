"""Scale: a synthetic index of N chunks (default 100,000): how long it takes to load, and query latency.

    python bench/scale.py [--chunks N] [--queries Q]

The chunks are random English-like text (words drawn from the corpus vocabulary with a Zipf law)
with random unit vectors: embedding 100,000 real chunks would take about 45 minutes on 2 cores,
and neither FAISS's flat search nor BM25 cares what the numbers mean. Queries are embedded by the
real bundled model, so the latency includes query embedding, both retrievers, fusion and reranking.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()

    from rag import store
    from rag.chunking import Chunk
    from rag.config import Settings
    from rag.embeddings import SentenceTransformerEmbedder
    from rag.retrieve import Retriever, choose_reranker

    words = sorted(set(re.findall(r"[a-z]+", " ".join(p.read_text().lower() for p in (ROOT / "corpus").glob("*.md")))))
    rng = np.random.default_rng(0)
    weights = 1 / np.arange(1, len(words) + 1)
    weights /= weights.sum()
    index = Path(tempfile.mkdtemp(prefix="scale-")) / "index"
    per_doc = 50
    chunks, documents = [], []
    for d in range(args.chunks // per_doc):
        path = f"/synthetic/doc-{d:05d}.md"
        documents.append(store.Document(path, f"{d:064x}", 1, None, per_doc, 0.0))
        for o in range(per_doc):
            text = " ".join(rng.choice(words, size=120, p=weights))
            chunks.append(Chunk(path, text, o, None, f"Document {d} > Part {o}"))
    vectors = rng.standard_normal((len(chunks), 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    started = time.perf_counter()
    store.write(index, documents, chunks, vectors, "synthetic")
    write_s = time.perf_counter() - started

    settings = Settings(index_dir=index)
    embedder = SentenceTransformerEmbedder(settings.embedder_path)
    started = time.perf_counter()
    snapshot = store.load(index)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    retriever = Retriever(snapshot, embedder, settings, choose_reranker(snapshot, settings))
    build_s = time.perf_counter() - started
    questions = [" ".join(rng.choice(words[:2000], size=8)) for _ in range(args.queries)]
    retriever.search(questions[0])
    latencies = []
    for question in questions:
        started = time.perf_counter()
        retriever.search(question)
        latencies.append((time.perf_counter() - started) * 1000)
    latencies.sort()
    print(f"{len(chunks):,} chunks: write {write_s:.1f} s, load {load_s:.1f} s, BM25 + retriever build {build_s:.1f} s; "
          f"query p50 {statistics.median(latencies):.1f} ms, p95 {latencies[int(len(latencies) * 0.95)]:.1f} ms")


if __name__ == "__main__":
    main()

"""Query latency and index load time at the size of corpus/, and of synthetic indexes of N chunks.

    python bench/scale.py [--sizes corpus,10000,100000] [--queries Q] [--json]

"corpus" ingests corpus/ for real and asks the questions of tests/corpus_questions.md. A number N
builds a synthetic index of N chunks (bench/common.py: corpus words with random unit vectors) and
asks Q queries of corpus words. Latency covers what a question costs before the language model:
query embedding by the real bundled model, both retrievers, fusion and reranking.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import describe, finish, machine, percentile, write_synthetic_index  # noqa: E402


def measure(index: Path, questions: list[str], embedder) -> dict:
    from rag import store
    from rag.config import Settings
    from rag.retrieve import Retriever, choose_reranker

    settings = Settings(index_dir=index)
    started = time.perf_counter()
    snapshot = store.load(index)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    retriever = Retriever(snapshot, embedder, settings, choose_reranker(snapshot, settings))
    build_s = time.perf_counter() - started
    retriever.search(questions[0])  # warm
    latencies = []
    for question in questions:
        started = time.perf_counter()
        retriever.search(question)
        latencies.append((time.perf_counter() - started) * 1000)
    return {"chunks": len(snapshot.chunks), "load_s": round(load_s, 3), "bm25_build_s": round(build_s, 3),
            "p50_ms": round(percentile(latencies, 50), 2), "p95_ms": round(percentile(latencies, 95), 2),
            "queries": len(questions)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="corpus,10000,100000", help="comma-separated: corpus and/or chunk counts")
    parser.add_argument("--queries", type=int, default=50, help="queries per synthetic size (default 50)")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()

    from rag.config import Settings, bundled_embedder_path
    from rag.embeddings import SentenceTransformerEmbedder
    from rag.indexing import ingest
    from tests.questions import corpus_questions

    info = machine()
    embedder = SentenceTransformerEmbedder(bundled_embedder_path())
    rows = {}
    print(f"machine: {describe(info)}")
    print(f"{'index':<10}{'chunks':>9}{'load s':>8}{'BM25 s':>8}{'p50 ms':>8}{'p95 ms':>8}")
    with tempfile.TemporaryDirectory(prefix="scale-") as work:
        for size in args.sizes.split(","):
            index = Path(work) / f"index-{size}"
            if size == "corpus":
                ingest([ROOT / "corpus"], Settings(index_dir=index), embedder)
                questions = [q for q, _, _ in corpus_questions()]
            else:
                words = write_synthetic_index(index, int(size))
                rng = np.random.default_rng(1)
                questions = [" ".join(rng.choice(words[:2000], size=8)) for _ in range(args.queries)]
            row = rows[size] = measure(index, questions, embedder)
            print(f"{size:<10}{row['chunks']:>9,}{row['load_s']:>8.2f}{row['bm25_build_s']:>8.2f}"
                  f"{row['p50_ms']:>8.1f}{row['p95_ms']:>8.1f}", flush=True)
    finish({"machine": info, "sizes": rows}, args.json)


if __name__ == "__main__":
    main()

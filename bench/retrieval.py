"""Retrieval quality and speed on a BEIR-format dataset, through the project's own ingest and retrieval.

    python bench/retrieval.py DATASET_DIR [--json] [--workdir DIR] [--configs NAME,...] [--queries N]

Each BEIR document becomes one Markdown file ("# title", then the abstract) and is ingested by
rag.indexing like any user file; a document's score is its best chunk's. The index is kept in
--workdir, so later runs reuse it (an unchanged re-ingest takes a second). One row per
configuration: nDCG@10, Recall@10, Recall@100, MRR@10 and query latency p50/p95 (query embedding,
retrieval and reranking; no language model). With --json the last line is a JSON object with the
default configuration's figures and every row.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def read_beir(dataset: Path) -> tuple[dict[str, tuple[str, str]], dict[str, str], dict[str, dict[str, int]]]:
    """(documents id -> (title, text), test queries id -> text, qrels query -> {doc: grade})."""
    documents = {}
    with open(dataset / "corpus.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            documents[str(row["_id"])] = (row.get("title") or "", row.get("text") or "")
    qrels: dict[str, dict[str, int]] = {}
    with open(dataset / "qrels" / "test.tsv", encoding="utf-8") as handle:
        for line in handle:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and parts[2].lstrip("-").isdigit():
                qrels.setdefault(parts[0], {})[parts[1]] = int(parts[2])
    queries = {}
    with open(dataset / "queries.jsonl", encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if str(row["_id"]) in qrels:
                queries[str(row["_id"])] = row["text"]
    return documents, queries, qrels


def write_documents(documents: dict[str, tuple[str, str]], folder: Path) -> None:
    """One Markdown file a document; files already there with the same text are left alone."""
    folder.mkdir(parents=True, exist_ok=True)
    for doc_id, (title, text) in documents.items():
        body = f"# {title.strip()}\n\n{text.strip()}\n" if title.strip() else f"{text.strip()}\n"
        path = folder / f"{re.sub(r'[^A-Za-z0-9_-]', '_', doc_id)}.md"
        if not path.exists() or path.read_text(encoding="utf-8") != body:
            path.write_text(body, encoding="utf-8")


def ndcg_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    gains = [relevant.get(d, 0) for d in ranked[:k]]
    dcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum((2 ** g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    positives = {d for d, g in relevant.items() if g > 0}
    return len(positives & set(ranked[:k])) / len(positives) if positives else 0.0


def mrr_at(ranked: list[str], relevant: dict[str, int], k: int) -> float:
    for i, doc in enumerate(ranked[:k]):
        if relevant.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def evaluate(retriever, queries: dict[str, str], qrels: dict[str, dict[str, int]], doc_of: dict[str, str],
             depth: int = 100) -> dict[str, float]:
    """Mean metrics and latency percentiles of one configured retriever over all queries."""
    rows, latencies = [], []
    retriever.search(next(iter(queries.values())), k=10)  # warm-up: first calls pay for lazy set-up
    for query_id, text in queries.items():
        started = time.perf_counter()
        hits = retriever.search(text, k=depth * 3)
        latencies.append((time.perf_counter() - started) * 1000)
        ranked = list(dict.fromkeys(doc_of[h.chunk.path] for h in hits))[:depth]
        relevant = qrels[query_id]
        rows.append((ndcg_at(ranked, relevant, 10), recall_at(ranked, relevant, 10), recall_at(ranked, relevant, 100),
                     mrr_at(ranked, relevant, 10)))
    latencies.sort()
    mean = [statistics.fmean(column) for column in zip(*rows)]
    return {"ndcg@10": mean[0], "recall@10": mean[1], "recall@100": mean[2], "mrr@10": mean[3],
            "p50_ms": latencies[len(latencies) // 2], "p95_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", type=Path, help="BEIR folder with corpus.jsonl, queries.jsonl, qrels/test.tsv")
    parser.add_argument("--workdir", type=Path, help="where the documents and index are kept (default /tmp/rag-bench/NAME)")
    parser.add_argument("--configs", help="comma-separated configuration names (default: all)")
    parser.add_argument("--queries", type=int, help="use only the first N test queries")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()

    from bench.configs import CONFIGS, DEFAULT
    from rag import store
    from rag.config import Settings
    from rag.embeddings import embedder_for
    from rag.indexing import ingest

    documents, queries, qrels = read_beir(args.dataset)
    if args.queries:
        queries = dict(list(queries.items())[: args.queries])
    workdir = args.workdir or Path("/tmp/rag-bench") / args.dataset.resolve().name
    folder = workdir / "docs"
    write_documents(documents, folder)
    base = Settings.load({"index_dir": workdir / "index"})  # RAG_* variables (chunk size, BM25 constants) apply
    embedder = embedder_for(base)
    started = time.perf_counter()
    report = ingest([folder], base, embedder)
    print(f"ingest: {report.summary()}", file=sys.stderr)
    load_started = time.perf_counter()
    snapshot = store.load(base.index_dir)
    load_s = time.perf_counter() - load_started
    doc_of = {str(folder.resolve() / f"{re.sub(r'[^A-Za-z0-9_-]', '_', d)}.md"): d for d in documents}
    names = args.configs.split(",") if args.configs else list(CONFIGS)
    results = {}
    print(f"{len(documents)} documents, {len(snapshot.chunks)} chunks, {len(queries)} queries; "
          f"index loads in {load_s:.2f} s; ingest {time.perf_counter() - started:.0f} s", file=sys.stderr)
    header = f"{'configuration':<28}{'nDCG@10':>9}{'R@10':>8}{'R@100':>8}{'MRR@10':>8}{'p50 ms':>8}{'p95 ms':>8}"
    print(header)
    for name in names:
        retriever = CONFIGS[name](snapshot, embedder, base)
        result = evaluate(retriever, queries, qrels, doc_of)
        results[name] = result
        print(f"{name:<28}{result['ndcg@10']:>9.4f}{result['recall@10']:>8.4f}{result['recall@100']:>8.4f}"
              f"{result['mrr@10']:>8.4f}{result['p50_ms']:>8.1f}{result['p95_ms']:>8.1f}", flush=True)
    if args.json:
        default = results.get(DEFAULT) or next(iter(results.values()))
        print(json.dumps({**default, "configuration": DEFAULT if DEFAULT in results else names[0],
                          "chunks": len(snapshot.chunks), "index_load_s": load_s, "rows": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())

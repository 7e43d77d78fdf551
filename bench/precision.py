"""Embedding precision paths side by side: speed, agreement with float32, SciFact quality, and what auto picks.

    python bench/precision.py [--paths float32:torch,float32:onnx,bfloat16:torch,int8:onnx] [--rounds 3]
                              [--pages 60] [--scifact DIR] [--queries N] [--avx2] [--json]

A path is PRECISION:RUNTIME (rag.embeddings.load_embedder); the first is the reference. In one
process, for each path, interleaved round by round so that a busy machine slows all of them alike:
- embedding: every chunk of corpus/ encoded in one call; chunks/s, median of --rounds;
- cold ingest: `rag.indexing.ingest` of about --pages PDF pages (bench/common.py) into an empty
  index (parse, chunk, embed, write); chunks/s, median of --rounds;
- agreement: the cosine of each corpus chunk's vector to its float32 vector (min and mean);
- SciFact (BEIR, --scifact, default /work/shared/data/scifact; --scifact "" skips it): each path
  ingests the 5,183 abstracts into its own index (kept under /tmp/rag-bench/precision-*, so a rerun
  only queries) and answers the test queries (--queries: the first N); nDCG@10 of the default
  retrieval and of dense retrieval alone, each against float32's.
A path keeps quality when its min cosine is >= 0.99 and both nDCG@10 are within 0.005 of float32's;
the path `auto` should pick is the fastest that keeps it (by cold ingest), and the bench says whether
rag.embeddings.auto_precision agrees. --avx2 runs the bench as on an AVX2-only CPU: it sets
ATEN_CPU_CAPABILITY=avx2 (torch's kernels), ONEDNN_MAX_CPU_ISA=AVX2 (oneDNN: no bfloat16 or VNNI),
MKL_ENABLE_INSTRUCTIONS=AVX2 (MKL's float32 GEMM) and FBGEMM_ENABLE_INSTRUCTIONS=AVX2 (the int8 GEMM)
before torch loads. ONNX Runtime has no such switch (its kernels follow CPUID), so under --avx2 its rows
are native ones and are marked so.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MIN_COSINE = 0.99
NDCG_SLACK = 0.005

from bench.common import cpu_flags, describe, finish, machine, run_as_avx2, write_pdf_folder  # noqa: E402


def scifact_quality(dataset: Path, path: str, embedder, queries: int | None, emulated: bool) -> dict[str, float]:
    """nDCG@10 of the default retrieval and of dense alone on SciFact, with an index made by `embedder`."""
    from bench.configs import CONFIGS, DEFAULT
    from bench.retrieval import evaluate, read_beir, write_documents
    from rag import store
    from rag.config import Settings
    from rag.indexing import ingest

    documents, asked, qrels = read_beir(dataset)
    if queries:
        asked = dict(list(asked.items())[:queries])
    shared = Path("/tmp/rag-bench/precision-docs")
    write_documents(documents, shared)
    folder = Path(f"/tmp/rag-bench/precision-{path.replace(':', '-')}{'-avx2' if emulated else ''}")
    settings = Settings.load({"index_dir": folder / "index"})
    started = time.perf_counter()
    report = ingest([shared], settings, embedder)
    ingest_s = time.perf_counter() - started
    snapshot = store.load(settings.index_dir)
    doc_of = {str(shared.resolve() / f"{re.sub(r'[^A-Za-z0-9_-]', '_', d)}.md"): d for d in documents}
    default = evaluate(CONFIGS[DEFAULT](snapshot, embedder, settings), asked, qrels, doc_of)
    dense = evaluate(CONFIGS["dense"](snapshot, embedder, settings), asked, qrels, doc_of)
    return {"ndcg@10": round(default["ndcg@10"], 4), "dense_ndcg@10": round(dense["ndcg@10"], 4),
            "scifact_chunks": len(snapshot.chunks), "scifact_queries": len(asked), "scifact_embedded": report.embedded,
            "scifact_ingest_s": round(ingest_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", default="float32:torch,float32:onnx,bfloat16:torch,int8:onnx",
                        help="PRECISION:RUNTIME paths to compare, the reference first")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds of each measure (default 3)")
    parser.add_argument("--pages", type=int, default=60, help="PDF pages for the cold ingest (default 60)")
    parser.add_argument("--scifact", default="/work/shared/data/scifact", help="BEIR SciFact folder; empty skips it")
    parser.add_argument("--queries", type=int, help="only the first N SciFact test queries")
    parser.add_argument("--avx2", action="store_true", help="run as on an AVX2-only CPU (see above)")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()
    emulated = run_as_avx2(args.avx2)  # before torch loads

    import numpy as np

    from rag import store
    from rag.config import Settings, bundled_embedder_path
    from rag.embeddings import INT8_MEETS_BOUNDS, auto_precision, cpu_features, load_embedder
    from rag.indexing import ingest

    paths = [p if ":" in p else f"{p}:{'torch' if p == 'bfloat16' else 'onnx'}" for p in args.paths.split(",")]
    ref = paths[0]
    info = machine()
    cache = Settings.load({}).cache_dir
    embedders = {p: load_embedder(bundled_embedder_path(), p.split(":")[0], p.split(":")[1], cache_dir=cache) for p in paths}
    with tempfile.TemporaryDirectory(prefix="precision-bench-") as work:
        work = Path(work)
        corpus_settings = Settings(index_dir=work / "corpus-index")
        ingest([ROOT / "corpus"], corpus_settings, embedders[ref])
        texts = [c.indexed_text for c in store.load(corpus_settings.index_dir).chunks]
        folder = work / "pdfs"
        files, pages = write_pdf_folder(folder, args.pages)
        for embedder in embedders.values():
            embedder.embed(texts[:8])  # warm-up: first calls pay for lazy set-up and weight packing
        reference = embedders[ref].embed(texts)
        embed_s = {p: [] for p in paths}
        ingest_s = {p: [] for p in paths}
        cosines = {}
        ingested_chunks = 0
        for r in range(args.rounds):
            for p in paths:
                started = time.perf_counter()
                vectors = embedders[p].embed(texts)
                embed_s[p].append(time.perf_counter() - started)
                cosines.setdefault(p, np.sum(vectors * reference, axis=1))
            for p in paths:
                report = ingest([folder], Settings(index_dir=work / f"ingest-{p.replace(':', '-')}-{r}"), embedders[p])
                ingest_s[p].append(report.seconds)
                ingested_chunks = report.chunks
        rows = {}
        for p in paths:
            rows[p] = {"embed_chunks_per_s": round(len(texts) / statistics.median(embed_s[p]), 1),
                       "ingest_s": round(statistics.median(ingest_s[p]), 2),
                       "ingest_chunks_per_s": round(ingested_chunks / statistics.median(ingest_s[p]), 1),
                       "cos_min": round(float(cosines[p].min()), 5), "cos_mean": round(float(cosines[p].mean()), 5)}
            rows[p]["embed_speedup"] = round(statistics.median(embed_s[ref]) / statistics.median(embed_s[p]), 2)
            rows[p]["ingest_speedup"] = round(statistics.median(ingest_s[ref]) / statistics.median(ingest_s[p]), 2)
    if args.scifact:
        for p in paths:
            print(f"SciFact with {p} ...", file=sys.stderr, flush=True)
            rows[p] |= scifact_quality(Path(args.scifact), p, embedders[p], args.queries, emulated)
    for p in paths:
        row, base = rows[p], rows[ref]
        row["keeps_quality"] = bool(row["cos_min"] >= MIN_COSINE and (not args.scifact or (
            abs(row["ndcg@10"] - base["ndcg@10"]) <= NDCG_SLACK and abs(row["dense_ndcg@10"] - base["dense_ndcg@10"]) <= NDCG_SLACK)))
    keeping = [p for p in paths if rows[p]["keeps_quality"]]
    measured = min(keeping, key=lambda p: rows[p]["ingest_s"])
    features = cpu_features()
    result = {"machine": info, "cpu_flags": cpu_flags(), "kernels_see": sorted(features), "avx2_emulated": emulated,
              "chunks": len(texts), "pdf_pages": pages, "ingest_chunks": ingested_chunks, "rounds": args.rounds,
              "reference": ref, "paths": rows, "fastest_keeping_quality": measured,
              "native_rows": [p for p in paths if emulated and p.endswith(":onnx")],
              "auto_picks": auto_precision(features), "auto_picks_with_int8": auto_precision(features, int8_ok=True),
              "int8_meets_bounds_setting": INT8_MEETS_BOUNDS}

    print(f"machine: {describe(info)}; CPU flags {' '.join(result['cpu_flags'])}; kernels see {' '.join(result['kernels_see'])}"
          f"{' (AVX2 emulated)' if emulated else ''}")
    print(f"{len(texts)} corpus chunks; cold ingest of {pages} PDF pages = {ingested_chunks} chunks; medians of {args.rounds} rounds")
    head = f"{'path':<16}{'embed ch/s':>11}{'x ref':>7}{'ingest s':>10}{'ch/s':>7}{'x ref':>7}{'cos min':>9}{'cos mean':>9}"
    if args.scifact:
        head += f"{'nDCG@10':>9}{'dense':>8}"
    print(head + "  keeps quality")
    for p in paths:
        row = rows[p]
        line = (f"{p:<16}{row['embed_chunks_per_s']:>11.1f}{row['embed_speedup']:>7.2f}{row['ingest_s']:>10.2f}"
                f"{row['ingest_chunks_per_s']:>7.1f}{row['ingest_speedup']:>7.2f}{row['cos_min']:>9.4f}{row['cos_mean']:>9.4f}")
        if args.scifact:
            line += f"{row['ndcg@10']:>9.4f}{row['dense_ndcg@10']:>8.4f}"
        print(line + f"  {'yes' if row['keeps_quality'] else 'no'}" + ("  (native: ONNX Runtime ignores the emulation)" if p in result["native_rows"] else ""))
    print(f"fastest path that keeps quality here: {measured}; auto picks {result['auto_picks']} "
          f"(with int8 allowed: {result['auto_picks_with_int8']})")
    finish(result, args.json)


if __name__ == "__main__":
    main()

"""Ingest rate, open time, query latency and memory of each store backend, at the size of corpus/ and of N synthetic chunks.

    python bench/scale.py [--backends local,milvus] [--sizes corpus,10000,100000] [--queries Q] [--timeout S] [--json]

Backends: local (SQLite + FAISS + our BM25 in the index folder), milvus (a `milvus-lite server`
that the bench starts on 127.0.0.1, a free port and a temporary data folder, and stops at the end:
the team setup) and milvus-db (a Milvus Lite .db file opened by the process itself).

"corpus" ingests corpus/ for real (rag.indexing.ingest, embedding included, so no ingest rate is
shown) and asks the questions of tests/corpus_questions.md. A number N makes N synthetic chunks
(bench/common.py: corpus words with random unit vectors, the same data for every backend) and
asks Q queries of corpus words. For each backend and size, in fresh processes:

- ingest: chunks/s of the backend's own commit (`Store.commit`, what `ingest.py` or
  `ingest.py --milvus` pays after embedding; embedding is left out, both backends pay it alike);
- open: seconds from nothing to a retriever ready to search (store.load and, for the local
  backend, building BM25); for milvus also the seconds a restarted server takes to answer;
- query: p50/p95 of a hybrid search (query embedding by the real bundled model, dense and BM25
  top-n, fusion: what a question costs before the language model);
- memory: RSS of the querying process (the app's share: Python, the embedder, the index it holds)
  and of the milvus-lite server (its process group), now and at peak (VmRSS, VmHWM).

A phase that runs past --timeout seconds is stopped and reported as such (for milvus with how
many chunks it had written by then).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import describe, finish, machine, percentile, synthetic_corpus  # noqa: E402

BACKENDS = ("local", "milvus", "milvus-db")
SIMD = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "amx_tile")


def cpu_flags() -> list[str]:
    """The SIMD flags that decide FAISS's and numpy's speed, as /proc/cpuinfo lists them."""
    found = re.search(r"^flags\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    have = set(found[1].split()) if found else set()
    return [f for f in SIMD if f in have]


def memory_mb(pids: list[int]) -> tuple[int, int]:
    """(VmRSS, VmHWM) in MiB summed over processes."""
    now = peak = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        now += int(re.search(r"VmRSS:\s+(\d+)", status)[1])
        peak += int(re.search(r"VmHWM:\s+(\d+)", status)[1])
    return round(now / 1024), round(peak / 1024)


def group(pgid: int) -> list[int]:
    """The processes of one process group (a server started in its own session, and what it started)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


class MilvusServer:
    """`milvus-lite server` on 127.0.0.1, a free port and `data_dir`, as tests/conftest.py running_milvus starts it."""

    def __init__(self, data_dir: Path) -> None:
        from tests.conftest import free_port

        self.data_dir, self.port = data_dir, free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self) -> float:
        """Start it; returns the seconds until it answers."""
        import logging

        from rag.store.milvus import wait_until_ready

        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # each try before it listens logs an error
        self.log = open(self.data_dir.parent / f"milvus-{self.port}.log", "a+")
        server = Path(sys.executable).with_name("milvus-lite")
        started = time.perf_counter()
        self.process = subprocess.Popen([str(server), "server", "--data-dir", str(self.data_dir), "--host", "127.0.0.1",
                                         "--port", str(self.port)], stdout=self.log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_until_ready(self.uri, timeout=600)
        return time.perf_counter() - started

    def memory(self) -> tuple[int, int]:
        return memory_mb(group(self.process.pid)) if self.process else (0, 0)

    def stop(self) -> None:
        from tests.conftest import stop_group

        if self.process is not None:
            stop_group(self.process)
            self.log.close()
            self.process = None


def settings_for(backend: str, index: Path, uri: str, collection: str):
    from rag.config import Settings

    if backend == "local":
        return Settings(index_dir=index, store="local")
    return Settings(index_dir=index, store="milvus", milvus_uri=uri, milvus_collection=collection)


def ingest_phase(backend: str, index: Path, uri: str, collection: str, size: str) -> dict[str, Any]:
    """Write the chunks of `size` into the backend; returns chunks, seconds and this process's memory."""
    from rag import store

    settings = settings_for(backend, index, uri, collection)
    if size == "corpus":
        from rag.embeddings import embedder_for
        from rag.indexing import ingest

        report = ingest([ROOT / "corpus"], settings, embedder_for(settings))
        return {"chunks": report.chunks, "ingest_s": None}
    documents, chunks, vectors, _ = synthetic_corpus(int(size))
    put, start = {}, 0
    for document in documents:
        put[document.path] = (document, chunks[start:start + document.chunks], vectors[start:start + document.chunks])
        start += document.chunks
    target = store.choose(settings)
    started = time.perf_counter()
    with target.lock():
        target.manifest()
        target.commit(put, [], "synthetic", vectors.shape[1])
    seconds = time.perf_counter() - started
    now, peak = memory_mb([os.getpid()])
    return {"chunks": len(chunks), "ingest_s": round(seconds, 2), "ingest_rss_mb": now, "ingest_peak_mb": peak}


def query_phase(backend: str, index: Path, uri: str, collection: str, questions: list[str]) -> dict[str, Any]:
    """Open the index as the app does and time hybrid searches; returns seconds, latencies and memory."""
    from rag import store
    from rag.embeddings import embedder_for
    from rag.retrieve import choose_reranker, retriever_for

    settings = settings_for(backend, index, uri, collection)
    embedder = embedder_for(settings)
    embedder.embed(["warm up"])
    base, _ = memory_mb([os.getpid()])
    started = time.perf_counter()
    snapshot = store.choose(settings).load()
    loaded = time.perf_counter()
    retriever = retriever_for(snapshot, embedder, settings, choose_reranker(snapshot, settings))
    ready = time.perf_counter()
    retriever.search(questions[0])  # warm
    latencies = []
    for question in questions:
        started_one = time.perf_counter()
        retriever.search(question)
        latencies.append((time.perf_counter() - started_one) * 1000)
    now, peak = memory_mb([os.getpid()])
    return {"chunks": len(snapshot.chunks), "load_s": round(loaded - started, 3), "bm25_build_s": round(ready - loaded, 3),
            "open_s": round(ready - started, 3), "p50_ms": round(percentile(latencies, 50), 2),
            "p95_ms": round(percentile(latencies, 95), 2), "queries": len(questions),
            "client_base_mb": base, "client_rss_mb": now, "client_peak_mb": peak}


def _child(function: Callable[..., dict], args: tuple, results: multiprocessing.Queue) -> None:
    try:
        results.put(function(*args))
    except BaseException as exc:  # noqa: BLE001 - the parent reports it
        results.put({"error": f"{type(exc).__name__}: {exc}"})


def in_fresh_process(function: Callable[..., dict], args: tuple, timeout: float) -> dict[str, Any]:
    """function(*args) in a new Python process (clean memory figures, one Milvus Lite file per process), bounded."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=_child, args=(function, args, results))
    process.start()
    try:
        return results.get(timeout=timeout)
    except queue.Empty:
        process.kill()
        return {"error": f"stopped after {timeout:.0f} s"}
    finally:
        process.join(30)
        if process.is_alive():
            process.kill()


def written_rows(uri: str, collection: str) -> int | None:
    """Chunk rows in a Milvus collection, committed or not (how far a stopped ingest got)."""
    try:
        from pymilvus import MilvusClient

        rows = MilvusClient(uri=uri, timeout=60).query(collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])
    except Exception:  # noqa: BLE001
        return None


def questions_for(size: str, queries: int) -> list[str]:
    if size == "corpus":
        from tests.questions import corpus_questions

        return [q for q, _, _ in corpus_questions()]
    words = synthetic_corpus(1)[3]
    rng = np.random.default_rng(1)
    return [" ".join(rng.choice(words[:2000], size=8)) for _ in range(queries)]


def run_one(backend: str, size: str, work: Path, queries: int, timeout: float) -> dict[str, Any]:
    index = work / f"{backend}-{size}" / "index"
    index.mkdir(parents=True)
    collection = f"scale_{size}"
    server, uri = None, ""
    if backend == "milvus-db":
        uri = str(work / f"{backend}-{size}" / "milvus.db")
    row: dict[str, Any] = {"backend": backend, "size": size}
    try:
        if backend == "milvus":
            server = MilvusServer(work / f"{backend}-{size}" / "data")
            server.start()
            uri = server.uri
        row.update(in_fresh_process(ingest_phase, (backend, index, uri, collection, size), timeout))
        if server:
            row["server_ingest_rss_mb"], row["server_ingest_peak_mb"] = server.memory()
        if "error" in row:
            if server:
                row["written"] = written_rows(uri, collection)
            return row
        if server:  # a restart: what the team's server pays to come back with this index
            server.stop()
            row["server_start_s"] = round(server.start(), 2)
        row.update(in_fresh_process(query_phase, (backend, index, uri, collection, questions_for(size, queries)), timeout))
        if server:
            row["server_rss_mb"], row["server_peak_mb"] = server.memory()
    finally:
        if server:
            server.stop()
    return row


def _cell(row: dict, key: str, form: str) -> str:
    value = row.get(key)
    return "-" if value is None else format(value, form)


def table_line(row: dict) -> str:
    rate = f"{row['chunks'] / row['ingest_s']:,.0f}" if row.get("ingest_s") else "-"
    open_s = _cell(row, "open_s", ".2f") + (f" (+{row['server_start_s']:.1f} server)" if "server_start_s" in row else "")
    server = (f"{row['server_rss_mb']} / {row['server_peak_mb']}" if "server_rss_mb" in row
              else f"- / {row['server_ingest_peak_mb']}" if row.get("server_ingest_peak_mb") else "-")
    client = f"{row['client_rss_mb']} ({row['client_base_mb']})" if "client_rss_mb" in row else "-"
    chunks = f"{row['chunks']:,}" if "chunks" in row else row["size"]
    line = (f"| {row['backend']} | {chunks} | {rate} | {open_s} | {_cell(row, 'p50_ms', '.1f')} | "
            f"{_cell(row, 'p95_ms', '.1f')} | {client} | {server} |")
    if "error" in row:
        written = f", {row['written']:,} chunks written" if row.get("written") is not None else ""
        line += f" {row['error']}{written}"
    return line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 2)[2],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="local",
                        help=f"comma-separated, from {', '.join(BACKENDS)} (default local, as bench/run.py uses it)")
    parser.add_argument("--sizes", default="corpus,10000,100000", help="comma-separated: corpus and/or chunk counts")
    parser.add_argument("--queries", type=int, default=50, help="queries per synthetic size (default 50)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds one phase (ingest, or open and query) may take")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend {', '.join(unknown)}; the valid backends are {', '.join(BACKENDS)}")

    info = {**machine(), "cpu_flags": cpu_flags()}
    if any(b.startswith("milvus") for b in backends):
        from importlib.metadata import version

        info.update({"pymilvus": version("pymilvus"), "milvus_lite": version("milvus-lite")})
    print(f"machine: {describe(info)}; SIMD: {' '.join(info['cpu_flags']) or 'none'}"
          + (f"; pymilvus {info['pymilvus']}, milvus-lite {info['milvus_lite']}" if "pymilvus" in info else ""))
    print("| backend | chunks | ingest chunks/s | open s | query p50 ms | query p95 ms | client RSS MB (before index) "
          "| server RSS / peak MB |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|", flush=True)
    rows, sizes = [], {}
    with tempfile.TemporaryDirectory(prefix="scale-") as work:
        for size in args.sizes.split(","):
            for backend in backends:
                row = run_one(backend, size, Path(work), args.queries, args.timeout)
                rows.append(row)
                if backend == "local" and "error" not in row:
                    sizes[size] = row
                print(table_line(row), flush=True)
    finish({"machine": info, "sizes": sizes, "runs": rows}, args.json)


if __name__ == "__main__":
    main()

"""Ingest speed on a folder of multi-page PDFs: cold ingest against the raw embedder, re-ingest, and a peer.

    python bench/ingest_speed.py [--pages 300] [--peer] [--json]

Writes about --pages pages of PDFs made from the corpus notes (bench/common.py, every chunk
distinct) into a temporary folder, then in one run:
- cold ingest: the real `rag.indexing.ingest` into an empty index (parse, chunk, embed, write);
- raw embedder: the same embedder (precision, batch size) encoding exactly the chunk texts that the
  ingest embedded, in one call: what the hardware allows for the embedding alone;
- re-ingest of the unchanged folder;
- with --peer, LlamaIndex on the same folder (bench/peer_llamaindex.py).
The models are loaded before any timing starts, for us and for the peer.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import describe, finish, machine, write_pdf_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300, help="PDF pages to ingest (default 300)")
    parser.add_argument("--peer", action="store_true", help="also time LlamaIndex on the same folder")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()

    from rag import store
    from rag.config import Settings
    from rag.embeddings import SentenceTransformerEmbedder
    from rag.indexing import ingest

    info = machine()
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as work:
        folder = Path(work) / "pdfs"
        files, pages = write_pdf_folder(folder, args.pages)
        settings = Settings.load({"index_dir": Path(work) / "index"})  # RAG_EMBED_PRECISION etc. apply
        embedder = SentenceTransformerEmbedder(settings.embedder_path, precision=settings.embed_precision)
        embedder.embed(["warm up"])

        cold = ingest([folder], settings, embedder)
        texts = [c.indexed_text for c in store.load(settings.index_dir).chunks]
        started = time.perf_counter()
        embedder.embed(texts)  # one encode call over all of them, sorted by length: the least padding there is
        raw_s = time.perf_counter() - started
        again = ingest([folder], settings, embedder)
        result = {
            "machine": info, "precision": embedder.precision, "files": files, "pages": pages, "chunks": len(texts),
            "cold_s": round(cold.seconds, 2), "pages_per_s": round(pages / cold.seconds, 2),
            "chunks_per_s": round(len(texts) / cold.seconds, 2),
            "raw_embed_s": round(raw_s, 2), "raw_chunks_per_s": round(len(texts) / raw_s, 2),
            "ratio_to_raw": round(raw_s / cold.seconds, 3),
            "reingest_s": round(again.seconds, 3), "reingest_share": round(again.seconds / cold.seconds, 4),
        }
        if args.peer:
            from bench.peer_llamaindex import run_peer

            peer = run_peer(folder, settings.embedder_path)
            result |= {"peer_s": round(peer["seconds"], 2), "peer_chunks": peer["nodes"],
                       "ratio_to_peer": round(cold.seconds / peer["seconds"], 3)}

    print(f"machine: {describe(info)}")
    print(f"{files} PDFs, {pages} pages, {len(texts)} chunks; embedding in {embedder.precision}")
    print(f"{'stage':<44}{'seconds':>9}{'pages/s':>9}{'chunks/s':>10}")
    rows = [("cold ingest (parse, chunk, embed, write)", cold.seconds, len(texts)),
            ("raw embedder alone, same chunks", raw_s, len(texts)),
            ("re-ingest, nothing changed", again.seconds, len(texts))]
    if args.peer:
        rows.append((f"LlamaIndex, same folder ({peer['nodes']} chunks)", peer["seconds"], peer["nodes"]))
    for name, seconds, chunks in rows:
        print(f"{name:<44}{seconds:>9.2f}{pages / seconds:>9.1f}{chunks / seconds:>10.1f}")
    print(f"ingest runs at {result['ratio_to_raw']:.0%} of the raw embedder's throughput; "
          f"re-ingest takes {result['reingest_share']:.1%} of the cold time"
          + (f"; cold ingest takes {result['ratio_to_peer']:.2f} of LlamaIndex's time" if args.peer else ""))
    finish(result, args.json)


if __name__ == "__main__":
    main()

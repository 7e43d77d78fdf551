"""Ingest speed on a folder of multi-page PDFs: cold ingest against the raw embedder, re-ingest, and a peer.

    python bench/ingest_speed.py [--pages 300 | --folder DIR] [--paths P,...] [--rounds 1] [--peer]
                                 [--avx2] [--json]

Writes about --pages pages of PDFs made from the corpus notes (bench/common.py, every chunk
distinct) into a temporary folder, or reads the real documents in --folder, then in one run:
- cold ingest: the real `rag.indexing.ingest` into an empty index (parse, chunk, embed, write);
- raw embedder: the same embedder (precision, batch size) encoding exactly the chunk texts that the
  ingest embedded, in one call: what the hardware allows for the embedding alone;
- re-ingest of the unchanged folder;
- with --peer, LlamaIndex on the same folder (bench/peer_llamaindex.py), which reports its time
  while splitting and embedding apart from reading, so both sides' embedding rates compare.
--paths (PRECISION:RUNTIME, as in bench/precision.py) times several embedders side by side, round
by round interleaved; without it the settings' embedder (RAG_EMBED_PRECISION, RAG_EMBED_RUNTIME)
runs alone. --avx2 runs torch (ours and the peer's) as on an AVX2-only CPU (bench/common.AVX2_ENV);
ONNX Runtime rows stay native. The models are loaded before any timing starts, for us and for the peer.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import describe, finish, machine, run_as_avx2, write_pdf_folder  # noqa: E402


def count_pages(folder: Path) -> tuple[int, int]:
    """(files, pages) of the documents in a real folder: PDF pages, one per other file."""
    from pypdf import PdfReader

    files = [p for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.startswith(".")]
    return len(files), sum(len(PdfReader(p).pages) if p.suffix.lower() == ".pdf" else 1 for p in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=300, help="PDF pages to write and ingest (default 300)")
    parser.add_argument("--folder", type=Path, help="ingest these real documents instead of written PDFs")
    parser.add_argument("--paths", help="PRECISION:RUNTIME embedders to time side by side (default: the settings')")
    parser.add_argument("--rounds", type=int, default=1, help="cold ingests of each path; the median counts")
    parser.add_argument("--peer", action="store_true", help="also time LlamaIndex on the same folder")
    parser.add_argument("--avx2", action="store_true", help="run torch as on an AVX2-only CPU")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()
    emulated = run_as_avx2(args.avx2)

    from rag import store
    from rag.config import Settings
    from rag.embeddings import load_embedder
    from rag.indexing import ingest

    info = machine()
    with tempfile.TemporaryDirectory(prefix="ingest-bench-") as work:
        if args.folder:
            folder = args.folder.resolve()
            files, pages = count_pages(folder)
        else:
            folder = Path(work) / "pdfs"
            files, pages = write_pdf_folder(folder, args.pages)
        base = Settings.load({"index_dir": Path(work) / "index"})  # RAG_EMBED_PRECISION etc. apply
        specs = args.paths.split(",") if args.paths else [f"{base.embed_precision}:{base.embed_runtime}"]
        embedders = {spec: load_embedder(base.embedder_path, *spec.split(":"), cache_dir=base.cache_dir) for spec in specs}
        for embedder in embedders.values():
            embedder.embed(["warm up"] * 8)
        cold: dict[str, list[float]] = {spec: [] for spec in specs}
        for r in range(args.rounds):
            for spec, embedder in embedders.items():
                settings = base.with_(index_dir=Path(work) / f"index-{spec.replace(':', '-')}-{r}")
                cold[spec].append(ingest([folder], settings, embedder).seconds)
        rows = {}
        for spec, embedder in embedders.items():
            settings = base.with_(index_dir=Path(work) / f"index-{spec.replace(':', '-')}-0")
            texts = [c.indexed_text for c in store.load(settings.index_dir).chunks]
            started = time.perf_counter()
            embedder.embed(texts)  # one encode call over all of them, sorted by length: the least padding there is
            raw_s = time.perf_counter() - started
            again = ingest([folder], settings, embedder)
            cold_s = statistics.median(cold[spec])
            rows[spec] = {"precision": embedder.precision, "runtime": embedder.runtime, "chunks": len(texts),
                          "cold_s": round(cold_s, 2), "cold_rounds_s": [round(s, 2) for s in cold[spec]],
                          "pages_per_s": round(pages / cold_s, 2), "chunks_per_s": round(len(texts) / cold_s, 2),
                          "raw_embed_s": round(raw_s, 2), "raw_chunks_per_s": round(len(texts) / raw_s, 2),
                          "ratio_to_raw": round(raw_s / cold_s, 3), "reingest_s": round(again.seconds, 3),
                          "reingest_share": round(again.seconds / cold_s, 4),
                          "native": emulated and embedder.runtime == "onnx"}
        first = rows[specs[0]]
        for spec in specs:
            rows[spec]["x_first"] = round(first["cold_s"] / rows[spec]["cold_s"], 2)
        result = {"machine": info, "avx2_emulated": emulated, "files": files, "pages": pages, **first, "paths": rows}
        if args.peer:
            from bench.peer_llamaindex import run_peer

            peer = run_peer(folder, base.embedder_path)
            embed_s = peer["seconds"] - peer["read_s"]
            result |= {"peer_s": round(peer["seconds"], 2), "peer_chunks": peer["nodes"], "peer_read_s": round(peer["read_s"], 2),
                       "peer_split_embed_chunks_per_s": round(peer["nodes"] / embed_s, 2),
                       "ratio_to_peer": round(first["cold_s"] / peer["seconds"], 3)}
            for row in rows.values():
                row["ratio_to_peer"] = round(row["cold_s"] / peer["seconds"], 3)

    print(f"machine: {describe(info)}; CPU flags {' '.join(info['cpu_flags'])}{'; torch as on AVX2 only' if emulated else ''}")
    print(f"{files} files, {pages} pages{f' from {folder}' if args.folder else ''}; medians of {args.rounds} cold ingests")
    print(f"{'embedder':<18}{'chunks':>7}{'cold s':>9}{'chunks/s':>10}{'raw ch/s':>10}{'x first':>9}{'re-ingest s':>13}"
          + (f"{'x peer':>8}" if args.peer else ""))
    for spec, row in rows.items():
        print(f"{spec:<18}{row['chunks']:>7}{row['cold_s']:>9.2f}{row['chunks_per_s']:>10.1f}{row['raw_chunks_per_s']:>10.1f}"
              f"{row['x_first']:>9.2f}{row['reingest_s']:>13.3f}" + (f"{row['ratio_to_peer']:>8.2f}" if args.peer else "")
              + ("  (native: ONNX Runtime ignores the emulation)" if row["native"] else ""))
    if args.peer:
        print(f"LlamaIndex, same folder: {peer['nodes']} chunks in {peer['seconds']:.2f} s (reading {peer['read_s']:.2f} s; "
              f"splitting and embedding {result['peer_split_embed_chunks_per_s']:.1f} chunks/s)")
    finish(result, args.json)


if __name__ == "__main__":
    main()

"""Ingest speed: parsing alone, embedding alone, the real pipelined ingest, and a re-ingest of the same folder.

    python bench/ingest_speed.py [--copies N]

Builds a folder of N copies of corpus/ (Markdown notes and the PDF) in a temporary directory, so
every run measures the same work, and prints one row per stage.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=8, help="copies of corpus/ to ingest (default 8)")
    args = parser.parse_args()

    from rag import loaders
    from rag.chunking import chunk_sections
    from rag.config import Settings, bundled_embedder_path
    from rag.embeddings import SentenceTransformerEmbedder
    from rag.indexing import find_files, ingest

    import importlib.util

    spec = importlib.util.spec_from_file_location("make_pdf", ROOT / "corpus" / "make_pdf.py")
    make_pdf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_pdf)
    work = Path(tempfile.mkdtemp(prefix="ingest-bench-"))
    try:
        folder = work / "docs"
        for i in range(args.copies):
            copy = folder / f"copy-{i:02d}"
            copy.mkdir(parents=True)
            # Every line of every copy is marked with its copy number, so no two chunks share a text and
            # nothing is deduplicated: each copy costs what a new document would.
            notes = {}
            for source in sorted((ROOT / "corpus").glob("*.md")):
                lines = source.read_text(encoding="utf-8").splitlines()
                notes[source.name] = "\n".join(l if l.startswith("#") or not l.strip() else f"({i}) {l}" for l in lines)
                (copy / source.name).write_text(notes[source.name], encoding="utf-8")
            book = "\n\n".join(notes[name] for name in make_pdf.SOURCE_NOTES)
            make_pdf.write_pdf(copy / "handbook.pdf", make_pdf.markdown_to_pages(book))
        embedder = SentenceTransformerEmbedder(bundled_embedder_path())
        settings = Settings(index_dir=work / "index")
        files = find_files([folder])[0]

        started = time.perf_counter()
        chunks = [c for f in files for c in chunk_sections(loaders.load(f), embedder.count_tokens,
                                                            settings.chunk_tokens, settings.chunk_overlap)]
        parse_s = time.perf_counter() - started
        started = time.perf_counter()
        embedder.embed([c.indexed_text for c in chunks])
        embed_s = time.perf_counter() - started
        first = ingest([folder], settings, embedder)
        second = ingest([folder], settings, embedder)

        print(f"{len(files)} files, {len(chunks)} chunks; cpu cores: {os.cpu_count()}")
        print(f"{'stage':<34}{'seconds':>9}{'chunks/s':>10}")
        for name, seconds in (("parse + chunk only", parse_s), ("embed only", embed_s),
                              ("parse + embed, one after the other", parse_s + embed_s),
                              ("ingest (pipelined, writes index)", first.seconds),
                              ("re-ingest, nothing changed", second.seconds)):
            print(f"{name:<34}{seconds:>9.2f}{len(chunks) / seconds:>10.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

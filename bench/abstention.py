"""Calibrate the abstention threshold: best passage cosine for questions corpus/ answers and for ones it does not.

    python bench/abstention.py [--index DIR]

Ingests corpus/ (into --index, default a temporary folder), then prints the best cosine of each
question in tests/corpus_questions.md and tests/offtopic_questions.md, and the threshold halfway
between the highest off-topic and the lowest on-topic value.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def questions(path: Path) -> list[str]:
    lines = [line.split(" -- ")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path)
    args = parser.parse_args()

    from rag.config import Settings
    from rag.embeddings import SentenceTransformerEmbedder
    from rag.indexing import ingest
    from rag.pipeline import Pipeline

    index = args.index or Path(tempfile.mkdtemp(prefix="abstain-")) / "index"
    settings = Settings(index_dir=index)
    embedder = SentenceTransformerEmbedder(settings.embedder_path)
    ingest([ROOT / "corpus"], settings, embedder)
    pipeline = Pipeline(settings, embedder=embedder)
    rows = {}
    for kind, file in (("on-topic", "corpus_questions.md"), ("off-topic", "offtopic_questions.md")):
        rows[kind] = sorted((max(h.dense for h in pipeline.search(q)), q) for q in questions(ROOT / "tests" / file))
        values = [v for v, _ in rows[kind]]
        print(f"{kind:<10} n={len(values):<3} min={values[0]:.3f} median={values[len(values) // 2]:.3f} max={values[-1]:.3f}")
    lowest_on, highest_off = rows["on-topic"][0], rows["off-topic"][-1]
    print(f"lowest on-topic:   {lowest_on[0]:.3f}  {lowest_on[1]}")
    print(f"highest off-topic: {highest_off[0]:.3f}  {highest_off[1]}")
    print(f"threshold halfway: {(lowest_on[0] + highest_off[0]) / 2:.3f}")


if __name__ == "__main__":
    main()

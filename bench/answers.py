"""How grounded the bundled model's answers are: per-sentence support over the corpus questions.

    python bench/answers.py [--index DIR] [--model PATH]

Ingests corpus/ (into --index, default a temporary folder), asks each question of
tests/corpus_questions.md at temperature 0, and counts the answer sentences that rag/verify.py
finds supported by the source they cite, and the answers whose every sentence is supported.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", type=Path)
    parser.add_argument("--model", help="GGUF file (default: the bundled SmolLM2-135M)")
    args = parser.parse_args()

    from rag.config import Settings
    from rag.embeddings import SentenceTransformerEmbedder
    from rag.indexing import ingest
    from rag.pipeline import Pipeline
    from tests.questions import corpus_questions

    index = args.index or Path(tempfile.mkdtemp(prefix="answers-")) / "index"
    settings = Settings(index_dir=index, temperature=0.0, model=args.model or "")
    embedder = SentenceTransformerEmbedder(settings.embedder_path)
    ingest([ROOT / "corpus"], settings, embedder)
    pipeline = Pipeline(settings, embedder=embedder)
    sentences = supported = whole = answered = 0
    seconds = []
    for question, _, _ in corpus_questions():
        started = time.perf_counter()
        answer = pipeline.ask(question)
        seconds.append(time.perf_counter() - started)
        if answer.abstained:
            print(f"abstained  {question}")
            continue
        answered += 1
        good = sum(c.supported for c in answer.sentences)
        sentences += len(answer.sentences)
        supported += good
        whole += bool(answer.sentences) and good == len(answer.sentences)
        print(f"{good}/{len(answer.sentences)} supported  {question}")
    seconds.sort()
    print(f"{answered} answers: {supported}/{sentences} sentences supported ({100 * supported / max(sentences, 1):.0f}%), "
          f"{whole} answers fully supported; median {seconds[len(seconds) // 2]:.1f} s per answer")


if __name__ == "__main__":
    main()

"""Calibrate the support threshold of rag/verify.py on sentences from corpus/.

    python bench/verification.py [--pairs N]

Supported examples: a passage sentence with a third of its words dropped (a loose paraphrase),
checked against its own passage. Unsupported examples: the sentence of another note that is most
similar to one of the passage's sentences (a hard negative on a neighbouring topic), checked
against that passage. Prints the score distributions and the threshold with the best accuracy.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=150)
    args = parser.parse_args()

    from rag import loaders
    from rag.chunking import chunk_sections
    from rag.config import Settings
    from rag.embeddings import SentenceTransformerEmbedder
    from rag.verify import sentences, support_scores

    settings = Settings()
    embedder = SentenceTransformerEmbedder(settings.embedder_path)
    chunks = [c for path in sorted((ROOT / "corpus").glob("*.md"))
              for c in chunk_sections(loaders.load(path), embedder.count_tokens, settings.chunk_tokens, settings.chunk_overlap)]
    rng = random.Random(0)
    every = [(c.path, s) for c in chunks for s in sentences(c.text) if len(s.split()) >= 8]
    vectors = embedder.embed([s for _, s in every])
    positives, negatives = [], []
    for chunk in rng.sample(chunks, min(args.pairs, len(chunks))):
        own = [s for s in sentences(chunk.text) if len(s.split()) >= 8]
        if not own:
            continue
        words = rng.choice(own).split()
        keep = sorted(rng.sample(range(len(words)), k=max(4, len(words) * 2 // 3)))
        paraphrase = " ".join(words[i] for i in keep)
        target = embedder.embed([rng.choice(own)])[0]
        others = [i for i, (path, _) in enumerate(every) if path != chunk.path]
        hard = every[max(others, key=lambda i: float(vectors[i] @ target))][1]
        pool = sentences(chunk.text)
        positives.append(float(support_scores([paraphrase], pool, embedder).max()))
        negatives.append(float(support_scores([hard], pool, embedder).max()))
    pos, neg = np.array(positives), np.array(negatives)
    best = max(np.arange(0.30, 0.90, 0.01), key=lambda t: ((pos >= t).mean() + (neg < t).mean()) / 2)
    print(f"supported   n={len(pos)} min={pos.min():.3f} p10={np.percentile(pos, 10):.3f} median={np.median(pos):.3f}")
    print(f"unsupported n={len(neg)} median={np.median(neg):.3f} p90={np.percentile(neg, 90):.3f} max={neg.max():.3f}")
    print(f"best threshold {best:.2f}: {100 * (pos >= best).mean():.1f}% of supported and "
          f"{100 * (neg < best).mean():.1f}% of unsupported sentences classified right")


if __name__ == "__main__":
    main()

"""Calibrate the support threshold of rag/verify.py on sentences from corpus/, and judge the hard cases.

    python bench/verification.py [--pairs N]
    python bench/verification.py --hard

--hard: precision and recall of the verdict on tests/hard_cases.md (right sentences about sibling
items), before (claim against the passage alone) and after (the question and the sentence's window
count too). Each claim is checked against the chunk of its file that it matches best, the one a
model copying from it would cite.

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


def judge_hard_cases(embedder) -> dict:
    """{"before": {...}, "after": {...}}: precision, recall and counts of the verdict on tests/hard_cases.md."""
    from rag import loaders
    from rag.chunking import chunk_sections
    from rag.config import Settings
    from rag.verify import SUPPORT_THRESHOLD, ground, sentences, support_scores
    from tests.questions import hard_cases

    from rag.bm25 import BM25, analyze

    settings = Settings()
    chunks = {path.name: chunk_sections(loaders.load(path), embedder.count_tokens, settings.chunk_tokens,
                                        settings.chunk_overlap)
              for path in sorted((ROOT / "corpus").iterdir()) if loaders.is_supported(path)}
    weight = BM25([analyze(c.indexed_text) for file in chunks.values() for c in file]).weight  # the corpus's IDF
    verdicts = {"before": [], "after": []}
    for case in hard_cases():
        options = chunks[case.file]
        best = options[int(support_scores([case.claim], [c.text for c in options], embedder)[0].argmax())]
        claim = case.claim.rstrip(".") + " [1]."
        heading = {1: best.heading} if best.heading else {}
        # Before: the check as it was, the claim's best passage sentence scoring at least the threshold.
        pool = sentences(best.text)
        verdicts["before"].append((case.supported, float(support_scores([claim], pool, embedder).max()) >= SUPPORT_THRESHOLD))
        verdicts["after"].append((case.supported, ground(claim, {1: best.text}, embedder, question=case.question,
                                                         headings=heading, weight=weight)[0].supported))
    result = {}
    for name, pairs in verdicts.items():
        said = [truth for truth, judged in pairs if judged]
        true = [judged for truth, judged in pairs if truth]
        result[name] = {"precision": sum(said) / max(len(said), 1), "recall": sum(true) / max(len(true), 1),
                        "judged_supported": len(said), "supported": len(true), "cases": len(pairs)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=150)
    parser.add_argument("--hard", action="store_true", help="judge tests/hard_cases.md before and after")
    args = parser.parse_args()
    if args.hard:
        from rag.config import Settings
        from rag.embeddings import embedder_for

        result = judge_hard_cases(embedder_for(Settings.load({})))
        for name, r in result.items():
            print(f"{name:<7} precision {r['precision']:.2f} recall {r['recall']:.2f} "
                  f"({r['judged_supported']} judged supported, {r['supported']} of {r['cases']} truly supported)")
        return

    from rag import loaders
    from rag.chunking import chunk_sections
    from rag.config import Settings
    from rag.embeddings import embedder_for
    from rag.verify import sentences, support_scores

    settings = Settings()
    embedder = embedder_for(settings)
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

"""Calibrate abstention: how close the passages are to questions the documents answer, and to ones they do not.

    python bench/abstention.py [--workdir DIR]

Two sets: corpus/ with tests/corpus_questions.md and tests/offtopic_questions.md, and the outside
set of bench/outside.py (gnuplot's PDF manual and the Python tutorial, fetched from Debian) with the
on- and off-topic questions of bench/outside_questions.md. For each question it prints the signal
the pipeline abstains on (0.5 x the best passage cosine + 0.5 x the best evidence score), its two
parts, and then, for a range of thresholds, the false abstentions (on-topic questions turned away)
and the off-topic questions turned away, over both sets together.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def questions(path: Path) -> list[str]:
    lines = [line.split(" -- ")[0].strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def signals(pipeline, question: str) -> tuple[float, float]:
    """(Pipeline.closeness, the signal abstention uses; best passage cosine alone)."""
    from rag.evidence import is_listing

    hits = [h for h in pipeline.search_turn(question) if not is_listing(h.chunk.text)]
    if not hits:
        return 0.0, 0.0
    return pipeline.closeness(hits, pipeline.gather(question, hits)[1]), max(h.dense for h in hits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "rag-bench")
    args = parser.parse_args()

    from bench import outside
    from rag.config import Settings
    from rag.embeddings import embedder_for
    from rag.indexing import ingest
    from rag.pipeline import Pipeline

    on_topic, off_topic = outside.questions()
    sets = {"corpus": ([ROOT / "corpus"], questions(ROOT / "tests" / "corpus_questions.md"),
                       questions(ROOT / "tests" / "offtopic_questions.md")),
            "outside": ([outside.fetch(args.workdir / "outside")], [q.question for q in on_topic], off_topic)}
    rows: dict[str, list[np.ndarray]] = {"on": [], "off": []}
    default = Settings().abstain_below
    for name, (paths, on, off) in sets.items():
        settings = Settings(index_dir=args.workdir / f"{name}-index")
        embedder = embedder_for(settings)
        ingest(paths, settings, embedder)
        pipeline = Pipeline(settings, embedder=embedder)
        for kind, asked in (("on", on), ("off", off)):
            values = np.array([signals(pipeline, q) for q in asked])
            mixed = values[:, 0]
            rows[kind].append(mixed)
            worst = int(np.argmin(mixed) if kind == "on" else np.argmax(mixed))
            print(f"{name:<8} {kind}-topic n={len(asked):<3} signal min {mixed.min():.3f} median {np.median(mixed):.3f} "
                  f"max {mixed.max():.3f}; cosine alone {values[:, 1].min():.3f}-{values[:, 1].max():.3f}; "
                  f"{'lowest' if kind == 'on' else 'highest'}: {asked[worst]!r}")
            turned = (mixed < default).mean()
            print(f"         at the default {default}: {turned:.1%} turned away")
    on, off = np.concatenate(rows["on"]), np.concatenate(rows["off"])
    print("\nthreshold  false abstentions  off-topic abstained   (both sets)")
    for t in np.arange(0.30, 0.501, 0.025):
        print(f"{t:9.3f}  {(on < t).mean():17.1%}  {(off < t).mean():18.1%}")


if __name__ == "__main__":
    main()

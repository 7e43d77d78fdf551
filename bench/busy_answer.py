"""Answers while the app indexes an upload: tokens per second against an idle app, side by side.

    python bench/busy_answer.py [--rounds 3] [--pages 150] [--json]

One process holds what the app holds: a Pipeline on the corpus index with the bundled model, and
the upload queue (`library.ingest_with_progress`) embedding a folder of PDFs made from the corpus
notes (every line marked, so nothing is deduplicated). Each round asks the same questions three
ways, in turn: with nothing else running (idle), while an upload is embedded with the plain
embedder (the app before rag/yielding.py), and while it is embedded with the YieldingEmbedder the
app now uses. Measured per answer: time to first token and the model's pieces per second after the
first; the upload's own time is reported too, since yielding delays it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.answer_speed import Counting, run_pipeline as one_answer  # noqa: E402
from bench.common import describe, finish, machine, write_pdf_folder  # noqa: E402

QUESTIONS = ["How are the LoRA matrices A and B initialised?", "What does the reward model learn from?",
             "How many bytes does a Q4_0 block of 32 weights take?"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pages", type=int, default=150, help="pages of the upload indexed during each busy answer")
    parser.add_argument("--batch", type=int, default=0, help="the yielding embedder's small batch (default: the app's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from rag import library
    from rag.config import Settings
    from rag.embeddings import embedder_for
    from rag.indexing import ingest
    from rag.pipeline import Pipeline
    from rag.yielding import YieldingEmbedder

    work = Path(tempfile.mkdtemp(prefix="busy-answer-"))
    try:
        settings = Settings.load({"index_dir": work / "index", "library_dir": work / "library", "temperature": 0.0,
                                  "max_tokens": 128})
        embedder = embedder_for(settings)
        ingest([ROOT / "corpus"], settings, embedder)
        pipeline = Pipeline(settings, embedder=embedder)
        counting = Counting(pipeline.generator)
        pipeline._generator = counting
        uploads = work / "uploads"
        write_pdf_folder(uploads, args.pages)
        for question in QUESTIONS:  # warm: model, index and evidence vectors loaded before anything is timed
            one_answer(pipeline, counting, question)

        rows: dict[str, list] = {"idle": [], "busy, plain embedder": [], "busy, yielding embedder": []}
        upload_seconds: dict[str, list[float]] = {"busy, plain embedder": [], "busy, yielding embedder": []}
        for round_number in range(args.rounds):
            for mode in rows:
                if mode == "idle":
                    for question in QUESTIONS:
                        rows[mode].append(one_answer(pipeline, counting, question))
                    continue
                # A fresh index each time, so the upload embeds every page again.
                target = settings.with_(index_dir=work / f"upload-{round_number}-{mode[6:11]}",
                                        library_dir=work / f"lib-{round_number}-{mode[6:11]}")
                shutil.copytree(uploads, target.library_dir)
                files = sorted(target.library_dir.glob("*.pdf"))
                small = {"batch": args.batch} if args.batch else {}
                used = embedder if mode.endswith("plain embedder") else YieldingEmbedder(embedder, pipeline.gate, **small)
                embedding = threading.Event()
                done = {}

                def upload() -> None:
                    started = time.perf_counter()
                    for statuses in library.ingest_with_progress(files, target, used, interval=0.2):
                        if any(s.state == "embedding" for s in statuses):
                            embedding.set()
                    done["seconds"] = time.perf_counter() - started
                    embedding.set()

                worker = threading.Thread(target=upload, daemon=True)
                worker.start()
                embedding.wait(600)
                time.sleep(2)  # well into the embedding
                for question in QUESTIONS:
                    if not worker.is_alive():
                        print(f"warning: the upload finished before the answers in {mode}; use more --pages",
                              file=sys.stderr)
                    rows[mode].append(one_answer(pipeline, counting, question))
                worker.join()
                upload_seconds[mode].append(done.get("seconds", 0.0))

        idle_rate = statistics.median(r[1] for r in rows["idle"])
        result = {"bench": "busy_answer", "machine": machine(), "rounds": args.rounds, "pages": args.pages,
                  "yield_batch": args.batch or YieldingEmbedder(embedder, pipeline.gate).batch,
                  "questions": len(QUESTIONS), "modes": {}}
        for mode, measured in rows.items():
            median_rate = statistics.median(r[1] for r in measured)
            result["modes"][mode] = {
                "first_token_s_median": round(statistics.median(r[0] for r in measured), 3),
                "tokens_per_s_median": round(median_rate, 2),
                "vs_idle": round(median_rate / idle_rate, 3) if idle_rate else None,
                "upload_s_median": round(statistics.median(upload_seconds[mode]), 1) if mode in upload_seconds else None,
            }
        result["waited_for_answers_s"] = round(pipeline.gate.waited, 1)
        if not args.json:
            print(describe(result["machine"]))
            for mode, row in result["modes"].items():
                upload = f", upload {row['upload_s_median']} s" if row["upload_s_median"] else ""
                print(f"{mode:26s} first token {row['first_token_s_median']:.2f} s, {row['tokens_per_s_median']:.1f} "
                      f"tokens/s ({row['vs_idle']:.2f} x idle){upload}")
        finish(result, args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

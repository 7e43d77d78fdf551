"""A follow-up's first token: the previous turn's state kept (as the app runs) against the whole prompt evaluated again.

    python bench/followup_speed.py [--pairs 6] [--rounds 2] [--json]

The pipeline as the app and `python -m rag ask` run it (evidence windows, grammar, the bundled
model, temperature 0), on the question pairs of tests/followup_questions.md. For each pair the
first question is answered from a reset model, then the follow-up is asked with it as history:
- kept: RAG_REUSE_TURNS=on: the follow-up's prompt continues the first turn as the model saw
  and wrote it (Pipeline._as_said), so llama.cpp evaluates only the new part;
- cold: the same prompt, with the model reset before the follow-up (everything evaluated again);
- plain: the default layout (RAG_REUSE_TURNS=off: the question and checked answer as history),
  context kept.
Interleaved pair by pair. Time to first token is measured from the ask (retrieval included, what a
person waits for) and from the model call (prefill only); kept and cold answers must be the same.
Each mode also counts the follow-ups whose answer cites the file the question list names, those it
abstained on (a model that declines on weak evidence makes the pipeline abstain), and those whose
continued answer declined or said nothing and was written again with the plain layout.
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

from bench.common import describe, finish, machine  # noqa: E402
from bench.prompt_cache import followup_pairs  # noqa: E402


class Timed:
    """The generator, recording when each model call started and when its first piece came."""

    def __init__(self, inner) -> None:
        self.inner, self.n_ctx = inner, inner.n_ctx
        self.prefill: list[float] = []

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def stream(self, messages, max_tokens, temperature, grammar=None):
        started, first = time.perf_counter(), True
        for piece in self.inner.stream(messages, max_tokens, temperature, grammar=grammar):
            if first:
                self.prefill.append(time.perf_counter() - started)
                first = False
            yield piece


def ask(pipeline, question: str, history: list[dict]):
    from rag.pipeline import Answer, Partial

    started, first, answer = time.perf_counter(), None, None
    for event in pipeline.ask_stream(question, history):
        if first is None and isinstance(event, Partial) and event.text:
            first = time.perf_counter() - started
        if isinstance(event, Answer):
            answer = event
    return first or 0.0, answer


def cites(answer, name: str) -> bool:
    from rag import citations

    return any(answer.sources[n - 1].path.endswith("/" + name) for n in citations.parse(answer.text)
               if 0 < n <= len(answer.sources))


def expected_files() -> dict[str, str]:
    """Each follow-up of tests/followup_questions.md and the file that answers it."""
    files = {}
    for line in (ROOT / "tests" / "followup_questions.md").read_text(encoding="utf-8").splitlines():
        if "||" in line and "--" in line and not line.startswith("#"):
            follow, name = line.split("||", 1)[1].split("--", 1)
            files[follow.strip()] = name.strip()
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from rag.config import Settings
    from rag.embeddings import embedder_for
    from rag.indexing import ingest
    from rag.pipeline import Pipeline

    work = Path(tempfile.mkdtemp(prefix="followup-"))
    settings = Settings.load({"index_dir": work / "index", "library_dir": work / "lib", "temperature": 0.0,
                              "reuse_turns": True})
    embedder = embedder_for(settings)
    ingest([ROOT / "corpus"], settings, embedder)
    pipeline = Pipeline(settings, embedder=embedder)
    timed = Timed(pipeline.generator)
    pipeline._generator = timed
    llm = timed.inner._llm
    plain = pipeline.sibling(settings.with_(reuse_turns=False))
    pairs = followup_pairs()[: args.pairs]
    ask(pipeline, pairs[0][0], [])  # warm: model, index, evidence vectors

    measured: dict[str, list[tuple[float, float]]] = {"kept": [], "cold": [], "plain": []}
    right = {mode: 0 for mode in measured}
    abstained = {mode: 0 for mode in measured}
    asked = {mode: 0 for mode in measured}
    rewritten = {mode: 0 for mode in measured}  # continued answers that declined or said nothing, written again plainly
    files = expected_files()
    same = differ = 0
    for _ in range(args.rounds):
        for first, follow in pairs:
            texts = {}
            for mode in ("kept", "cold", "plain"):
                user = pipeline if mode != "plain" else plain
                llm.reset()
                _, answer = ask(user, first, [])
                history = [{"role": "user", "content": first}, {"role": "assistant", "content": answer.text}]
                if mode == "cold":
                    llm.reset()
                before = user.rewritten
                waited, followed = ask(user, follow, history)
                rewritten[mode] += user.rewritten - before
                texts[mode] = followed.text
                right[mode] += cites(followed, files[follow])
                abstained[mode] += followed.abstained
                asked[mode] += 1
                if not followed.abstained:  # no model call: nothing to time
                    measured[mode].append((waited, timed.prefill[-1]))
            same, differ = (same + 1, differ) if texts["kept"] == texts["cold"] else (same, differ + 1)

    def median(mode: str, column: int) -> float:
        return statistics.median(row[column] for row in measured[mode])

    result = {"bench": "followup_speed", "machine": machine(), "pairs": len(pairs), "rounds": args.rounds,
              "modes": {m: {"first_token_s": round(median(m, 0), 3), "prefill_s": round(median(m, 1), 3),
                            "cites_the_file": right[m], "abstained": abstained[m], "asked": asked[m],
                            "rewritten": rewritten[m]} for m in measured},
              "kept_vs_cold_sooner": round(1 - median("kept", 0) / median("cold", 0), 3),
              "kept_vs_cold_prefill_sooner": round(1 - median("kept", 1) / median("cold", 1), 3),
              "same_answers": same, "different_answers": differ}
    if not args.json:
        print(describe(result["machine"]), "flags:", " ".join(result["machine"]["cpu_flags"]))
        for mode, row in result["modes"].items():
            print(f"{mode:6s} first token {row['first_token_s']:.2f} s (model prefill {row['prefill_s']:.2f} s); "
                  f"cites the right file {row['cites_the_file']}/{row['asked']}, abstained {row['abstained']}, "
                  f"written again plainly {row['rewritten']}")
        print(f"kept vs cold: first token {result['kept_vs_cold_sooner']:.0%} sooner "
              f"(prefill {result['kept_vs_cold_prefill_sooner']:.0%}); same answers {same}/{same + differ}")
    finish(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

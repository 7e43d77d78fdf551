"""Answer speed: time to first token and tokens per second, the pipeline against raw llama-cpp-python.

    python bench/answer_speed.py [--questions N] [--max-tokens 128] [--model PATH] [--json]

Indexes corpus/ into a temporary folder, then for each of the first N corpus questions:
- pipeline: `Pipeline.ask_stream`, timed from the call (so retrieval, prompt building and the
  model's prefill all count) to the first streamed text, then the model's pieces per second;
- raw: the very same chat messages (five numbered sources, as the pipeline built them) sent to
  `Llama.create_chat_completion(stream=True)` of the same loaded model, with the same sampling.
The model's state is reset before every run, so neither reuses the other's prompt evaluation, and
the order of the two alternates between questions.
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


class Counting:
    """Wraps the pipeline's generator to count the pieces (tokens) the model streams and when they came."""

    def __init__(self, generator) -> None:
        self.inner = generator
        self.n_ctx = generator.n_ctx
        self.times: list[float] = []

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def stream(self, messages, max_tokens, temperature, grammar=None):
        for piece in self.inner.stream(messages, max_tokens, temperature, grammar=grammar):
            self.times.append(time.perf_counter())
            yield piece


def rate(times: list[float]) -> float:
    """Pieces per second after the first one (the first one's wait is the time to first token)."""
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0


def run_pipeline(pipeline, counting: Counting, question: str) -> tuple[float, float, int]:
    counting.inner._llm.reset()
    counting.times.clear()
    started = time.perf_counter()
    first = None
    for event in pipeline.ask_stream(question):
        if first is None and getattr(event, "text", ""):
            first = time.perf_counter() - started
    return first or 0.0, rate(counting.times), len(counting.times)


def run_raw(llm, messages, settings) -> tuple[float, float, int]:
    llm.reset()
    times = []
    started = time.perf_counter()
    for part in llm.create_chat_completion(messages=list(messages), stream=True, max_tokens=settings.max_tokens,
                                           temperature=settings.temperature, seed=settings.seed, repeat_penalty=1.1):
        if part["choices"][0]["delta"].get("content"):
            times.append(time.perf_counter())
    return (times[0] - started) if times else 0.0, rate(times), len(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--model", help="GGUF file (default: the bundled SmolLM2-135M)")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()

    from rag.config import Settings
    from rag.generate import LlamaGenerator, build_messages, source_block
    from rag.indexing import ingest
    from rag.pipeline import Pipeline
    from tests.questions import corpus_questions

    info = machine()
    with tempfile.TemporaryDirectory(prefix="answer-bench-") as work:
        # Whole passages and no grammar, so that the pipeline and raw llama.cpp get the same prompt and the
        # difference is the pipeline's own cost; bench/answers.py times the evidence windows and the grammar.
        settings = Settings.load({"index_dir": Path(work) / "index", "model": args.model, "evidence_tokens": 0,
                                  "grammar": "off", "max_tokens": args.max_tokens, "temperature": 0.0})
        counting = Counting(LlamaGenerator(settings))
        pipeline = Pipeline(settings, generator=counting)
        ingest([ROOT / "corpus"], settings, pipeline.embedder)
        rows = []
        for i, (question, _, _) in enumerate(corpus_questions()[: args.questions]):
            hits = pipeline.search_turn(question)
            blocks = [source_block(n, h.chunk.label, h.chunk.text) for n, h in enumerate(hits, start=1)]
            messages, fitted = build_messages(question, blocks, [], counting, settings.max_tokens)
            order = ("pipeline", "raw") if i % 2 == 0 else ("raw", "pipeline")
            result = {}
            for who in order:
                result[who] = (run_pipeline(pipeline, counting, question) if who == "pipeline"
                               else run_raw(counting.inner._llm, messages, settings))
            prompt_tokens = sum(counting.count_tokens(m["content"]) for m in messages)
            rows.append({"question": question, "sources": fitted, "prompt_tokens": prompt_tokens,
                         **{f"{who}_{k}": v for who, r in result.items() for k, v in zip(("ttft_s", "tokens_per_s", "tokens"), r)}})

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    summary = {"machine": info, "model": Path(settings.model_path).name, "questions": len(rows),
               "max_tokens": args.max_tokens, "rows": rows}
    for key in ("pipeline_ttft_s", "raw_ttft_s", "pipeline_tokens_per_s", "raw_tokens_per_s", "prompt_tokens"):
        summary[key] = round(median(key), 4)
    summary["speed_ratio"] = round(summary["pipeline_tokens_per_s"] / summary["raw_tokens_per_s"], 3)
    print(f"machine: {describe(info)}; model {summary['model']}, {len(rows)} questions, prompts of "
          f"{summary['prompt_tokens']:.0f} tokens at the median (5 sources)")
    print(f"{'':<12}{'first token s':>15}{'tokens/s':>10}")
    for who in ("pipeline", "raw"):
        print(f"{who:<12}{summary[f'{who}_ttft_s']:>15.3f}{summary[f'{who}_tokens_per_s']:>10.1f}")
    print(f"the pipeline streams at {summary['speed_ratio']:.1%} of raw llama-cpp-python's rate (medians)")
    finish(summary, args.json)


if __name__ == "__main__":
    main()

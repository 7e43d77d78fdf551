"""Time to first token for a cold question, a second question and a follow-up, with and without reusing the
model's state; and llama.cpp's threads and batch size for prompt processing, by measurement.

    python bench/prompt_cache.py [--pairs 4] [--rounds 3] [--max-tokens 48] [--model PATH] [--json]

Indexes corpus/ into a temporary folder and builds each prompt as bench/answer_speed.py does (five
whole passages, no grammar). For the first --pairs question pairs of tests/followup_questions.md,
after the first question has been answered (its prompt and answer are in the model's context):
- second question: the next pair's first question, no history;
- follow-up: the follow-up with the first turn as history (question and answer), the prompt
  rag.generate.build_messages makes;
- follow-up, continued: the follow-up appended to the first turn exactly as the model saw it (its
  sources and the model's own answer), so the whole first turn is a prefix of the new prompt.
Each is timed warm (the first turn's state in the context: what LlamaGenerator keeps between
answers) and cold (llm.reset(): the whole prompt evaluated again), interleaved, and the two answers
must be the same. Then every --configs setting of (n_threads, n_threads_batch, n_batch) answers the
cold follow-ups, interleaved round by round: first token and generation speed.
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

CONFIGS = "2/2/512,1/1/512,1/2/512,2/2/128,2/2/256,2/2/1024"


def answer(llm, messages, max_tokens: int, seed: int) -> tuple[float, str, float]:
    """(seconds to the first piece, the text, pieces per second after it) at temperature 0."""
    started = time.perf_counter()
    first, text, times = None, "", []
    for part in llm.create_chat_completion(messages=list(messages), stream=True, max_tokens=max_tokens, temperature=0.0,
                                           seed=seed, repeat_penalty=1.1):
        piece = part["choices"][0]["delta"].get("content")
        if piece:
            times.append(time.perf_counter())
            first = first if first is not None else times[-1] - started
            text += piece
    rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
    return first or 0.0, text, rate


def followup_pairs() -> list[tuple[str, str]]:
    pairs = []
    for line in (ROOT / "tests" / "followup_questions.md").read_text(encoding="utf-8").splitlines():
        if "||" in line and not line.startswith("#"):
            first, rest = line.split("||", 1)
            pairs.append((first.strip(), rest.split("--", 1)[0].strip()))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=4, help="follow-up pairs measured (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the threads/batch comparison (default 3)")
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--configs", default=CONFIGS, help=f"n_threads/n_threads_batch/n_batch settings (default {CONFIGS})")
    parser.add_argument("--model", help="GGUF file (default: the bundled SmolLM2-135M)")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()

    from llama_cpp import Llama

    from rag.config import Settings
    from rag.generate import LlamaGenerator, build_messages, source_block
    from rag.indexing import ingest
    from rag.pipeline import Pipeline

    info = machine()
    pairs = followup_pairs()[: args.pairs + 1]
    with tempfile.TemporaryDirectory(prefix="prompt-cache-bench-") as work:
        settings = Settings.load({"index_dir": Path(work) / "index", "model": args.model, "evidence_tokens": 0,
                                  "grammar": "off", "max_tokens": args.max_tokens, "temperature": 0.0})
        generator = LlamaGenerator(settings)
        pipeline = Pipeline(settings, generator=generator)
        ingest([ROOT / "corpus"], settings, pipeline.embedder)

        def prompt(question: str, history=()) -> list[dict]:
            hits = pipeline.search_turn(question, history)
            blocks = [source_block(n, h.chunk.label, h.chunk.text) for n, h in enumerate(hits, start=1)]
            return build_messages(question, blocks, list(history), generator, settings.max_tokens)[0]

        llm = generator._llm
        rows = []
        for i, (first, follow) in enumerate(pairs[:-1]):
            turn1 = prompt(first)
            llm.reset()
            _, text1, _ = answer(llm, turn1, args.max_tokens, settings.seed)
            state = llm.save_state()  # the context as LlamaGenerator leaves it after answering the first question
            history = [{"role": "user", "content": first}, {"role": "assistant", "content": text1}]
            cases = {"second question": prompt(pairs[i + 1][0]),
                     "follow-up": prompt(follow, history),
                     "follow-up, continued": [*turn1, {"role": "assistant", "content": text1}, prompt(follow, history)[-1]]}
            for case, messages in cases.items():
                result = {}
                for how in (("warm", "cold") if i % 2 == 0 else ("cold", "warm")):
                    if how == "warm":
                        llm.load_state(state)
                    else:
                        llm.reset()
                    result[how] = answer(llm, messages, args.max_tokens, settings.seed)
                prompt_tokens = sum(generator.count_tokens(m["content"]) for m in messages)
                rows.append({"pair": i, "case": case, "prompt_tokens": prompt_tokens,
                             "cold_ttft_s": round(result["cold"][0], 3), "warm_ttft_s": round(result["warm"][0], 3),
                             "same_answer": result["cold"][1] == result["warm"][1]})

        # Threads and batch size: the same cold follow-ups on a model loaded with each setting, interleaved.
        configs = [tuple(int(x) for x in c.split("/")) for c in args.configs.split(",")]
        followups = [prompt(follow, [{"role": "user", "content": first}, {"role": "assistant", "content": "See the sources."}])
                     for first, follow in pairs[:-1]]
        models = {c: Llama(model_path=settings.model_path, n_ctx=settings.n_ctx, n_threads=c[0], n_threads_batch=c[1],
                           n_batch=c[2], n_ubatch=c[2], seed=settings.seed, verbose=False) for c in configs}
        timings = {c: ([], []) for c in configs}
        for r in range(args.rounds):
            for c in (configs if r % 2 == 0 else configs[::-1]):
                for messages in followups:
                    models[c].reset()
                    ttft, _, rate = answer(models[c], messages, args.max_tokens, settings.seed)
                    timings[c][0].append(ttft)
                    timings[c][1].append(rate)
        threads = {f"{c[0]}/{c[1]}/{c[2]}": {"ttft_s": round(statistics.median(t), 3), "tokens_per_s": round(statistics.median(s), 1)}
                   for c, (t, s) in timings.items()}

    summary = {"machine": info, "model": Path(settings.model_path).name, "pairs": len(pairs) - 1, "rows": rows,
               "threads_batch": threads}
    for case in ("second question", "follow-up", "follow-up, continued"):
        mine = [r for r in rows if r["case"] == case]
        cold, warm = statistics.median(r["cold_ttft_s"] for r in mine), statistics.median(r["warm_ttft_s"] for r in mine)
        summary[case] = {"cold_ttft_s": round(cold, 3), "warm_ttft_s": round(warm, 3), "sooner": round(1 - warm / cold, 3),
                         "prompt_tokens": statistics.median(r["prompt_tokens"] for r in mine),
                         "same_answers": all(r["same_answer"] for r in mine)}
    print(f"machine: {describe(info)}; CPU flags {' '.join(info['cpu_flags'])}; model {summary['model']}; "
          f"{summary['pairs']} pairs, medians")
    print(f"{'after a first question':<24}{'prompt tok':>11}{'cold s':>8}{'warm s':>8}{'sooner':>8}  same answers")
    for case in ("second question", "follow-up", "follow-up, continued"):
        row = summary[case]
        print(f"{case:<24}{row['prompt_tokens']:>11.0f}{row['cold_ttft_s']:>8.3f}{row['warm_ttft_s']:>8.3f}"
              f"{row['sooner']:>8.0%}  {'yes' if row['same_answers'] else 'NO'}")
    print(f"{'threads/batch threads/n_batch':<32}{'first token s':>14}{'tokens/s':>10}  (cold follow-ups)")
    for name, row in threads.items():
        print(f"{name:<32}{row['ttft_s']:>14.3f}{row['tokens_per_s']:>10.1f}")
    finish(summary, args.json)


if __name__ == "__main__":
    main()

"""Every speed bench in one command, with each goal and whether it is met.

    python bench/run.py [--quick] [--json] [--out FILE]

Runs, each in its own process so that none inherits another's memory or warm caches:
bench/ingest_speed.py (with the LlamaIndex peer), bench/scale.py, bench/answer_speed.py and
bench/memory.py. --quick uses 60 PDF pages, no 100,000-chunk index and two questions (a few
minutes; the first run also installs the peer's environment). --out writes the combined JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import SPEED_FLAGS, describe, machine  # noqa: E402


def bench(script: str, *args: str) -> dict:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "bench" / script), *args, "--json"], cwd=ROOT,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"bench/{script} failed:\n{done.stderr[-3000:]}")
    print(f"  bench/{script} {' '.join(args)}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller runs: a few minutes")
    parser.add_argument("--json", action="store_true", help="print the combined JSON object as the last line")
    parser.add_argument("--out", type=Path, help="write the combined JSON to this file")
    args = parser.parse_args()

    info = machine()
    print(f"machine: {describe(info)}; CPU flags {' '.join(info['cpu_flags']) or 'none of ' + ', '.join(SPEED_FLAGS)}"
          f"{'; quick mode' if args.quick else ''}", file=sys.stderr)
    results = {
        "ingest": bench("ingest_speed.py", "--pages", "60" if args.quick else "300", "--peer"),
        "query": bench("scale.py", "--sizes", "corpus,10000" if args.quick else "corpus,10000,100000"),
        "answer": bench("answer_speed.py", "--questions", "2" if args.quick else "5"),
        "memory": bench("memory.py", "--chunks", "10000"),
    }
    ingest, query, answer, memory = (results[k] for k in ("ingest", "query", "answer", "memory"))
    rows = [
        ("embedding precision", f"{ingest['precision']} on {ingest['runtime']} (RAG_EMBED_PRECISION={os.environ.get('RAG_EMBED_PRECISION', 'auto')}; "
                                f"CPU flags {' '.join(info['cpu_flags'])})", "", None),
        ("ingest: cold", f"{ingest['pages']} pages, {ingest['chunks']} chunks in {ingest['cold_s']:.1f} s: "
                         f"{ingest['pages_per_s']:.1f} pages/s, {ingest['chunks_per_s']:.1f} chunks/s", "", None),
        ("ingest vs raw embedder", f"{ingest['ratio_to_raw']:.2f} of raw ({ingest['raw_chunks_per_s']:.1f} chunks/s)",
         ">= 0.9", ingest["ratio_to_raw"] >= 0.9),
        ("re-ingest, unchanged", f"{ingest['reingest_s']:.3f} s = {ingest['reingest_share']:.2%} of cold", "< 5%",
         ingest["reingest_share"] < 0.05),
        ("ingest vs LlamaIndex", f"{ingest['cold_s']:.1f} s vs {ingest['peer_s']:.1f} s = {ingest['ratio_to_peer']:.2f}",
         "<= 0.75", ingest["ratio_to_peer"] <= 0.75),
    ]
    for size, row in query["sizes"].items():
        rows.append((f"query at {row['chunks']:,} chunks", f"p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms; "
                     f"loads in {row['load_s'] + row['bm25_build_s']:.2f} s", "", None))
    rows += [
        ("answer: first token", f"{answer['pipeline_ttft_s']:.2f} s (raw {answer['raw_ttft_s']:.2f} s)", "< 2 s",
         answer["pipeline_ttft_s"] < 2),
        ("answer: tokens/s", f"{answer['pipeline_tokens_per_s']:.1f} vs raw {answer['raw_tokens_per_s']:.1f} "
                             f"= {answer['speed_ratio']:.3f}", ">= 0.95", answer["speed_ratio"] >= 0.95),
        ("app memory, 10,000 chunks", f"peak RSS {memory['peak_rss_mib']} MiB", "", None),
    ]
    print(f"{'measure':<28} {'result':<62} {'goal':<8} met")
    for name, value, goal, met in rows:
        print(f"{name:<28} {value:<62} {goal:<8} {'' if met is None else ('yes' if met else 'NO')}")
    combined = {"machine": info, "precision": ingest["precision"], "runtime": ingest["runtime"], "quick": args.quick, **results}
    if args.out:
        args.out.write_text(json.dumps(combined, indent=1))
    if args.json:
        print(json.dumps(combined))


if __name__ == "__main__":
    main()

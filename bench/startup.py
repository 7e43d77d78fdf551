"""Start-up: from `python app.py` to the page answering, and from `python -m rag ask` to its first printed line.

    python bench/startup.py [--chunks 100000] [--rounds 3] [--checkout DIR ...] [--json]

Two indexes: corpus/ (ingested for real) and a synthetic one of --chunks chunks (bench/common.py;
its vectors are random, its embedder name the bundled one's, so the real embedder queries it).
For each, `--rounds` times, interleaved:
- app: `python app.py --index IDX --port P` until GET / answers 200 (the page a person opens);
- ask: `python -m rag ask QUESTION --index IDX` until its first line on stdout (the evidence, found
  before the model writes) and until its first streamed word of the answer.
`--checkout DIR` adds another copy of the project (an older commit, say) run side by side with
this one on the same indexes, so the figures compare on the same machine at the same time.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import describe, finish, machine, write_synthetic_index  # noqa: E402

QUESTION = "How many bytes does a Q4_0 block of 32 weights take?"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def python_of(checkout: Path) -> str:
    own = checkout / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


def app_ready(checkout: Path, index: Path, work: Path, timeout: float = 300) -> float:
    port = free_port()
    started = time.perf_counter()
    process = subprocess.Popen([python_of(checkout), "app.py", "--index", str(index), "--library", str(work / "lib"),
                                "--port", str(port)], cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        while time.perf_counter() - started < timeout:
            try:
                if urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).status == 200:
                    return time.perf_counter() - started
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"app.py in {checkout} did not answer within {timeout} s")
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)


def ask_first(checkout: Path, index: Path) -> tuple[float, float]:
    """(seconds to the first printed line, seconds to the first word of the model's answer)."""
    started = time.perf_counter()
    process = subprocess.Popen([python_of(checkout), "-m", "rag", "ask", QUESTION, "--index", str(index)], cwd=checkout,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1,
                               start_new_session=True)
    first_line = first_word = 0.0
    seen = ""
    try:
        assert process.stdout is not None
        while char := process.stdout.read(1):
            now = time.perf_counter() - started
            if not first_line and char.strip():
                first_line = now
            seen = (seen + char)[-200:]
            if first_line and "not yet checked):\n" in seen and char.strip():
                first_word = now
                break
    finally:
        os.killpg(process.pid, 15)
        process.wait(30)
    return first_line, first_word


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--checkout", type=Path, action="append", default=[], help="another copy of the project to compare")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    from rag.config import Settings
    from rag.embeddings import lazy_embedder
    from rag.indexing import ingest

    work = Path(tempfile.mkdtemp(prefix="startup-"))
    try:
        settings = Settings.load({"index_dir": work / "corpus-index", "library_dir": work / "lib"})
        embedder = lazy_embedder(settings)
        ingest([ROOT / "corpus"], settings, embedder)
        indexes = {"corpus": settings.index_dir}
        if args.chunks:
            write_synthetic_index(work / "big-index", args.chunks, name=embedder.name)
            indexes[f"{args.chunks} chunks"] = work / "big-index"
        checkouts = [ROOT, *[c.resolve() for c in args.checkout]]
        times: dict[tuple[str, str, str], list[float]] = {}
        for _ in range(args.rounds):
            for size, index in indexes.items():
                for checkout in checkouts:
                    label = "this checkout" if checkout == ROOT else str(checkout)
                    times.setdefault((label, size, "app ready"), []).append(app_ready(checkout, index, work))
                    line, word = ask_first(checkout, index)
                    times.setdefault((label, size, "ask first line"), []).append(line)
                    times.setdefault((label, size, "ask first answer word"), []).append(word)
        rows = [{"checkout": c, "index": s, "measure": m, "median_s": round(statistics.median(v), 2),
                 "runs_s": [round(x, 2) for x in v]} for (c, s, m), v in times.items()]
        result = {"bench": "startup", "machine": machine(), "rounds": args.rounds, "rows": rows}
        if not args.json:
            print(describe(result["machine"]), "flags:", " ".join(result["machine"]["cpu_flags"]))
            for row in rows:
                print(f"{row['checkout']:16s} {row['index']:14s} {row['measure']:22s} {row['median_s']:6.2f} s  {row['runs_s']}")
        finish(result, args.json)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

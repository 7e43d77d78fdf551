"""Peak memory of the app: the default models loaded, N chunks indexed, a few questions answered.

    python bench/memory.py [--chunks 10000] [--questions 3] [--json]

Builds a synthetic index of N chunks (bench/common.py), starts `python app.py` on a free
127.0.0.1 port, asks questions through gradio_client so that the embedder, the model, FAISS and
BM25 are all in use, then reads the app's peak resident set size (VmHWM) from /proc.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
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


def status_kib(pid: int, field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=10_000)
    parser.add_argument("--questions", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()

    from gradio_client import Client

    from tests.questions import corpus_questions

    info = machine()
    with tempfile.TemporaryDirectory(prefix="memory-bench-") as work:
        index = Path(work) / "index"
        write_synthetic_index(index, args.chunks)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        app = subprocess.Popen([sys.executable, "app.py", "--index", str(index), "--library", str(Path(work) / "library"),
                                "--port", str(port)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            deadline = time.time() + 180
            while True:
                try:
                    urllib.request.urlopen(url, timeout=2)
                    break
                except OSError:
                    if time.time() > deadline or app.poll() is not None:
                        raise SystemExit("the app did not start")
                    time.sleep(0.5)
            idle_kib = status_kib(app.pid, "VmRSS")
            client = Client(url, verbose=False)
            for question, _, _ in corpus_questions()[: args.questions]:
                client.predict(question, [], [], api_name="/ask")
            peak_kib, now_kib = status_kib(app.pid, "VmHWM"), status_kib(app.pid, "VmRSS")
        finally:
            app.terminate()
            app.wait(timeout=30)
    result = {"machine": info, "chunks": args.chunks, "questions": args.questions,
              "rss_started_mib": round(idle_kib / 1024), "rss_after_mib": round(now_kib / 1024),
              "peak_rss_mib": round(peak_kib / 1024)}
    print(f"machine: {describe(info)}")
    print(f"app with {args.chunks:,} chunks: {result['rss_started_mib']} MiB once serving, "
          f"{result['rss_after_mib']} MiB after {args.questions} answers, peak {result['peak_rss_mib']} MiB")
    finish(result, args.json)


if __name__ == "__main__":
    main()

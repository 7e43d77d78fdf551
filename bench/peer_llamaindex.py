"""The peer for the ingest bench: LlamaIndex's SimpleDirectoryReader + VectorStoreIndex on the same folder.

    python bench/peer_llamaindex.py FOLDER [--venv DIR] [--json]

LlamaIndex is not a dependency of this project: the first run makes a virtual environment for it
(default /tmp/rag-bench/llamaindex-venv, torch pinned like ours through constraints.txt) and installs
llama-index-core, llama-index-readers-file and llama-index-embeddings-huggingface from PyPI. The
timed work then runs inside that environment: read the folder (pypdf, page by page), split into
200-token chunks with 40 tokens of overlap counted by the same embedder's tokenizer, and embed with
the same all-MiniLM-L6-v2 files, in an in-memory VectorStoreIndex. Everything else is LlamaIndex's
default (its embedding batch size is 10).
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
PACKAGES = ["llama-index-core", "llama-index-readers-file", "llama-index-embeddings-huggingface", "pypdf"]
DEFAULT_VENV = Path("/tmp/rag-bench/llamaindex-venv")


def ensure_venv(venv: Path) -> Path:
    """The peer's interpreter, installing it on first use."""
    python = venv / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import llama_index.core, llama_index.embeddings.huggingface"],
                                          capture_output=True).returncode == 0:
        return python
    print(f"installing LlamaIndex into {venv} (once; a few minutes)", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(ROOT / "constraints.txt")]
    subprocess.run([*pip, "torch==2.13.0"], check=True)
    subprocess.run([*pip, *PACKAGES], check=True)
    return python


def run_peer(folder: Path, embedder_path: str, venv: Path = DEFAULT_VENV) -> dict:
    """Time LlamaIndex on `folder` in its own environment; returns its measurements."""
    python = ensure_venv(venv)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONPATH": ""}
    done = subprocess.run([str(python), __file__, "--inside", str(folder), "--embedder", embedder_path],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the LlamaIndex peer failed: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def inside(folder: Path, embedder_path: str) -> dict:
    """Runs in the peer's environment: the timed LlamaIndex ingest."""
    started = time.perf_counter()
    from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from transformers import AutoTokenizer

    import_s = time.perf_counter() - started
    started = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(embedder_path)
    Settings.embed_model = HuggingFaceEmbedding(model_name=embedder_path, device="cpu")
    Settings.llm = None
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    documents = SimpleDirectoryReader(str(folder), recursive=True).load_data()
    read_s = time.perf_counter() - started
    splitter = SentenceSplitter(chunk_size=200, chunk_overlap=40, tokenizer=tokenizer.tokenize)
    index = VectorStoreIndex.from_documents(documents, transformations=[splitter])
    total_s = time.perf_counter() - started
    return {"seconds": total_s, "read_s": read_s, "model_load_s": load_s, "import_s": import_s,
            "documents": len(documents), "nodes": len(index.docstore.docs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--embedder", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.inside:
        print(json.dumps(inside(args.folder, args.embedder)))
        return
    sys.path.insert(0, str(ROOT))
    from rag.config import bundled_embedder_path

    result = run_peer(args.folder, bundled_embedder_path(), args.venv)
    print(f"LlamaIndex: {result['documents']} pages read, {result['nodes']} chunks, {result['seconds']:.1f} s "
          f"(reading {result['read_s']:.1f} s; model load {result['model_load_s']:.1f} s not counted)")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()

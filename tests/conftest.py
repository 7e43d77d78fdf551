"""Shared fixtures: the real bundled embedder and model, and an index of corpus/ built once per run."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.questions import corpus_questions  # noqa: F401 - the tests' import point

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"


class WordCounter:
    """A stand-in tokenizer for fast chunking tests: one token per word plus two special tokens."""

    def __call__(self, text: str) -> int:
        return len(text.split()) + 2


@pytest.fixture
def word_counter() -> WordCounter:
    return WordCounter()


@pytest.fixture(scope="session")
def settings_factory():
    from rag.config import Settings

    def make(index_dir: Path, **changes):
        # temperature 0: the same answer on every run, so failures reproduce.
        return Settings(index_dir=index_dir, temperature=0.0, n_ctx=4096, **changes)

    return make


@pytest.fixture(scope="session")
def embedder():
    from rag.config import bundled_embedder_path
    from rag.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(bundled_embedder_path())


@pytest.fixture(scope="session")
def corpus_index(tmp_path_factory, embedder, settings_factory) -> Path:
    from rag.indexing import ingest

    index_dir = tmp_path_factory.mktemp("corpus-index")
    report = ingest([CORPUS], settings_factory(index_dir), embedder)
    assert not report.failed, report.failed
    return index_dir


@pytest.fixture(scope="session")
def pipeline(corpus_index, embedder, settings_factory):
    from rag.pipeline import Pipeline

    return Pipeline(settings_factory(corpus_index), embedder=embedder)


def make_pdf_module():
    """corpus/make_pdf.py, the team's dependency-free PDF writer, for tests that need PDFs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_pdf", CORPUS / "make_pdf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_app(*args: str, env: dict | None = None, ready: str = "", timeout: float = 180):
    """`python app.py ARGS --port P` in a subprocess; yields its URL once the page answers (`ready`: an auth header)."""
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"rag-app-{port}.log", "w+")
    process = subprocess.Popen([sys.executable, "app.py", *args, "--port", str(port)], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT, text=True, env={**os.environ, "RAG_TEMPERATURE": "0", **(env or {})})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"app exited with {process.returncode}: {log.read()}")
            try:
                urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": ready} if ready else {}), timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers, if only to refuse
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"app did not start within {timeout:.0f} s")
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()

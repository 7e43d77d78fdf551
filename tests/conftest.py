"""Shared fixtures: the real bundled embedder and model, and an index of corpus/ built once per run."""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.questions import corpus_questions  # noqa: F401 - the tests' import point

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# The ONNX embedder's files are made once per test run in a folder of its own (every process the tests start
# inherits it), not in the user's ~/.cache.
if "RAG_CACHE_DIR" not in os.environ:
    os.environ["RAG_CACHE_DIR"] = tempfile.mkdtemp(prefix="rag-test-cache-")
    atexit.register(shutil.rmtree, os.environ["RAG_CACHE_DIR"], True)

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
    from rag.config import Settings
    from rag.embeddings import embedder_for

    return embedder_for(Settings.load({}))  # the app's own choice for this machine (auto precision and runtime)


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


def stop_group(process) -> None:
    """Stop a server started in its own session, and anything it started: SIGTERM, then SIGKILL after 15 s."""
    import signal
    import subprocess

    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


LLM_KEY = "test-key"  # the API key the test model server asks for


@contextlib.contextmanager
def running_llm_server(*args: str, timeout: float = 120):
    """`python -m llama_cpp.server` with the bundled GGUF on 127.0.0.1; yields its URL once it answers, kills it after."""
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    from rag.config import bundled_model_path

    port = free_port()
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"rag-llm-{port}.log", "w+")
    # The context and threads of the in-process model (tests' settings), so both backends write the same answers.
    process = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", bundled_model_path(), "--host", "127.0.0.1",
                                "--port", str(port), "--n_ctx", "4096", "--n_threads", str(os.cpu_count() or 1), *args],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    try:
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"llama_cpp.server exited with {process.returncode}: {log.read()[-3000:]}")
            try:
                urllib.request.urlopen(f"{url}/v1/models", timeout=2)
                break
            except urllib.error.HTTPError:
                break  # it answers, if only to ask for the key
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"llama_cpp.server did not start within {timeout:.0f} s")
                time.sleep(0.3)
        yield url
    finally:
        stop_group(process)
        log.close()


@pytest.fixture(scope="session")
def llm_server() -> str:
    """The bundled model behind llama-cpp-python's OpenAI-compatible server, with an API key (LLM_KEY)."""
    with running_llm_server("--api_key", LLM_KEY) as url:
        yield url


@contextlib.contextmanager
def running_milvus(data_dir: Path, timeout: float = 90):
    """`milvus-lite server` on 127.0.0.1 with its own data folder; yields its URI once it answers, stops it (and its children) after."""
    import subprocess
    import sys

    from rag.store.milvus import wait_until_ready

    port = free_port()
    log = open(data_dir.parent / f"milvus-{port}.log", "w+")
    server = Path(sys.executable).with_name("milvus-lite")
    process = subprocess.Popen([str(server), "server", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_ready(uri, timeout=timeout)
        except Exception:
            log.seek(0)
            pytest.fail(f"milvus-lite server did not answer at {uri}: {log.read()[-3000:]}")
        yield uri
    finally:
        stop_group(process)
        log.close()


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory) -> str:
    """One Milvus Lite server for the run (each test uses its own collection)."""
    pytest.importorskip("pymilvus", reason="the milvus extra is not installed (make test installs it)")
    with running_milvus(tmp_path_factory.mktemp("milvus") / "data") as uri:
        yield uri


_collections = iter(range(1, 1_000_000))


@pytest.fixture(params=["local", "milvus"])
def backend(request, settings_factory):
    """Settings for an index on each backend: `backend(index_dir, **changes)`; the Milvus one gets a fresh collection."""
    if request.param == "local":
        return lambda index_dir, **changes: settings_factory(index_dir, **changes)
    uri = request.getfixturevalue("milvus_uri")
    collection = f"test_{next(_collections)}"
    return lambda index_dir, **changes: settings_factory(index_dir, milvus_uri=uri, milvus_collection=collection, **changes)

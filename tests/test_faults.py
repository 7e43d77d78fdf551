"""Faults on disk: a write that runs out of space, a damaged index file, and the one-command rebuild."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag import store
from rag.errors import StoreError
from tests.conftest import CORPUS, ROOT


# The file-size limit is set by the child itself before ingest.py runs, not in a preexec_fn: forking a test process
# that holds gRPC threads (pymilvus, from the Milvus tests) and running Python in the child aborts it.
LIMITED = ("import resource, runpy, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
           "limit = int(sys.argv.pop(1)); resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)); "
           "sys.argv[0] = 'ingest.py'; runpy.run_path('ingest.py', run_name='__main__')")


def run_ingest(*args: str, file_limit: int | None = None) -> subprocess.CompletedProcess:
    """ingest.py ARGS; with file_limit the kernel refuses writes past that size, as a full disk would."""
    command = [sys.executable, "-c", LIMITED, str(file_limit)] if file_limit else [sys.executable, "ingest.py"]
    return subprocess.run([*command, *args, "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def notes(folder: Path, names: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text((CORPUS / name).read_text(encoding="utf-8"), encoding="utf-8")
    return folder


def flip_byte(path: Path, at: float = 0.6) -> None:
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0xFF
    path.write_bytes(bytes(data))


def test_running_out_of_space_mid_write_keeps_the_old_index_and_says_so(tmp_path):
    index = tmp_path / "index"
    small = notes(tmp_path / "docs", ["rlhf.md"])
    assert run_ingest(str(small), "--index", str(index)).returncode == 0
    before = store.load(index)
    notes(small, ["kv-cache.md", "sampling.md", "tokenization.md", "embeddings.md", "fine-tuning-and-lora.md"])
    largest = max(p.stat().st_size for p in index.rglob("*") if p.is_file())
    failed = run_ingest(str(small), "--index", str(index), file_limit=largest + 4096)
    assert failed.returncode == 2, failed.stderr
    message = failed.stderr.strip().splitlines()[-1]
    assert message.startswith("error:") and "free some space" in message and "previous index is unchanged" in message
    after = store.load(index)
    assert after.generation == before.generation and after.documents == before.documents
    assert not list(index.glob("*.tmp"))  # no half-written generation left behind
    assert run_ingest(str(small), "--index", str(index)).returncode == 0  # with room again, it completes
    assert len(store.load(index).documents) == 6


@pytest.mark.parametrize("damaged", ["dense.faiss", "chunks.sqlite"])
def test_a_damaged_index_file_is_named_and_never_served(tmp_path, damaged):
    from rag.chunking import Chunk

    chunks = [Chunk("/docs/a.md", f"passage {i} " * 40, i, None, "A") for i in range(200)]
    vectors = np.random.default_rng(0).standard_normal((200, 384)).astype(np.float32)
    generation = store.write(tmp_path, [store.Document("/docs/a.md", "0" * 64, 1, None, 200, 0.0)], chunks, vectors, "emb")
    flip_byte(tmp_path / generation / damaged)  # one byte in the middle: the file still opens
    with pytest.raises(StoreError) as refused:
        store.load(tmp_path)
    message = str(refused.value)
    assert "damaged" in message and damaged in message and "ingest.py --rebuild" in message


def test_the_app_starts_on_a_damaged_index_and_says_what_is_wrong(corpus_index, tmp_path):
    """The page is served at once and, as it loads, its header says the index is damaged and how to rebuild it."""
    import shutil

    from playwright.sync_api import sync_playwright

    from tests.conftest import running_app
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    index = tmp_path / "index"
    shutil.copytree(corpus_index, index)
    flip_byte(index / store.current_generation(index) / "dense.faiss")
    with running_app("--index", str(index), "--library", str(tmp_path / "library")) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(120_000)
            page.goto(url)
            page.wait_for_selector("#library-status :text('is damaged')")
            header = page.inner_text("#library-status")
            assert "cannot be used" in header and "ingest.py --rebuild" in header
        finally:
            browser.close()


def test_one_command_rebuilds_a_damaged_index_with_every_document(tmp_path):
    index, library = tmp_path / "index", tmp_path / "library"
    docs = notes(tmp_path / "docs", ["rlhf.md", "sampling.md"])
    notes(library, ["kv-cache.md"])
    assert run_ingest(str(docs), str(library), "--index", str(index), "--library", str(library)).returncode == 0
    indexed = sorted(d.path for d in store.load(index).documents)
    flip_byte(index / store.current_generation(index) / "dense.faiss")
    with pytest.raises(StoreError, match="damaged"):
        store.load(index)
    rebuilt = run_ingest("--rebuild", "--index", str(index), "--library", str(library))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert sorted(d.path for d in store.load(index).documents) == indexed

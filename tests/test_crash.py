"""kill -9 an ingest at random moments: the index always loads, in the old or the new state, and work resumes."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rag import store
from rag.config import Settings
from rag.pipeline import Pipeline
from tests.conftest import CORPUS, ROOT

SEEDS = [int(s) for s in os.environ.get("RAG_CRASH_SEEDS", "1,2,3").split(",")]


def journal_files(index: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{index / 'journal.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM files").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def start_ingest(folder: Path, index: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "ingest.py", str(folder), "--index", str(index), "--quiet"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "RAG_EMBED_BATCH": "32"})


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    """48 notes: 4 indexed before the kills (the "old" state), 44 more added afterwards."""
    folder = tmp_path_factory.mktemp("library")
    notes = sorted(CORPUS.glob("*.md"))
    for i in range(48):
        text = notes[i % len(notes)].read_text(encoding="utf-8")
        (folder / f"note-{i:02d}.md").write_text(f"# Copy {i}\nThis copy is number {i}.\n\n{text}", encoding="utf-8")
    return folder


def test_kill_9_mid_ingest_never_breaks_the_index_and_the_next_run_resumes(library, tmp_path, embedder):
    index = tmp_path / "index"
    staging = tmp_path / "staging"
    staging.mkdir()
    for note in sorted(library.glob("*.md"))[:4]:
        (staging / note.name).write_bytes(note.read_bytes())
    assert subprocess.run([sys.executable, "ingest.py", str(staging), "--index", str(index), "--quiet"],
                          cwd=ROOT, capture_output=True).returncode == 0
    old = {Path(d.path).name for d in store.load(index).documents}
    for note in sorted(library.glob("*.md"))[4:]:
        (staging / note.name).write_bytes(note.read_bytes())
    new = {p.name for p in staging.glob("*.md")}

    for seed in SEEDS:
        rng = random.Random(seed)
        target = journal_files(index) + rng.randint(1, 3)
        process = start_ingest(staging, index)
        deadline = time.time() + 120
        while process.poll() is None and journal_files(index) < target and time.time() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.3))  # somewhere inside the next batch's work
        assert process.poll() is None, f"seed {seed}: the ingest finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        snapshot = store.load(index)
        state = {Path(d.path).name for d in snapshot.documents}
        assert state in (old, new), f"seed {seed}: a half-way state {len(state)} documents was made current"
        assert snapshot.vectors.ntotal == len(snapshot.chunks)
        hits = Pipeline(Settings(index_dir=index), embedder=embedder).search("reciprocal rank fusion constant")
        assert hits and hits[0].chunk.path.endswith(".md")

    finished = subprocess.run([sys.executable, "ingest.py", str(staging), "--index", str(index)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert "resumed from an interrupted run" in finished.stdout  # work of the killed runs was kept
    snapshot = store.load(index)
    assert {Path(d.path).name for d in snapshot.documents} == new
    keys = [(c.path, c.ordinal) for c in snapshot.chunks]
    assert len(keys) == len(set(keys))  # nothing duplicated
    assert journal_files(index) == 0


def _milvus_rows(backend, expr: str) -> int:
    rows = backend.client.query(backend.chunks_name, filter=expr, output_fields=["count(*)"])
    return int(rows[0]["count(*)"]) if rows else 0


def test_kill_9_mid_ingest_into_milvus_leaves_every_document_old_or_new(library, tmp_path, embedder, milvus_uri):
    """Killed while embedding, and while the new generation's rows are being written; never a half state."""
    index = tmp_path / "index"
    settings = Settings(index_dir=index, milvus_uri=milvus_uri, milvus_collection="killed")
    env = {"RAG_MILVUS_URI": milvus_uri, "RAG_MILVUS_COLLECTION": "killed"}
    backend = store.choose(settings)
    staging = tmp_path / "staging"
    staging.mkdir()
    for note in sorted(library.glob("*.md"))[:4]:
        (staging / note.name).write_bytes(note.read_bytes())
    first = subprocess.run([sys.executable, "ingest.py", str(staging), "--index", str(index), "--quiet"], cwd=ROOT,
                           capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
    assert first.returncode == 0, first.stderr
    old = {Path(d.path).name for d in backend.load().documents}
    for note in sorted(library.glob("*.md"))[4:]:
        (staging / note.name).write_bytes(note.read_bytes())
    new = {p.name for p in staging.glob("*.md")}

    for turn, seed in enumerate(SEEDS):
        rng = random.Random(seed)
        committed = int(backend.generation()[4:])
        process = subprocess.Popen([sys.executable, "ingest.py", str(staging), "--index", str(index), "--quiet"], cwd=ROOT,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "HF_HUB_OFFLINE": "1", "RAG_EMBED_BATCH": "32", **env})
        deadline = time.time() + 120
        if turn:  # while the rows of the new generation are being inserted (every file is in the journal by now)
            target = rng.randint(1, 400)
            while process.poll() is None and _milvus_rows(backend, f"generation > {committed}") < target and time.time() < deadline:
                time.sleep(0.02)
        else:  # while embedding, a few files further on
            target = journal_files(index) + rng.randint(1, 3)
            while process.poll() is None and journal_files(index) < target and time.time() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0, 0.3))
        assert process.poll() is None, f"seed {seed}: the ingest finished before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait()
        view = backend.load()
        state = {Path(d.path).name for d in view.documents}
        assert state in (old, new), f"seed {seed}: a half-way state {len(state)} documents was made current"
        for document in view.documents:  # each document whole, in the version the manifest names
            visible = _milvus_rows(backend, f"path == \"{document.path}\" and {view.visible}")
            assert visible == document.chunks, f"seed {seed}: {document.path} has {visible} of {document.chunks} chunks"
        hits = Pipeline(settings, embedder=embedder).search("reciprocal rank fusion constant")
        assert hits and hits[0].chunk.path.endswith(".md")

    finished = subprocess.run([sys.executable, "ingest.py", str(staging), "--index", str(index)], cwd=ROOT,
                              capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1", **env})
    assert finished.returncode == 0, finished.stderr
    assert "resumed from an interrupted run" in finished.stdout
    view = backend.load()
    assert {Path(d.path).name for d in view.documents} == new
    assert _milvus_rows(backend, "id >= 0") == len(view.chunks) == sum(d.chunks for d in view.documents)  # no leftovers
    assert journal_files(index) == 0

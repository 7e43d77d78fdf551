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

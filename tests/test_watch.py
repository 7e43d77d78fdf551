"""Folders kept in step with the index: rag.watch.Watcher in-process, and `python ingest.py --watch` as a real process."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rag import store, watch
from rag.watch import Sync, Watcher
from tests.conftest import ROOT, make_pdf_module, stop_group

DEADLINE = 180  # seconds; generous because the test machine is slow and shared, never a measure of speed


class HashEmbedder:
    """A tiny stand-in embedder for the watcher's unit tests: words hashed into 32 dimensions."""

    name, dim, max_tokens = "hash-embedder", 32, 512

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def embed(self, texts):
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in zip(rows, texts):
            for word in text.lower().split():
                row[int(hashlib.md5(word.encode()).hexdigest(), 16) % self.dim] += 1
            row /= max(np.linalg.norm(row), 1e-6)
        return rows


class Recorder:
    """Collects the syncs a watcher reports, and waits for a condition on the index."""

    def __init__(self) -> None:
        self.syncs: list[Sync] = []
        self.lock = threading.Lock()

    def __call__(self, sync: Sync) -> None:
        with self.lock:
            self.syncs.append(sync)

    def wait_for_syncs(self, count: int) -> None:
        deadline = time.time() + DEADLINE
        while len(self.syncs) < count:
            assert time.time() < deadline, f"only {len(self.syncs)} syncs: {self.syncs}"
            time.sleep(0.05)

    def indexed(self) -> set[str]:
        return {Path(p).name for s in self.syncs for p in s.indexed}


def texts(index: Path) -> dict[str, str]:
    """File name -> its indexed text, from the committed generation."""
    if store.current_generation(index) is None:
        return {}
    found: dict[str, str] = {}
    for chunk in store.load(index).chunks:
        found[Path(chunk.path).name] = found.get(Path(chunk.path).name, "") + chunk.text
    return found


def wait_until(condition, what: str):
    deadline = time.time() + DEADLINE
    while True:
        value = condition()
        if value:
            return value
        assert time.time() < deadline, f"gave up waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def docs(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "alpha.md").write_text("# Alpha\nApples grow in the orchard behind the old mill.\n")
    return folder


@pytest.fixture
def watching(tmp_path, settings_factory):
    """`watching(folder, **options)`: a started Watcher on a fresh index with the hash embedder; stopped after the test."""
    started: list[Watcher] = []

    def start(*folders: Path, **options) -> tuple[Watcher, Recorder, Path]:
        index = tmp_path / "index"
        recorder = Recorder()
        watcher = Watcher(list(folders), settings_factory(index), HashEmbedder(), recorder, **options)
        started.append(watcher)
        watcher.start()
        recorder.wait_for_syncs(1)  # the first sync of the folders, whole
        return watcher, recorder, index

    yield start
    for watcher in started:
        watcher.stop()


def test_new_changed_moved_and_deleted_files_follow_the_folder(docs, watching):
    watcher, recorder, index = watching(docs, settle=0.3)
    assert "orchard" in texts(index)["alpha.md"]
    assert not watcher.polling  # watchdog is installed: file events
    (docs / "sub").mkdir()
    (docs / "sub" / "bravo.md").write_text("# Bravo\nBoats leave the harbour at high tide.\n")
    wait_until(lambda: "bravo.md" in texts(index), "a new file in a new sub-folder")
    (docs / "alpha.md").write_text("# Alpha\nPears replaced the apples in the orchard.\n")
    wait_until(lambda: "Pears" in texts(index).get("alpha.md", ""), "the changed text")
    assert "Apples" not in texts(index)["alpha.md"]
    (docs / "alpha.md").rename(docs / "sub" / "gamma.md")
    wait_until(lambda: "alpha.md" not in texts(index) and "gamma.md" in texts(index), "a move")
    # Hidden, temporary and unsupported files are not indexed.
    (docs / ".hidden.md").write_text("hidden text\n")
    (docs / "~$report.docx").write_bytes(b"lock")
    (docs / "draft.md.part").write_text("part of a download\n")
    (docs / ".git").mkdir()
    (docs / ".git" / "notes.md").write_text("inside a hidden folder\n")
    (docs / "delta.md").write_text("# Delta\nThe river delta floods every spring.\n")  # a marker that they were seen
    wait_until(lambda: "delta.md" in texts(index), "the marker file")
    assert set(texts(index)) == {"bravo.md", "gamma.md", "delta.md"}
    # A deleted folder takes everything indexed under it along.
    import shutil

    shutil.rmtree(docs / "sub")
    wait_until(lambda: set(texts(index)) == {"delta.md"}, "the deleted folder's files removed")
    wait_until(lambda: {Path(p).name for s in recorder.syncs for p in s.removed} >= {"bravo.md", "gamma.md", "alpha.md"},
               "the removals reported")
    assert watcher.last is not None and not watcher.last.error and watcher.failures == {}


def test_a_burst_of_files_is_one_ingest(docs, watching, monkeypatch):
    calls: list[list[str]] = []
    real = watch.ingest

    def counting(paths, *args, **kwargs):
        calls.append([str(p) for p in paths])
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(watch, "ingest", counting)
    watcher, recorder, index = watching(docs, settle=1.5)
    assert len(calls) == 1  # the first sync
    for n in range(20):
        (docs / f"note{n:02}.md").write_text(f"# Note {n}\nNumber {n} of the burst copied in at once.\n")
    wait_until(lambda: len(texts(index)) == 21, "all 20 files indexed")
    recorder.wait_for_syncs(2)  # the index is committed a moment before its sync is reported
    assert len(calls) == 2, calls
    assert sorted(Path(p).name for p in calls[1]) == [f"note{n:02}.md" for n in range(20)]
    assert len(recorder.syncs[1].indexed) == 20


def test_a_file_still_being_written_is_not_read_half_way(docs, watching):
    watcher, recorder, index = watching(docs, settle=0.5)
    target = docs / "long.md"
    with open(target, "w") as handle:
        handle.write("# Long\nThe first half speaks of winter.\n")
        handle.flush()
        time.sleep(3.0)  # six settle periods with the file open and unchanged
        assert "long.md" not in texts(index) and "long.md" not in recorder.indexed()
        handle.write("The second half speaks of summer.\n")
    wait_until(lambda: "long.md" in texts(index), "the finished file")
    assert "winter" in texts(index)["long.md"] and "summer" in texts(index)["long.md"]
    wait_until(lambda: "long.md" in recorder.indexed(), "the sync that indexed it reported")
    assert sum(any(Path(p).name == "long.md" for p in s.indexed) for s in recorder.syncs) == 1  # once, whole


def test_polling_follows_adds_changes_and_deletes_and_waits_for_a_growing_file(docs, watching):
    watcher, recorder, index = watching(docs, settle=0.5, polling=True)
    assert watcher.polling
    (docs / "bravo.md").write_text("# Bravo\nBoats leave the harbour.\n")
    wait_until(lambda: "bravo.md" in texts(index), "a new file, by polling")
    (docs / "bravo.md").write_text("# Bravo\nSubmarines leave the harbour.\n")
    wait_until(lambda: "Submarines" in texts(index).get("bravo.md", ""), "the changed file, by polling")
    (docs / "alpha.md").unlink()
    wait_until(lambda: "alpha.md" not in texts(index), "the deleted file, by polling")
    growing = docs / "growing.md"
    with open(growing, "w") as handle:
        handle.write("# Growing\n")
        for n in range(25):  # 2.5 s of writes, each well within one settle period
            handle.write(f"line {n} of the growing file\n")
            handle.flush()
            time.sleep(0.1)
            assert "growing.md" not in texts(index), f"read while still growing, after {n + 1} lines"
        handle.write("the last line\n")
    wait_until(lambda: "the last line" in texts(index).get("growing.md", ""), "the grown file")
    assert "line 0 of" in texts(index)["growing.md"]


def test_without_watchdog_it_polls(docs, watching, monkeypatch):
    monkeypatch.setattr(watch, "native_events_available", lambda: False)
    watcher, recorder, index = watching(docs, settle=0.3)
    assert watcher.polling
    (docs / "bravo.txt").write_text("Bravo text about boats.\n")
    wait_until(lambda: "bravo.txt" in texts(index), "a new file without watchdog")


def test_when_file_events_fail_to_start_it_polls(docs, watching, monkeypatch):
    def no_events(self):
        raise OSError(28, "inotify watch limit reached")

    monkeypatch.setattr(Watcher, "_start_observer", no_events)
    watcher, recorder, index = watching(docs, settle=0.3)
    assert watcher.polling
    (docs / "bravo.txt").write_text("Bravo text about boats.\n")
    wait_until(lambda: "bravo.txt" in texts(index), "a new file after falling back to polling")


def test_first_sync_catches_what_changed_while_nobody_watched(docs, tmp_path, settings_factory, watching):
    from rag.indexing import ingest

    (docs / "bravo.md").write_text("# Bravo\nBoats.\n")
    ingest([docs], settings_factory(tmp_path / "index"), HashEmbedder())
    (docs / "bravo.md").unlink()
    (docs / "charlie.md").write_text("# Charlie\nCherries.\n")
    watcher, recorder, index = watching(docs, settle=0.3)
    assert set(texts(index)) == {"alpha.md", "charlie.md"}
    assert [Path(p).name for p in recorder.syncs[0].removed] == ["bravo.md"]
    assert [Path(p).name for p in recorder.syncs[0].indexed] == ["charlie.md"]


def test_a_failing_file_is_reported_and_indexed_once_fixed(docs, watching):
    watcher, recorder, index = watching(docs, settle=0.3)
    broken = docs / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    (docs / "fine.md").write_text("# Fine\nThis one reads well.\n")
    wait_until(lambda: str(broken) in watcher.failures, "the broken file reported")
    assert "fine.md" in texts(index)  # the other file of the batch went in
    assert any(Path(f.path).name == "broken.pdf" for s in recorder.syncs for f in s.failed)
    fixed = docs / "fixed.tmp"  # written aside and moved over, as editors save
    make_pdf_module().write_pdf(fixed, [["The repaired report mentions zebras."]])
    fixed.replace(broken)
    wait_until(lambda: "zebras" in texts(index).get("broken.pdf", ""), "the repaired file")
    wait_until(lambda: watcher.failures == {}, "the repaired file dropped from the failures")


def test_a_failed_batch_is_reported_and_retried(docs, watching, monkeypatch):
    monkeypatch.setattr(watch, "RETRY_SECONDS", 0.5)
    real, failures = watch.ingest, []

    def failing_once(paths, *args, **kwargs):
        if any(Path(p).name == "bravo.md" for p in paths) and not failures:
            failures.append(paths)
            raise PermissionError(13, "Permission denied")
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(watch, "ingest", failing_once)
    watcher, recorder, index = watching(docs, settle=0.3)
    (docs / "bravo.md").write_text("# Bravo\nBoats.\n")
    wait_until(lambda: "bravo.md" in texts(index), "the file indexed on the retry")
    errors = [s.error for s in recorder.syncs if s.error]
    assert len(errors) == 1 and "could not write the index" in errors[0] and "Permission denied" in errors[0]
    assert not watcher.last.error


def test_an_added_folder_is_synced_and_watched(docs, tmp_path, watching):
    watcher, recorder, index = watching(docs, settle=0.3)
    other = tmp_path / "other"
    other.mkdir()
    (other / "echo.md").write_text("# Echo\nAn echo in the valley.\n")
    watcher.add(other)
    assert watcher.folders == (docs.resolve(), other.resolve())
    wait_until(lambda: "echo.md" in texts(index), "the added folder synced")
    (other / "foxtrot.md").write_text("# Foxtrot\nA fox in the snow.\n")
    wait_until(lambda: "foxtrot.md" in texts(index), "a new file in the added folder")
    with pytest.raises(Exception, match="not a folder"):
        watcher.add(tmp_path / "missing")


def test_watch_without_recorded_folders_or_with_a_file_says_what_to_do(tmp_path, capsys, docs):
    from rag.ingest import main

    assert main(["--watch", "--index", str(tmp_path / "index")]) == 2
    assert "no folders are recorded" in capsys.readouterr().err
    assert main(["--watch", str(docs / "alpha.md"), "--index", str(tmp_path / "index")]) == 2
    assert "not a folder" in capsys.readouterr().err


def start_watching(*args: str, out, log) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "ingest.py", "--watch", *args, "--quiet"], cwd=ROOT, stdout=out, stderr=log,
                            text=True, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "RAG_WATCH_SETTLE": "0.5"})


def read(handle) -> str:
    handle.seek(0)
    return handle.read()


@pytest.mark.slow
def test_cli_watch_start_add_change_delete_stop(docs, tmp_path):
    index = tmp_path / "index"
    log = open(tmp_path / "watch.log", "w+")
    out = open(tmp_path / "watch.out", "w+")
    process = start_watching(str(docs), "--index", str(index), out=out, log=log)

    def running() -> bool:
        if process.poll() is not None:
            pytest.fail(f"ingest.py --watch exited with {process.returncode}: {read(log)[-3000:]}")
        return True

    try:
        wait_until(lambda: running() and "synced" in read(out), "the first sync line")
        assert "1 added" in read(out)  # the summary of the first ingest, as without --watch
        assert "orchard" in texts(index)["alpha.md"]
        (docs / "bravo.md").write_text("# Bravo\nThe lighthouse keeper counts the passing ships.\n")
        wait_until(lambda: running() and "bravo.md" in texts(index), "the new file searchable")
        search = subprocess.run([sys.executable, "-m", "rag", "search", "lighthouse keeper", "--json", "--index", str(index)],
                                cwd=ROOT, capture_output=True, text=True, timeout=300,
                                env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert search.returncode == 0, search.stderr
        assert "bravo.md" in search.stdout
        (docs / "bravo.md").write_text("# Bravo\nThe ferry captain counts the passengers.\n")
        wait_until(lambda: running() and "ferry" in texts(index).get("bravo.md", ""), "the changed text")
        assert "lighthouse" not in texts(index)["bravo.md"]
        (docs / "bravo.md").unlink()
        wait_until(lambda: running() and "bravo.md" not in texts(index), "the deleted file gone")
        wait_until(lambda: "1 removed" in read(out), "the sync line of the deletion")
        assert "1 indexed, 0 removed, 0 failed" in read(out)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 0
        assert read(out).rstrip().endswith("stopped watching")
        assert set(texts(index)) == {"alpha.md"}  # the index still loads, whole
    finally:
        if process.poll() is None:
            stop_group(process)
        log.close()
        out.close()

    # Without PATH it watches the folders recorded for the library, first catching up on what changed meanwhile.
    (docs / "alpha.md").unlink()
    (docs / "charlie.md").write_text("# Charlie\nCherries ripen in July.\n")
    log = open(tmp_path / "again.log", "w+")
    out = open(tmp_path / "again.out", "w+")
    process = start_watching("--index", str(index), out=out, log=log)
    try:
        wait_until(lambda: running() and "synced" in read(out), "the first sync line without PATH")
        wait_until(lambda: f"watching {docs.resolve()}" in read(log), "the recorded folder named")
        assert "1 indexed, 1 removed" in read(out) and set(texts(index)) == {"charlie.md"}
        os.killpg(process.pid, signal.SIGTERM)
        assert process.wait(timeout=60) == 0
        assert read(out).rstrip().endswith("stopped watching")
    finally:
        if process.poll() is None:
            stop_group(process)
        log.close()
        out.close()

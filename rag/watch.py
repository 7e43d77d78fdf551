"""Keep the index in step with folders: new, changed and deleted files are indexed or removed within seconds.

A `Watcher` hears file events from watchdog (inotify on Linux, FSEvents on macOS, ...) or, where
those are not available, scans the folders' (size, mtime_ns) every second. Events are gathered
until none arrived for `settle` seconds (at most 10 x settle, so a stream that never stops is still
synced), then applied as one `remove` of the files gone and one `ingest` of the files added or
changed; both take the writer lock and commit atomically, so the index is always a whole generation.

A file is read only once its size and mtime stayed the same for `settle` seconds; on Linux a file
written to and not yet closed also waits (up to OPEN_GRACE seconds of no writes, for writers that
never close). A file that fails is kept in `failures` until it indexes or is deleted.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import stat as stat_mode
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from rag import loaders, store
from rag.config import Settings
from rag.embeddings import Embedder
from rag.errors import ConfigError, RagError
from rag.indexing import Failure, IngestReport, ingest, remove

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # scan interval of the polling fallback
CAP_SETTLES = 10  # a batch waits at most this many settle periods for the events to stop
OPEN_GRACE = 60.0  # seconds without a write after which a file left open for writing is read anyway
RETRY_SECONDS = 10.0  # a batch that failed (index not writable, ...) is tried again after this long
TEMPORARY_PREFIXES = ("~$", ".~lock")  # Office lock files
TEMPORARY_SUFFIXES = (".part", ".partial", ".crdownload", ".download", ".tmp", ".temp", ".swp", ".swx", "~")


@dataclass(frozen=True)
class Sync:
    """One batch applied to the index."""

    started: float  # time.time()
    finished: float
    indexed: tuple[str, ...] = ()  # added or changed files
    removed: tuple[str, ...] = ()
    failed: tuple[Failure, ...] = ()
    error: str = ""  # the batch itself failed (for example the index folder is not writable), one sentence

    def summary(self) -> str:
        """`synced 12:03:04: 1 indexed, 1 removed, 0 failed`, the line the CLI prints."""
        when = time.strftime("%H:%M:%S", time.localtime(self.finished))
        if self.error:
            return f"sync failed {when}: {self.error}"
        return f"synced {when}: {len(self.indexed)} indexed, {len(self.removed)} removed, {len(self.failed)} failed"


def temporary(name: str) -> bool:
    """Hidden files and the names editors, browsers and Office give files they are still writing."""
    lowered = name.lower()
    return name.startswith(".") or lowered.startswith(TEMPORARY_PREFIXES) or lowered.endswith(TEMPORARY_SUFFIXES)


def native_events_available() -> bool:
    try:
        import watchdog.observers  # noqa: F401
    except ImportError:
        return False
    return True


class Watcher:
    """Watches folders recursively and applies their changes to the index in a daemon thread."""

    def __init__(self, folders: Sequence[Path], settings: Settings, embedder: Embedder,
                 on_sync: Callable[[Sync], None] | None = None, *, settle: float | None = None,
                 polling: bool | None = None) -> None:
        self.settings = settings
        self.embedder = embedder
        self.on_sync = on_sync
        self.settle = settings.watch_settle if settle is None else settle
        if self.settle < 0:
            raise ConfigError(f"settle must be 0 seconds or more, got {self.settle}")
        self._use_polling = (not native_events_available()) if polling is None else polling
        if not self._use_polling and not native_events_available():
            raise ConfigError("Watching folders by file events needs the watchdog package; install it with "
                              "`pip install watchdog`, or watch by polling.")
        self._folders: list[Path] = []
        self._index_dir = Path(settings.index_dir).expanduser().resolve()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._observer = None
        self._pending: dict[str, float] = {}  # path -> monotonic time of its last event
        self._first_event: float | None = None  # of the events since the last batch
        self._last_event: float | None = None
        self._stats: dict[str, tuple[tuple[int, int], float]] = {}  # file -> ((size, mtime_ns), since when)
        self._writing: set[str] = set()  # written to and not closed yet (inotify only)
        self._full: list[Path] = []  # folders to sync whole (at start, added ones, after a failed full sync)
        self._recheck_at: float | None = None  # files that were not ready are looked at again then
        self._retry_at = 0.0
        self._scan: dict[str, tuple[int, int]] = {}  # polling: the last scan
        self._next_scan = 0.0
        self._last: Sync | None = None
        self._failures: dict[str, str] = {}
        self._busy = False
        for folder in folders:
            self._folders.append(self._checked(folder))

    # -- what the app reads -------------------------------------------------------------------------------------

    @property
    def folders(self) -> tuple[Path, ...]:
        with self._lock:
            return tuple(self._folders)

    @property
    def last(self) -> Sync | None:
        return self._last

    @property
    def failures(self) -> dict[str, str]:
        with self._lock:
            return dict(self._failures)

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def polling(self) -> bool:
        """True when the folders are scanned every second rather than watched by file events."""
        return self._use_polling

    # -- control ------------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start watching and return at once; the thread first syncs the folders whole, then applies events."""
        if self._thread is not None:
            return
        with self._lock:
            self._full = list(self._folders)
        if not self._use_polling:
            try:
                self._start_observer()
            except OSError as exc:  # inotify limits reached, or a file system without events
                log.warning("file events are not available (%s); watching by polling instead", exc)
                self._use_polling = True
        if self._use_polling:
            self._scan = self._scan_folders(self.folders)
            self._next_scan = time.monotonic() + self._poll_seconds()
        self._thread = threading.Thread(target=self._run, name="rag-watch", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30) -> None:
        """Stop watching; a batch being written finishes first (it commits atomically either way)."""
        self._stopping.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._observer is not None:
            self._observer.join(max(1.0, timeout / 10))

    def add(self, folder: Path) -> None:
        """Watch one more folder from now on; it is synced whole at once."""
        path = self._checked(folder)
        with self._lock:
            if any(path == f or path.is_relative_to(f) for f in self._folders):
                return
        if self._observer is not None:
            try:
                self._observer.schedule(_Handler(self), str(path), recursive=True)
            except OSError as exc:
                raise ConfigError(f"Cannot watch {path} for changes ({exc.strerror or exc}); raise the system's "
                                  "inotify limits (fs.inotify.max_user_watches) or watch by polling.") from exc
        with self._lock:
            self._folders.append(path)
            self._full.append(path)
        if self._use_polling and self._thread is not None:
            self._scan.update(self._scan_folders([path]))
        self._wake.set()

    def _checked(self, folder: Path) -> Path:
        path = Path(folder).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"Cannot watch {path}: it is not a folder; give a folder that exists.")
        return path

    def _start_observer(self) -> None:
        from watchdog.observers import Observer

        observer = Observer()
        if type(observer).__name__ == "PollingObserver":  # watchdog found no native events here; ours polls the same
            raise OSError("no native file events on this system")
        for folder in self.folders:
            observer.schedule(_Handler(self), str(folder), recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer

    def _poll_seconds(self) -> float:
        return min(POLL_SECONDS, max(self.settle, 0.1))

    # -- events -------------------------------------------------------------------------------------------------

    def _watched(self, path: str, folder_event: bool = False) -> bool:
        """Whether an event on `path` concerns the index: under a watched folder, not hidden or temporary."""
        p = Path(path)
        if p == self._index_dir or p.is_relative_to(self._index_dir):
            return False  # an index kept inside a watched folder
        for root in self._folders:
            if p.is_relative_to(root):
                parts = p.relative_to(root).parts
                if any(temporary(part) for part in parts):
                    return False
                return folder_event or not parts or loaders.is_supported(p)
        return False

    def _note(self, path: str, *, folder: bool = False, writing: bool | None = None) -> None:
        """Record an event on `path` (folder: a folder created, moved or deleted); called from watchdog's thread."""
        now = time.monotonic()
        with self._lock:
            if not self._watched(path, folder):
                return
            self._pending[path] = now
            self._first_event = self._first_event if self._first_event is not None else now
            self._last_event = now
            if writing is True:
                self._writing.add(path)
            elif writing is False:
                self._writing.discard(path)
            if not folder:
                self._record(path, _stat(path), now)
        self._wake.set()

    def _record(self, path: str, seen: tuple[int, int] | None, now: float) -> None:
        """Remember the first time `path` was seen with this size and mtime (the lock is held)."""
        if seen is None:
            self._stats.pop(path, None)
        elif path not in self._stats or self._stats[path][0] != seen:
            self._stats[path] = (seen, now)

    def _poll(self) -> None:
        """The polling fallback: note every file whose (size, mtime_ns) changed, appeared or went since the last scan."""
        current = self._scan_folders(self.folders)
        previous, self._scan = self._scan, current
        for path, seen in current.items():
            if previous.get(path) != seen:
                self._note(path)
        for path in previous.keys() - current.keys():
            self._note(path)

    def _scan_folders(self, folders: Sequence[Path]) -> dict[str, tuple[int, int]]:
        found: dict[str, tuple[int, int]] = {}
        for root in folders:
            for folder, dirs, names in os.walk(root):
                dirs[:] = [d for d in dirs if not temporary(d) and not (Path(folder) / d) == self._index_dir]
                for name in names:
                    path = os.path.join(folder, name)
                    if not temporary(name) and loaders.is_supported(Path(name)):
                        seen = _stat(path)
                        if seen is not None:
                            found[path] = seen
        return found

    # -- the thread ---------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                if self._use_polling and time.monotonic() >= self._next_scan:
                    self._poll()
                    self._next_scan = time.monotonic() + self._poll_seconds()
                due = self._due()
                now = time.monotonic()
                if due is not None and due <= now:
                    self._apply()
                    continue
                wait = (due - now) if due is not None else 3600.0
                if self._use_polling:
                    wait = min(wait, max(0.0, self._next_scan - now))
                self._wake.wait(max(wait, 0.01))
                self._wake.clear()
            except Exception as exc:  # a bug must not end the watcher unseen
                log.exception("the folder watcher hit an error")
                self._publish(Sync(time.time(), time.time(), error=_sentence(exc, self.settings)))
                self._stopping.wait(RETRY_SECONDS)  # not a busy loop should it happen again; stop() still ends it

    def _due(self) -> float | None:
        """When the next batch should run (monotonic), or None when nothing waits."""
        with self._lock:
            if self._full:
                due = time.monotonic()
            elif self._last_event is not None:
                cap = max(CAP_SETTLES * self.settle, 1.0)
                due = min(self._last_event + self.settle, self._first_event + cap)
            elif self._pending:
                due = self._recheck_at or time.monotonic()
            else:
                return None
        return max(due, self._retry_at)

    def _apply(self) -> None:
        """One batch: sync the folders queued whole, remove what went, ingest what is new or changed and settled."""
        with self._lock:
            full, self._full = self._full, []
            pending, self._pending = self._pending, {}
            self._first_event = self._last_event = None
        started = time.time()
        self._busy = True
        try:
            ready, gone, waiting = self._sort(pending)
            reports: list[IngestReport] = []
            removed: list[str] = []
            if full:
                reports.append(ingest(full, self.settings, self.embedder))
            if gone and store.choose(self.settings).generation() is not None:
                removed += remove([Path(p) for p in gone], self.settings)[0]
            if ready:
                reports.append(ingest([Path(p) for p in ready], self.settings, self.embedder))
            if full:  # load the model now if the sync did not need it, so the first new file indexes at once
                self.embedder.dim  # noqa: B018 - LazyEmbedder loads its model on first use
        except Exception as exc:
            with self._lock:  # tried again later, together with anything that arrived meanwhile
                for path, when in pending.items():
                    self._pending.setdefault(path, when)
                self._full = full + self._full
            self._retry_at = time.monotonic() + RETRY_SECONDS
            self._busy = False
            self._publish(Sync(started, time.time(), error=_sentence(exc, self.settings)))
            return
        with self._lock:
            for path, when in waiting.items():
                self._pending.setdefault(path, when)
            self._recheck_at = time.monotonic() + max(self.settle, 0.1) if waiting else None
            sync = self._account(started, reports, removed, gone)
        self._busy = False
        if full or sync.indexed or sync.removed or sync.failed or ready or gone:
            self._publish(sync)

    def _sort(self, pending: dict[str, float]) -> tuple[list[str], list[str], dict[str, float]]:
        """Split noted paths into files ready to read, paths gone, and files still being written (kept for later)."""
        ready: list[str] = []
        gone: list[str] = []
        waiting: dict[str, float] = {}
        now = time.monotonic()
        files: dict[str, float] = {}
        for path, when in pending.items():
            try:
                info = os.stat(path)
            except FileNotFoundError:
                gone.append(path)
                continue
            except OSError:
                files[path] = when  # unreadable: ingest names it with the reason
                continue
            if stat_mode.S_ISDIR(info.st_mode):  # a folder created or moved in: everything in it
                for found in self._scan_folders([Path(path)]):
                    files.setdefault(found, when)
            elif stat_mode.S_ISREG(info.st_mode):
                files[path] = when
        with self._lock:
            for path in gone:
                self._stats.pop(path, None)
                self._writing.discard(path)
            for path, when in files.items():
                seen = _stat(path)
                if seen is None:
                    gone.append(path)
                    continue
                known = self._stats.get(path)
                if known is None or known[0] != seen:
                    self._record(path, seen, now)  # changed since its event: it has to settle from now
                    waiting[path] = when
                elif now - known[1] < self.settle:
                    waiting[path] = when
                elif path in self._writing and time.time() - seen[1] / 1e9 < OPEN_GRACE:
                    waiting[path] = when
                else:
                    ready.append(path)
                    self._stats.pop(path, None)
        return ready, gone, waiting

    def _account(self, started: float, reports: list[IngestReport], removed: list[str], gone: list[str]) -> Sync:
        """Update `failures` from a batch's outcome and describe it (the lock is held)."""
        indexed: list[str] = []
        failed: list[Failure] = []
        for report in reports:
            indexed += [*report.added, *report.updated]
            removed += report.removed
            for path in (*report.added, *report.updated, *report.unchanged, *report.removed):
                self._failures.pop(path, None)
            for failure in report.failed:
                if os.path.lexists(failure.path):  # one deleted meanwhile is handled by its own event
                    failed.append(failure)
                    self._failures[failure.path] = failure.reason
        for path in [*removed, *gone]:
            prefix = path.rstrip(os.sep) + os.sep
            for failing in [f for f in self._failures if f == path or f.startswith(prefix)]:
                del self._failures[failing]
        return Sync(started, time.time(), tuple(dict.fromkeys(indexed)), tuple(dict.fromkeys(removed)), tuple(failed))

    def _publish(self, sync: Sync) -> None:
        self._last = sync
        if self.on_sync is not None:
            try:
                self.on_sync(sync)
            except Exception:
                log.exception("the on_sync callback failed")


class _Handler:
    """Turns watchdog's events into `Watcher._note` calls (duck-typed: watchdog only calls dispatch)."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def dispatch(self, event) -> None:
        try:
            self._dispatch(event)
        except Exception:  # an exception here would end watchdog's thread, and with it the watching
            log.exception("could not handle the file event %r", event)

    def _dispatch(self, event) -> None:
        kind = event.event_type
        src = os.fsdecode(event.src_path)
        dest = os.fsdecode(getattr(event, "dest_path", "") or "")
        if event.is_directory:
            if kind in ("created", "deleted", "moved"):  # a folder's "modified" only says its listing changed
                for path in (src, dest):
                    if path:
                        self.watcher._note(path, folder=True)
            return
        if kind in ("opened", "closed_no_write"):  # our own reads, among others
            return
        if kind == "moved":
            self.watcher._note(src, writing=False)
            if dest:
                self.watcher._note(dest, writing=False)
        elif kind in ("created", "modified"):
            self.watcher._note(src, writing=True)
        else:  # closed (after writing), deleted, attrib
            self.watcher._note(src, writing=False)


def _stat(path: str) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_size, info.st_mtime_ns) if stat_mode.S_ISREG(info.st_mode) else None


def _sentence(exc: BaseException, settings: Settings) -> str:
    """One sentence for a batch that failed as a whole."""
    if isinstance(exc, RagError):
        return str(exc)
    if isinstance(exc, (OSError, sqlite3.Error)):
        reason = getattr(exc, "strerror", None) or str(exc)
        return (f"could not write the index in {settings.index_dir} ({reason}); free some space or fix its "
                f"permissions, the watcher tries again in {RETRY_SECONDS:.0f} s.")
    return (f"the sync failed unexpectedly ({type(exc).__name__}: {exc}); the watcher tries again in "
            f"{RETRY_SECONDS:.0f} s.")

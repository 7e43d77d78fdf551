"""Several libraries: each a named index with its own index folder, upload folder and recorded folders.

The default library is the layout there always was (settings.index_dir and settings.library_dir),
so nothing changes for anyone who never names one. A named library lives in its own folder under
settings.libraries_dir (`libraries` beside the default index):

    libraries/work/index/      its index (and library.json: its name and the folders ingested into it)
    libraries/work/library/    the files uploaded to it in the app

The folder's key is fixed when the library is created, so renaming one only rewrites its name:
the paths its index recorded for uploaded files stay valid. On Milvus a named library is its own
set of collections, `NAME_KEY` after the configured collection name.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rag.config import Settings
from rag.errors import ConfigError

DEFAULT_NAME = "Default"
META = "library.json"
MAX_NAME = 64
_NAME = re.compile(r"^\w[\w .'()&+-]*$")


@dataclass(frozen=True)
class Library:
    """One library as the CLI and the app list it."""

    name: str
    key: str  # its folder under libraries_dir; "" for the default library
    index_dir: Path
    library_dir: Path
    folders: tuple[str, ...] = ()  # the folders ingested into it, kept in step by --watch and the app's watch setting
    created: float = 0.0

    @property
    def default(self) -> bool:
        return not self.key


def default(settings: Settings) -> Library:
    """The library of the plain layout: whatever index_dir and library_dir the settings started from."""
    base = _base(settings)
    meta = _read(base.index_dir / META)
    return Library(DEFAULT_NAME, "", base.index_dir, base.library_dir, tuple(meta.get("folders", ())), meta.get("created", 0.0))


def listed(settings: Settings) -> list[Library]:
    """The default library first, then the named ones by name."""
    named = []
    root = settings.libraries_dir
    if root.is_dir():
        for folder in root.iterdir():
            meta = _read(folder / "index" / META)
            if meta.get("name") and folder.is_dir():
                named.append(Library(meta["name"], folder.name, folder / "index", folder / "library",
                                     tuple(meta.get("folders", ())), meta.get("created", 0.0)))
    return [default(settings), *sorted(named, key=lambda lib: lib.name.lower())]


def find(settings: Settings, name: str) -> Library | None:
    """The library called `name` (any case; "" or "Default" is the default library), or None."""
    wanted = " ".join((name or "").split()).casefold()
    for library in listed(settings):
        if (library.default and not wanted) or wanted == library.name.casefold():
            return library
    return None


def by_key(settings: Settings, key: str) -> Library | None:
    """The library whose folder is `key` ("" is the default one): what a saved chat records, as names change."""
    return next((library for library in listed(settings) if library.key == (key or "")), None)


def get(settings: Settings, name: str) -> Library:
    found = find(settings, name)
    if found is None:
        names = ", ".join(lib.name for lib in listed(settings))
        raise ConfigError(f"There is no library named {name!r}; the libraries are {names}. Create it with "
                          f"`python -m rag library create {_quoted(name)}` (or in the app), or index a folder into it "
                          f"with `python ingest.py --library-name {_quoted(name)} FOLDER`.")
    return found


def current(settings: Settings) -> Library:
    """The library these settings point at."""
    return get(settings, settings.library_name) if settings.library_name else default(settings)


def create(settings: Settings, name: str) -> Library:
    """A new, empty library called `name`; ConfigError names the problem when the name is unusable or taken."""
    name = check_name(name)
    if find(settings, name) is not None:
        raise ConfigError(f"A library named {name!r} already exists; choose another name, or use it with "
                          f"--library-name {_quoted(name)}.")
    root = settings.libraries_dir
    root.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^a-z0-9]+", "_", name.casefold()).strip("_")[:40] or "library"
    for n in range(1, 10_000):
        key = stem if n == 1 else f"{stem}_{n}"
        try:
            (root / key).mkdir()
        except FileExistsError:
            continue
        library = Library(name, key, root / key / "index", root / key / "library", (), time.time())
        library.index_dir.mkdir()
        library.library_dir.mkdir()
        _write(library)
        return library
    raise ConfigError(f"Could not find a free folder for the library {name!r} in {root}; tidy that folder up.")


def rename(settings: Settings, name: str, new_name: str) -> Library:
    """The same library (its folders, index and chats) under a new name."""
    library = get(settings, name)
    if library.default:
        raise ConfigError(f"The default library keeps its name {DEFAULT_NAME!r}; create a named library instead.")
    new_name = check_name(new_name)
    taken = find(settings, new_name)
    if taken is not None and taken.key != library.key:
        raise ConfigError(f"A library named {new_name!r} already exists; choose another name.")
    renamed = Library(new_name, library.key, library.index_dir, library.library_dir, library.folders, library.created)
    _write(renamed)
    return renamed


def delete(settings: Settings, name: str) -> Library:
    """Delete a named library: its index (on Milvus, its collections), its uploaded copies and its record.

    The user's own folders that were indexed into it are never touched. It waits for an ingest
    into that library to finish first.
    """
    from rag import store

    library = get(settings, name)
    if library.default:
        raise ConfigError("The default library cannot be deleted; remove its documents with `python ingest.py --remove`.")
    scoped = settings_for(settings, library)
    backend = store.choose(scoped)
    with backend.lock():
        backend.drop()
        # Renamed aside first, so that a half-deleted library never lists: the rename is atomic, the rmtree is not.
        doomed = settings.libraries_dir / f".deleted-{library.key}-{uuid.uuid4().hex[:8]}"
        os.replace(settings.libraries_dir / library.key, doomed)
    shutil.rmtree(doomed, ignore_errors=True)
    return library


def settings_for(settings: Settings, library: Library | str) -> Settings:
    """The same settings pointed at another library: its index, upload folder and (on Milvus) collections."""
    base = _base(settings)
    if isinstance(library, str):
        library = get(base, library)
    if library.default:
        return base
    collection = f"{base.milvus_collection}_{library.key}"
    return base.with_(index_dir=library.index_dir, library_dir=library.library_dir, library_name=library.name,
                      milvus_collection=collection, origin=base)


def record_folders(settings: Settings, folders: Sequence[Path]) -> Library:
    """Remember the folders ingested into the current library (files given one by one are not recorded)."""
    library = current(settings)
    known = list(library.folders)
    for folder in folders:
        path = str(Path(folder).expanduser().resolve())
        if Path(path).is_dir() and path not in known:
            known.append(path)
    updated = Library(library.name, library.key, library.index_dir, library.library_dir, tuple(known),
                      library.created or time.time())
    if updated != library:
        _write(updated)
    return updated


def check_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise ConfigError("A library needs a name; give one such as \"Work papers\".")
    if len(name) > MAX_NAME or not _NAME.match(name):
        raise ConfigError(f"The library name {name!r} cannot be used; use up to {MAX_NAME} letters, digits, spaces "
                          "and . ' ( ) & + - _, starting with a letter or digit.")
    if name.casefold() == DEFAULT_NAME.casefold():
        raise ConfigError(f"{DEFAULT_NAME!r} is the name of the default library; choose another name.")
    return name


def _base(settings: Settings) -> Settings:
    """The settings of the default library, whichever library `settings` points at (other settings as they are)."""
    origin = settings.origin
    if origin is None:
        return settings
    return settings.with_(index_dir=origin.index_dir, library_dir=origin.library_dir, library_name="",
                          milvus_collection=origin.milvus_collection, origin=None)


def _read(path: Path) -> dict:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _write(library: Library) -> None:
    """library.json replaced whole: a crash leaves the old record or the new one."""
    library.index_dir.mkdir(parents=True, exist_ok=True)
    target = library.index_dir / META
    meta = {"name": library.name if not library.default else DEFAULT_NAME, "folders": list(library.folders),
            "created": library.created}
    partial = target.with_name(f".{META}.{uuid.uuid4().hex}.part")
    with open(partial, "w", encoding="utf-8") as out:
        json.dump(meta, out, ensure_ascii=False, indent=1)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, target)


def _quoted(name: str) -> str:
    return f'"{name}"' if " " in name else name

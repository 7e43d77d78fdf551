"""Several libraries: named indexes beside the default one, made, renamed and deleted from the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rag import libraries
from rag.config import Settings
from rag.errors import ConfigError
from tests.conftest import ROOT


@pytest.fixture
def settings(tmp_path):
    return Settings.load({"index_dir": tmp_path / "index", "library_dir": tmp_path / "uploads"}, environ={})


def test_without_a_name_the_layout_is_the_one_there_always_was(settings, tmp_path):
    assert settings.index_dir == tmp_path / "index" and settings.library_dir == tmp_path / "uploads"
    assert [lib.name for lib in libraries.listed(settings)] == ["Default"]
    assert libraries.current(settings).index_dir == tmp_path / "index"
    assert libraries.settings_for(settings, "") == settings


def test_a_named_library_has_its_own_index_uploads_and_milvus_collections(settings, tmp_path):
    made = libraries.create(settings, "Work papers")
    scoped = Settings.load({"index_dir": tmp_path / "index", "library_name": "work PAPERS"}, environ={})
    assert scoped.index_dir == tmp_path / "libraries" / "work_papers" / "index" == made.index_dir
    assert scoped.library_dir == tmp_path / "libraries" / "work_papers" / "library"
    assert scoped.milvus_collection == "documents_work_papers" and scoped.library_name == "Work papers"
    back = libraries.settings_for(scoped, "Default")  # and back to the default library, other settings kept
    assert back.index_dir == tmp_path / "index" and back.milvus_collection == "documents" and not back.library_name


def test_names_are_checked_and_unique(settings):
    libraries.create(settings, "Home")
    for bad, why in (("", "needs a name"), ("home", "already exists"), ("Default", "default library"),
                     ("../etc", "cannot be used"), ("x" * 65, "cannot be used")):
        with pytest.raises(ConfigError, match=why):
            libraries.create(settings, bad)
    with pytest.raises(ConfigError, match="no library named 'Nope'.*Default, Home"):
        Settings.load({"index_dir": settings.index_dir, "library_name": "Nope"}, environ={})


def test_rename_keeps_the_folder_so_recorded_paths_stay_valid_and_delete_removes_it(settings, tmp_path):
    made = libraries.create(settings, "Home")
    renamed = libraries.rename(settings, "home", "Household")
    assert renamed.key == made.key and renamed.index_dir == made.index_dir
    assert json.loads((made.index_dir / libraries.META).read_text())["name"] == "Household"
    assert [lib.name for lib in libraries.listed(settings)] == ["Default", "Household"]
    with pytest.raises(ConfigError, match="keeps its name"):
        libraries.rename(settings, "Default", "Main")
    with pytest.raises(ConfigError, match="cannot be deleted"):
        libraries.delete(settings, "Default")
    libraries.delete(settings, "Household")
    assert [lib.name for lib in libraries.listed(settings)] == ["Default"]
    assert list((tmp_path / "libraries").iterdir()) == []


def run(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"}, **kwargs)


@pytest.mark.slow
def test_from_the_cli_each_library_answers_from_its_own_documents(tmp_path):
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (home / "lease.md").write_text("# Lease\n\nThe flat's lease was signed by Maria Olsen on 3 March 2024.\n")
    (work / "budget.md").write_text("# Budget\n\nThe travel budget for the Oslo office is 42,000 euros a year.\n")
    index = ["--index", str(tmp_path / "index")]
    assert run("ingest.py", str(home), *index, "--quiet").returncode == 0  # the default library
    made = run("ingest.py", "--library-name", "Work", str(work), *index, "--quiet")  # a new name makes the library
    assert made.returncode == 0, made.stderr
    listed = run("-m", "rag", "library", "list", *index).stdout
    assert "Default  (1 documents" in listed and "Work  (1 documents" in listed and str(work) in listed

    def first_hit(query: str, *where: str) -> str:
        result = run("-m", "rag", "search", query, "--json", *index, *where)
        assert result.returncode == 0, result.stderr
        hits = json.loads(result.stdout)["hits"]
        return hits[0]["path"] if hits else ""

    assert first_hit("travel budget Oslo", "--library-name", "work").endswith("budget.md")
    assert not first_hit("travel budget Oslo").endswith("budget.md")  # the default library does not hold it
    assert first_hit("who signed the lease").endswith("lease.md")
    assert not first_hit("who signed the lease", "--library-name", "Work").endswith("lease.md")

    assert run("-m", "rag", "library", "rename", "Work", "Office", *index).returncode == 0
    assert first_hit("travel budget Oslo", "--library-name", "Office").endswith("budget.md")
    missing = run("-m", "rag", "search", "x", "--library-name", "Work", *index)
    assert missing.returncode == 1 and "no library named 'Work'" in missing.stderr and "Office" in missing.stderr
    refused = run("-m", "rag", "library", "delete", "Office", *index, stdin=subprocess.DEVNULL)
    assert refused.returncode == 1 and "--yes" in refused.stderr
    assert run("-m", "rag", "library", "delete", "Office", "--yes", *index).returncode == 0
    assert "Office" not in run("-m", "rag", "library", "list", *index).stdout
    assert (work / "budget.md").exists()  # the user's own folder is never touched
    assert first_hit("who signed the lease").endswith("lease.md")  # the default library is as it was

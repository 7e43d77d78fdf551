"""`rag-chat`, the console command: as `pip install .` gives it (run from outside the project), and in the editable install."""

import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, stop_group

VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
COMMANDS = ("ingest", "ask", "search", "library", "serve")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`pip install .` (not editable) into a folder of its own; it holds the package and bin/rag-chat.

    It installs from a copy of the sources, so the build writes no build/ or egg-info into the shared checkout and
    nothing stale from an old build/ folder can slip into the package.
    """
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "rag", source / "rag", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    target = tmp_path_factory.mktemp("site-packages")
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                             "--disable-pip-version-check", "--quiet", "--target", str(target), str(source)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (target / "bin" / "rag-chat").is_file(), sorted(p.name for p in target.iterdir())
    return target


def make_user(base: Path) -> dict:
    """A user of the installed command: their own HOME and XDG_DATA_HOME, a folder outside the project to run in."""
    home, data, cwd = base / "home", base / "xdg-data", base / "work"
    for folder in (home, data, cwd):
        folder.mkdir()
    return {"home": home, "data": data, "cwd": cwd}


@pytest.fixture
def user(tmp_path) -> dict:
    return make_user(tmp_path)


def environment(installed: Path, user: dict, **extra: str) -> dict:
    # No RAG_* variable of the person running the tests may point the command somewhere else.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_") and k != "PYTHONPATH"}
    return {**env, "PYTHONPATH": str(installed), "HOME": str(user["home"]), "XDG_DATA_HOME": str(user["data"]),
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **extra}


def written_beside_the_package(installed: Path) -> list[str]:
    """Data folders in site-packages, where a checkout's defaults (./index, ./library beside rag/) would put them."""
    return [str(p) for base in (installed, installed / "rag") for name in ("index", "library", "libraries", "chats")
            if (p := base / name).exists()]


def rag_chat(installed: Path, user: dict, *args: str, env: dict | None = None, timeout: int = 300):
    """Run the installed bin/rag-chat with the interpreter that installed it (its shebang names the same one)."""
    return subprocess.run([sys.executable, str(installed / "bin" / "rag-chat"), *args], cwd=user["cwd"],
                          capture_output=True, text=True, timeout=timeout, env=env or environment(installed, user))


def test_the_package_version_is_pyprojects():
    import rag

    assert rag.__version__ == VERSION


def test_installed_version(installed, user):
    result = rag_chat(installed, user, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"rag-chat {VERSION}"


def test_the_script_runs_the_installed_package_not_the_checkout(installed, user):
    probe = "import rag, rag.console; print(rag.__file__)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=user["cwd"], capture_output=True, text=True,
                            env=environment(installed, user))
    assert Path(result.stdout.strip()).is_relative_to(installed), result.stdout + result.stderr


def test_installed_help_lists_the_commands_with_examples(installed, user):
    for args in (["--help"], []):
        result = rag_chat(installed, user, *args)
        assert result.returncode == 0, result.stderr
        listed = result.stdout.split("commands:", 1)[1].split("\n\n", 1)[0]
        assert [line.split()[0] for line in listed.strip().splitlines()] == list(COMMANDS)
        examples = result.stdout.split("examples:", 1)[1]
        for command in COMMANDS:
            assert f"rag-chat {command}" in examples
        # The default index it names is the user's data folder, not the installed package's.
        assert str(user["data"] / "rag-chat" / "index") in result.stdout


def test_installed_ingest_help_shows_its_own_examples(installed, user):
    result = rag_chat(installed, user, "ingest", "--help")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: rag-chat ingest")
    assert "examples:\n  rag-chat ingest ~/Documents" in result.stdout
    assert "python ingest.py" not in result.stdout


def test_installed_subcommand_help_names_rag_chat(installed, user):
    for command in ("ask", "search", "library", "serve"):
        result = rag_chat(installed, user, command, "--help")
        assert result.returncode == 0, (command, result.stderr)
        assert result.stdout.startswith(f"usage: rag-chat {command}"), (command, result.stdout[:200])
    assert "examples:\n  rag-chat serve " in rag_chat(installed, user, "serve", "--help").stdout


def test_an_unknown_command_names_the_valid_ones(installed, user):
    result = rag_chat(installed, user, "injest", "notes")
    assert result.returncode == 2
    assert result.stdout == ""
    error = result.stderr.strip()
    assert len(error.splitlines()) == 1 and "'injest'" in error
    assert all(command in error for command in COMMANDS)


def test_help_and_version_import_no_model_or_ui_library(installed, user):
    heavy = ("torch", "gradio", "sentence_transformers", "llama_cpp", "faiss", "numpy", "transformers")
    probe = ("import sys; from rag.console import main; main(sys.argv[1:]);"
             f"print('loaded:', sorted(m for m in {heavy!r} if m in sys.modules))")
    for args in (["--help"], ["--version"], ["nonsense"]):
        result = subprocess.run([sys.executable, "-c", probe, *args], cwd=user["cwd"], capture_output=True, text=True,
                                env=environment(installed, user))
        assert result.stdout.strip().splitlines()[-1] == "loaded: []", (args, result.stdout, result.stderr)


def test_installed_library_commands_keep_data_in_the_users_data_folder(installed, user):
    created = rag_chat(installed, user, "library", "create", "Work")
    assert created.returncode == 0, created.stderr
    listed = rag_chat(installed, user, "library", "list")
    assert listed.returncode == 0, listed.stderr
    data = user["data"] / "rag-chat"
    assert "Work" in listed.stdout and str(data) in listed.stdout
    assert list(data.rglob("library.json")), sorted(map(str, data.rglob("*")))
    assert written_beside_the_package(installed) == []
    assert list(user["cwd"].iterdir()) == []  # nor in the folder it ran in


def test_without_xdg_data_home_the_data_goes_to_local_share(installed, user):
    env = environment(installed, user)
    del env["XDG_DATA_HOME"]
    result = rag_chat(installed, user, "--help", env=env)
    assert str(user["home"] / ".local" / "share" / "rag-chat" / "index") in result.stdout


def test_a_checkout_keeps_its_index_in_the_project(monkeypatch, tmp_path):
    from rag import config

    assert config.DEFAULT_INDEX_DIR == ROOT / "index" and config.DEFAULT_LIBRARY_DIR == ROOT / "library"
    monkeypatch.setattr(config, "PROJECT_DIR", tmp_path / "site-packages")  # no pyproject.toml beside rag/
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # the XDG spec: a relative path is ignored
    assert config._data_dir() == tmp_path / "home" / ".local" / "share" / "rag-chat"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert config._data_dir() == tmp_path / "data" / "rag-chat"


def write_notes(folder: Path) -> Path:
    """Two small Markdown files on unrelated subjects, so a search has one right answer."""
    folder.mkdir()
    (folder / "sourdough.md").write_text("# Sourdough\n\nFeed the starter with rye flour and water every morning; "
                                         "bake the loaf at 250 degrees in a covered cast iron pot.\n")
    (folder / "bicycle.md").write_text("# Bicycle repair\n\nTo fix a puncture, take the inner tube out, find the hole "
                                       "in a bowl of water and glue a rubber patch over it.\n")
    return folder


@pytest.fixture(scope="module")
def notes_index(installed, tmp_path_factory) -> tuple[dict, Path]:
    """`rag-chat ingest NOTES --index IDX` by the installed command, with the real bundled embedder."""
    user = make_user(tmp_path_factory.mktemp("indexing-user"))
    index = user["home"] / "idx"
    ingested = rag_chat(installed, user, "ingest", str(write_notes(user["home"] / "notes")), "--index", str(index), "--quiet")
    assert ingested.returncode == 0, ingested.stderr
    assert "2 added" in ingested.stdout, ingested.stdout
    return user, index


@pytest.mark.slow
def test_installed_ingest_then_search_finds_the_right_file(installed, notes_index):
    user, index = notes_index
    for query, expected in (("how do I patch a punctured inner tube", "bicycle.md"),
                            ("feeding a rye starter before baking bread", "sourdough.md")):
        found = rag_chat(installed, user, "search", query, "--json", "--index", str(index))
        assert found.returncode == 0, found.stderr
        hits = json.loads(found.stdout)["hits"]
        assert Path(hits[0]["path"]).name == expected, hits
    assert not (user["data"] / "rag-chat" / "index").exists()  # --index was followed


@pytest.mark.slow
def test_installed_ingest_without_index_uses_the_users_data_folder(installed, user):
    ingested = rag_chat(installed, user, "ingest", str(write_notes(user["home"] / "notes")), "--quiet")
    assert ingested.returncode == 0, ingested.stderr
    assert (user["data"] / "rag-chat" / "index" / "CURRENT").is_file()
    assert written_beside_the_package(installed) == []


@pytest.mark.slow
def test_installed_serve_answers_on_loopback(installed, notes_index, tmp_path):
    user, index = notes_index
    port = free_port()
    log = open(tmp_path / "serve.log", "w+")
    process = subprocess.Popen([sys.executable, str(installed / "bin" / "rag-chat"), "serve", "--index", str(index),
                                "--library", str(tmp_path / "uploads"), "--port", str(port)], cwd=user["cwd"],
                               stdout=log, stderr=subprocess.STDOUT, env=environment(installed, user), start_new_session=True)
    try:
        deadline = time.time() + 180
        while True:
            if process.poll() is not None:
                log.seek(0)
                pytest.fail(f"rag-chat serve exited with {process.returncode}: {log.read()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    assert page.status == 200
                    assert b"<html" in page.read(4096).lower()
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.time() > deadline:
                    pytest.fail("rag-chat serve did not answer within 180 s")
                time.sleep(0.5)
        log.seek(0)
        assert f"Serving on http://127.0.0.1:{port}" in log.read()
        assert written_beside_the_package(installed) == []
    finally:
        stop_group(process)
        log.close()


def test_the_editable_install_has_the_command():
    """`make install` installs the checkout editable; its rag-chat runs the checkout, with the project's index."""
    script = Path(sys.executable).parent / "rag-chat"
    assert script.is_file(), f"{script} is missing: run `make install` (or pip install -e .) again"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    result = subprocess.run([str(script), "--version"], capture_output=True, text=True, env=env, cwd="/")
    assert result.returncode == 0 and result.stdout.strip() == f"rag-chat {VERSION}", result.stderr
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, env=env, cwd="/")
    assert str(ROOT / "index") in result.stdout


def test_main_returns_the_status_in_process(capsys):
    from rag.console import main

    assert main(["--version"]) == 0 and capsys.readouterr().out == f"rag-chat {VERSION}\n"
    assert main(["search", "--help"]) == 0 and capsys.readouterr().out.startswith("usage: rag-chat search")
    assert main(["library"]) == 2 and "rag-chat library: error" in capsys.readouterr().err
    assert main(["--frobnicate"]) == 2 and "unknown option '--frobnicate'" in capsys.readouterr().err

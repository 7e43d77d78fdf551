"""The command-line contract, through real processes as a user runs them."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CORPUS, ROOT


def run(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=full_env)


@pytest.fixture(scope="module")
def cli_index(tmp_path_factory) -> Path:
    """An index made by `python ingest.py` from corpus/ plus one broken file."""
    folder = tmp_path_factory.mktemp("docs")
    (folder / "corrupt.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    index = tmp_path_factory.mktemp("cli-index")
    result = run("ingest.py", str(CORPUS), str(folder), "--index", str(index))
    assert result.returncode == 0, result.stderr
    assert "corrupt.pdf" in result.stderr and "damaged" in result.stderr  # named, with the reason
    assert "failed" in result.stdout and "11 added" in result.stdout
    assert "%|" in result.stderr  # the progress bar
    return index


def test_ask_json_cites_real_corpus_files(cli_index):
    result = run("-m", "rag", "ask", "What is the formula for the memory used by the KV cache?", "--json",
                 "--index", str(cli_index), env={"RAG_TEMPERATURE": "0"})
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(payload) >= {"answer", "sources"}
    numbers = {s["n"] for s in payload["sources"]}
    for source in payload["sources"]:
        assert set(source) >= {"n", "path", "page", "text", "score"}
        assert Path(source["path"]).parent == CORPUS and Path(source["path"]).is_file()
    cited = [int(n) for n in __import__("re").findall(r"\[(\d+)\]", payload["answer"])]
    assert cited and set(cited) <= numbers
    assert "kv-cache.md" in [Path(s["path"]).name for s in payload["sources"]]


def test_search_json_ranks_passages_without_the_model(cli_index):
    result = run("-m", "rag", "search", "LoRA rank r and alpha", "-k", "3", "--json", "--index", str(cli_index))
    assert result.returncode == 0, result.stderr
    hits = json.loads(result.stdout)["hits"]
    assert len(hits) == 3
    assert Path(hits[0]["path"]).name == "fine-tuning-and-lora.md"
    assert all(set(h) >= {"path", "page", "text", "score"} for h in hits)


def test_search_in_restricts_to_a_folder_or_file(cli_index):
    only = CORPUS / "sampling.md"
    result = run("-m", "rag", "search", "memory formula of the KV cache", "--json", "--in", str(only), "--index", str(cli_index))
    hits = json.loads(result.stdout)["hits"]
    assert hits and {h["path"] for h in hits} == {str(only)}


def test_ask_abstains_on_a_question_the_documents_do_not_cover(cli_index):
    result = run("-m", "rag", "ask", "What is the capital of Peru?", "--json", "--index", str(cli_index))
    payload = json.loads(result.stdout)
    assert payload["abstained"] is True and payload["sources"] == [] and "do not cover" in payload["answer"]


def test_index_location_comes_from_rag_index(cli_index):
    result = run("-m", "rag", "search", "temperature", "--json", env={"RAG_INDEX": str(cli_index)})
    assert result.returncode == 0 and json.loads(result.stdout)["hits"]


def test_errors_are_one_sentence_not_a_traceback(tmp_path, cli_index):
    missing = run("-m", "rag", "search", "anything", "--index", str(tmp_path / "none"))
    assert missing.returncode == 1
    assert "No index in" in missing.stderr and "Traceback" not in missing.stderr
    bad_model = run("-m", "rag", "ask", "What does the KV cache store?", "--index", str(cli_index),
                    "--model", str(tmp_path / "x.gguf"))
    assert bad_model.returncode == 1
    assert "x.gguf does not exist" in bad_model.stderr and "Traceback" not in bad_model.stderr


def test_list_and_remove(tmp_path):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "page.html").write_text("<html><body><h1>Tea</h1><p>Green tea is steamed, black tea is oxidised.</p></body></html>")
    from tests.test_loaders import make_docx

    make_docx(folder / "memo.docx", [("Heading1", "Budget"), (None, "The travel budget for the team is 900 euros.")])
    index = tmp_path / "index"
    assert run("ingest.py", str(folder), "--index", str(index), "--quiet").returncode == 0
    listed = run("ingest.py", "--list", "--index", str(index))
    assert "page.html  (1 chunks)" in listed.stdout and "memo.docx  (1 chunks)" in listed.stdout
    found = run("-m", "rag", "search", "travel budget", "--json", "--index", str(index))
    top = json.loads(found.stdout)["hits"][0]
    assert top["path"].endswith("memo.docx") and top["heading"] == "Budget"
    removed = run("ingest.py", "--remove", str(folder / "memo.docx"), "--index", str(index))
    assert removed.returncode == 0 and "removed" in removed.stdout
    assert "memo.docx" not in run("ingest.py", "--list", "--index", str(index)).stdout


def test_exit_codes_say_whether_anything_usable_was_given(tmp_path):
    index = tmp_path / "index"
    nothing = run("ingest.py", str(tmp_path / "missing-folder"), "--index", str(index), "--quiet")
    assert nothing.returncode == 1 and "no such file or folder" in nothing.stderr
    (tmp_path / "good.md").write_text("# Good\nA fine note about rivers and bridges.\n")
    (tmp_path / "bad.txt").write_bytes(b"\x00\x01\x02" * 100)
    mixed = run("ingest.py", str(tmp_path / "good.md"), str(tmp_path / "bad.txt"), "--index", str(index), "--quiet")
    assert mixed.returncode == 0 and "bad.txt: looks like binary data" in mixed.stderr
    again = run("ingest.py", str(tmp_path / "good.md"), "--index", str(index), "--quiet")
    assert again.returncode == 0 and "1 unchanged" in again.stdout


def test_ask_prints_the_evidence_before_the_answer(cli_index):
    """The evidence is printed, and flushed, as soon as retrieval ends; the model's answer is written below it."""
    process = subprocess.Popen([sys.executable, "-m", "rag", "ask", "How many bytes does a Q4_0 block of 32 weights take?",
                                "--index", str(cli_index)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "RAG_TEMPERATURE": "0"})
    try:
        out, err = process.communicate(timeout=300)
    finally:
        process.kill()
    assert process.returncode == 0, err
    evidence = out.index("Evidence from your documents")
    written = out.index("Answer (being written")
    assert evidence < written
    assert "Checked answer" in out[written:] or "best evidence, quoted" in out[written:]
    assert "18 bytes" in out[evidence:written]
    assert "llm-handbook.pdf, page 5" in out or "quantization-and-gguf.md" in out


def test_ingest_search_ask_list_and_remove_on_milvus(tmp_path, milvus_uri):
    """`--milvus URI` on ingest.py and `python -m rag`, as real processes against a Milvus Lite server."""
    index = tmp_path / "index"  # holds only the ingest lock and journal; the index itself is in Milvus
    milvus = ["--milvus", milvus_uri, "--index", str(index)]
    env = {"RAG_MILVUS_COLLECTION": "cli"}
    ingested = run("ingest.py", str(CORPUS), *milvus, "--quiet", env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert "11 added" in ingested.stdout and f"Milvus {milvus_uri}" in ingested.stdout
    assert not any(index.glob("gen-*"))  # nothing was written to the local index
    found = run("-m", "rag", "search", "LoRA rank r and alpha", "-k", "3", "--json", *milvus, env=env)
    assert found.returncode == 0, found.stderr
    assert Path(json.loads(found.stdout)["hits"][0]["path"]).name == "fine-tuning-and-lora.md"
    only = CORPUS / "sampling.md"
    within = run("-m", "rag", "search", "memory formula of the KV cache", "--json", "--in", str(only), env={**env, "RAG_MILVUS_URI": milvus_uri})
    hits = json.loads(within.stdout)["hits"]
    assert hits and {h["path"] for h in hits} == {str(only)}
    asked = run("-m", "rag", "ask", "What is the formula for the memory used by the KV cache?", "--json", *milvus,
                env={**env, "RAG_TEMPERATURE": "0"})
    assert asked.returncode == 0, asked.stderr
    payload = json.loads(asked.stdout.strip().splitlines()[-1])
    assert "kv-cache.md" in [Path(s["path"]).name for s in payload["sources"]] and payload["answer"]
    removed = run("ingest.py", "--remove", str(only), *milvus, env=env)
    assert removed.returncode == 0 and "removed" in removed.stdout
    listed = run("ingest.py", "--list", *milvus, env=env)
    assert "10 documents" in listed.stdout and "sampling.md" not in listed.stdout


def test_an_unreachable_milvus_is_one_sentence(tmp_path):
    result = run("-m", "rag", "search", "anything", "--milvus", "http://127.0.0.1:1", "--index", str(tmp_path / "index"))
    assert result.returncode == 1
    assert "Cannot reach Milvus at http://127.0.0.1:1" in result.stderr and "Traceback" not in result.stderr

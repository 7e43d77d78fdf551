"""Several app processes, one library: two apps and an ingest against one Milvus server and one model server.

Everything is real and on 127.0.0.1: milvus-lite's server, llama-cpp-python's OpenAI-compatible server
with the bundled GGUF, two `python app.py` processes with a password, and `python ingest.py`.
"""

from __future__ import annotations

import base64
import shutil
import urllib.error
import urllib.request

import pytest

from tests.conftest import CORPUS, LLM_KEY, running_app
from tests.test_cli import run

pytestmark = pytest.mark.slow

PASSWORD = "ann:correct-horse-7"
KV_QUESTION = "What does the KV cache store?"
GARDEN_QUESTION = "When was the zucchini bed planted, and which variety?"


def _ask(url: str, header: str, question: str) -> tuple[str, str]:
    from gradio_client import Client

    client = Client(url, verbose=False, headers={"Authorization": header})
    _, chat, sources = client.predict(question, [], [], api_name="/ask")
    content = chat[-1]["content"]
    answer = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return answer, sources


def test_two_apps_and_an_ingest_share_one_milvus_and_one_model_server(milvus_uri, llm_server, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("kv-cache.md", "sampling.md"):
        shutil.copy(CORPUS / name, docs / name)
    env = {"RAG_MILVUS_URI": milvus_uri, "RAG_MILVUS_COLLECTION": "shared_library", "RAG_LLM_URL": llm_server,
           "RAG_LLM_KEY": LLM_KEY, "RAG_AUTH": PASSWORD, "RAG_TEMPERATURE": "0"}
    ingested = run("ingest.py", str(docs), "--index", str(tmp_path / "first"), env=env)
    assert ingested.returncode == 0, ingested.stderr
    assert "2 added" in ingested.stdout
    header = "Basic " + base64.b64encode(PASSWORD.encode()).decode()

    with running_app("--index", str(tmp_path / "a"), "--library", str(tmp_path / "lib-a"), env=env, ready=header) as one, \
         running_app("--index", str(tmp_path / "b"), "--library", str(tmp_path / "lib-b"), env=env, ready=header) as two:
        for url in (one, two):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url, timeout=30)
            assert refused.value.code == 401, "each process asks for the password"
            answer, sources = _ask(url, header, KV_QUESTION)
            assert "kv-cache.md" in sources and "[1]" in answer, (answer, sources)
            assert "Cannot answer" not in answer

        # An ingest from a third process; both apps answer from it without a restart.
        notes = tmp_path / "notes"
        notes.mkdir()
        (notes / "garden-log.md").write_text("# Garden log\n\nThe zucchini bed by the north fence was planted on the "
                                             "ninth of May, with a variety called Black Beauty.\n", encoding="utf-8")
        added = run("ingest.py", str(notes), "--index", str(tmp_path / "third"), env=env)
        assert added.returncode == 0 and "1 added" in added.stdout, added.stdout + added.stderr
        for url in (one, two):
            answer, sources = _ask(url, header, GARDEN_QUESTION)
            assert "garden-log.md" in sources, sources
            assert "Black Beauty" in answer or "ninth of May" in answer, answer

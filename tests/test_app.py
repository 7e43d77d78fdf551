"""The Gradio app as a user reaches it: a real server on 127.0.0.1, asked through gradio_client."""

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(corpus_index):
    port = free_port()
    process = subprocess.Popen([sys.executable, "app.py", "--index", str(corpus_index), "--port", str(port)],
                               cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env={**__import__("os").environ, "RAG_TEMPERATURE": "0"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if process.poll() is not None:
            pytest.fail(f"app exited: {process.stdout.read()}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(1)
    else:
        process.kill()
        pytest.fail("app did not start within 180 s")
    yield url
    process.terminate()
    process.wait(timeout=30)


def test_the_page_is_served_on_loopback(server):
    html = urllib.request.urlopen(server, timeout=10).read().decode()
    assert "Chat with your documents" in html


def test_a_question_gets_a_streamed_cited_answer_with_sources(server):
    from gradio_client import Client

    client = Client(server, verbose=False)
    job = client.submit("How are the LoRA matrices A and B initialised?", [], [], api_name="/ask")
    updates = list(job)  # every streamed update
    question_box, chat, sources = job.result()
    assert len(updates) > 3  # the answer arrived in pieces, not at once
    assert question_box == ""
    assert [m["role"] for m in chat] == ["user", "assistant"]
    answer = " ".join(part["text"] for part in chat[-1]["content"] if part.get("type") == "text")
    assert "[1]" in sources and "fine-tuning-and-lora.md" in sources
    assert answer.strip() and "Cannot answer" not in answer


def test_search_only_in_one_document(server, corpus_index):
    from gradio_client import Client

    from tests.conftest import CORPUS

    client = Client(server, verbose=False)
    only = str(CORPUS / "rlhf.md")
    _, _, sources = client.predict("What does the reward model learn from?", [], [only], api_name="/ask")
    assert "rlhf.md" in sources
    assert all(name not in sources for name in ("kv-cache.md", "sampling.md", "tokenization.md"))


def test_cited_documents_open_from_the_app_and_nothing_else_does(server, corpus_index):
    import hashlib
    import urllib.error

    from tests.conftest import CORPUS

    pdf = (CORPUS / "llm-handbook.pdf").read_bytes()
    with urllib.request.urlopen(f"{server}doc/{hashlib.sha256(pdf).hexdigest()}", timeout=10) as response:
        assert response.read() == pdf
        assert response.headers["Content-Type"] == "application/pdf"
    for bad in ("doc/" + "0" * 64, "doc/..%2F..%2Fetc%2Fpasswd", "doc/%2Fetc%2Fpasswd"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server + bad, timeout=10)
        assert refused.value.code == 404


def test_sources_link_to_the_cited_page(server):
    from gradio_client import Client

    client = Client(server, verbose=False)
    _, _, sources = client.predict("How many bytes does a Q4_0 block of 32 weights take?", [], [], api_name="/ask")
    assert "/doc/" in sources and "#page=" in sources  # the PDF source opens at its page

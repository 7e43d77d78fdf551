"""The Gradio app as a user reaches it: a real server on 127.0.0.1, asked through gradio_client."""

import urllib.request

import pytest

from tests.conftest import running_app


@pytest.fixture(scope="module")
def server(corpus_index, tmp_path_factory):
    library = tmp_path_factory.mktemp("library")
    with running_app("--index", str(corpus_index), "--library", str(library), env={"RAG_MAX_FILE_MB": "1"}) as url:
        yield url


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


def test_listening_beyond_this_machine_without_a_password_is_refused(corpus_index):
    import subprocess
    import sys

    from tests.conftest import ROOT

    refused = subprocess.run([sys.executable, "app.py", "--host", "0.0.0.0", "--index", str(corpus_index)], cwd=ROOT,
                             capture_output=True, text=True, timeout=120, env={**__import__("os").environ, "RAG_AUTH": ""})
    assert refused.returncode == 2
    assert "--host 0.0.0.0" in refused.stderr and "--auth USER:PASSWORD" in refused.stderr


def test_with_a_password_every_address_asks_for_it(corpus_index, tmp_path):
    import base64
    import hashlib
    import urllib.error

    from gradio_client import Client

    from tests.conftest import CORPUS

    header = "Basic " + base64.b64encode(b"alice:correct horse").decode()
    note = hashlib.sha256((CORPUS / "rlhf.md").read_bytes()).hexdigest()
    with running_app("--index", str(corpus_index), "--library", str(tmp_path), env={"RAG_AUTH": "alice:correct horse"},
                     ready=header) as url:
        for path in ("", "config", f"doc/{note}", "gradio_api/info"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url + path, timeout=10)
            assert refused.value.code == 401, path
        with urllib.request.urlopen(urllib.request.Request(f"{url}doc/{note}", headers={"Authorization": header}),
                                    timeout=10) as response:
            assert response.read() == (CORPUS / "rlhf.md").read_bytes()
        client = Client(url, verbose=False, headers={"Authorization": header})
        _, _, sources = client.predict("What does the reward model learn from?", [], [], api_name="/ask")
        assert "rlhf.md" in sources


def _post_file(url: str, name: str, data: bytes) -> tuple[int, str]:
    import urllib.error
    import uuid

    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"{name}\"\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(url + "gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def test_hostile_requests_are_refused(server, corpus_index):
    import urllib.error

    assert _post_file(server, "big.md", b"a" * (1024 * 1024 + 1))[0] == 413  # over RAG_MAX_FILE_MB
    status, stored = _post_file(server, "../../escape.md", b"# hi\n")
    assert status == 200 and "/../" not in stored and stored.count("escape.md") == 1
    for outside in ("gradio_api/file=/etc/passwd", f"gradio_api/file={corpus_index}/CURRENT",
                    "gradio_api/file=..%2F..%2Fetc%2Fpasswd", "doc/..%2F..%2Fetc%2Fpasswd"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(server + outside, timeout=10)
        assert refused.value.code in (403, 404), outside


def test_the_checked_answer_comes_first_and_unchecked_sentences_follow_marked():
    """Rendering: a quoted headline when nothing passed, a code block kept whole, no sentence shown twice."""
    from app import answer_markdown, sources_markdown
    from rag.evidence import Evidence
    from rag.pipeline import Answer, Found, Source
    from rag.verify import SentenceCheck, Support

    source = Source(1, "/notes/quant.md", None, "Quant types", "Q4_0 stores 32 weights in 18 bytes per block.", 1.0,
                    ("Q4_0 stores 32 weights in 18 bytes per block.",), ("handbook.pdf, page 5",))
    found = (Evidence(1, "Q4_0 stores 32 weights in 18 bytes per block.", 0.8, "Q4_0 stores 32 weights in 18 bytes per block.",
                      ("handbook.pdf, page 5",)),)
    wrong = SentenceCheck("It takes 34 bytes [1].", (1,), False)
    code = SentenceCheck("```python\nx = 1. y = 2.\n```", (), False)
    quoted = Answer("How big is a Q4_0 block?", "“Q4_0 stores 32 weights in 18 bytes per block.” [1]", (source,),
                    sentences=(wrong, code), evidence=found, quoted=True)
    shown = answer_markdown(quoted)
    assert shown.startswith("> “Q4_0 stores") and "Quoted: the sentence in quotation marks is from your documents" in shown
    assert shown.index("18 bytes") < shown.index("*It takes 34 bytes [1].* ⚠️")  # unchecked, below, marked
    assert "```python\nx = 1. y = 2.\n```" in shown and shown.count("34 bytes") == 1
    pane = sources_markdown(quoted)
    assert pane.startswith("**Evidence**") and "also in handbook.pdf, page 5" in pane and "(cited)" in pane
    assert "**Q4_0 stores 32 weights in 18 bytes per block.**" in pane  # the quoted sentence, in bold in its passage
    early = sources_markdown(Found("How big is a Q4_0 block?", (source,), found))
    assert early.startswith("**Evidence**") and "Writing the answer" in early and "(cited)" not in early
    right = SentenceCheck("A Q4_0 block takes 18 bytes [1].", (1,), True, (Support(1, found[0].lead, 0.9),))
    mixed = Answer("How big is a Q4_0 block?", right.text, (source,), sentences=(wrong, right), evidence=found)
    assert answer_markdown(mixed).startswith("A Q4_0 block takes 18 bytes [1].")  # checked first, whatever the order


def test_the_app_answers_from_an_index_in_milvus(milvus_uri, embedder, settings_factory, tmp_path):
    import hashlib

    from gradio_client import Client

    from rag.indexing import ingest
    from tests.conftest import CORPUS

    settings = settings_factory(tmp_path / "index", milvus_uri=milvus_uri, milvus_collection="app")
    assert not ingest([CORPUS], settings, embedder).failed
    with running_app("--milvus", milvus_uri, "--index", str(tmp_path / "index"), "--library", str(tmp_path / "library"),
                     env={"RAG_MILVUS_COLLECTION": "app"}) as url:
        assert "Chat with your documents" in urllib.request.urlopen(url, timeout=10).read().decode()
        _, chat, sources = Client(url, verbose=False).predict("How are the LoRA matrices A and B initialised?", [], [],
                                                              api_name="/ask")
        assert "[1]" in sources and "fine-tuning-and-lora.md" in sources
        pdf = (CORPUS / "llm-handbook.pdf").read_bytes()
        with urllib.request.urlopen(f"{url}doc/{hashlib.sha256(pdf).hexdigest()}", timeout=10) as response:
            assert response.read() == pdf  # cited files open from the Milvus index's documents too

"""The model behind an OpenAI-compatible server: llama-cpp-python's own server with the bundled GGUF, and small
HTTP servers that fail in the ways real ones do."""

import contextlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rag.errors import ConfigError, ModelServerError
from tests.conftest import CORPUS, LLM_KEY, free_port
from tests.test_cli import run

MESSAGES = [{"role": "system", "content": "You answer with numbered sources."},
            {"role": "user", "content": "Sources:\n[1] The KV cache stores keys and values.\n[2] Prefill reads the prompt.\n\n"
                                        "Question: reply with a bulleted list and a Python code block about the cache."}]


def server_settings(url: str, **changes):
    from rag.config import Settings

    return Settings(**{"llm_url": url, "llm_key": LLM_KEY, "temperature": 0.0, **changes})


@pytest.fixture(scope="module")
def served(llm_server):
    from rag.generate import choose

    return choose(server_settings(llm_server))


@pytest.fixture(scope="module")
def local():
    from rag.config import Settings
    from rag.generate import LlamaGenerator

    return LlamaGenerator(Settings(temperature=0.0))


def test_the_url_comes_from_rag_llm_url_and_a_bad_one_is_refused():
    from rag.config import Settings

    assert Settings.load(environ={"RAG_LLM_URL": "http://gpu-box:8000/v1", "RAG_LLM_TIMEOUT": "30"}).llm_url == "http://gpu-box:8000/v1"
    assert "secret" not in repr(Settings(llm_key="secret"))
    with pytest.raises(ConfigError, match="llm_url.*http://127.0.0.1:8000"):
        Settings(llm_url="localhost:8000")


def test_the_grammar_holds_the_served_model_and_it_writes_what_the_local_one_writes(served, local):
    """The same rule as the in-process test in test_generate.py, through the server's `grammar` field."""
    from rag.generate import citation_grammar

    pieces = list(served.stream(MESSAGES, 160, 0.0, grammar=citation_grammar(2)))
    text = "".join(pieces)
    assert len(pieces) > 1 and served.grammar_supported is True
    assert "```" not in text and "\n" not in text and not text.lstrip().startswith(("-", "*"))
    sentences = re.split(r"(?<=\]\.)\s+|(?<=\.\s\[\d\])\s+", text.strip())
    assert 1 <= len(sentences) <= 3, text
    for sentence in sentences:
        assert re.search(r"(?: \[[12]\]\.|\. \[[12]\])$", sentence), sentence
    free = "".join(served.stream(MESSAGES, 60, 0.0))
    assert free != text  # the grammar reached the server and changed what it wrote
    # The server applies the GGUF's chat template and the local sampling settings: the same words, greedy.
    assert text == "".join(local.stream(MESSAGES, 160, 0.0, grammar=citation_grammar(2)))


def test_token_counts_come_from_the_server_and_match_the_local_ones(served, local):
    from rag.generate.server import estimate_tokens

    texts = ["Hello", "<|im_start|>system wörld ∑ 1234567 [1].", (CORPUS / "kv-cache.md").read_text(encoding="utf-8")]
    assert [served.count_tokens(t) for t in texts] == [local.count_tokens(t) for t in texts]
    assert served.tokenizer == "/extras/tokenize"
    hard = ["1234567890 3.14159 2026-12-01", "价格是一千二百元", "x = f(y) + g[z]**2;", "naïve café", "    a\n\n\tb"]
    for text in [*hard, *(p.read_text(encoding="utf-8") for p in CORPUS.glob("*.md"))]:
        assert estimate_tokens(text) >= local.count_tokens(text), text[:40]  # servers without a tokenizer: errs high


def test_the_answer_streams_and_cites_real_sources_through_the_server(llm_server, corpus_index, embedder, settings_factory):
    from rag import citations
    from rag.generate.server import ServerGenerator
    from rag.pipeline import Answer, Found, Partial, Pipeline

    pipeline = Pipeline(settings_factory(corpus_index, llm_url=llm_server, llm_key=LLM_KEY), embedder=embedder)
    events = list(pipeline.ask_stream("What does the KV cache store, and why does it speed up generation?"))
    assert isinstance(pipeline.generator, ServerGenerator)
    assert isinstance(events[0], Found) and isinstance(events[-1], Answer)
    partials = [e for e in events if isinstance(e, Partial)]
    assert len(partials) > 1
    for before, after in zip(partials[:-2], partials[1:-1]):
        assert after.text.startswith(before.text)
    answer = events[-1]
    assert not answer.abstained and citations.parse(answer.text)
    assert "kv-cache.md" in {Path(s.path).name for s in answer.cited}
    for check in answer.sentences:  # the default grammar, through the server: every sentence ends with a real citation
        assert check.citations and all(1 <= n <= len(answer.sources) for n in check.citations), check.text


def test_python_m_rag_ask_with_llm_url_cites_corpus_files(llm_server, corpus_index):
    result = run("-m", "rag", "ask", "What is the formula for the memory used by the KV cache?", "--json",
                 "--index", str(corpus_index), "--llm-url", f"{llm_server}/v1",
                 env={"RAG_TEMPERATURE": "0", "RAG_LLM_KEY": LLM_KEY, "RAG_MODEL": "/nonexistent.gguf"})
    assert result.returncode == 0, result.stderr  # RAG_MODEL is never opened: the server answers
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    cited = {int(n) for n in re.findall(r"\[(\d+)\]", payload["answer"])}
    sources = {s["n"]: Path(s["path"]) for s in payload["sources"]}
    assert cited and cited <= set(sources)
    assert all(sources[n].parent == CORPUS and sources[n].is_file() for n in cited)
    assert "kv-cache.md" in {p.name for p in sources.values()}


def test_a_server_that_is_down_is_one_sentence_in_the_cli(corpus_index, monkeypatch, capsys):
    """Through the CLI's own entry point (what `python -m rag` runs), with RAG_LLM_URL at a closed port."""
    from rag.cli import main

    closed = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("RAG_LLM_URL", closed)
    assert main(["ask", "What does the KV cache store?", "--index", str(corpus_index)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1  # one line
    assert err.startswith(f"error: The model server at {closed} refused the connection") and "RAG_LLM_URL" in err


def test_a_server_that_is_down_is_one_sentence_in_the_app(corpus_index, embedder, settings_factory):
    from app import respond
    from rag.pipeline import Pipeline

    closed = f"http://127.0.0.1:{free_port()}"
    pipeline = Pipeline(settings_factory(corpus_index, llm_url=closed), embedder=embedder)
    *_, (_, chat, _) = respond(pipeline, "What does the KV cache store?", [])
    assert chat[-1]["content"].startswith(f"**Cannot answer:** The model server at {closed} refused the connection")


def test_a_wrong_key_names_the_setting(llm_server):
    from rag.generate.server import ServerGenerator

    with pytest.raises(ModelServerError, match=r"answered HTTP 401 .*RAG_LLM_KEY"):
        ServerGenerator(server_settings(llm_server, llm_key="wrong"))


class Scripted(BaseHTTPRequestHandler):
    """A model server that lists a model, then answers chats as `script` says (status, headers, body, delay)."""

    script: dict = {}
    seen: list = []

    def do_GET(self):
        if self.path == "/v1/models":
            return self._send(200, {"data": [{"id": "tiny"}]})
        self._send(404, {"detail": "Not Found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append((self.path, body))
        if self.path != "/v1/chat/completions":
            return self._send(404, {"detail": "Not Found"})
        if "grammar" in body and self.script.get("strict"):
            return self._send(400, {"error": {"message": "Unrecognized request argument supplied: grammar"}})
        time.sleep(self.script.get("delay", 0))
        if "status" in self.script:
            return self._send(self.script["status"], {"error": {"message": "CUDA out of memory", "code": 500}})
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client may stop reading at an error
            for event in self.script.get("events", ()):
                self.wfile.write(f"data: {json.dumps(event)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")

    def _send(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def scripted(**script):
    Scripted.script, Scripted.seen = script, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Scripted)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def delta(text):
    return {"choices": [{"index": 0, "delta": {"content": text}}]}


def test_an_http_error_is_one_sentence_with_the_servers_words():
    from rag.generate.server import ServerGenerator

    with scripted(status=500) as url:
        generator = ServerGenerator(server_settings(url))
        with pytest.raises(ModelServerError) as failure:
            list(generator.stream(MESSAGES, 16, 0.0))
    assert str(failure.value) == (f"The model server at {url} answered HTTP 500 (CUDA out of memory); "
                                  "check the server's log.")


def test_an_error_inside_the_stream_and_a_slow_server_are_one_sentence():
    from rag.generate.server import ServerGenerator

    with scripted(events=[delta("The cache"), {"error": {"message": "context overflow"}}]) as url:
        pieces = ServerGenerator(server_settings(url)).stream(MESSAGES, 16, 0.0)
        assert next(pieces) == "The cache"
        with pytest.raises(ModelServerError, match=r"stopped the answer with an error \(context overflow\)"):
            next(pieces)
    with scripted(delay=2) as url:
        with pytest.raises(ModelServerError, match=f"The model server at {url} did not answer within 0.5 s"):
            list(ServerGenerator(server_settings(url, llm_timeout=0.5)).stream(MESSAGES, 16, 0.0))


def test_a_server_without_grammar_or_tokenizer_still_answers():
    """A strict OpenAI-style server refuses the grammar field: the answer is asked again without it."""
    from rag.generate.server import ServerGenerator, estimate_tokens

    with scripted(strict=True, events=[delta("Keys and values"), delta(" [1].")]) as url:
        generator = ServerGenerator(server_settings(url))
        assert generator.count_tokens("The KV cache stores keys.") == estimate_tokens("The KV cache stores keys.")
        assert generator.tokenizer == ""
        assert "".join(generator.stream(MESSAGES, 16, 0.0, grammar='root ::= "x"')) == "Keys and values [1]."
        assert generator.grammar_supported is False
        chats = [body for path, body in Scripted.seen if path == "/v1/chat/completions"]
    assert "grammar" in chats[0] and "grammar" not in chats[1]
    assert chats[1]["model"] == "tiny" and chats[1]["stream"] is True and chats[1]["seed"] == 0
    assert chats[1]["max_tokens"] == 16 and chats[1]["temperature"] == 0.0

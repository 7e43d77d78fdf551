"""Load: eight conversations at once against one app, each a question and a follow-up, bounded in count and time."""

import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.conftest import running_app
from tests.questions import corpus_questions

CONVERSATIONS = 8
FOLLOW_UP = "Tell me more about that."


def text_of(message: dict) -> str:
    content = message["content"]
    return content if isinstance(content, str) else " ".join(p.get("text", "") for p in content if isinstance(p, dict))


def test_eight_concurrent_conversations_all_finish_each_with_its_own_answers(corpus_index, tmp_path, capsys):
    from gradio_client import Client

    by_file = {}
    for question, file, _ in corpus_questions():
        by_file.setdefault(file, question)
    topics = list(by_file.items())[:CONVERSATIONS]
    assert len(topics) == CONVERSATIONS
    latencies: list[float] = []

    with running_app("--index", str(corpus_index), "--library", str(tmp_path / "library"),
                     env={"RAG_MAX_TOKENS": "48"}) as url:
        def converse(topic: tuple[str, str]):
            file, question = topic
            client = Client(url, verbose=False)
            chat, sources = [], []
            for asked in (question, FOLLOW_UP):
                started = time.perf_counter()
                _, chat, shown = client.predict(asked, chat, [], api_name="/ask")
                latencies.append(time.perf_counter() - started)
                sources.append(shown)
            return file, question, chat, sources

        with ThreadPoolExecutor(CONVERSATIONS) as pool:
            results = [f.result(timeout=600) for f in [pool.submit(converse, t) for t in topics]]

    for file, question, chat, sources in results:
        assert [m["role"] for m in chat] == ["user", "assistant", "user", "assistant"]
        assert [text_of(chat[0]), text_of(chat[2])] == [question, FOLLOW_UP]  # this conversation's own turns
        for answer in (chat[1], chat[3]):
            assert text_of(answer).strip() and "Cannot answer" not in text_of(answer)
        # Eight topics, eight different files: an answer handed to the wrong conversation would cite another file.
        assert Path(file).name in sources[0]
    latencies.sort()
    assert len(latencies) == 2 * CONVERSATIONS
    with capsys.disabled():
        print(f"\n{CONVERSATIONS} conversations x 2 questions at once: latency p50 {statistics.median(latencies):.1f} s, "
              f"p95 {latencies[int(0.95 * (len(latencies) - 1))]:.1f} s, max {latencies[-1]:.1f} s")

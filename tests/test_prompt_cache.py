"""Reusing the model's context between questions changes when the answer starts, never what it says."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def model(settings_factory, tmp_path_factory):
    from rag.generate import LlamaGenerator

    return LlamaGenerator(settings_factory(tmp_path_factory.mktemp("prompt-cache")))


def _prompt(pipeline, model, question, history=()):
    from rag.generate import build_messages, source_block

    hits = pipeline.search_turn(question, history)
    blocks = [source_block(n, h.chunk.label, h.chunk.text) for n, h in enumerate(hits, start=1)]
    return build_messages(question, blocks, list(history), model, 48)[0]


def _answer(model, messages, reuse: bool) -> str:
    model.reuse_context = reuse
    try:
        return "".join(model.stream(messages, 48, 0.0))
    finally:
        model.reuse_context = True


@pytest.mark.parametrize("first, then, follow_up", [
    ("What is the KV cache?", "How big does it get?", True),
    ("What is LoRA?", "What is top-p sampling?", False),
])
def test_a_next_question_reads_the_same_with_and_without_the_kept_context(pipeline, model, first, then, follow_up):
    turn = _prompt(pipeline, model, first)
    answer = _answer(model, turn, reuse=False)
    history = [{"role": "user", "content": first}, {"role": "assistant", "content": answer}] if follow_up else []
    nxt = _prompt(pipeline, model, then, history)
    warm = _answer(model, nxt, reuse=True)  # the context holds the first turn: its shared prefix is not evaluated again
    assert model._llm.n_tokens > 0
    cold = _answer(model, nxt, reuse=False)  # the whole prompt evaluated from the start
    assert warm == cold and warm.strip()


class Recording:
    """The pipeline's real model, recording the messages of every call."""

    def __init__(self, inner) -> None:
        self.inner, self.n_ctx, self.sent = inner, inner.n_ctx, []

    def count_tokens(self, text):
        return self.inner.count_tokens(text)

    def stream(self, messages, max_tokens, temperature, grammar=None):
        self.sent.append([dict(m) for m in messages])
        yield from self.inner.stream(messages, max_tokens, temperature, grammar=grammar)


def test_a_follow_up_continues_the_first_turn_as_the_model_saw_it_and_reads_the_same_cold(corpus_index, embedder,
                                                                                            settings_factory):
    from rag.generate import LlamaGenerator
    from rag.pipeline import Pipeline

    settings = settings_factory(corpus_index, reuse_turns=True)
    model = LlamaGenerator(settings)
    recording = Recording(model)
    live = Pipeline(settings, embedder=embedder, generator=recording)
    first = live.ask("What is the KV cache?")
    history = [{"role": "user", "content": "What is the KV cache?"}, {"role": "assistant", "content": first.text}]
    warm = live.ask("How big does it get?", history)
    before, after = recording.sent
    assert after[:2] == before[:2]  # the system prompt and the first prompt exactly as the model was given them...
    assert after[2]["role"] == "assistant" and after[2]["content"].strip()  # ...then what the model wrote: a shared prefix
    assert after[1]["content"].startswith("Sources:") and after[3]["content"].startswith("Sources:")
    model.reuse_context = False  # the same follow-up, every token evaluated again
    cold = live.ask("How big does it get?", history)
    assert warm.text == cold.text and warm.text.strip()
    plain = live.sibling(settings.with_(reuse_turns=False))  # the layout before: the question and checked answer
    plain.ask("How big does it get?", history)
    assert recording.sent[-1][1] == {"role": "user", "content": "What is the KV cache?"}


class DeclinesWhenContinued(Recording):
    """The real model, except that an answer to a continued follow-up (a prompt holding an earlier assistant turn
    as the model wrote it) comes out the way the small model sometimes writes one: its earlier pattern, no words."""

    def __init__(self, inner, written: str) -> None:
        super().__init__(inner)
        self.written = written

    def stream(self, messages, max_tokens, temperature, grammar=None):
        if any(m["role"] == "assistant" and m["content"] == self.written for m in messages):
            self.sent.append([dict(m) for m in messages])
            yield "The [1]."
            return
        yield from super().stream(messages, max_tokens, temperature, grammar=grammar)


def test_a_continued_follow_up_that_says_nothing_is_written_again_with_the_plain_layout(corpus_index, embedder,
                                                                                          settings_factory):
    from rag.generate import LlamaGenerator
    from rag.pipeline import Pipeline

    settings = settings_factory(corpus_index)  # the default: follow-ups continue the earlier turn
    assert settings.reuse_turns
    model = LlamaGenerator(settings)
    live = Pipeline(settings, embedder=embedder, generator=Recording(model))
    first = live.ask("What is the KV cache?")
    first_raw = live._said[(str(settings.index_dir), "What is the KV cache?")][1]
    scripted = DeclinesWhenContinued(model, first_raw)
    live._generator = scripted
    history = [{"role": "user", "content": "What is the KV cache?"}, {"role": "assistant", "content": first.text}]
    answer = live.ask("How big does it get?", history)
    continued, plain = scripted.sent
    assert any(m["content"] == first_raw for m in continued)  # first the continued layout...
    assert plain[1:3] == history  # ...then the question and checked answer, as with RAG_REUSE_TURNS=off
    assert live.rewritten == 1
    assert not answer.abstained and any(s.path.endswith("kv-cache.md") for s in answer.sources)
    off = live.sibling(settings.with_(reuse_turns=False)).ask("How big does it get?", history)
    assert answer.text == off.text  # what the plain layout writes, word for word

import pytest

from rag.errors import ModelError
from rag.generate import build_messages, check_gguf, repetition_start


class CountingGenerator:
    n_ctx = 600

    def count_tokens(self, text: str) -> int:
        return len(text.split())


def test_prompt_keeps_the_best_sources_that_fit():
    blocks = [f"[{i}] file{i}.md\n" + "word " * 150 for i in range(1, 6)]
    messages, fitted = build_messages("What is it?", blocks, [], CountingGenerator(), max_tokens=100)
    assert fitted == 2  # 600 - 100 - 64 leaves room for two 150-word sources beside the question
    assert messages[0]["role"] == "system" and "[1]" in messages[0]["content"]
    assert "[1] file1.md" in messages[-1]["content"] and "[3] file3.md" not in messages[-1]["content"]


def test_long_history_is_trimmed_oldest_first():
    history = [{"role": r, "content": f"turn{i} " + "x " * 40} for i in range(10) for r in ("user", "assistant")]
    messages, _ = build_messages("q", [], history, CountingGenerator(), max_tokens=100)
    kept = [m["content"].split()[0] for m in messages[1:-1]]
    assert kept and kept[-1] == "turn9" and "turn0" not in kept


def test_repetition_is_cut_at_the_first_repeated_sentence():
    text = "The cache stores keys and values. It grows with length. The cache stores keys and values. It"
    cut = repetition_start(text)
    assert text[:cut].strip() == "The cache stores keys and values. It grows with length."
    assert repetition_start("One sentence here. Another one there. Still") is None


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing.gguf", "does not exist"),
    (lambda p: p, "is a folder"),
    (lambda p: (p / "model.gguf").write_bytes(b"not a gguf at all") and p / "model.gguf", "is not a GGUF file"),
])
def test_bad_model_paths_get_one_clear_sentence(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(ModelError, match=message):
        check_gguf(str(path))


def test_truncated_gguf_is_reported_by_llama(tmp_path):
    from rag.config import Settings, bundled_model_path
    from rag.generate import LlamaGenerator

    broken = tmp_path / "cut.gguf"
    with open(bundled_model_path(), "rb") as source:
        broken.write_bytes(source.read(1_000_000))
    with pytest.raises(ModelError, match="could not be loaded"):
        LlamaGenerator(Settings(model=str(broken)))


@pytest.mark.slow
def test_the_grammar_holds_the_real_model_to_cited_plain_sentences(tmp_path):
    """Asked outright for a code block and a list, the bundled model still writes cited sentences with the grammar."""
    import re

    from rag.config import Settings
    from rag.generate import LlamaGenerator, citation_grammar, wants_code

    model = LlamaGenerator(Settings(index_dir=tmp_path, temperature=0.0))
    messages = [{"role": "system", "content": "You answer with numbered sources."},
                {"role": "user", "content": "Sources:\n[1] The KV cache stores keys and values.\n[2] Prefill reads the prompt.\n\n"
                                            "Question: reply with a bulleted list and a Python code block about the cache."}]
    text = "".join(model.stream(messages, 160, 0.0, grammar=citation_grammar(2)))
    assert "```" not in text and "\n" not in text and not text.lstrip().startswith(("-", "*"))
    pieces = re.split(r"(?<=\]\.)\s+|(?<=\.\s\[\d\])\s+", text.strip())
    assert 1 <= len(pieces) <= 3, text
    for piece in pieces:
        assert re.search(r"(?: \[[12]\]\.|\. \[[12]\])$", piece), piece  # ends with a citation of source 1 or 2
    free = "".join(model.stream(messages, 160, 0.0))
    assert free != text  # the grammar changed what the model wrote
    assert wants_code("Show me a code example for the cache") and not wants_code("What does the cache store?")


def test_the_grammar_names_only_sources_that_exist():
    from rag.generate import citation_grammar

    grammar = citation_grammar(3)
    assert 'number ::= "1" | "2" | "3"' in grammar and '"4"' not in grammar
    with pytest.raises(ValueError, match="at least one source"):
        citation_grammar(0)

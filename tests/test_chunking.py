from rag.chunking import Chunk, chunk_sections, place
from rag.loaders import Section


def words_of(chunks):
    return [w for c in chunks for w in c.text.split()]


def test_chunks_respect_the_token_budget_and_overlap(word_counter):
    text = " ".join(f"Sentence {i} is about topic {i % 5} here." for i in range(60))
    chunks = chunk_sections([Section("a.md", text, heading="Intro")], word_counter, max_tokens=50, overlap=10)
    assert len(chunks) > 3
    for chunk in chunks:
        assert word_counter(chunk.indexed_text) <= 50
    # Neighbours share whole sentences: the next chunk starts with the end of the previous one.
    for first, second in zip(chunks, chunks[1:]):
        head = second.text.split(". ")[0]
        assert head in first.text
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_no_text_is_lost_and_no_word_is_split(word_counter):
    original = " ".join(f"word{i}" for i in range(500))  # one long "sentence" with no full stop
    chunks = chunk_sections([Section("b.txt", original)], word_counter, max_tokens=40, overlap=0)
    assert words_of(chunks) == original.split()
    assert all(word_counter(c.text) <= 40 for c in chunks)


def test_paragraph_breaks_survive_and_metadata_is_kept(word_counter):
    section = Section("c.pdf", "First paragraph here.\n\nSecond paragraph there.", page=3, heading="A > B")
    [chunk] = chunk_sections([section], word_counter, max_tokens=100, overlap=10)
    assert chunk.text == "First paragraph here.\n\nSecond paragraph there."
    assert (chunk.path, chunk.page, chunk.heading) == ("c.pdf", 3, "A > B")
    assert chunk.indexed_text.startswith("A > B\n")
    assert chunk.label == "c.pdf, page 3, A > B"


def test_place_names_file_page_and_section():
    assert place("/x/notes.md", None, "") == "notes.md"
    assert place("/x/book.pdf", 31, "5.7.2 Loops") == "book.pdf, page 31, 5.7.2 Loops"


def test_bad_overlap_is_refused(word_counter):
    import pytest

    with pytest.raises(ValueError, match="overlap"):
        chunk_sections([Section("d.md", "text")], word_counter, max_tokens=10, overlap=10)
    with pytest.raises(ValueError, match="empty chunk"):
        Chunk("d.md", "  ", 0)


def test_real_tokenizer_keeps_every_corpus_chunk_within_the_model_limit(embedder):
    from rag import loaders
    from tests.conftest import CORPUS

    for path in sorted(CORPUS.glob("*.md")) + [CORPUS / "llm-handbook.pdf"]:
        chunks = chunk_sections(loaders.load(path), embedder.count_tokens, 200, 40)
        assert chunks, path
        for chunk in chunks:
            # all-MiniLM-L6-v2 truncates at 256 tokens; anything past it would be silently dropped.
            assert embedder.count_tokens(chunk.indexed_text) <= 200 <= embedder.max_tokens


def test_short_fragments_join_their_neighbours(word_counter):
    sections = [Section("e.md", "Short intro.", heading="Guide"),
                Section("e.md", " ".join(["Body words go here."] * 10), heading="Guide > Setup"),
                Section("e.md", "Tiny end.", heading="Guide > Notes")]
    chunks = chunk_sections(sections, word_counter, max_tokens=100, overlap=5, min_tokens=8)
    assert len(chunks) == 1
    assert chunks[0].text.startswith("Short intro.\n\nBody words") and chunks[0].text.endswith("Tiny end.")
    assert chunks[0].heading == "Guide"  # the path both sections share
    # Fragments on different pages stay apart: a citation's page must stay right.
    paged = [Section("f.pdf", "Page one line.", page=1), Section("f.pdf", "Page two line.", page=2)]
    assert [c.page for c in chunk_sections(paged, word_counter, 100, 5, min_tokens=8)] == [1, 2]

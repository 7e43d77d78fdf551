"""Support verdicts and evidence, with the real bundled embedder."""

from rag import verify

PASSAGES = {
    1: "Ranks start at 1, and the constant k is usually 60. Documents that both methods like rise to the top.",
    2: "LoRA learns two thin matrices. A starts with small random Gaussian values and B starts as all zeros.",
}


def test_sentences_keep_their_markers():
    text = "The constant is 60 [1]. B starts at zero. [2] Both rise [1][2].\n- a bullet point here"
    assert verify.sentences(text) == ["The constant is 60 [1].", "B starts at zero [2].", "Both rise [1][2].",
                                      "a bullet point here"]


def test_a_sentence_its_source_says_is_supported(embedder):
    [check] = verify.ground("The constant k is usually 60 [1].", PASSAGES, embedder)
    assert check.supported and check.citations == (1,) and not check.corrected
    assert check.support[0].sentence == "Ranks start at 1, and the constant k is usually 60."


def test_a_sentence_its_source_does_not_say_is_unsupported(embedder):
    [check] = verify.ground("The Eiffel Tower was finished in 1889 in Paris [1].", PASSAGES, embedder)
    assert not check.supported and check.citations == (1,)
    assert check.support and check.support[0].score < verify.SUPPORT_THRESHOLD


def test_a_wrong_or_missing_citation_is_pointed_at_the_passage_that_supports_it(embedder):
    wrong, missing = verify.ground("B starts as all zeros [1]. The constant k is usually 60.", PASSAGES, embedder)
    assert wrong.supported and wrong.corrected and wrong.citations == (2,) and wrong.text.endswith("[2].")
    assert missing.supported and missing.corrected and missing.text == "The constant k is usually 60 [1]."


def test_evidence_is_the_passage_sentence_that_answers_the_question(embedder):
    from rag.chunking import Chunk
    from rag.evidence import select

    chunks = [(i, Chunk(f"/notes/{i}.md", text, 0)) for i, text in PASSAGES.items()]
    found = select("What values do the matrices A and B start with?", chunks, embedder, embedder.count_tokens, 100)
    assert found[0].chunk_id == 2 and "B starts as all zeros" in found[0].text
    assert all(a.score >= b.score for a, b in zip(found, found[1:]))


QUANTS = ("Q8_0 stores blocks of 32 weights as 8-bit integers plus one 16-bit scale. That is 34 bytes per 32 weights, "
          "or 8.5 bits per weight. Q4_0 stores 32 weights as 4-bit integers (16 bytes) plus one 16-bit scale, "
          "18 bytes per block, or 4.5 bits per weight.")


def test_the_right_sentence_about_the_wrong_thing_is_not_supported(embedder):
    """Copied word for word from the Q8_0 line, "34 bytes" is no answer about Q4_0; the Q4_0 line's 18 bytes is."""
    question = "How many bytes does a Q4_0 block of 32 weights take?"
    wrong, named, right = verify.ground("That is 34 bytes per 32 weights [1]. Q4_0 takes 34 bytes per block [1]. "
                                        "A Q4_0 block takes 18 bytes [1].", {1: QUANTS}, embedder, question=question)
    assert not wrong.supported and not named.supported
    assert right.supported and "18 bytes per block" in right.support[0].sentence
    # Without the question the copied sentence passes: the check before this one passed it too.
    [blind] = verify.ground("That is 34 bytes per 32 weights [1].", {1: QUANTS}, embedder)
    assert blind.supported


def test_a_figure_with_the_wrong_unit_is_not_supported(embedder):
    [check] = verify.ground("Q8_0 uses 32-bit integers plus one 16-bit scale [1].", {1: QUANTS}, embedder,
                            question="How does Q8_0 store its weights?")
    assert not check.supported
    assert verify.quantities("32-bit integers and 34 bytes") == {("32", "bit"), ("34", "byte")}


def test_the_hard_cases_of_the_corpus_are_mostly_judged_right(embedder):
    """tests/hard_cases.md: right claims about sibling items (bench/verification.py reports the figures)."""
    from bench.verification import judge_hard_cases

    result = judge_hard_cases(embedder)
    assert result["after"]["precision"] > result["before"]["precision"]
    assert result["after"]["recall"] >= 0.7, result


def test_a_code_block_stays_whole_and_a_repeated_sentence_counts_once():
    text = "Use this [1].\n```python\nx = 1. y = 2.\nprint(x)\n```\nIt prints 1 [1]. It prints 1 [1]."
    assert verify.sentences(text) == ["Use this [1].", "```python\nx = 1. y = 2.\nprint(x)\n```", "It prints 1 [1]."]

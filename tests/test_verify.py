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
    found = verify.evidence("What values do the matrices A and B start with?", PASSAGES, embedder, k=2)
    assert found[0].n == 2 and "B starts as all zeros" in found[0].sentence
    assert found[0].score >= found[1].score

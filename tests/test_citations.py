from rag import citations


def test_parse_reads_every_marker_form():
    text = "A [1]. B [2, 3]. C [4][5]. D [Source 6]. Again [1]."
    assert citations.parse(text) == [1, 2, 3, 4, 5, 6]


def test_clean_drops_numbers_that_name_no_source():
    assert citations.clean("Fact [1][7]. Other [2, 9]. Bad [8].", n_sources=3) == "Fact [1]. Other [2]. Bad."
    assert citations.clean("See [source 2].", n_sources=2) == "See [2]."


def test_attach_cites_the_passage_that_holds_the_sentence():
    passages = ["Reciprocal rank fusion adds one over k plus rank, with k usually 60.",
                "LoRA trains two low-rank matrices A and B."]
    text = "Reciprocal rank fusion uses a constant k that is usually 60.\nLoRA trains low-rank matrices."
    assert citations.attach(text, passages) == (
        "Reciprocal rank fusion uses a constant k that is usually 60 [1].\nLoRA trains low-rank matrices [2].")


def test_attach_leaves_unsupported_and_already_cited_sentences_alone():
    passages = ["The KV cache stores keys and values."]
    text = "Bananas grow in tropical climates near rivers. The cache stores keys [1]."
    assert citations.attach(text, passages) == text

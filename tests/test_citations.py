from rag import citations


def test_parse_reads_every_marker_form():
    text = "A [1]. B [2, 3]. C [4][5]. D [Source 6]. Again [1]."
    assert citations.parse(text) == [1, 2, 3, 4, 5, 6]


def test_clean_drops_numbers_that_name_no_source():
    assert citations.clean("Fact [1][7]. Other [2, 9]. Bad [8].", n_sources=3) == "Fact [1]. Other [2]. Bad."
    assert citations.clean("See [source 2].", n_sources=2) == "See [2]."


def test_markers_can_be_stripped_and_appended():
    assert citations.strip("It is 60 [1][2]. Really [3, 4].") == "It is 60. Really."
    assert citations.append_marker("The constant is 60.", 2) == "The constant is 60 [2]."


def test_numbers_in_brackets_inside_a_quoted_passage_are_not_citations():
    quoted = citations.quoted("Use a[0, 5] or a[1] to index it.")
    assert citations.parse(f"“{quoted}” [2]") == [2] and "0, 5" in quoted

"""Evidence windows: sentences that stand alone, duplicates collapsed, listing pages left out, within a budget."""

from rag.chunking import Chunk
from rag.evidence import is_listing, leans_on_previous, select

Q8 = "Q8_0 stores blocks of 32 weights as 8-bit integers plus one 16-bit scale."
Q8_SIZE = "That is 34 bytes per 32 weights, or 8.5 bits per weight."
Q4 = "Q4_0 stores 32 weights as 4-bit integers (16 bytes) plus one 16-bit scale, 18 bytes per block."


def chunks(*texts: str, path: str = "/notes/quant.md") -> list[tuple[int, Chunk]]:
    return [(i, Chunk(path, text, i, None, "Quant types")) for i, text in enumerate(texts)]


def test_a_sentence_that_leans_on_the_one_before_travels_with_it(embedder):
    assert leans_on_previous(Q8_SIZE) and not leans_on_previous(Q8)
    found = select("How many bytes per 32 weights does Q8_0 take?", chunks(f"Some intro text here. {Q8} {Q8_SIZE}"),
                   embedder, embedder.count_tokens, 200)
    assert found and Q8_SIZE in found[0].text and Q8 in found[0].text  # never "That is 34 bytes" alone


def test_the_subject_is_found_across_a_chunk_boundary(embedder):
    """The chunk starts with "That is 34 bytes ...": its subject is the last sentence of the chunk before."""
    first, second = chunks(f"Quantization saves memory. {Q8}", f"{Q8_SIZE} Its quality is close to fp16.")
    found = select("How many bytes per 32 weights does Q8_0 take?", [second], embedder, embedder.count_tokens, 200,
                   previous=lambda i: first[1] if i == 1 else None)
    window = next(w for w in found if Q8_SIZE in w.text)
    assert window.text.startswith(Q8)  # borrowed from the chunk before
    assert window.chunk_id == 1


def test_the_same_sentence_in_two_files_is_shown_once_naming_both(embedder):
    note = (0, Chunk("/notes/quant.md", f"{Q4} Block sizes differ.", 0, None, "Quant types"))
    pdf = (1, Chunk("/notes/handbook.pdf", f"Block types are listed here. {Q4}", 3, 5, ""))
    found = select("How many bytes does a Q4_0 block take?", [note, pdf], embedder, embedder.count_tokens, 300)
    holding = [w for w in found if Q4 in w.text]
    assert len(holding) == 1
    assert {holding[0].place.path, *(p.path for p in holding[0].also)} == {"/notes/quant.md", "/notes/handbook.pdf"}


def test_windows_fit_the_budget_and_the_best_comes_first(embedder):
    text = " ".join(f"Fact number {i} says that the value of setting {i} is {i * 7} units." for i in range(40))
    found = select("What is the value of setting 12?", chunks(text), embedder, embedder.count_tokens, 60)
    assert found and "setting 12 " in found[0].text
    assert sum(embedder.count_tokens(w.text) for w in found) <= 60
    assert all(a.score >= b.score for a, b in zip(found, found[1:]))


def test_contents_and_index_pages_are_recognised_and_never_evidence(embedder):
    contents = " ".join(f"{i}.{j} Section about plotting topic {i}{j} {10 * i + j}" for i in range(1, 4) for j in range(1, 6))
    index = ("arrow, 45, 112 autoscale, 67, 68, 190 axes, 23 bars, 88, 91 binary, 130, 131 border, 75 boxes, 54 "
             "clip, 77, 201 contour, 99, 100 dashtype, 41 datafile, 140, 141, 150 decimalsign, 143")
    prose = ("The key is drawn in the upper right corner by default. Use set key outside to move it, "
             "and unset key to remove it. Version 5.4 added 3 new options, listed on page 159.")
    assert is_listing(contents) and is_listing(index) and not is_listing(prose)
    found = select("Where is the key drawn by default and how do I remove it?",
                   chunks(index, contents, prose), embedder, embedder.count_tokens, 200)
    assert found and all(w.chunk_id == 2 for w in found)


def test_table_rows_are_not_mistaken_for_an_index_page():
    rows = "\n\n".join(f"Month: {m}; Category: {c}; Amount: {a}" for m, c, a in
                       [("January", "Rent", 1450), ("January", "Travel", 310), ("February", "Rent", 1450),
                        ("February", "Travel", 95), ("March", "Rent", 1450), ("March", "Travel", 1240)])
    assert not is_listing(rows)
    index_page = "\n".join(f"{w}, {n}, {n + 17}" for w, n in [("Fonts", 41), ("Grids", 52), ("Keys", 63), ("Labels", 74),
                                                             ("Margins", 85), ("Palettes", 96), ("Samples", 107)])
    assert is_listing(index_page)

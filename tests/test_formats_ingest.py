"""`python ingest.py` on a folder of every kind of document people keep, then a question each file alone answers.

The real bundled embedder, FAISS index, Tesseract and llama.cpp model: the answer must cite the
right file at the right page, slide, sheet and rows, chapter or attachment.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests import documents
from tests.test_cli import run

pytestmark = pytest.mark.slow

# question, file name, the place its answer must be cited at, a fact the cited passage holds
QUESTIONS = [
    ("Who released SentencePiece, and in which year?", "scanned-tokenization.pdf", "page 2 (read by OCR)",
     "Kudo and Richardson in 2018"),
    ("How much memory do the weights of a 7 billion parameter model need in fp16?", "quantization-page.png",
     "read by OCR", "14 GB"),
    ("How often does the Harbour Line tram run on Sundays?", "transport-review.pptx", "slide 2", "every 12 minutes on Sundays"),
    ("When does the Kelvin Quay depot close for repairs?", "transport-review.pptx", "slide 3", "closes for repairs in August"),
    ("What did we spend on travel in March?", "household-budget.xlsx", "sheet Expenses, rows", "Category: Travel; Amount: 1240"),
    ("Who replaced the pressure valve on boiler B2?", "maintenance-log.csv", "rows", "Technician: Amara Osei"),
    ("How many lamps did the keeper light during the storm?", "the-keeper.epub", "chapter 2", "forty-two lamps"),
    ("What is wrong with the north gutter?", "roof-repair.eml", "inspection.pdf (attachment of roof-repair.eml), page 1",
     "cracked along 3 metres"),
    ("How much rye flour should I feed my sourdough starter?", "sourdough-starter.html", "Feeding", "50 grams of rye flour"),
]


@pytest.fixture(scope="module")
def formats_index(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("everything")
    documents.every_format(folder)
    index = tmp_path_factory.mktemp("formats-index")
    result = run("ingest.py", str(folder), "--index", str(index), timeout=900)
    assert result.returncode == 0, result.stderr
    assert "8 added" in result.stdout and "0 failed" in result.stdout, result.stdout + result.stderr
    assert "pages read by OCR" in result.stderr, "the progress bar counts OCR pages"
    return index


def test_every_file_is_listed(formats_index):
    result = run("ingest.py", "--list", "--index", str(formats_index))
    assert result.returncode == 0, result.stderr
    for name in ("scanned-tokenization.pdf", "quantization-page.png", "transport-review.pptx", "household-budget.xlsx",
                 "maintenance-log.csv", "the-keeper.epub", "roof-repair.eml", "sourdough-starter.html"):
        assert name in result.stdout


def test_boilerplate_of_the_saved_page_is_not_indexed(formats_index):
    from rag import store

    texts = [c.indexed_text for c in store.load(formats_index).chunks if c.path.endswith(".html")]
    assert any(documents.WEB_FACT in t for t in texts)
    for junk in documents.BOILERPLATE:
        assert not any(junk in t for t in texts), f"{junk!r} was indexed"


@pytest.mark.parametrize("question,name,place,fact", QUESTIONS, ids=[q[1] + ":" + q[2] for q in QUESTIONS])
def test_question_each_file_alone_answers_is_found_and_cited_at_its_place(formats_index, question, name, place, fact):
    result = run("-m", "rag", "search", question, "-k", "1", "--json", "--index", str(formats_index))
    assert result.returncode == 0, result.stderr
    [hit] = json.loads(result.stdout)["hits"]
    assert Path(hit["path"]).name == name and place in hit["label"], hit["label"]
    assert fact in " ".join(hit["text"].split())


def test_answer_cites_the_attachment_of_the_mail(formats_index):
    question, name, place, fact = QUESTIONS[7]
    result = run("-m", "rag", "ask", question, "--json", "--index", str(formats_index), env={"RAG_TEMPERATURE": "0"})
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert not payload["abstained"]
    cited = {int(n) for n in __import__("re").findall(r"\[(\d+)\]", payload["answer"])}
    first = next(s for s in payload["sources"] if s["n"] == min(cited))
    assert first["part"] == "inspection.pdf" and Path(first["path"]).name == name and first["page"] == 1
    assert "cracked along 3 metres" in payload["answer"]


def test_answer_gives_the_spreadsheet_row_that_answers(formats_index):
    question = "What did we spend on travel in March?"
    result = run("-m", "rag", "ask", question, "--json", "--index", str(formats_index), env={"RAG_TEMPERATURE": "0"})
    assert result.returncode == 0, result.stderr
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert not payload["abstained"], "table rows must not be mistaken for an index page"
    assert "Month: March; Category: Travel; Amount: 1240" in payload["answer"]
    cited = {int(n) for n in __import__("re").findall(r"\[(\d+)\]", payload["answer"])}
    first = next(s for s in payload["sources"] if s["n"] == min(cited))
    assert Path(first["path"]).name == "household-budget.xlsx" and first["where"].startswith("sheet Expenses, rows ")

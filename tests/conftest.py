"""Shared fixtures: the real bundled embedder and model, and an index of corpus/ built once per run."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "corpus"


def corpus_questions() -> list[tuple[str, str, int | None]]:
    """(question, expected file name, expected page or None) from tests/corpus_questions.md."""
    rows = []
    for line in (Path(__file__).parent / "corpus_questions.md").read_text(encoding="utf-8").splitlines():
        match = re.match(r"(.+?) -- (\S+)(?: p\.(\d+))?\s*$", line)
        if match:
            rows.append((match.group(1), match.group(2), int(match.group(3)) if match.group(3) else None))
    return rows


class WordCounter:
    """A stand-in tokenizer for fast chunking tests: one token per word plus two special tokens."""

    def __call__(self, text: str) -> int:
        return len(text.split()) + 2


@pytest.fixture
def word_counter() -> WordCounter:
    return WordCounter()


@pytest.fixture(scope="session")
def settings_factory():
    from rag.config import Settings

    def make(index_dir: Path, **changes):
        # temperature 0: the same answer on every run, so failures reproduce.
        return Settings(index_dir=index_dir, temperature=0.0, n_ctx=4096, **changes)

    return make


@pytest.fixture(scope="session")
def embedder():
    from rag.config import bundled_embedder_path
    from rag.embeddings import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(bundled_embedder_path())


@pytest.fixture(scope="session")
def corpus_index(tmp_path_factory, embedder, settings_factory) -> Path:
    from rag.indexing import ingest

    index_dir = tmp_path_factory.mktemp("corpus-index")
    report = ingest([CORPUS], settings_factory(index_dir), embedder)
    assert not report.failed, report.failed
    return index_dir


@pytest.fixture(scope="session")
def pipeline(corpus_index, embedder, settings_factory):
    from rag.pipeline import Pipeline

    return Pipeline(settings_factory(corpus_index), embedder=embedder)


def make_pdf_module():
    """corpus/make_pdf.py, the team's dependency-free PDF writer, for tests that need PDFs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_pdf", CORPUS / "make_pdf.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

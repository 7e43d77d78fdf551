"""ask(question, history) -> Answer with numbered sources: the one entry point the CLI and the app use."""

from __future__ import annotations

import re
import threading
from dataclasses import asdict, dataclass, replace
from typing import Iterator, Sequence

from rag import citations, store, verify
from rag.chunking import place
from rag.config import Settings
from rag.errors import RagError
from rag.embeddings import Embedder, SentenceTransformerEmbedder
from rag.generate import Generator, LlamaGenerator, Message, build_messages, repetition_start, source_block
from rag.verify import Evidence, SentenceCheck
from rag.retrieve import CrossEncoderReranker, Hit, Retriever, choose_reranker, reciprocal_rank_fusion


@dataclass(frozen=True)
class Source:
    """One numbered passage given to the model; [n] in the answer refers to it."""

    n: int
    path: str
    page: int | None
    heading: str
    text: str
    score: float

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"source numbers start at 1, got {self.n}")

    @property
    def label(self) -> str:
        return place(self.path, self.page, self.heading)


@dataclass(frozen=True)
class Partial:
    """The answer so far, while the model is still writing."""

    text: str


NOT_COVERED = "Your documents do not cover this question, so I cannot answer it from them."
NOT_IN_SOURCES = "The passages found in your documents do not answer this question."
# How models say the sources lack the answer.
_DECLINES = re.compile(r"\b(?:do(?:es)? not|don't|doesn't|cannot|can't|no)\s+(?:\w+\s+){0,2}"
                       r"(?:contain|mention|provide|include|cover|say|answer|information|address)|not (?:mentioned|provided|stated)",
                       re.IGNORECASE)


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    sources: tuple[Source, ...]
    abstained: bool = False  # nothing found answers the question: no sources are named
    sentences: tuple[SentenceCheck, ...] = ()
    evidence: tuple[Evidence, ...] = ()  # the passage sentences closest to the question, whatever the model wrote

    def __post_init__(self) -> None:
        unknown = [n for n in citations.parse(self.text) if not 1 <= n <= len(self.sources)]
        if unknown:
            raise ValueError(f"answer cites {unknown}, but only sources 1..{len(self.sources)} exist")

    @property
    def cited(self) -> list[Source]:
        numbers = set(citations.parse(self.text))
        return [s for s in self.sources if s.n in numbers]

    def to_json(self) -> dict:
        return {"answer": self.text, "sources": [asdict(s) for s in self.sources], "abstained": self.abstained,
                "sentences": [{"text": c.text, "citations": list(c.citations), "supported": c.supported,
                               "corrected": c.corrected, "support": [asdict(s) for s in c.support]}
                              for c in self.sentences],
                "evidence": [asdict(e) for e in self.evidence]}


class Pipeline:
    """Holds the loaded models and the index snapshot; picks up a new snapshot when an ingest finishes."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, generator: Generator | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or SentenceTransformerEmbedder(settings.embedder_path, precision=settings.embed_precision)
        self._generator = generator
        self._cross_encoder = CrossEncoderReranker(settings.reranker) if settings.reranker else None
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()  # one llama.cpp context serves one answer at a time

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = LlamaGenerator(self.settings)
        return self._generator

    @property
    def retriever(self) -> Retriever:
        """The retriever over the generation in force, rebuilt when CURRENT names a new one."""
        generation = store.current_generation(self.settings.index_dir)
        if self._retriever is None or self._retriever.snapshot.generation != generation:
            snapshot = store.load(self.settings.index_dir)
            self._retriever = Retriever(snapshot, self.embedder, self.settings,
                                        choose_reranker(snapshot, self.settings, self._cross_encoder))
        return self._retriever

    def configure(self, **changes) -> Settings:
        """Apply new settings without a restart; returns the settings now in force.

        A new model is loaded and checked before it replaces the one in use, so a bad path leaves
        everything as it was (the ConfigError or ModelError says why). Answers being written finish
        with the settings they started with.
        """
        settings = self.settings.with_(**changes)
        if settings == self.settings:
            return settings
        generator = self._generator
        if settings.model_path != self.settings.model_path:
            generator = LlamaGenerator(settings)
        with self._lock:
            old, self.settings, self._generator = self.settings, settings, generator
            retrieval = ("top_k", "candidates", "retrieval", "fusion", "rrf_k", "dense_weight", "bm25_k1", "bm25_b", "rerank")
            if self._retriever is not None and any(getattr(old, f) != getattr(settings, f) for f in retrieval):
                snapshot = self._retriever.snapshot
                self._retriever = Retriever(snapshot, self.embedder, settings,
                                            choose_reranker(snapshot, settings, self._cross_encoder))
        return settings

    def warm_up(self) -> None:
        """Load the model and the index ahead of the first question; problems surface when one is asked."""
        try:
            with self._lock:
                self.generator
            self.retriever
        except RagError:
            pass

    def search(self, query: str, k: int | None = None, within: Sequence[str] | None = None) -> list[Hit]:
        """The best passages for `query`; `within` keeps only these files or folders."""
        return self.retriever.search(query, k, within)

    def search_turn(self, question: str, history: Sequence[Message] = (),
                    within: Sequence[str] | None = None) -> list[Hit]:
        """Passages for one turn of a conversation.

        A follow-up ("and how big does it get?") needs the earlier question; a change of topic must
        not drag it along. Both searches run, and their rankings are merged by reciprocal rank
        fusion: on tests/followup_questions.md each search alone misses one case, the merge neither.
        """
        previous = next((m["content"] for m in reversed(history) if m.get("role") == "user"), "")
        alone = self.search(question, within=within)
        if not previous.strip():
            return alone
        joined = self.search(f"{previous} {question}", within=within)
        by_id = {h.chunk_id: h for h in joined} | {h.chunk_id: h for h in alone}
        fused = reciprocal_rank_fusion([[h.chunk_id for h in alone], [h.chunk_id for h in joined]], 60)
        ranked = sorted(by_id, key=lambda i: (-fused[i], i))[: self.settings.top_k]
        return [replace(by_id[i], score=fused[i]) for i in ranked]

    def covers(self, hits: Sequence[Hit]) -> bool:
        """Whether any passage is close enough to the question to answer from (threshold: bench/abstention.py)."""
        return bool(hits) and max(h.dense for h in hits) >= self.settings.abstain_below

    def ask_stream(self, question: str, history: Sequence[Message] = (),
                   within: Sequence[str] | None = None) -> Iterator[Partial | Answer]:
        """Yield the growing answer as Partial, then the final Answer with cleaned citations."""
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        hits = self.search_turn(question, history, within)
        if not self.covers(hits):
            yield Answer(question, NOT_COVERED, (), abstained=True)
            return
        blocks = [source_block(i, h.chunk.label, h.chunk.text) for i, h in enumerate(hits, start=1)]
        with self._lock:
            generator = self.generator
            messages, fitted = build_messages(question, blocks, history, generator, self.settings.max_tokens)
            hits = hits[:fitted]
            text = ""
            pieces = generator.stream(messages, self.settings.max_tokens, self.settings.temperature)
            for piece in pieces:
                text += piece
                cut = repetition_start(text)
                if cut is not None:
                    text = text[:cut].rstrip()
                    pieces.close()  # stops llama.cpp from generating the rest
                    yield Partial(text)
                    break
                yield Partial(text)
        sources = tuple(Source(i, h.chunk.path, h.chunk.page, h.chunk.heading, h.chunk.text, round(h.score, 6))
                        for i, h in enumerate(hits, start=1))
        yield self._grounded(question, citations.clean(text, len(sources)), sources)

    def _grounded(self, question: str, text: str, sources: tuple[Source, ...]) -> Answer:
        """The final answer: each sentence checked against its cited passage, and the evidence beside it."""
        passages = {s.n: s.text for s in sources}
        vectors: dict = {}  # passage sentences are embedded once for both
        checks = verify.ground(text, passages, self.embedder, cache=vectors)
        found = tuple(verify.evidence(question, passages, self.embedder, cache=vectors))
        if not any(c.supported for c in checks) and (not checks or _DECLINES.search(text)):
            return Answer(question, NOT_IN_SOURCES, (), abstained=True)
        return Answer(question, " ".join(c.text for c in checks), sources, sentences=tuple(checks), evidence=found)

    def ask(self, question: str, history: Sequence[Message] = (), within: Sequence[str] | None = None) -> Answer:
        final = None
        for event in self.ask_stream(question, history, within):
            final = event
        assert isinstance(final, Answer)
        return final


"""ask(question, history) -> Answer with numbered sources: the one entry point the CLI and the app use."""

from __future__ import annotations

import copy
import re
import threading
from dataclasses import asdict, dataclass, replace
from typing import Iterator, Sequence

from rag import citations, evidence, store, verify
from rag.chunking import place
from rag.config import Settings
from rag.errors import RagError
from rag.embeddings import Embedder, embedder_for, follow
from rag.evidence import Evidence, Window
from rag.generate import (Generator, Message, build_messages, choose as choose_generator, citation_grammar, repetition_start,
                          source_block, wants_code)
from rag.verify import SentenceCheck
from rag.yielding import AnswerGate
from rag.retrieve import CrossEncoderReranker, Hit, Retriever, choose_reranker, reciprocal_rank_fusion, retriever_for


@dataclass(frozen=True)
class Source:
    """One numbered passage given to the model; [n] in the answer refers to it."""

    n: int
    path: str
    page: int | None
    heading: str
    text: str
    score: float
    windows: tuple[str, ...] = ()  # the evidence windows of this passage that the model was given; () = the whole text
    also: tuple[str, ...] = ()  # other places (file, page, heading) holding the same sentences
    where: str = ""  # a place that is not a page: "slide 4", "sheet Expenses, rows 2-14"
    part: str = ""  # the attachment of an e-mail this passage is from

    def __post_init__(self) -> None:
        if self.n < 1:
            raise ValueError(f"source numbers start at 1, got {self.n}")

    @property
    def label(self) -> str:
        return place(self.path, self.page, self.heading, self.where, self.part)


@dataclass(frozen=True)
class Partial:
    """The answer so far, while the model is still writing."""

    text: str


@dataclass(frozen=True)
class Found:
    """What retrieval found, before the model writes a word: the evidence and the numbered sources."""

    question: str
    sources: tuple[Source, ...]
    evidence: tuple[Evidence, ...]


NOT_COVERED = "Your documents do not cover this question, so I cannot answer it from them."
NOT_IN_SOURCES = "The passages found in your documents do not answer this question."
# Questions whose answer is a figure: an answer without a number does not answer them.
_ASKS_QUANTITY = re.compile(r"\bhow (?:many|much|big|large|long|often|fast|old)\b|\bwhat (?:share|percentage|size|"
                            r"number|value|year|constant)\b", re.IGNORECASE)
EVIDENCE_SHOWN_TOKENS = 300  # the evidence a person sees when the model is given whole passages
# When the model says the sources lack the answer, evidence this close to the question is quoted anyway.
QUOTE_DESPITE_DECLINE = 0.5
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
    sentences: tuple[SentenceCheck, ...] = ()  # the model's sentences, each with its verdict
    evidence: tuple[Evidence, ...] = ()  # the windows found before generation, best first, whatever the model wrote
    quoted: bool = False  # no sentence of the model passed the check: `text` quotes the best evidence instead

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
                "evidence": [asdict(e) for e in self.evidence], "quoted": self.quoted,
                "unchecked": [c.text for c in self.sentences if not c.supported]}


class Pipeline:
    """Holds the loaded models and the index snapshot; picks up a new snapshot when an ingest finishes."""

    def __init__(self, settings: Settings, embedder: Embedder | None = None, generator: Generator | None = None) -> None:
        self.settings = settings
        self.embedder = embedder or embedder_for(settings)
        self._generator = generator
        self._cross_encoder = CrossEncoderReranker(settings.reranker) if settings.reranker else None
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()  # one llama.cpp context serves one answer at a time
        self.gate = AnswerGate()  # held while the model writes: the app's own indexing waits (rag/yielding.py)
        self._vector_generation: str | None = None
        self._vector_cache: dict = {}
        self._said: dict[tuple[str, str], tuple[str, str]] = {}  # (index, question) -> (user message, raw answer) sent
        self.rewritten = 0  # follow-ups whose continued answer declined and was written again with the plain layout

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = choose_generator(self.settings)
        return self._generator

    @property
    def retriever(self) -> Retriever:
        """The retriever over the generation in force, rebuilt when a new one is committed (local or Milvus)."""
        backend = store.choose(self.settings)
        generation = backend.generation()
        if self._retriever is None or self._retriever.snapshot.generation != generation:
            snapshot = backend.load()
            self._retriever = retriever_for(snapshot, follow(self.embedder, snapshot.embedder), self.settings,
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
        model = ("model_path", "llm_url", "llm_key", "llm_model", "llm_timeout")
        if any(getattr(settings, f) != getattr(self.settings, f) for f in model):
            generator = choose_generator(settings)
        with self._lock:
            old, self.settings, self._generator = self.settings, settings, generator
            retrieval = ("top_k", "candidates", "retrieval", "fusion", "rrf_k", "dense_weight", "bm25_k1", "bm25_b", "rerank")
            if self._retriever is not None and any(getattr(old, f) != getattr(settings, f) for f in retrieval):
                snapshot = self._retriever.snapshot
                self._retriever = retriever_for(snapshot, follow(self.embedder, snapshot.embedder), settings,
                                                choose_reranker(snapshot, settings, self._cross_encoder))
        return settings

    def sibling(self, settings: Settings) -> "Pipeline":
        """The same embedder, model and answer lock over another library's index (the app's library switch)."""
        if self._generator is None:
            try:
                with self._lock:
                    self.generator
            except RagError:
                pass  # the model's problem is shown when a question is asked, in whichever library
        other = copy.copy(self)
        other.settings = settings
        other._retriever, other._vector_generation, other._vector_cache = None, None, {}
        return other

    def warm_up(self) -> None:
        """Load the model and the index ahead of the first question; problems surface when one is asked."""
        try:
            with self._lock:
                self.generator
            self.retriever.embedder.embed(["warm up"])  # loads a lazy embedder (and its precision path) too
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
        previous = _previous_question(history)
        alone = self.search(question, within=within)
        if not previous.strip():
            return alone
        joined = self.search(f"{previous} {question}", within=within)
        by_id = {h.chunk_id: h for h in joined} | {h.chunk_id: h for h in alone}
        fused = reciprocal_rank_fusion([[h.chunk_id for h in alone], [h.chunk_id for h in joined]], 60)
        ranked = sorted(by_id, key=lambda i: (-fused[i], i))[: self.settings.top_k]
        return [replace(by_id[i], score=fused[i]) for i in ranked]

    def closeness(self, hits: Sequence[Hit], found: Sequence[Evidence] = ()) -> float:
        """How close the passages are to the question: 0.5 x the best passage cosine + 0.5 x the best
        evidence window's support score (the cosine again when there is no window)."""
        if not hits:
            return 0.0
        best = max(h.dense for h in hits)
        return 0.5 * best + 0.5 * (found[0].score if found else best)

    def covers(self, hits: Sequence[Hit], found: Sequence[Evidence] = ()) -> bool:
        """Whether the passages are close enough to the question to answer from.

        On a big manual some words of any question match; the sentence-level score tells a passage
        that answers from one that shares words (threshold: bench/abstention.py, both question sets).
        """
        return bool(hits) and self.closeness(hits, found) >= self.settings.abstain_below

    def ask_stream(self, question: str, history: Sequence[Message] = (),
                   within: Sequence[str] | None = None) -> Iterator[Found | Partial | Answer]:
        """Yield what retrieval found (Found), then the growing answer (Partial), then the checked Answer."""
        question = question.strip()
        if not question:
            raise ValueError("the question is empty")
        hits = [h for h in self.search_turn(question, history, within) if not evidence.is_listing(h.chunk.text)]
        sources, found = self.gather(question, hits, history) if hits else ((), ())
        if not self.covers(hits, found):
            yield Answer(question, NOT_COVERED, (), abstained=True)
            return
        yield Found(question, sources, found)
        with self._lock, self.gate.writing():
            generator = self.generator
            # Windows go without their file label: the small model copied labels into its sentences.
            blocks = [source_block(s.n, "", " … ".join(s.windows)) if s.windows else source_block(s.n, s.label, s.text)
                      for s in sources]
            # A follow-up first continues the earlier turns as the model saw and wrote them (their state is still in
            # llama.cpp, so it starts about half as late). Seeing the earlier sources too, the small model sometimes
            # declines or repeats its earlier pattern ("The [1]."); that answer is written again with the plain layout
            # (the question and checked answer).
            said = self._as_said(history) if self.settings.reuse_turns else list(history)
            layouts = [said] + ([list(history)] if said != list(history) else [])
            offered, offered_found = sources, found
            for attempt, layout in enumerate(layouts):
                messages, fitted = build_messages(question, blocks, layout, generator, self.settings.max_tokens)
                sources = offered[:fitted]
                found = tuple(e for e in offered_found if e.n <= fitted)
                grammar = None
                if self.settings.grammar != "off" and sources and not wants_code(question):
                    words = " ".join(blocks[:fitted]).split() if self.settings.grammar == "words" else ()
                    grammar = citation_grammar(len(sources), self.settings.answer_sentences, words=words)
                text = ""
                pieces = generator.stream(messages, self.settings.max_tokens, self.settings.temperature, grammar=grammar)
                for piece in pieces:
                    text += piece
                    cut = repetition_start(text)
                    if cut is not None:
                        text = text[:cut].rstrip()
                        pieces.close()  # stops llama.cpp from generating the rest
                        yield Partial(text)
                        break
                    yield Partial(text)
                if attempt + 1 == len(layouts) or not _declines_or_says_nothing(text):
                    break
                self.rewritten += 1
            self._remember(question, messages[-1]["content"], text)
        yield self._grounded(question, citations.clean(text, len(sources)), sources, found)

    def _as_said(self, history: Sequence[Message]) -> list[Message]:
        """The earlier exchanges as the model itself was given and wrote them, where this process still knows them.

        The follow-up's prompt then begins with the previous prompt and answer, whose state
        llama.cpp still holds, so only the new part is evaluated (bench/followup_speed.py).
        """
        turns = list(history)
        for i in range(len(turns) - 1):
            if turns[i]["role"] == "user" and turns[i + 1]["role"] == "assistant":
                known = self._said.get((str(self.settings.index_dir), turns[i]["content"].strip()))
                if known is not None:
                    turns[i], turns[i + 1] = {"role": "user", "content": known[0]}, {"role": "assistant", "content": known[1]}
        return turns

    def _remember(self, question: str, sent: str, written: str) -> None:
        if len(self._said) >= 256:
            self._said.pop(next(iter(self._said)))
        self._said[(str(self.settings.index_dir), question.strip())] = (sent, written)

    def gather(self, question: str, hits: Sequence[Hit], history: Sequence[Message] = ()) -> tuple[tuple[Source, ...], tuple[Evidence, ...]]:
        """The numbered sources for the model and the evidence for the person, from the retrieved hits.

        With settings.evidence_tokens > 0 each source is one passage's evidence windows (rag/evidence.py),
        numbered in the order of their best window; with 0 the sources are the whole passages, as retrieved.
        """
        snapshot = self.retriever.snapshot
        budget = self.settings.evidence_tokens or EVIDENCE_SHOWN_TOKENS
        previous = _previous_question(history)
        asked = f"{previous} {question}" if previous.strip() else question  # "how big does it get?" needs its topic
        windows = evidence.select(asked, [(h.chunk_id, h.chunk) for h in hits], self.embedder,
                                  self.embedder.count_tokens, budget, lambda i: _previous(snapshot.chunks, i),
                                  cache=self._vectors)
        if not self.settings.evidence_tokens:
            sources = tuple(Source(i, h.chunk.path, h.chunk.page, h.chunk.heading, h.chunk.text, round(h.score, 6),
                                   where=h.chunk.where, part=h.chunk.part) for i, h in enumerate(hits, start=1))
            number = {h.chunk_id: i for i, h in enumerate(hits, start=1)}
            return sources, tuple(_shown(w, number[w.chunk_id]) for w in windows)
        by_chunk: dict[int, list[Window]] = {}
        for window in windows:
            by_chunk.setdefault(window.chunk_id, []).append(window)
        hit_of = {h.chunk_id: h for h in hits}
        sources = []
        for n, (chunk_id, group) in enumerate(by_chunk.items(), start=1):
            chunk = hit_of[chunk_id].chunk
            ordered = sorted(group, key=lambda w: chunk.text.find(w.lead))  # document order reads best
            also = tuple(dict.fromkeys(p.label for w in group for p in w.also))
            sources.append(Source(n, chunk.path, chunk.page, chunk.heading, chunk.text, round(hit_of[chunk_id].score, 6),
                                  tuple(w.text for w in ordered), also, chunk.where, chunk.part))
        number = {chunk_id: n for n, chunk_id in enumerate(by_chunk, start=1)}
        return tuple(sources), tuple(_shown(w, number[w.chunk_id]) for w in windows)

    @property
    def _vectors(self) -> dict:
        """Sentence vectors of the snapshot in force, kept between questions (passages recur)."""
        generation = self.retriever.snapshot.generation
        if self._vector_generation != generation or len(self._vector_cache) > 50_000:
            self._vector_generation, self._vector_cache = generation, {}
        return self._vector_cache

    def _grounded(self, question: str, text: str, sources: tuple[Source, ...], found: tuple[Evidence, ...] = ()) -> Answer:
        """The final answer: each sentence checked against the windows of its cited source, about the question.

        What a person reads first is never unchecked. The best evidence window is the system's answer:
        it is quoted (quoted=True), followed by the model's sentences that passed. With
        settings.answer_lead "model", a model sentence that passes on that window leads instead, with
        the other passing ones. The sentences that fail follow, marked as unchecked.
        """
        passages = {s.n: (s.windows or s.text) for s in sources}
        headings = {s.n: s.heading for s in sources if s.heading}  # the heading path says what a passage is about
        checks = verify.ground(text, passages, self.embedder, cache=self._vectors, question=question, headings=headings,
                               weight=self.retriever.term_weight)
        supported = [c for c in checks if c.supported]
        if _ASKS_QUANTITY.search(question) and not any(verify.new_numbers(c.text, question) for c in supported):
            supported = []  # checked, but none gives a figure the question did not already hold: the evidence does better
        # The best window is the system's answer. With lead "model" the model's sentences lead when one of
        # them passes on that window; with "evidence" (the default) the window is always quoted first.
        leading = [c for c in supported if found and any(s.n == found[0].n and s.sentence in found[0].sentence
                                                         for s in c.support)]
        if (leading and self.settings.answer_lead == "model") or (supported and not found):
            return Answer(question, " ".join(c.text for c in supported), sources, sentences=tuple(checks), evidence=found)
        declined = not checks or bool(_DECLINES.search(text))
        if not found or (not supported and declined and found[0].score < QUOTE_DESPITE_DECLINE):
            return Answer(question, NOT_IN_SOURCES, (), abstained=True)
        best = found[0]
        quote = " ".join([f"“{citations.quoted(best.sentence)}” [{best.n}]", *(c.text for c in supported)])
        return Answer(question, quote, sources, sentences=tuple(checks), evidence=found, quoted=True)

    def ask(self, question: str, history: Sequence[Message] = (), within: Sequence[str] | None = None) -> Answer:
        final = None
        for event in self.ask_stream(question, history, within):
            final = event
        assert isinstance(final, Answer)
        return final



def _declines_or_says_nothing(text: str) -> bool:
    """A model answer that declines, or has fewer than three words besides its citations."""
    return bool(_DECLINES.search(text)) or len(re.findall(r"\w+", citations.strip(text))) < 3


def _previous_question(history: Sequence[Message]) -> str:
    return next((m["content"] for m in reversed(history) if m.get("role") == "user"), "")


def _previous(chunks: Sequence, chunk_id: int):
    """The chunk before this one in the same document, or None (chunks of a document are stored in order)."""
    if chunk_id <= 0:
        return None
    try:
        chunk, before = chunks[chunk_id], chunks[chunk_id - 1]
    except IndexError:  # a Milvus view holds no chunk with the id before a document's first
        return None
    return before if before.path == chunk.path and before.ordinal == chunk.ordinal - 1 else None


def _shown(window: Window, n: int) -> Evidence:
    return Evidence(n, window.text, window.score, window.lead, tuple(p.label for p in window.also))

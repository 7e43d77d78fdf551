"""The model that writes the answer: the Generator Protocol, prompt assembly with numbered sources that fits the
context, and the citation grammar; the backends are rag/generate/local.py (in-process, the default) and
rag/generate/server.py (an OpenAI-compatible server at settings.llm_url)."""

from __future__ import annotations

import re
from typing import Iterator, Protocol, Sequence

from rag.config import Settings

SYSTEM_PROMPT = (
    "You answer questions using only the numbered sources given to you. "
    "Answer in one to three short sentences, using the words of the sources. "
    "End each sentence with the number of the source it comes from in square brackets, like [1]. "
    "If the sources do not contain the answer, say that the documents do not cover it."
)
# Chat-template control tokens (ChatML, Llama 2/3, Mistral, Gemma, Phi). A document that contains them
# would otherwise open a fake system or assistant turn once the prompt is tokenized with special tokens.
_CONTROL = re.compile(r"<\|[^|<>\s]{1,40}\|>|</?s>|\[/?INST\]|<</?SYS>>|<(?:start|end)_of_turn>", re.I)


def as_data(text: str) -> str:
    """Document text made safe to quote in a prompt: control tokens removed, whitespace collapsed."""
    return " ".join(_CONTROL.sub(" ", text).split())

Message = dict[str, str]


class Generator(Protocol):
    """A chat model that streams text and counts tokens with its own tokenizer."""

    n_ctx: int

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float,
               grammar: str | None = None) -> Iterator[str]:
        """The reply, piece by piece; `grammar` (GBNF) constrains it where the model runner supports that."""
        ...

    def count_tokens(self, text: str) -> int: ...


# Questions that ask for code get no grammar: the answer may need a code block.
_CODE = re.compile(r"\b(?:code|snippet|script|program|regex|regular expression|syntax|example|write (?:a|an|the|me)\b)",
                   re.IGNORECASE)


def wants_code(question: str) -> bool:
    return bool(_CODE.search(question))


# Words any answer may use besides those of its sources: they join the sources' words into sentences.
GLUE_WORDS = tuple("""a an the of and or to in on at by for with from as per each is are was were be has have
had it its this that these those they which who so but not no only about than then also uses use takes take gives
give makes make means can does do when where while both one two there their""".split())


def citation_grammar(n_sources: int, max_sentences: int = 3, max_words: int = 40, words: Sequence[str] = ()) -> str:
    """GBNF (llama.cpp's grammar format) for one to `max_sentences` plain sentences, each ending in a source number.

    No brackets, backticks, asterisks, hashes, pipes or line breaks inside a sentence: no code
    fences, lists, tables or headings, and no citation but the closing one, which can only name a
    source that exists; a sentence has at most `max_words` words, so none runs on to the token limit.
    With `words` (the words of the sources), every word must be one of them or of GLUE_WORDS: the
    model phrases what the sources say and cannot bring in a figure or a name of its own.
    """
    if n_sources < 1:
        raise ValueError(f"a citation grammar needs at least one source, got {n_sources}")
    numbers = " | ".join(f'"{n}"' for n in range(1, n_sources + 1))
    more = f'(" " sentence){{0,{max_sentences - 1}}}' if max_sentences > 1 else ""
    end = '(" [" number "]." | ". [" number "]")'
    if words:
        vocabulary = _vocabulary(words)
        return (f"root ::= sentence {more}\n"
                f"sentence ::= word (\" \" word){{0,{max_words - 1}}} {end}\n"
                f"word ::= {' | '.join(_literal(w) for w in vocabulary)}\n"
                f"number ::= {numbers}\n")
    # A full stop may only sit inside a number or a name ("4.5", "llama.cpp") or right before the closing citation.
    return (f"root ::= sentence {more}\n"
            f'sentence ::= [A-Z0-9"(] piece* (" " word){{0,{max_words - 1}}} {end}\n'
            'word ::= piece+\n'
            'piece ::= [^ .!?\\[\\]`*#|\\n] | [0-9] "." [0-9] | "." [a-z]\n'
            f"number ::= {numbers}\n")


def _vocabulary(words: Sequence[str]) -> list[str]:
    """The words a constrained answer may use: each as written, without closing punctuation, and capitalised."""
    out: dict[str, None] = {}
    for word in (*words, *GLUE_WORDS):
        word = word.strip().rstrip(".!?:;").strip("[]`*#|")
        if word and not re.search(r"[\[\]`*#|\n]", word):
            out[word] = None
            out[word[0].upper() + word[1:]] = None
    return list(out)


def _literal(word: str) -> str:
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def source_block(n: int, label: str, text: str) -> str:
    """One numbered source for the prompt. Small models copy file labels into their answers, so the
    label goes in brackets after the text, where it reads as metadata."""
    return f"[{n}] {as_data(text)} (from {as_data(label)})" if label else f"[{n}] {as_data(text)}"


def build_messages(question: str, blocks: Sequence[str], history: Sequence[Message], generator: Generator,
                   max_tokens: int) -> tuple[list[Message], int]:
    """The chat to send, and how many of `blocks` (best first) fit in the context beside the answer."""
    # Room for the chat template's own tokens on top of what we count.
    budget = generator.n_ctx - max_tokens - 64
    system_cost = generator.count_tokens(SYSTEM_PROMPT)
    history = list(history)
    while history and system_cost + sum(generator.count_tokens(m["content"]) for m in history) > budget // 3:
        history = history[2:]  # the oldest exchange goes first
    fixed = system_cost + sum(generator.count_tokens(m["content"]) for m in history) + generator.count_tokens(question) + 32
    kept: list[str] = []
    used = fixed
    for block in blocks:
        cost = generator.count_tokens(block) + 2
        if used + cost > budget:
            break
        kept.append(block)
        used += cost
    sources = "\n\n".join(kept) if kept else "(no sources)"
    user = f"Sources:\n\n{sources}\n\nQuestion: {question}\nAnswer from the sources above and cite them by number, like [1]."
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, *history, {"role": "user", "content": user}]
    return messages, len(kept)


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def repetition_start(text: str, min_chars: int = 20) -> int | None:
    """Where `text` starts repeating a finished sentence it already contains, or None.

    Small models fall into loops; cutting at the first repeated sentence keeps the answer readable.
    """
    seen: set[str] = set()
    offset = 0
    parts = _SENTENCE_END.split(text)
    for part in parts[:-1]:  # the last part may still be growing
        key = " ".join(citation_free(part).lower().split())
        start = text.index(part, offset)
        offset = start + len(part)
        if len(key) >= min_chars and key in seen:
            return start
        seen.add(key)
    return None


def citation_free(text: str) -> str:
    return re.sub(r"\[[^\]]*\]", "", text)


def choose(settings: Settings) -> Generator:
    """The model server at settings.llm_url when one is set, else the GGUF file run in this process."""
    if settings.llm_url:
        from rag.generate.server import ServerGenerator

        return ServerGenerator(settings)
    return LlamaGenerator(settings)


# The in-process backend, importable from here as before (it imports llama_cpp only when a model is loaded).
from rag.generate.local import LlamaGenerator, check_gguf  # noqa: E402

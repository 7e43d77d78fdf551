"""The in-process backend: a GGUF model run by llama-cpp-python, the default."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

from rag.config import Settings
from rag.errors import ModelError
from rag.generate import Message


def check_gguf(path: str) -> Path:
    """Fail with one sentence when `path` is not a readable GGUF file."""
    file = Path(path).expanduser()
    hint = "pass --model PATH or set RAG_MODEL to a .gguf file, or leave both empty for the bundled model"
    if not file.exists():
        raise ModelError(f"Model file {file} does not exist; {hint}.")
    if not file.is_file():
        raise ModelError(f"Model path {file} is a folder, not a file; {hint}.")
    try:
        with open(file, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelError(f"Model file {file} cannot be read ({exc.strerror}); check its permissions.") from None
    if magic != b"GGUF":
        raise ModelError(f"Model file {file} is not a GGUF file; {hint} (convert other formats with llama.cpp's tools).")
    return file


# Sampling shared with the server backend (rag/generate/server.py), so both write the same answers.
REPEAT_PENALTY = 1.1


class LlamaGenerator:
    """A GGUF model run by llama-cpp-python, using the chat template stored in the GGUF file."""

    def __init__(self, settings: Settings) -> None:
        file = check_gguf(settings.model_path)
        from llama_cpp import Llama

        try:
            self._llm = Llama(
                model_path=str(file),
                n_ctx=settings.n_ctx,
                n_threads=settings.n_threads or os.cpu_count(),
                n_threads_batch=settings.n_threads_batch or settings.n_threads or os.cpu_count(),
                n_batch=settings.n_batch,
                n_ubatch=settings.n_batch,
                n_gpu_layers=settings.n_gpu_layers,
                seed=settings.seed,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"Model file {file} could not be loaded ({exc}); it may be truncated or of an "
                             "architecture this llama.cpp does not know; download it again or choose another model.") from None
        self.n_ctx = self._llm.n_ctx()
        self.name = file.name
        self.seed = settings.seed
        self._grammars: dict[str, object] = {}
        # llama-cpp-python keeps the last prompt and answer in the context and evaluates only what follows the
        # longest prefix a new prompt shares with them (the system prompt, for the next question); False
        # evaluates every prompt from the start (bench/prompt_cache.py compares the two).
        self.reuse_context = True

    def _grammar(self, text: str):
        """The compiled GBNF grammar (compiled once per text: one per number of sources)."""
        if text not in self._grammars:
            from llama_cpp import LlamaGrammar

            self._grammars[text] = LlamaGrammar.from_string(text, verbose=False)
        return self._grammars[text]

    def count_tokens(self, text: str) -> int:
        return len(self._llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float,
               grammar: str | None = None) -> Iterator[str]:
        if not self.reuse_context:
            self._llm.reset()
        pieces = self._llm.create_chat_completion(
            messages=list(messages), stream=True, max_tokens=max_tokens, temperature=temperature, seed=self.seed,
            repeat_penalty=REPEAT_PENALTY, grammar=self._grammar(grammar) if grammar else None,
        )
        for piece in pieces:
            text = piece["choices"][0]["delta"].get("content")
            if text:
                yield text

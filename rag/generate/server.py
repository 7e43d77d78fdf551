"""The server backend: an OpenAI-compatible chat server (llama.cpp's two servers, Ollama, vLLM) writes the answer."""

from __future__ import annotations

import http.client
import json
import math
import re
import socket
import urllib.error
import urllib.request
from typing import Any, Iterator, Sequence

from rag.config import Settings
from rag.errors import ModelServerError
from rag.generate import Message
from rag.generate.local import REPEAT_PENALTY

CHAT = "/v1/chat/completions"  # the server applies the model's chat template, as the local backend does
# Endpoints that count tokens with the served model's own tokenizer, tried in this order. Each answers {"tokens": [...]}:
# llama-cpp-python's server reads {"input"} at /extras/tokenize, llama.cpp's llama-server {"content"} at /tokenize
# (vLLM's /tokenize reads {"prompt"}: the body carries both). Special tokens are parsed, as the local count does.
TOKENIZERS = (
    ("/extras/tokenize", lambda text, model: {"input": text, **({"model": model} if model else {})}),
    ("/tokenize", lambda text, model: {"content": text, "prompt": text, "add_special": False,
                                       "add_special_tokens": False, **({"model": model} if model else {})}),
)
_COUNTS_KEPT = 4096  # counted texts remembered: the system prompt and the passages recur from question to question


def estimate_tokens(text: str) -> int:
    """A token count on the high side, for servers that do not tokenize for us (Ollama, OpenAI-style proxies).

    UTF-8 bytes / 2, or, when more, a token per four ASCII letters, per digit, per symbol, per run of
    spaces and per byte of any other character: English BPE vocabularies average about 4 bytes a token,
    but digits and symbols often go one to a token and rare scripts one byte to a token. Too high
    only leaves a source out; too low would overflow the server's context.
    """
    pieces = sum(-(-len(piece) // 4) if piece.isascii() and piece.isalpha() else
                 len(piece.encode("utf-8")) if not piece.isascii() else 1
                 for piece in _PIECES.findall(text))
    return max(math.ceil(len(text.encode("utf-8")) / 2), pieces)


_PIECES = re.compile(r"[A-Za-z]+|\s+|[^\x00-\x7f]|[\x00-\x7f]")


class ServerGenerator:
    """A model behind an OpenAI-compatible HTTP server: streamed chat completions, the server's token counts.

    Only `settings.llm_url` is contacted, directly (no proxy from the environment): nothing leaves the
    machine unless that URL points elsewhere. The GBNF grammar goes in the request's `grammar` field,
    which both llama.cpp servers honour; a server that refuses the field is asked again without it.
    """

    def __init__(self, settings: Settings) -> None:
        self.url = settings.llm_url.rstrip("/")
        self._root = self.url[: -len("/v1")] if self.url.endswith("/v1") else self.url  # both spellings work
        self._key = settings.llm_key
        self._timeout = settings.llm_timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.seed = settings.seed
        self.model = settings.llm_model or self._first_model()  # also fails now, in one sentence, when the server is down
        self.name = self.model or self.url
        self.n_ctx = min(settings.n_ctx, self._served_context() or settings.n_ctx)
        self.tokenizer: str | None = None  # the endpoint that counts tokens; "" when the server has none (estimates)
        # True once the server took a grammar; False once it refused the fields beyond OpenAI's (they are no longer sent).
        self.grammar_supported: bool | None = None
        self._counts: dict[str, int] = {}

    def count_tokens(self, text: str) -> int:
        if text not in self._counts:
            if self.tokenizer is None:
                self.tokenizer = self._find_tokenizer()
            if len(self._counts) >= _COUNTS_KEPT:
                self._counts.clear()
            try:
                self._counts[text] = self._tokenize(self.tokenizer, text) if self.tokenizer else estimate_tokens(text)
            except urllib.error.HTTPError as refused:
                raise self._answered(refused) from None
            except _NotTokens:
                raise self._not_openai() from None
        return self._counts[text]

    def stream(self, messages: Sequence[Message], max_tokens: int, temperature: float,
               grammar: str | None = None) -> Iterator[str]:
        body: dict[str, Any] = {"messages": list(messages), "stream": True, "max_tokens": max_tokens,
                                "temperature": temperature, "seed": self.seed}
        if self.model:
            body["model"] = self.model
        # Beyond OpenAI's fields, the sampling the local backend uses, and the grammar.
        extras: dict[str, Any] = {"repeat_penalty": REPEAT_PENALTY, **({"grammar": grammar} if grammar else {})}
        response = self._chat(body, extras, grammar is not None)
        try:
            yield from self._pieces(response)
        finally:
            response.close()  # a reply stopped early (a repetition, Stop in the app) ends the server's generation too

    def _chat(self, body: dict, extras: dict, constrained: bool):
        if self.grammar_supported is False:
            return self._call(CHAT, body)
        try:
            response = self._open(CHAT, {**body, **extras})
        except urllib.error.HTTPError as refused:
            if refused.code not in (400, 422):
                raise self._answered(refused) from None
            response = self._call(CHAT, body)  # a strict server that refuses unknown fields: ask without them
            self.grammar_supported = False
            return response
        if constrained:
            self.grammar_supported = True
        return response

    def _pieces(self, response) -> Iterator[str]:
        """The text of each streamed chunk (server-sent events); a server that ignores `stream` sends one JSON answer."""
        try:
            if response.headers.get_content_type() != "text/event-stream":
                yield self._json(response.read())["choices"][0]["message"]["content"] or ""
                return
            for raw in response:
                line = raw.decode("utf-8").strip()
                if not line.startswith("data:"):
                    continue  # blank separators, ": ping" comments, "event:" lines
                data = line[len("data:"):].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if "error" in chunk:  # llama-server and vLLM report a failure inside the stream
                    raise ModelServerError(f"The model server at {self.url} stopped the answer with an error "
                                           f"({_detail(chunk)}); check the server's log.")
                for choice in chunk.get("choices") or ():
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        yield text
        except TimeoutError:
            raise self._timed_out() from None
        except (http.client.HTTPException, OSError):
            raise ModelServerError(f"The model server at {self.url} closed the connection before the answer was "
                                   "complete; check the server's log (it may have stopped or run out of memory).") from None
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise self._not_openai() from None

    def _first_model(self) -> str:
        """The first model the server lists; "" when it has no list (it then answers with the one it has)."""
        try:
            with self._open("/v1/models") as response:
                listed = self._json(response.read()).get("data") or []
        except urllib.error.HTTPError as refused:
            if refused.code in (404, 405):
                return ""
            raise self._answered(refused) from None
        except (AttributeError, TypeError):
            raise self._not_openai() from None
        return str(listed[0].get("id", "")) if listed and isinstance(listed[0], dict) else ""

    def _served_context(self) -> int:
        """The context size llama-server reports at /props (others have no such endpoint): 0 when unknown."""
        try:
            with self._open("/props") as response:
                props = json.loads(response.read())
            size = props.get("n_ctx") or (props.get("default_generation_settings") or {}).get("n_ctx")
            return int(size) if size else 0
        except (urllib.error.HTTPError, ModelServerError, ValueError, TypeError, AttributeError):
            return 0

    def _find_tokenizer(self) -> str:
        for path, _ in TOKENIZERS:
            try:
                self._tokenize(path, "Hello")
                return path
            except (urllib.error.HTTPError, _NotTokens):
                continue  # not this server's endpoint
        return ""

    def _tokenize(self, path: str, text: str) -> int:
        body = dict(TOKENIZERS)[path](text, self.model)
        with self._open(path, body) as response:
            try:
                tokens = json.loads(response.read()).get("tokens")
            except (ValueError, AttributeError):
                tokens = None
        if not isinstance(tokens, list):
            raise _NotTokens(path)
        return len(tokens)

    def _call(self, path: str, body: dict | None = None):
        try:
            return self._open(path, body)
        except urllib.error.HTTPError as refused:
            raise self._answered(refused) from None

    def _open(self, path: str, body: dict | None = None):
        """The server's response; an HTTP error status raises HTTPError, no answer at all one ModelServerError."""
        headers = {"Accept": "application/json, text/event-stream"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = json.dumps(body).encode("utf-8") if body is not None else None
        request = urllib.request.Request(self._root + path, data=data, headers=headers)
        try:
            return self._opener.open(request, timeout=self._timeout)
        except urllib.error.HTTPError:
            raise
        except urllib.error.URLError as failure:
            reason = failure.reason
            if isinstance(reason, TimeoutError):
                raise self._timed_out() from None
            if isinstance(reason, ConnectionRefusedError):
                raise ModelServerError(
                    f"The model server at {self.url} refused the connection, so it is not running there; start it "
                    "(for example `python -m llama_cpp.server --model FILE.gguf --port 8000`), correct --llm-url or "
                    "RAG_LLM_URL, or leave both empty to run the model in this process.") from None
            why = "the host name is unknown" if isinstance(reason, socket.gaierror) else str(reason)
            raise ModelServerError(f"The model server at {self.url} cannot be reached ({why}); check --llm-url or "
                                   "RAG_LLM_URL and that the server is running.") from None
        except TimeoutError:
            raise self._timed_out() from None
        except (http.client.HTTPException, OSError) as failure:
            raise ModelServerError(f"The model server at {self.url} broke off the connection ({failure.__class__.__name__}); "
                                   "check that the URL is the server's address and the server's log.") from None

    def _json(self, raw: bytes) -> dict:
        try:
            payload = json.loads(raw)
        except ValueError:
            raise self._not_openai() from None
        if not isinstance(payload, dict):
            raise self._not_openai()
        return payload

    def _answered(self, refused: urllib.error.HTTPError) -> ModelServerError:
        try:
            detail = _detail(json.loads(refused.read() or b"{}"))
        except (ValueError, OSError):
            detail = ""
        detail = detail or str(refused.reason)
        if refused.code in (401, 403):
            todo = "set RAG_LLM_KEY to the server's API key"
        elif refused.code == 404:
            todo = "check that --llm-url is the server's address (such as http://127.0.0.1:8000) and RAG_LLM_MODEL a model it serves"
        else:
            todo = "check the server's log"
        return ModelServerError(f"The model server at {self.url} answered HTTP {refused.code} ({detail}); {todo}.")

    def _timed_out(self) -> ModelServerError:
        return ModelServerError(f"The model server at {self.url} did not answer within {self._timeout:g} s; check that it "
                                "is running and not overloaded, or raise RAG_LLM_TIMEOUT.")

    def _not_openai(self) -> ModelServerError:
        return ModelServerError(f"The model server at {self.url} sent an answer that is not OpenAI-compatible; check that "
                                "--llm-url points at a chat server such as llama.cpp's, Ollama or vLLM.")


class _NotTokens(Exception):
    """An endpoint answered, but not with a list of tokens."""


def _detail(payload: Any) -> str:
    """The server's own words about an error, from the shapes servers use, on one short line."""
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        text = (error.get("message") or error.get("detail") or "") if isinstance(error, dict) else error
        text = text if isinstance(text, str) else json.dumps(text)
    else:
        text = str(payload)
    text = " ".join(text.split()).rstrip(".")
    return text if len(text) <= 200 else text[:199] + "…"

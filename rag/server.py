"""The web server around the Gradio app: loopback by default, a password for anything wider, /doc for cited files."""

from __future__ import annotations

import base64
import hmac
import ipaddress
from pathlib import Path
from typing import Any, Callable, Iterable

from rag.errors import ConfigError

LOOPBACK_NAMES = {"localhost", "localhost.localdomain"}


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_auth(value: str | None, where: str = "--auth") -> tuple[str, str] | None:
    """'user:password' -> (user, password); None or '' -> no authentication."""
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise ConfigError(f"{where} must be USER:PASSWORD with both parts non-empty, got {value.split(':')[0]!r}:…; "
                          "for example --auth alice:a-long-passphrase.")
    return user, password


def parse_logins(values: list[str] | None, where: str = "--auth") -> list[tuple[str, str]]:
    """Every USER:PASSWORD given (--auth repeated, or RAG_AUTH with one per line); each login keeps its own chats."""
    logins = [parse_auth(v.strip(), where) for value in values or [] for v in value.splitlines() if v.strip()]
    users = [user for user, _ in logins]
    if len(set(users)) != len(users):
        raise ConfigError(f"{where} names the user {next(u for u in users if users.count(u) > 1)!r} twice; give each "
                          "login once.")
    return logins


def login_of(headers: Any) -> str:
    """The username of a request that BasicAuth let through ("" without one)."""
    given = headers.get("authorization", "") if hasattr(headers, "get") else ""
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        return base64.b64decode(token).decode("utf-8").partition(":")[0]
    except (ValueError, UnicodeDecodeError):
        return ""


def check_exposure(host: str, auth: tuple[str, str] | list | None) -> None:
    """Refuse to listen beyond this machine without a password."""
    if not is_loopback(host) and auth is None:
        raise ConfigError(f"--host {host} makes the app reachable from other machines; give --auth USER:PASSWORD "
                          "(or set RAG_AUTH) so that only people with the password can read your documents.")


class BasicAuth:
    """ASGI middleware: every request (pages, queue, uploads, /doc files) needs the username and password.

    HTTP Basic authentication, checked in constant time. The browser asks once and sends it with
    every request. Over an untrusted network, put the app behind a TLS reverse proxy (README).
    """

    def __init__(self, app: Any, credentials: tuple[str, str] | list[tuple[str, str]]) -> None:
        self.app = app
        logins = [credentials] if isinstance(credentials, tuple) else list(credentials)
        self._expected = [f"Basic {base64.b64encode(f'{user}:{password}'.encode()).decode()}".encode()
                          for user, password in logins]

    def allowed(self, headers: list[tuple[bytes, bytes]]) -> bool:
        given = next((v for k, v in headers if k.lower() == b"authorization"), b"")
        # Every login is compared, so the time taken does not tell which one nearly matched.
        return sum(hmac.compare_digest(given, expected) for expected in self._expected) > 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or self.allowed(scope.get("headers", [])):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"www-authenticate", b'Basic realm="Chat with your documents", charset="UTF-8"'),
                                (b"content-type", b"text/plain; charset=utf-8")]})
        await send({"type": "http.response.body", "body": b"This app needs a username and password.\n"})


# What a browser shows itself; slides, sheets and e-books are downloaded and opened in their own programs.
_MEDIA = {".pdf": "application/pdf", ".html": "text/html", ".htm": "text/html", ".png": "image/png",
          ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".tif": "image/tiff", ".tiff": "image/tiff",
          ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
          ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
          ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
          ".epub": "application/epub+zip", ".eml": "text/plain; charset=utf-8", ".mbox": "text/plain; charset=utf-8",
          ".csv": "text/plain; charset=utf-8", ".tsv": "text/plain; charset=utf-8"}


def build_server(documents: Callable[[], Iterable[Any]], demo: Any, auth: tuple[str, str] | list[tuple[str, str]] | None = None,
                 max_file_mb: int = 100, head: str | None = None) -> Any:
    """The Gradio app mounted at /, plus /doc/SHA256 serving indexed documents so that citations open them.

    `documents()` gives the indexed documents of every library the app has open.
    """
    import gradio as gr
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import FileResponse

    server = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @server.get("/doc/{digest}")
    def document(digest: str) -> FileResponse:
        # Looked up in the index, never built from the request: nothing outside it can be asked for.
        match = next((d for d in documents() if d.sha256 == digest), None)
        if match is None or not Path(match.path).is_file():
            raise HTTPException(status_code=404, detail="No indexed document has this address.")
        media = _MEDIA.get(Path(match.path).suffix.lower(), "text/plain; charset=utf-8")
        # A saved web page is shown, never run: no scripts, no requests out.
        headers = {"Content-Security-Policy": "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:"}
        shown = "inline" if media.startswith(("text/", "image/", "application/pdf")) else "attachment"
        return FileResponse(match.path, media_type=media, content_disposition_type=shown,
                            filename=Path(match.path).name, headers=headers if media == "text/html" else None)

    app = gr.mount_gradio_app(server, demo, path="", server_name="127.0.0.1", show_error=True,
                              max_file_size=f"{max_file_mb}mb", footer_links=[], head=head)
    return BasicAuth(app, auth) if auth else app

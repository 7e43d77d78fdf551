"""E-mail (.eml, .mbox) -> sections with subject, sender, date and body; readable attachments become their own parts.

The standard library's email package parses the messages. An attachment of a type we read (a PDF,
a sheet, another e-mail...) is loaded by its own loader and cited as "report.pdf (attachment of
mail.eml)"; other attachments are named in the message's header lines.
"""

from __future__ import annotations

import email
import re
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from rag.errors import LoadError

if TYPE_CHECKING:
    from rag.loaders import Section

MAX_DEPTH = 8  # messages attached to messages attached to ...; real mail rarely goes past 3
MAX_PARTS = 1_000  # MIME parts walked in one message
_MBOX_FROM = re.compile(rb"(?m)^From .*\r?\n")  # the separator line mbox writes before each message

Loader = Callable[[str, bytes], "list[Section]"]


def eml_sections(path: str, data: bytes, load: Loader) -> list["Section"]:
    """The message and its readable attachments; `load(name, data)` reads an attachment by its file name."""
    return _message_sections(path, _parse(path, data), load, depth=0, where="")


def mbox_sections(path: str, data: bytes, load: Loader, max_pages: int) -> list["Section"]:
    """Every message of a mailbox file, each named "message N" in the order the file holds them."""
    starts = [m.start() for m in _MBOX_FROM.finditer(data)]
    if not starts or data[: starts[0]].strip():
        raise LoadError(path, "not an mbox mailbox (it does not start with a \"From \" line); "
                              "save single messages as .eml")
    if len(starts) > max_pages * 20:
        raise LoadError(path, f"the mailbox holds {len(starts):,} messages, more than the limit of {max_pages * 20:,} "
                              "(20 x RAG_MAX_PAGES); split it or raise RAG_MAX_PAGES")
    sections: list[Section] = []
    for number, (start, end) in enumerate(zip(starts, starts[1:] + [len(data)]), start=1):
        raw = _MBOX_FROM.sub(b"", data[start:end], count=1)
        raw = re.sub(rb"(?m)^>(>*From )", rb"\1", raw)  # mbox quotes body lines that start with "From "
        sections += _message_sections(path, _parse(path, raw), load, depth=0, where=f"message {number}")
    return sections


def _parse(path: str, data: bytes) -> EmailMessage:
    try:
        return email.message_from_bytes(data, policy=policy.default)
    except RecursionError:
        raise LoadError(path, "the message nests its parts too deeply to be real mail; it was not read") from None


def _message_sections(path: str, message: EmailMessage, load: Loader, depth: int, where: str,
                      part: str = "") -> list["Section"]:
    from rag.loaders import Section

    if depth > MAX_DEPTH:
        return []
    try:
        subject = _header(message, "subject")
        lines = [f"{name}: {value}" for name in ("From", "To", "Cc", "Date") if (value := _header(message, name.lower()))]
        body, attachments = _walk(path, message)
    except RecursionError:
        raise LoadError(path, "the message nests its parts too deeply to be real mail; it was not read") from None
    sections: list[Section] = []
    named: list[str] = []
    for name, payload in attachments:
        inner = _attachment(path, name, payload, load, depth)
        named.append(name if inner is not None else f"{name} (not read)")
        for s in inner or ():
            where_inner = ", ".join(w for w in (where, s.where or (f"page {s.page}" if s.page else "")) if w)
            sections.append(Section(path, s.text, s.page, s.heading, where_inner, f"{s.part} in {name}" if s.part else name, s.rows))
    if named:
        lines.append(f"Attachments: {', '.join(named)}")
    text = "\n".join(lines) + ("\n\n" + body if body else "")
    head = Section(path, text.strip(), None, subject or "(no subject)", where, part)
    return [head] + sections


def _header(message: EmailMessage, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, IndexError, TypeError):  # a malformed header the policy cannot parse
        value = message.get_all(name, [""])[0] if hasattr(message, "get_all") else ""
    return " ".join(str(value or "").split())


def _walk(path: str, message: EmailMessage) -> tuple[str, list[tuple[str, bytes | EmailMessage]]]:
    """The body (plain text, else the HTML's text) and the attachments, at most MAX_PARTS parts."""
    plain: list[str] = []
    html: list[str] = []
    attachments: list[tuple[str, bytes | EmailMessage]] = []
    for count, item in enumerate(_parts(path, message), start=1):
        if count > MAX_PARTS:
            raise LoadError(path, f"the message has more than {MAX_PARTS} parts; it was not read")
        kind = item.get_content_type()
        filename = item.get_filename()
        if kind == "message/rfc822" or (item.get_content_maintype() == "message" and not filename):
            inner = item.get_payload()
            inner = inner[0] if isinstance(inner, list) and inner else inner
            if isinstance(inner, EmailMessage):
                attachments.append((filename or f"{_header(inner, 'subject') or 'message'}.eml", inner))
            continue
        if filename or item.get_content_disposition() == "attachment":
            payload = item.get_payload(decode=True) or b""
            attachments.append((Path(filename or "attachment").name, payload))
        elif kind == "text/plain":
            plain.append(_text(item))
        elif kind == "text/html":
            html.append(_text(item))
    if plain:
        return "\n\n".join(p.strip() for p in plain if p.strip()), attachments
    from rag.loaders.web import html_sections

    return "\n\n".join(body for doc in html for _, body in html_sections(doc)), attachments


def _parts(path: str, message: EmailMessage):
    """The leaf parts and attached messages in order, without descending into an attached message."""
    stack = [(message, 0)]
    while stack:
        item, depth = stack.pop()
        if item.get_content_maintype() == "multipart" and item is not None:
            if depth >= MAX_DEPTH * 4:
                raise LoadError(path, "the message nests its parts too deeply to be real mail; it was not read")
            children = item.get_payload()
            if isinstance(children, list):
                stack.extend((child, depth + 1) for child in reversed(children) if isinstance(child, EmailMessage))
            continue
        yield item


def _text(item: EmailMessage) -> str:
    try:
        return item.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset, a broken transfer encoding
        payload = item.get_payload(decode=True) or b""
        return payload.decode("utf-8", errors="replace")


def _attachment(path: str, name: str, payload: bytes | EmailMessage, load: Loader, depth: int) -> list["Section"] | None:
    """The attachment's sections, or None when its type is not read or it cannot be read."""
    from rag.loaders import is_supported

    if isinstance(payload, EmailMessage):
        try:
            return _message_sections(path, payload, load, depth + 1, "")
        except LoadError:
            return None
    if not is_supported(Path(name)) or not payload.strip():
        return None
    try:
        return load(name, payload)
    except LoadError:
        return None

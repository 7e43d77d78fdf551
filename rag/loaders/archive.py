"""Zip containers (.docx, .pptx, .xlsx, .epub) checked before a library unpacks them: no bombs, no surprises.

python-pptx and openpyxl call ZipFile.read(), which inflates a member's whole compressed data in
one call; a header that understates the size would unpack a bomb in memory before the CRC check
fails. So every member is first inflated here a megabyte at a time, counting the real bytes.
"""

from __future__ import annotations

import io
import zipfile
import zlib

from rag.errors import LoadError

MAX_MEMBERS = 10_000
_PIECE = 2**20


def checked_zip(path: str, data: bytes, max_bytes: int, kind: str) -> zipfile.ZipFile:
    """The archive, once every member is known to unpack to at most `max_bytes` in all; LoadError says why not."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
        if len(members) > MAX_MEMBERS:
            raise LoadError(path, f"the {kind} holds {len(members):,} parts, more than {MAX_MEMBERS:,}; "
                                  "it is damaged or not a real document")
        declared = sum(m.file_size for m in members)
        if declared > max_bytes:
            raise LoadError(path, f"the {kind} unpacks to {declared / 2**20:,.0f} MB, over the limit of "
                                  f"{max_bytes / 2**20:,.0f} MB; it may be a decompression bomb; raise RAG_MAX_FILE_MB to read it")
        total = 0
        for member in members:
            with archive.open(member) as stream:
                while piece := stream.read(_PIECE):
                    total += len(piece)
                    if total > max_bytes:
                        raise LoadError(path, f"the {kind} unpacks to more than the limit of {max_bytes / 2**20:,.0f} MB; "
                                              "it may be a decompression bomb")
        return archive
    except LoadError:
        raise
    except (RuntimeError, NotImplementedError) as exc:  # an encrypted member, an unknown compression method
        raise LoadError(path, f"the {kind} is encrypted or uses an unsupported packing ({exc}); "
                              "save it again without a password") from None
    except (zipfile.BadZipFile, zlib.error, OSError, ValueError, EOFError) as exc:
        raise LoadError(path, f"the {kind} is damaged or not a {kind} ({exc}); open and save it again") from None


def read_member(path: str, archive: zipfile.ZipFile, name: str, kind: str) -> bytes:
    """One member of an archive that checked_zip passed; LoadError when it is missing."""
    try:
        return archive.read(name)
    except KeyError:
        raise LoadError(path, f"the {kind} has no {name} inside; it is damaged") from None

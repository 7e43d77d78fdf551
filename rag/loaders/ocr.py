"""Images -> text by OCR: Tesseract (Debian's tesseract-ocr, run as a program) or RapidOCR (ONNX models in its wheel).

Used for image files (.png, .jpg, .tiff) and for PDF pages that have no text layer. The engine is
chosen by the `ocr` setting; bench/ocr.py measured both on pages rendered from real PDFs.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Protocol

from rag.errors import LoadError

if TYPE_CHECKING:
    from PIL import Image

ENGINES = ("auto", "tesseract", "rapidocr", "off")
# Pillow's own decompression-bomb guard is a warning up to twice its limit; ours is a clear refusal.
MAX_PIXELS = 120_000_000  # an A4 page at 1200 dpi is 140 million; a phone photo 12 to 50 million
_PAGE_SECONDS = 120  # one page that takes longer is not a page: the engine is stuck
_MIN_DPI, _MAX_DPI = 70, 2400  # Tesseract distrusts resolutions outside this range (kMin/kMaxCredibleResolution)


class Ocr(Protocol):
    """Reads the text of one page image, lines in reading order."""

    name: str

    def read(self, image: "Image.Image") -> str: ...


@dataclass(frozen=True)
class TesseractOcr:
    """Tesseract 5 through its command line: no Python binding to break, one process per page.

    `threads` caps Tesseract's OpenMP threads (0: its default, one per core). One, because its
    threads spin while they wait: on 2 busy cores a 300 dpi page took 13 to 20 s of wall time and
    7 s of CPU with the default, 2 to 5 s and 2 s of CPU with one thread (the tesseract command on a
    page of gnuplot's manual; bench/ocr.py --engines tesseract,tesseract-openmp compares the two).
    """

    language: str = "eng"
    name: str = "tesseract"
    threads: int = 1

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0: one per core), got {self.threads}")

    def read(self, image: "Image.Image") -> str:
        png = io.BytesIO()
        # Keep the image's resolution: without it Tesseract guesses one, and at 200 dpi a wrong guess
        # cut single-column pages into blocks read out of order (character accuracy 0.42, 0.995 with it).
        dpi = image.info.get("dpi")
        credible = dpi and all(_MIN_DPI <= d <= _MAX_DPI for d in dpi)
        image.save(png, format="PNG", **({"dpi": dpi} if credible else {}))
        env = {**os.environ, "OMP_THREAD_LIMIT": str(self.threads)} if self.threads else None
        try:
            done = subprocess.run(["tesseract", "stdin", "stdout", "-l", self.language, "--psm", "3"],
                                  input=png.getvalue(), capture_output=True, timeout=_PAGE_SECONDS, check=False,
                                  env=env)
        except subprocess.TimeoutExpired:
            raise OcrError(f"Tesseract took over {_PAGE_SECONDS} s on one page") from None
        except OSError as exc:
            raise OcrError(f"Tesseract could not be run ({exc}); install tesseract-ocr (make install)") from None
        if done.returncode != 0:
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            raise OcrError(f"Tesseract failed ({message[-1] if message else f'exit {done.returncode}'})")
        return done.stdout.decode("utf-8", "replace").replace("\f", "").strip()


class RapidOcr:
    """RapidOCR (PaddleOCR's PP-OCRv4 models on ONNX Runtime), loaded once and kept."""

    name = "rapidocr"

    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR()

    def read(self, image: "Image.Image") -> str:
        import numpy as np

        found, _ = self._engine(np.asarray(image.convert("RGB")))
        if not found:
            return ""
        # Boxes come one per line of text; sort top to bottom, then left to right within a line.
        boxes = sorted(((min(p[1] for p in box), min(p[0] for p in box), max(p[1] for p in box) - min(p[1] for p in box), text)
                        for box, text, _score in found), key=lambda b: (b[0], b[1]))
        lines: list[list[tuple[float, str]]] = []
        last_top = last_height = None
        for top, left, height, text in boxes:
            if lines and last_top is not None and top - last_top < 0.5 * max(height, last_height or 1):
                lines[-1].append((left, text))
            else:
                lines.append([(left, text)])
                last_top, last_height = top, height
        return "\n".join(" ".join(text for _, text in sorted(line)) for line in lines)


class OcrError(Exception):
    """The engine could not read a page."""


def available(engine: str) -> bool:
    if engine == "tesseract":
        return shutil.which("tesseract") is not None
    if engine == "rapidocr":
        import importlib.util

        return importlib.util.find_spec("rapidocr_onnxruntime") is not None
    return False


def choose(engine: str) -> Ocr | None:
    """The engine the setting names; "auto" takes Tesseract, then RapidOCR, else none; ValueError names the choices."""
    if engine not in ENGINES:
        raise ValueError(f"unknown OCR engine {engine!r}; use one of {', '.join(ENGINES)}")
    if engine == "off":
        return None
    if engine == "auto":
        engine = next((e for e in ("tesseract", "rapidocr") if available(e)), "")
        if not engine:
            return None
    elif not available(engine):
        return None
    return TesseractOcr() if engine == "tesseract" else RapidOcr()


def why_not(engine: str) -> str:
    """Why no OCR ran, as the end of a sentence about a file."""
    if engine == "off":
        return "OCR is off (RAG_OCR=off); set RAG_OCR=auto to read it"
    if engine in ("auto", "tesseract"):
        return "no OCR engine is installed; run `make install` (it installs tesseract-ocr) or set RAG_OCR=rapidocr"
    return "RapidOCR is not installed; pip install rapidocr-onnxruntime, or set RAG_OCR=auto"


def open_image(path: str, data: bytes) -> "Image.Image":
    """The image, checked before it is decoded: LoadError for a damaged file or one over MAX_PIXELS."""
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise LoadError(path, f"the image is damaged or not an image ({exc}); open and save it again") from None
    except Image.DecompressionBombError:
        raise LoadError(path, "the image is too large to decode safely; it may be a decompression bomb") from None
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise LoadError(path, f"the image is {width} x {height} pixels, over the limit of {MAX_PIXELS // 10**6} "
                              "million; scale it down and ingest it again")
    return image


def image_pages(path: str, data: bytes, ocr: Ocr | None, engine: str, max_pages: int,
                on_page: Callable[[], None] | None = None) -> list[tuple[int, str]]:
    """(page number, text) of an image file; a multi-page TIFF gives one page per frame."""
    from PIL import Image, ImageSequence

    if ocr is None:
        raise LoadError(path, f"an image is read by OCR, and {why_not(engine)}")
    image = open_image(path, data)
    frames = getattr(image, "n_frames", 1)
    if frames > max_pages:
        raise LoadError(path, f"the image has {frames} pages, more than the limit of {max_pages}; raise RAG_MAX_PAGES")
    pages = []
    try:
        with Image.Image.__enter__(image):
            for number, frame in enumerate(ImageSequence.Iterator(image), start=1):
                pages.append((number, read_page(path, ocr, frame, number)))
                if on_page:
                    on_page()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise LoadError(path, f"the image is damaged ({exc}); open and save it again") from None
    return pages


def read_page(path: str, ocr: Ocr, image: "Image.Image", number: int) -> str:
    """One page's text; LoadError names the file and the page when the engine fails."""
    try:
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        return ocr.read(image)
    except OcrError as exc:
        raise LoadError(path, f"OCR failed on page {number}: {exc}") from None

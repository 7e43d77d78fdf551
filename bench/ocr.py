"""OCR engines compared on pages of real PDFs rendered as the product renders a scan, scored against the text layer.

    python bench/ocr.py [--pages 12] [--dpi 300,200] [--photocopy 200] [--engines tesseract,rapidocr]
                        [--pdf FILE ...] [--seed 0] [--details] [--json]

The documents are ones nobody on this team wrote, taken from Debian packages at bench time:
gnuplot's manual (gnuplot-doc, fetched by bench/outside.py) and the R FAQ (r-doc-pdf, a prose
manual). --pages pages are picked from each, one at random (fixed seed) from each of --pages equal
stretches of the document, skipping pages with little text or mostly dot leaders and numbers.

Every page is rendered the way rag/loaders/pdf.py renders a page without a text layer (PDFium,
grayscale, at the dpi, scaled down to the pixel limit) at each --dpi, and once more at --photocopy
dpi made to look copied: turned by about a degree, blurred, grey paper and toner, and noise (a fixed
seed per page). Each image is read by each engine of rag/loaders/ocr.py and compared with the page's
text layer as pypdf extracts it, both with words hyphenated over lines re-joined (as the loader
does), NFKC (so the text layer's ligatures read as letters) and runs of whitespace made one space:
- character accuracy: 1 - Levenshtein distance / reference length, floored at 0;
- the same with every space removed, which shows how much of the loss is only spacing;
- word accuracy: the same over words (word-level Levenshtein), which counts reading order;
- word recall: the share of the reference's words (as a multiset) found in the OCR, which does not.
Times are the OCR call alone (wall clock, and CPU seconds of this process and its children, which
a busy machine inflates less) and, separately, the render. Engines are loaded before any timing.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.metadata
import os
import random
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench import outside  # noqa: E402
from bench.common import cpu_flags, describe, finish, machine  # noqa: E402

WORKDIR = Path("/tmp/rag-bench/ocr")
GNUPLOT = Path("/tmp/rag-bench/outside/docs/gnuplot.pdf")
R_PACKAGE, R_MANUAL = "r-doc-pdf", "usr/share/R/doc/manual/R-FAQ.pdf"
ENGINES = ("tesseract", "tesseract-openmp", "rapidocr")  # tesseract-openmp: Tesseract with its default threads
CPU_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")
MIN_CHARS = 1200  # a page with fewer non-space characters in its text layer is "near-empty"


@dataclass(frozen=True)
class Page:
    """One picked page: the PDF, its page number (from 1) and its text layer, normalised."""

    pdf: Path
    number: int
    reference: str


@dataclass(frozen=True)
class Reading:
    """One engine's reading of one rendered image, scored."""

    engine: str
    variant: str
    page: Page
    chars: float
    chars_no_space: float
    words: float
    word_recall: float
    seconds: float
    cpu_seconds: float
    text: str


# --- documents and pages -------------------------------------------------------------------------

def gnuplot_manual() -> Path:
    """gnuplot.pdf, fetched with bench/outside.py when it is not there yet."""
    if not GNUPLOT.exists():
        from bench.outside import DEFAULT_WORKDIR, fetch

        fetch(DEFAULT_WORKDIR)
    return GNUPLOT


def r_faq(workdir: Path = WORKDIR) -> Path:
    """The R FAQ from Debian's r-doc-pdf: `apt-get download` and `dpkg-deb -x` under `workdir`."""
    target = workdir / "R-FAQ.pdf"
    if target.exists():
        return target
    debs = workdir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    if not list(debs.glob(f"{R_PACKAGE}_*.deb")):
        outside.run_tool(["apt-get", "download", R_PACKAGE], cwd=debs,
             failure=f"apt-get could not download {R_PACKAGE}; run `apt-get update` (as root) and check the network")
    deb = sorted(debs.glob(f"{R_PACKAGE}_*.deb"))[-1]
    extract = workdir / "extract"
    shutil.rmtree(extract, ignore_errors=True)
    outside.run_tool(["dpkg-deb", "-x", str(deb), str(extract)], failure=f"unpacking {deb.name} failed")
    found = [p for p in (extract / R_MANUAL, extract / f"{R_MANUAL}.gz") if p.exists()]
    if not found:
        raise RuntimeError(f"no {R_MANUAL} in {deb.name}; the {R_PACKAGE} layout has changed, pass --pdf instead")
    opener = gzip.open if found[0].suffix == ".gz" else open
    with opener(found[0], "rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def pick_pages(pdf: Path, count: int, seed: int) -> list[Page]:
    """One prose page from each of `count` equal stretches of the PDF, in a random order fixed by `seed`."""
    import pypdf

    reader = pypdf.PdfReader(pdf)
    total = len(reader.pages)
    picked = []
    for stretch in range(min(count, total)):
        numbers = list(range(stretch * total // count, (stretch + 1) * total // count))
        random.Random(f"{seed}:{pdf.name}:{stretch}").shuffle(numbers)
        for index in numbers:
            text = normalise(reader.pages[index].extract_text() or "")
            letters = sum(c.isalpha() for c in text)
            if len(text.replace(" ", "")) >= MIN_CHARS and letters >= 0.6 * len(text.replace(" ", "")):
                picked.append(Page(pdf, index + 1, text))
                break
    return picked


def normalise(text: str) -> str:
    """What both sides are compared as: hyphenated line ends re-joined, NFKC, one space for each run of whitespace."""
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    return " ".join(unicodedata.normalize("NFKC", text).split())


# --- images --------------------------------------------------------------------------------------

def render(document, number: int, dpi: int):
    """The page as rag/loaders/pdf.py renders a scanned page for OCR: grayscale, at `dpi` up to the pixel limit."""
    from rag.loaders.ocr import MAX_PIXELS

    page = document[number - 1]
    width, height = page.get_size()
    scale = min(dpi / 72, (MAX_PIXELS / max(width * height, 1.0)) ** 0.5)
    image = page.render(scale=scale, grayscale=True).to_pil()
    page.close()
    return image


def photocopy(image, seed: Sequence[int]):
    """The page as a so-so copier gives it back: turned 0.3-1.0 degrees, blurred, grey, speckled."""
    import numpy as np
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(list(seed))
    angle = float(rng.uniform(0.3, 1.0) * rng.choice([-1, 1]))
    turned = image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    pixels = np.asarray(turned.filter(ImageFilter.GaussianBlur(0.8)), dtype=np.float32)
    pixels = pixels * 0.8 + 30 + rng.normal(0, 12, pixels.shape)  # black toner at 30, white paper at 234
    specks = rng.random(pixels.shape) < 0.0005
    pixels[specks] = 40
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "L")


# --- scores --------------------------------------------------------------------------------------

def levenshtein(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Edit distance (unit insert, delete, substitute) between two sequences of characters or words.

    Myers' bit-vector algorithm (J. ACM 46(3), 1999) in the form of Hyyrö, "Explaining and extending
    the bit-parallel approximate string matching algorithm of Myers" (2001), fig. 3, for the global
    distance: one column of the DP table is two bit vectors held in Python integers, so a page
    against a page (4,000 by 4,000 characters) takes milliseconds, not the seconds of a plain DP.
    """
    if not a:
        return len(b)
    mask = (1 << len(a)) - 1
    top = 1 << (len(a) - 1)
    peq: dict[Hashable, int] = {}
    for i, symbol in enumerate(a):
        peq[symbol] = peq.get(symbol, 0) | (1 << i)
    pv, mv, score = mask, 0, len(a)
    for symbol in b:
        eq = peq.get(symbol, 0)
        xv = eq | mv
        xh = ((((eq & pv) + pv) & mask) ^ pv) | eq
        ph = (mv | ~(xh | pv)) & mask
        mh = pv & xh
        if ph & top:
            score += 1
        elif mh & top:
            score -= 1
        ph = ((ph << 1) | 1) & mask  # the top row of the table counts up: D[0][j] = j
        mh = (mh << 1) & mask
        pv = (mh | ~(xv | ph)) & mask
        mv = ph & xv
    return score


def accuracy(reference: Sequence[Hashable], hypothesis: Sequence[Hashable]) -> float:
    """1 - edit distance / reference length, floored at 0 (an engine that writes garbage scores 0, not below)."""
    if not reference:
        return 1.0 if not hypothesis else 0.0
    return max(0.0, 1 - levenshtein(reference, hypothesis) / len(reference))


def recall(reference: list[str], hypothesis: list[str]) -> float:
    """Share of the reference's words found in the hypothesis, counted as multisets (order ignored)."""
    if not reference:
        return 1.0
    found = Counter(hypothesis)
    return sum(min(n, found[w]) for w, n in Counter(reference).items()) / len(reference)


def score(engine: str, variant: str, page: Page, text: str, seconds: float, cpu: float) -> Reading:
    ocr = normalise(text)
    ref_words, ocr_words = page.reference.split(), ocr.split()
    return Reading(engine, variant, page, accuracy(page.reference, ocr),
                   accuracy(page.reference.replace(" ", ""), ocr.replace(" ", "")),
                   accuracy(ref_words, ocr_words), recall(ref_words, ocr_words), seconds, cpu, ocr)


# --- the run -------------------------------------------------------------------------------------

def load(engine: str):
    from rag.loaders.ocr import RapidOcr, TesseractOcr

    if engine == "rapidocr":
        return RapidOcr()
    return TesseractOcr(threads=0 if engine == "tesseract-openmp" else 1)


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (Tesseract runs as a child)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def run(pages: list[Page], variants: list[tuple[str, int, bool]], engines: dict, seed: int,
        log) -> tuple[list[Reading], dict[str, list[float]]]:
    """Every page, rendered as every variant, read by every engine; the readings and render seconds per variant."""
    import pypdfium2

    readings: list[Reading] = []
    renders: dict[str, list[float]] = {name: [] for name, _, _ in variants}
    documents = {pdf: pypdfium2.PdfDocument(str(pdf)) for pdf in {p.pdf for p in pages}}
    files = sorted(documents, key=str)
    for page in pages:
        for name, dpi, copied in variants:
            start = time.perf_counter()
            image = render(documents[page.pdf], page.number, dpi)
            if copied:
                image = photocopy(image, (seed, files.index(page.pdf), page.number))
            renders[name].append(time.perf_counter() - start)
            for engine_name, engine in engines.items():
                cpu, start = cpu_seconds(), time.perf_counter()
                text = engine.read(image)
                seconds, cpu = time.perf_counter() - start, cpu_seconds() - cpu
                reading = score(engine_name, name, page, text, seconds, cpu)
                readings.append(reading)
                log(f"  {page.pdf.name} p.{page.number} {name} {engine_name}: chars {reading.chars:.3f} "
                    f"words {reading.words:.3f} {seconds:.1f} s")
    for document in documents.values():
        document.close()
    return readings, renders


def versions() -> dict[str, str]:
    import pypdfium2

    found = {}
    try:
        done = subprocess.run(["tesseract", "--version"], capture_output=True, text=True, check=False)
        found["tesseract"] = " ".join((done.stdout + done.stderr).split("\n")[:2]).strip().removeprefix("tesseract ")
    except OSError:
        found["tesseract"] = "not installed"
    for package in ("rapidocr-onnxruntime", "onnxruntime", "pypdf", "Pillow"):
        try:
            found[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            found[package] = "not installed"
    found["pypdfium2"] = f"{pypdfium2.PYPDFIUM_INFO} (PDFium {pypdfium2.PDFIUM_INFO})"
    return found


def table(readings: list[Reading], renders: dict[str, list[float]]) -> str:
    rows = ["| engine | variant | pages | char acc mean | char acc median | char acc, spaces ignored | "
            "word acc (edit) | word recall (bag) | pages/s | s/page (OCR) | CPU s/page | s/page (render) |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    groups: dict[tuple[str, str], list[Reading]] = {}
    for r in readings:
        groups.setdefault((r.engine, r.variant), []).append(r)
    for (engine, variant), group in groups.items():
        seconds = sum(r.seconds for r in group)
        rows.append(f"| {engine} | {variant} | {len(group)} | {statistics.mean(r.chars for r in group):.3f} | "
                    f"{statistics.median(r.chars for r in group):.3f} | "
                    f"{statistics.mean(r.chars_no_space for r in group):.3f} | "
                    f"{statistics.mean(r.words for r in group):.3f} | {statistics.mean(r.word_recall for r in group):.3f} | "
                    f"{len(group) / seconds:.3f} | {seconds / len(group):.2f} | "
                    f"{sum(r.cpu_seconds for r in group) / len(group):.2f} | {statistics.mean(renders[variant]):.3f} |")
    return "\n".join(rows)


def worst(readings: list[Reading], width: int = 240) -> str:
    """For each engine, the start of its lowest-scoring page beside the text layer, to see what went wrong."""
    lines = []
    for engine in dict.fromkeys(r.engine for r in readings):
        r = min((r for r in readings if r.engine == engine), key=lambda r: r.chars)
        lines += [f"{engine}, worst: {r.page.pdf.name} p.{r.page.number} {r.variant}, char acc {r.chars:.3f}",
                  f"  text layer: {r.page.reference[:width]}", f"  OCR:        {r.text[:width]}"]
    return "\n".join(lines)


def _numbers(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None
    if not values or any(v < 50 or v > 1200 for v in values):
        raise argparse.ArgumentTypeError(f"dpi must be between 50 and 1200, got {text!r}")
    return values


def _engines(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if unknown := [n for n in names if n not in ENGINES]:
        raise argparse.ArgumentTypeError(f"unknown engine {', '.join(unknown)}; use one of {', '.join(ENGINES)}")
    return names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="One page at 300 dpi takes 2-20 s per engine on 2 cores: "
                                            "pages x variants x engines decides the run time.")
    parser.add_argument("--pages", type=int, default=12, help="pages per document (default 12)")
    parser.add_argument("--dpi", type=_numbers, default=[300, 200], help="render resolutions, comma-separated (default 300,200)")
    parser.add_argument("--photocopy", type=int, default=200, metavar="DPI",
                        help="dpi of the photocopy-like variant; 0 leaves it out (default 200)")
    parser.add_argument("--engines", type=_engines, default=["tesseract", "rapidocr"],
                        help=f"comma-separated, from {', '.join(ENGINES)} (default tesseract,rapidocr)")
    parser.add_argument("--pdf", type=Path, action="append",
                        help="a PDF with a text layer to use instead of the Debian manuals (repeatable)")
    parser.add_argument("--seed", type=int, default=0, help="picks the pages and the photocopy noise (default 0)")
    parser.add_argument("--details", action="store_true", help="a line per page and engine, and each engine's worst page")
    parser.add_argument("--json", action="store_true", help="print a JSON object as the last line")
    args = parser.parse_args()
    if args.pages < 1:
        parser.error(f"--pages must be at least 1, got {args.pages}")

    pdfs = args.pdf or [gnuplot_manual(), r_faq()]
    if missing := [str(p) for p in pdfs if not p.is_file()]:
        parser.error(f"no such PDF: {', '.join(missing)}")
    variants = [(f"{dpi} dpi", dpi, False) for dpi in args.dpi]
    if args.photocopy:
        variants.append((f"photocopy {args.photocopy} dpi", args.photocopy, True))
    pages = [page for pdf in pdfs for page in pick_pages(pdf, args.pages, args.seed)]

    info, found = machine(), versions()
    print(f"Machine: {describe(info)}; CPU flags: {' '.join(cpu_flags(CPU_FLAGS)) or 'unknown'}; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    print("Versions: " + "; ".join(f"{k} {v}" for k, v in found.items()))
    for pdf in pdfs:
        numbers = [p.number for p in pages if p.pdf == pdf]
        chars = [len(p.reference) for p in pages if p.pdf == pdf]
        print(f"Pages of {pdf}: {', '.join(map(str, numbers))} ({statistics.mean(chars or [0]):.0f} characters each on average)")
    loaded = {}
    for name in args.engines:
        start = time.perf_counter()
        loaded[name] = load(name)
        print(f"Loaded {name} in {time.perf_counter() - start:.2f} s")

    started = time.perf_counter()
    readings, renders = run(pages, variants, loaded, args.seed, print if args.details else lambda _: None)
    print()
    print(table(readings, renders))
    print()
    print(f"{len(pages)} pages x {len(variants)} variants x {len(loaded)} engines in {time.perf_counter() - started:.0f} s; "
          f"load average at the end {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    if args.details:
        print(worst(readings))
    finish({"machine": info, "cpu_flags": cpu_flags(CPU_FLAGS), "versions": found,
            "pages": [{"pdf": str(p.pdf), "page": p.number, "chars": len(p.reference)} for p in pages],
            "readings": [{"engine": r.engine, "variant": r.variant, "pdf": r.page.pdf.name, "page": r.page.number,
                          "chars": r.chars, "chars_no_space": r.chars_no_space, "words": r.words,
                          "word_recall": r.word_recall, "seconds": r.seconds, "cpu_seconds": r.cpu_seconds}
                         for r in readings],
            "render_seconds": renders}, args.json)


if __name__ == "__main__":
    main()

"""An outside document set (gnuplot's PDF manual, the Python tutorial) fetched from Debian packages, and its questions."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rag.loaders import Section

PACKAGES = ("gnuplot-doc", "python3.11-doc")
DEFAULT_WORKDIR = Path("/tmp/rag-bench/outside")
QUESTIONS = Path(__file__).with_name("outside_questions.md")
OFF_TOPIC_MARK = "# Off-topic"


@dataclass(frozen=True)
class OutsideQuestion:
    """A question one document answers: the file (name only), its PDF page (None for HTML) and the facts a right answer holds."""

    question: str
    file: str
    page: int | None
    facts: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.question.strip():
            raise ValueError(f"empty question for {self.file}")
        if self.page is not None and self.page < 1:
            raise ValueError(f"page numbers start at 1, got {self.page} for {self.question!r}")
        if not self.facts or not all(f.strip() for f in self.facts):
            raise ValueError(f"every question needs non-empty facts, got {self.facts!r} for {self.question!r}")


def fetch(workdir: Path) -> Path:
    """Download and unpack the two Debian packages under `workdir`; return `workdir/docs` holding just the documents."""
    debs = _download(workdir / "debs")
    extract = workdir / "extract"
    if extract.exists():
        shutil.rmtree(extract)  # a layout change between versions must not find the old files
    for deb in debs.values():
        run_tool(["dpkg-deb", "-x", str(deb), str(extract)], f"unpacking {deb.name} failed")
    docs = workdir / "docs"
    if docs.exists():
        shutil.rmtree(docs)  # "exactly these files": nothing left over from an earlier layout
    docs.mkdir(parents=True)
    _copy_manual(extract, docs / "gnuplot.pdf")
    tutorial = docs / "python-tutorial"
    tutorial.mkdir()
    for page in sorted(_tutorial_dir(extract).glob("*.html")):
        shutil.copyfile(page, tutorial / page.name)
    return docs


def versions(workdir: Path) -> dict[str, str]:
    """The Debian version of each downloaded package, as its control file states it."""
    return {name: run_tool(["dpkg-deb", "-f", str(deb), "Version"], f"reading {deb.name} failed").strip()
            for name, deb in _debs(workdir / "debs").items()}


def questions(path: Path = QUESTIONS) -> tuple[list[OutsideQuestion], list[str]]:
    """The on-topic questions and the off-topic ones (the plain lines after "# Off-topic") in the questions file."""
    on_topic: list[OutsideQuestion] = []
    off_topic: list[str] = []
    in_off_topic = False
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if line.lower() == OFF_TOPIC_MARK.lower():
            in_off_topic = True
            continue
        if not line or line.startswith("#"):
            continue
        if in_off_topic:
            off_topic.append(line)
        else:
            on_topic.append(_parse(line, f"{path.name} line {number}"))
    return on_topic, off_topic


def check(docs: Path, path: Path = QUESTIONS) -> list[str]:
    """Each fact's first alternative must be on its page or in its file, as the project's loader reads it; the failures."""
    from rag import loaders

    files = {p.name: p for p in docs.rglob("*") if p.is_file()}
    texts: dict[str, dict[int | None, str]] = {}
    failures: list[str] = []
    for q in questions(path)[0]:
        if q.file not in files:
            failures.append(f"{q.question} -- no file {q.file} under {docs}")
            continue
        if q.file not in texts:
            texts[q.file] = _pages(loaders.load(files[q.file]))
        pages = texts[q.file]
        text = pages.get(q.page) if q.page is not None else " ".join(pages.values())
        if text is None:
            failures.append(f"{q.question} -- {q.file} has no page {q.page} in the loader's output")
        elif _normal(q.facts[0]) not in text:
            failures.append(f"{q.question} -- {q.facts[0]!r} is not in {q.file}" + (f" p.{q.page}" if q.page else ""))
    for failure in failures:
        print("FAIL", failure)
    return failures


def _parse(line: str, where: str) -> OutsideQuestion:
    parts = [p.strip() for p in line.split(" -- ")]
    if len(parts) != 3:
        raise ValueError(f"{where}: expected 'question -- FILE p.N -- fact | fact', got {line!r}")
    question, source, facts = parts
    file, _, page = source.partition(" p.")
    if page and not page.isdigit():
        raise ValueError(f"{where}: the page must be a number, got {page!r}")
    return OutsideQuestion(question, file.strip(), int(page) if page else None,
                           tuple(f.strip() for f in facts.split("|")))


def _normal(text: str) -> str:
    """Lower case with runs of whitespace as one space: how answers are matched against facts."""
    return " ".join(text.split()).lower()


def _pages(sections: list[Section]) -> dict[int | None, str]:
    """Normalised text per PDF page; HTML sections have no page, so they join under None."""
    pages: dict[int | None, list[str]] = {}
    for section in sections:
        pages.setdefault(section.page, []).append(section.text)
    return {page: _normal(" ".join(parts)) for page, parts in pages.items()}


def _download(debs: Path) -> dict[str, Path]:
    debs.mkdir(parents=True, exist_ok=True)
    missing = [name for name in PACKAGES if name not in _debs(debs)]
    if missing:
        run_tool(["apt-get", "download", *missing], f"apt-get could not download {', '.join(missing)}; "
             "run `apt-get update` (as root) so apt knows the packages, check the network, and try again", cwd=debs)
    found = _debs(debs)
    if absent := [name for name in PACKAGES if name not in found]:
        raise RuntimeError(f"apt-get left no .deb for {', '.join(absent)} in {debs}; run `apt-get update` and try again")
    return found


def _debs(debs: Path) -> dict[str, Path]:
    """The .deb per package in the folder, the last by name if several (apt names them package_version_arch.deb)."""
    return {name: sorted(debs.glob(f"{name}_*.deb"))[-1] for name in PACKAGES if any(debs.glob(f"{name}_*.deb"))}


def _copy_manual(extract: Path, target: Path) -> None:
    # gnuplot-doc 5.4 puts the manual in usr/share/doc/gnuplot/, beside the folder named after the package.
    root = extract / "usr/share/doc"
    found = [p for d in sorted(root.glob("gnuplot*")) for name in ("gnuplot.pdf", "gnuplot.pdf.gz")
             for p in sorted(d.rglob(name))]
    if not found:
        raise RuntimeError(f"no gnuplot.pdf (or .pdf.gz) under {root}/gnuplot*; the gnuplot-doc package layout has changed")
    if found[0].suffix == ".gz":
        with gzip.open(found[0]) as src, target.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    else:
        shutil.copyfile(found[0], target)


def _tutorial_dir(extract: Path) -> Path:
    """The tutorial's HTML folder: html/tutorial in Debian's python3.X-doc, wherever the version puts it."""
    candidates = sorted(d for d in (extract / "usr/share/doc").glob("python3*/**/tutorial")
                        if d.is_dir() and any(d.glob("*.html")))
    if not candidates:
        raise RuntimeError(f"no tutorial/*.html under {extract / 'usr/share/doc'}; the python3.11-doc layout has changed")
    return min(candidates, key=lambda d: len(d.parts))  # the top-level tutorial, not a copy nested deeper


def run_tool(command: list[str], failure: str, cwd: Path | None = None) -> str:
    """The command's output; RuntimeError with `failure` and what the tool said when it fails."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise RuntimeError(f"{failure}: {command[0]} is not installed (it comes with Debian's apt and dpkg)") from None
    if done.returncode != 0:
        raise RuntimeError(f"{failure} ({command[0]} said: {done.stderr.strip()[-300:]})")
    return done.stdout


def main(argv: list[str]) -> int:
    """`[--check] [WORKDIR]`: fetch the documents, list them, and with --check test every fact against them."""
    checking = "--check" in argv
    rest = [a for a in argv if a != "--check"]
    workdir = Path(rest[0]) if rest else DEFAULT_WORKDIR
    docs = fetch(workdir)
    print(docs)
    for name, version in versions(workdir).items():
        print(f"  {name} {version}")
    for path in sorted(p for p in docs.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(docs)}  {path.stat().st_size:,} bytes")
    if not checking:
        return 0
    on_topic, off_topic = questions()
    failures = check(docs)
    print(f"{len(on_topic)} on-topic questions, {len(off_topic)} off-topic; "
          f"{len(on_topic) - len(failures)} facts found, {len(failures)} missing")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

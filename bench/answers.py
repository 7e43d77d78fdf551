"""Are the answers right, and can a person check them? Correctness, support and timing on two question sets.

    python bench/answers.py [--set corpus|outside|both] [--json] [--limit N]
    RAG_EVIDENCE_TOKENS=0|150|300|600 RAG_GRAMMAR=on|off python bench/answers.py ...

corpus: corpus/ ingested afresh, the questions of tests/corpus_questions.md with their facts, and
tests/offtopic_questions.md. outside: gnuplot's PDF manual and the Python tutorial's HTML pages,
fetched from Debian's packages at bench time (bench/outside.py; nothing nobody on the team wrote is
carried by the repository), with the questions of bench/outside_questions.md. Every question is
asked with the bundled models at temperature 0. A fact counts when one of its forms is in the text
(lower case, whitespace and citation markers ignored). "Answer" is what the person reads first: the
checked sentences, or the quoted evidence when none passed; "model text" is everything the model wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.common import describe, machine, percentile  # noqa: E402


def normal(text: str) -> str:
    text = re.sub(r"\[\d+\]", " ", text).replace("’", "'").replace("“", '"').replace("”", '"')
    return " ".join(text.lower().split())


def holds(text: str, facts: Sequence[str]) -> bool:
    flat = normal(text)
    return any(normal(f) in flat for f in facts)


def run_set(name: str, pipeline, questions, off_topic: Sequence[str], verbose: bool) -> dict:
    """Ask every question; count correctness, citations, support and time."""
    from rag.pipeline import Answer, Found

    rows = []
    for q in questions:
        started = time.perf_counter()
        shown = first = None
        answer = None
        for event in pipeline.ask_stream(q.question):
            now = time.perf_counter() - started
            if isinstance(event, Found) and shown is None:
                shown = now
            elif isinstance(event, Answer):
                answer = event
            elif first is None and not isinstance(event, Found):
                first = now
        total = time.perf_counter() - started
        model_text = " ".join(c.text for c in answer.sentences)
        cited = [s for s in answer.cited]
        right_source = any(Path(s.path).name == q.file and (q.page is None or s.page == q.page) for s in cited)
        row = {"question": q.question, "abstained": answer.abstained, "quoted": answer.quoted,
               "fact_in_answer": not answer.abstained and holds(answer.text, q.facts),
               "fact_in_model_text": not answer.abstained and holds(model_text, q.facts),
               "fact_in_evidence": not answer.abstained and any(holds(e.sentence, q.facts) for e in answer.evidence),
               "fact_in_top_evidence": not answer.abstained and bool(answer.evidence) and holds(answer.evidence[0].sentence, q.facts),
               "right_source_cited": not answer.abstained and right_source,
               "sentences": len(answer.sentences), "supported": sum(c.supported for c in answer.sentences),
               "evidence_s": shown, "first_token_s": first, "total_s": total, "answer": answer.text}
        rows.append(row)
        if verbose:
            marks = "".join("x" if row[k] else "." for k in ("fact_in_answer", "fact_in_evidence", "right_source_cited"))
            print(f"  {marks} {row['supported']}/{row['sentences']} {'Q' if answer.quoted else ' '} {q.question[:70]}"
                  f"  -> {answer.text[:90]!r}", flush=True)
    abstained_off = []
    for question in off_topic:
        answer = pipeline.ask(question)
        abstained_off.append(answer.abstained)
        if verbose and not answer.abstained:
            print(f"  answered off-topic: {question[:70]} -> {answer.text[:80]!r}", flush=True)
    answered = [r for r in rows if not r["abstained"]]
    n = max(len(answered), 1)
    sentences = sum(r["sentences"] for r in answered)
    timed = [r for r in rows if r["first_token_s"] is not None]
    return {
        "set": name, "questions": len(rows), "answered": len(answered),
        "answered_share": len(answered) / max(len(rows), 1),
        "fact_in_answer": sum(r["fact_in_answer"] for r in answered) / n,
        "fact_in_model_text": sum(r["fact_in_model_text"] for r in answered) / n,
        "fact_in_evidence": sum(r["fact_in_evidence"] for r in answered) / n,
        "fact_in_top_evidence": sum(r["fact_in_top_evidence"] for r in answered) / n,
        "right_source_cited": sum(r["right_source_cited"] for r in answered) / n,
        "sentences_supported": sum(r["supported"] for r in answered) / max(sentences, 1),
        "supported_throughout": sum(bool(r["sentences"]) and r["supported"] == r["sentences"] for r in answered) / n,
        "quoted": sum(r["quoted"] for r in answered) / n,
        "off_topic": len(off_topic), "off_topic_abstained": sum(abstained_off) / max(len(off_topic), 1),
        "false_abstentions": sum(r["abstained"] for r in rows) / max(len(rows), 1),
        "first_token_p50_s": percentile([r["first_token_s"] for r in timed], 50) if timed else None,
        "first_token_p95_s": percentile([r["first_token_s"] for r in timed], 95) if timed else None,
        "evidence_p50_s": percentile([r["evidence_s"] for r in rows if r["evidence_s"] is not None] or [0], 50),
        "total_p50_s": percentile([r["total_s"] for r in rows], 50),
        "rows": rows,
    }


def corpus_set(workdir: Path):
    from tests.questions import corpus_facts

    off = [line.strip() for line in (ROOT / "tests" / "offtopic_questions.md").read_text(encoding="utf-8").splitlines()
           if line.strip() and not line.startswith("#")]
    return [ROOT / "corpus"], workdir / "corpus-index", corpus_facts(), off


def outside_set(workdir: Path):
    from bench import outside

    docs = outside.fetch(workdir / "outside")
    on, off = outside.questions()
    return [docs], workdir / "outside-index", on, off


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("corpus", "outside", "both"), default="both")
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "rag-bench")
    parser.add_argument("--limit", type=int, help="ask only the first N questions of each set")
    parser.add_argument("--quiet", action="store_true", help="no line per question")
    parser.add_argument("--json", action="store_true", help="end with one JSON line of every figure")
    args = parser.parse_args()

    from rag.config import Settings
    from rag.embeddings import embedder_for
    from rag.indexing import ingest
    from rag.pipeline import Pipeline

    results = []
    info = machine()
    for name in (("corpus", "outside") if args.set == "both" else (args.set,)):
        paths, index, questions, off = (corpus_set if name == "corpus" else outside_set)(args.workdir)
        settings = Settings.load({"index_dir": index, "temperature": 0.0})
        embedder = embedder_for(settings)
        report = ingest(paths, settings, embedder)
        print(f"{name}: {len(report.failed)} files failed; evidence_tokens={settings.evidence_tokens} "
              f"grammar={settings.grammar} top_k={settings.top_k}", flush=True)
        pipeline = Pipeline(settings, embedder=embedder)
        pipeline.warm_up()
        limit = args.limit or None
        result = run_set(name, pipeline, questions[:limit], off[:limit], not args.quiet)
        result.update(evidence_tokens=settings.evidence_tokens, grammar=settings.grammar)
        results.append(result)
    print(f"\n{describe(info)}")
    print(f"{'set':<8} {'answered':>8} {'fact':>6} {'f.model':>7} {'f.evid':>6} {'f.top':>6} {'source':>6} {'sent.ok':>7} {'whole':>6} "
          f"{'quoted':>6} {'off.abst':>8} {'false.ab':>8} {'1st p50':>7} {'1st p95':>7} {'evid p50':>8} {'total':>6}")
    for r in results:
        print(f"{r['set']:<8} {r['answered_share']:>8.0%} {r['fact_in_answer']:>6.0%} {r['fact_in_model_text']:>7.0%} "
              f"{r['fact_in_evidence']:>6.0%} {r['fact_in_top_evidence']:>6.0%} {r['right_source_cited']:>6.0%} {r['sentences_supported']:>7.0%} "
              f"{r['supported_throughout']:>6.0%} {r['quoted']:>6.0%} {r['off_topic_abstained']:>8.0%} "
              f"{r['false_abstentions']:>8.0%} {r['first_token_p50_s'] or 0:>7.2f} {r['first_token_p95_s'] or 0:>7.2f} "
              f"{r['evidence_p50_s']:>8.2f} {r['total_p50_s']:>6.2f}")
    if args.json:
        print(json.dumps({"machine": info, "results": [{k: v for k, v in r.items() if k != "rows"} for r in results]}))


if __name__ == "__main__":
    main()

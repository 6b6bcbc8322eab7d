"""Throughput of the whole batch path (nouns, DF snapshot, TF-IDF, fingerprints) per runner.

Usage: python bench/throughput.py [--reviews-limit N] [--runners inprocess,inline,local,spark]

For each corpus (the 3,668 petitions, and the first N Naver movie reviews, 100,000 by default)
it runs, in turn:

- ``mecab-parse``: ``MeCab.Tagger.parse`` alone over every title and text (the floor);
- ``konlpy``: KoNLPy's ``Mecab.nouns`` alone (the peer the tokenizer must match);
- ``inprocess``: ``Analyzer.term_counts`` of every document, the DF snapshot, every
  fingerprint (what ``textrec ingest`` + ``textrec build`` compute, without the database);
- ``inline``, ``local``, ``spark``: the DF job then the fingerprint job on that mrjob runner
  (``local`` with 2 processes, Spark on a ``local[2]`` master). The jobs extract the nouns
  twice, once per job.

Each runner's DF snapshot id and fingerprints are checked against the in-process ones.
Figures: documents/s and characters/s of wall time, and characters per CPU-second (user +
system time of this process and of every child process it waited for: mrjob's tasks, Spark's
JVM and Python workers), which is the per-core rate and, unlike wall time, hardly depends on
what else runs on a shared machine. Corpora are read from ../shared/data/.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textrec.pipeline import Analyzer
from textrec.runners import run_df_job, run_fingerprint_job
from textrec.simhash import fingerprint_hex
from textrec.tfidf import DFSnapshot
from textrec.tokenize import _mecab_paths, default_tokenizer, normalize_text

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def load(path: Path, limit: int | None) -> list[dict[str, Any]]:
    opener: Callable[..., Any] = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in itertools.islice(f, limit)]


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


class Timer:
    def __enter__(self) -> Timer:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = cpu_seconds() - self.cpu


def report(label: str, timer: Timer, docs: int, chars: int) -> None:
    print(
        f"  {label:<12} {timer.wall:7.2f} s wall {timer.cpu:7.2f} s CPU  "
        f"{docs / timer.wall:>9,.0f} docs/s  {chars / timer.wall:>11,.0f} chars/s  "
        f"{chars / timer.cpu:>11,.0f} chars/CPU-s",
        flush=True,
    )


def bench_corpus(name: str, rows: list[dict[str, Any]], runners: list[str], tmp: str) -> None:
    texts = [normalize_text(t) for r in rows for t in (r.get("title"), r["text"]) if t]
    docs = len(rows)
    chars = sum(len(r["text"]) + len(r.get("title") or "") for r in rows)
    print(f"\n{name}: {docs:,} documents, {chars:,} characters", flush=True)
    path = os.path.join(tmp, f"{name}.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")

    tagger = default_tokenizer()._tagger()
    with Timer() as t:
        for text in texts:
            tagger.parse(text)
    report("mecab-parse", t, docs, chars)

    from konlpy.tag import Mecab

    konlpy = Mecab(dicpath=_mecab_paths()[0])
    with Timer() as t:
        for text in texts:
            konlpy.nouns(text)
    report("konlpy", t, docs, chars)

    analyzer = Analyzer()
    with Timer() as t:
        counts = [analyzer.term_counts(r["text"], r.get("title")) for r in rows]
        kept = [(r["id"], c) for r, c in zip(rows, counts, strict=True) if c]
        snapshot = DFSnapshot.from_documents(c.keys() for _, c in kept)
        fps = analyzer.fingerprints([c for _, c in kept], snapshot)  # as build does, in batches
        expected = {i: fingerprint_hex(fp) for (i, _), fp in zip(kept, fps, strict=True)}
    report("inprocess", t, docs, chars)
    snapshot_path = os.path.join(tmp, f"{name}.df.json")
    snapshot.save(snapshot_path)

    for runner in runners:
        if runner == "inprocess":
            continue
        cores = 1 if runner == "inline" else 2
        with Timer() as t:
            with Timer() as t_df:
                got, _ = run_df_job([path], runner, cores=cores)
            lines, _ = run_fingerprint_job([path], snapshot_path, runner, cores=cores)
        same = got.id == snapshot.id and {x["id"]: x["fingerprint"] for x in lines} == expected
        report(runner, t, docs, chars)
        print(
            f"  {'':<12} DF job {t_df.wall:.2f} s wall, then the fingerprint job; "
            f"identical to in-process: {same}",
            flush=True,
        )
        if not same:
            sys.exit(f"{runner}: output differs from the in-process pipeline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews-limit", type=int, default=100_000)
    parser.add_argument("--petitions-limit", type=int, default=None)
    parser.add_argument("--runners", default="inprocess,inline,local,spark")
    args = parser.parse_args()
    runners = args.runners.split(",")
    load1 = os.getloadavg()[0]
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {load1:.1f}"
    )
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    with tempfile.TemporaryDirectory(prefix="textrec-bench-") as tmp:
        petitions = load(DATA / "petitions_ko_17cat.jsonl", args.petitions_limit)
        bench_corpus("petitions", petitions, runners, tmp)
        reviews = load(DATA / "nsmc_raw_reviews.jsonl.gz", args.reviews_limit)
        bench_corpus("reviews", reviews, runners, tmp)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()

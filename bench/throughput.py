"""Throughput of the whole batch path (nouns, DF snapshot, TF-IDF, fingerprints) per runner.

Usage: python bench/throughput.py [--reviews-limit N] [--runners inprocess,inline,local,spark]

For each corpus (the 3,668 petitions, and the first N Naver movie reviews, 100,000 by default)
it measures, in one process:

- ``mecab-parse``: ``MeCab.Tagger.parse`` alone over every title and text (what KoNLPy and
  the printed-output reader start from);
- ``mecab-nodes``: MeCab's best path alone, walked in C (``textrec._mecab``, counting nouns
  into a throw-away dict): the floor of any noun extractor on MeCab;
- ``konlpy``: KoNLPy's ``Mecab.nouns`` alone (the peer the tokenizer must match);
- ``inprocess``: ``Analyzer.term_counts`` of every document, the DF snapshot, every
  fingerprint (what ``textrec ingest`` + ``textrec build`` compute, without the database).

These four run interleaved, chunk by chunk (the same few hundred documents through each, in
a rotating order), so that a neighbour slowing the shared machine down slows all four alike
and their ratios hold; the DF snapshot and the fingerprints, which need every document, are
timed after the last chunk and added to ``inprocess``. Then, in turn:

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

from textrec.content.analyzer import Analyzer
from textrec.content.simhash import fingerprint_hex
from textrec.content.tfidf import DFSnapshot
from textrec.content.tokenize import _load_direct, _mecab_paths, default_tokenizer, normalize_text
from textrec.pipeline.runners import run_df_job, run_fingerprint_job

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

    @classmethod
    def zero(cls) -> Timer:
        timer = cls()
        timer.wall = timer.cpu = 0.0
        return timer

    def add(self, other: Timer) -> None:
        self.wall += other.wall
        self.cpu += other.cpu


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

    from konlpy.tag import Mecab

    tagger = default_tokenizer()._tagger()
    direct = _load_direct(tagger, None)  # its own, so its term cache is its own too
    konlpy = Mecab(dicpath=_mecab_paths()[0])
    analyzer = Analyzer()

    def parse(chunk: list[dict[str, Any]], texts: list[str]) -> None:
        for text in texts:
            tagger.parse(text)

    def nodes(chunk: list[dict[str, Any]], texts: list[str]) -> None:
        for text in texts:
            direct.count_nouns(text, {}, 1, str)

    def nouns(chunk: list[dict[str, Any]], texts: list[str]) -> None:
        for text in texts:
            konlpy.nouns(text)

    counts: list[dict[str, int]] = []

    def inprocess(chunk: list[dict[str, Any]], texts: list[str]) -> None:
        counts.extend(analyzer.term_counts(r["text"], r.get("title")) for r in chunk)

    steps: dict[str, Callable[[list[dict[str, Any]], list[str]], None]] = {
        "mecab-parse": parse,
        "konlpy": nouns,
        "inprocess": inprocess,
    }
    if direct is not None:
        steps["mecab-nodes"] = nodes
    totals = {name: Timer.zero() for name in steps}
    size = max(1, len(rows) // 200)
    for number, lo in enumerate(range(0, len(rows), size)):
        chunk = rows[lo : lo + size]
        texts = [normalize_text(t) for r in chunk for t in (r.get("title"), r["text"]) if t]
        names = list(steps)
        names = names[number % len(names) :] + names[: number % len(names)]
        for name in names:
            with Timer() as t:
                steps[name](chunk, texts)
            totals[name].add(t)
    with Timer() as t:
        kept = [c for c in counts if c]  # documents without terms get no fingerprint
        snapshot = DFSnapshot.from_documents(kept)  # each dict iterates over its terms
        fps = analyzer.fingerprints(kept, snapshot)  # as build does, in batches
    totals["inprocess"].add(t)
    print(f"  (DF snapshot and fingerprints after the chunks: {t.cpu:.2f} s CPU)")
    kept_ids = [r["id"] for r, c in zip(rows, counts, strict=True) if c]
    expected = {i: fingerprint_hex(fp) for i, fp in zip(kept_ids, fps, strict=True)}
    for name in ("mecab-parse", "mecab-nodes", "konlpy", "inprocess"):
        if name in totals:
            report(name, totals[name], docs, chars)
    floor = totals.get("mecab-nodes", totals["mecab-parse"])
    floor_name = "mecab-nodes" if direct else "mecab-parse"
    print(
        f"  {'':<12} in process / MeCab alone (CPU): "
        f"{floor.cpu / totals['inprocess'].cpu:.2f} of {floor_name}, "
        f"{totals['mecab-parse'].cpu / totals['inprocess'].cpu:.2f} of mecab-parse",
        flush=True,
    )
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

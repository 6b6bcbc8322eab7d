"""Throughput of `textrec ingest` + `textrec build` (in process) on a real corpus.

Usage: python bench/build_throughput.py [CORPUS.jsonl] [--limit N] [--copies C]
                                        [--workers 1,2] [--rounds R]

Prints documents/s and characters/s for each stage, and, as the peer in the same run, for
KoNLPy's `Mecab.nouns` alone over the same texts (the tokenisation floor the stages stand on).
Default corpus: ../shared/data/petitions_ko_17cat.jsonl (``--copies C``: C copies of it under
new ids, so that starting the worker processes weighs less).

Then the ingest alone with each ``--workers`` count (``textrec ingest -j``), each into a fresh
store, in ``--rounds`` rounds whose order rotates, so that a neighbour's load slows every count
alike: the median time of each, and its speed-up over one process in the same run. Every
count's stored terms are checked equal to one process's.

``--upgrade``: then the same for ``textrec build --cores N`` upgrading a store of term scheme
v1 (every document's terms derived anew from its text, three times: DF pass, fingerprint
pass, stored terms), each round on a fresh copy of one v1 store; the snapshot ids and stored
terms are checked equal.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from textrec import Store, build, ingest, read_records
from textrec.content.tokenize import _mecab_paths, normalize_text

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "data" / "petitions_ko_17cat.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", nargs="?", default=str(DEFAULT))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--upgrade", action="store_true")
    args = parser.parse_args()

    with open(args.corpus, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    if args.limit:
        rows = rows[: args.limit]
    if args.copies > 1:
        rows = [dict(r, id=f"{r['id']}~{c}") for c in range(args.copies) for r in rows]
    chars = sum(len(r["text"]) + len(r.get("title") or "") for r in rows)
    print(f"corpus {args.corpus}: {len(rows):,} documents, {chars:,} characters")
    python = platform.python_version()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {python}")

    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        store = Store(f"sqlite:///{os.path.join(tmp, 'bench.db')}")

        t0 = time.perf_counter()
        report = ingest(store, read_records(src), progress=True)
        t1 = time.perf_counter()
        result = build(store, progress=True)
        t2 = time.perf_counter()
        store.close()

    # The peer: KoNLPy's Mecab.nouns alone, same texts, same process.
    from konlpy.tag import Mecab

    dicdir, mecabrc = _mecab_paths()
    os.environ.setdefault("MECABRC", mecabrc)
    mecab = Mecab(dicpath=dicdir)
    t3 = time.perf_counter()
    for r in rows:
        if r.get("title"):
            mecab.nouns(normalize_text(r["title"]))
        mecab.nouns(normalize_text(r["text"]))
    t4 = time.perf_counter()

    n = len(report.stored)
    print(
        f"stored {n:,}, rejected {len(report.rejected):,}; snapshot {result.snapshot_id}, "
        f"{result.n_terms:,} terms"
    )
    for name, seconds in [
        ("ingest (validate, Mecab nouns, store)", t1 - t0),
        ("build (DF snapshot, TF-IDF, fingerprints, index)", t2 - t1),
        ("ingest + build", t2 - t0),
        ("peer: KoNLPy Mecab.nouns alone", t4 - t3),
    ]:
        print(
            f"{name:<50} {seconds:7.2f} s  {len(rows) / seconds:9,.0f} docs/s  "
            f"{chars / seconds:11,.0f} chars/s"
        )
    print(f"ratio ingest+build / Mecab.nouns alone: {(t2 - t0) / (t4 - t3):.2f}")
    counts = [int(w) for w in args.workers.split(",")]
    ingest_workers(rows, chars, counts, args.rounds)
    if args.upgrade:
        upgrade_workers(rows, chars, counts, args.rounds)


def _speed_ups(
    label: str, docs: int, chars: int, counts: list[int], times: dict[int, list[float]]
) -> None:
    """Each worker count's median time, rates and speed-up over the first count."""
    base = statistics.median(times[counts[0]])
    for w in counts:
        seconds = statistics.median(times[w])
        print(
            f"{label} {w:<3} {seconds:7.2f} s  {docs / seconds:9,.0f} docs/s  "
            f"{chars / seconds:11,.0f} chars/s  speed-up {base / seconds:.2f}x  "
            f"(runs: {', '.join(f'{t:.2f}' for t in times[w])})"
        )


def ingest_workers(
    rows: list[dict[str, object]], chars: int, counts: list[int], rounds: int
) -> None:
    times: dict[int, list[float]] = {w: [] for w in counts}
    terms: dict[int, list[object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        for round_ in range(rounds):
            for k in range(len(counts)):
                workers = counts[(round_ + k) % len(counts)]
                path = os.path.join(tmp, f"w{workers}-{round_}.db")
                store = Store(f"sqlite:///{path}")
                t0 = time.perf_counter()
                ingest(store, read_records(src), workers=workers)
                times[workers].append(time.perf_counter() - t0)
                if workers not in terms:
                    terms[workers] = [(d.external_id, d.terms) for d in store.iter_documents()]
                store.close()
                os.remove(path)
    same = all(t == terms[counts[0]] for t in terms.values())
    print(f"ingest by worker processes, {rounds} rounds, median; stored terms equal: {same}")
    _speed_ups("ingest -j", len(rows), chars, counts, times)
    if not same:
        raise SystemExit("the stored terms differ between worker counts")


def upgrade_workers(
    rows: list[dict[str, object]], chars: int, counts: list[int], rounds: int
) -> None:
    from textrec import Analyzer

    times: dict[int, list[float]] = {w: [] for w in counts}
    seen: dict[int, tuple[str, list[object]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.jsonl")
        with open(src, "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        v1 = os.path.join(tmp, "v1.db")
        store = Store(f"sqlite:///{v1}")
        ingest(store, read_records(src), analyzer=Analyzer(version=1))
        build(store, analyzer=Analyzer(version=1))
        store.close()
        for round_ in range(rounds):
            for k in range(len(counts)):
                workers = counts[(round_ + k) % len(counts)]
                path = os.path.join(tmp, f"up{workers}-{round_}.db")
                shutil.copy(v1, path)
                store = Store(f"sqlite:///{path}")
                t0 = time.perf_counter()
                report = build(store, workers=workers)
                times[workers].append(time.perf_counter() - t0)
                assert report.upgraded_from == "simhash64-v1", report
                if workers not in seen:
                    terms = [(d.external_id, d.terms) for d in store.iter_documents()]
                    seen[workers] = (report.snapshot_id, terms)
                store.close()
                for leftover in os.listdir(tmp):
                    if leftover.startswith(f"up{workers}-{round_}.db"):
                        os.remove(os.path.join(tmp, leftover))
    same = all(v == seen[counts[0]] for v in seen.values())
    print(f"upgrade v1 -> v2 by worker processes, {rounds} rounds, median; equal: {same}")
    _speed_ups("build --cores", len(rows), chars, counts, times)
    if not same:
        raise SystemExit("the upgrades differ between worker counts")


if __name__ == "__main__":
    main()

"""Throughput of `textrec ingest` + `textrec build` (in process) on a real corpus.

Usage: python bench/build_throughput.py [CORPUS.jsonl] [--limit N]

Prints documents/s and characters/s for each stage, and, as the peer in the same run, for
KoNLPy's `Mecab.nouns` alone over the same texts (the tokenisation floor the stages stand on).
Default corpus: ../shared/data/petitions_ko_17cat.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
    args = parser.parse_args()

    with open(args.corpus, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    if args.limit:
        rows = rows[: args.limit]
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


if __name__ == "__main__":
    main()

"""Start-up of a Recommender after a crash: catching the related-posts index up vs rebuilding.

Usage: python bench/startup.py [--docs N] [--appended M]

Ingests and builds the first N Naver movie reviews into a fresh SQLite file (the index files
are written by the build), then appends M more reviews and removes 10 documents through a
Recommender that is never saved, as when a server dies after writes. It then times opening
a Recommender three ways, in the same run:

- ``current``: files that match the store (the normal start-up);
- ``catch-up``: the files of before the writes (both indexes apply the changes since);
- ``rebuild``: no index files at all (the Hamming index read from every stored fingerprint,
  the related-posts index built from every stored document), which is what a stale file
  meant before catching up was possible;

and checks that the caught-up and the rebuilt indexes rank alike.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from textrec import Recommender, Store, build, ingest
from textrec.artifacts.indexes import related_path
from textrec.pipeline.records import Record

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def reviews(skip: int, count: int) -> list[Record]:
    with gzip.open(DATA / "nsmc_raw_reviews.jsonl.gz", "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in itertools.islice(f, skip, skip + count)]
    return [
        Record(source="nsmc", line=skip + i + 1, id=str(r["id"]), text=r["text"])
        for i, r in enumerate(rows)
    ]


def timed_open(url: str) -> tuple[Recommender, float]:
    start = time.perf_counter()
    rec = Recommender(url)
    return rec, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--appended", type=int, default=1_000)
    args = parser.parse_args()
    print(
        f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f}"
    )
    with tempfile.TemporaryDirectory(prefix="textrec-startup-") as tmp:
        db = os.path.join(tmp, "s.db")
        url = f"sqlite:///{db}"
        store = Store(url)
        start = time.perf_counter()
        report = ingest(store, reviews(0, args.docs))
        build(store)
        store.close()
        took = time.perf_counter() - start
        print(f"{len(report.stored):,} documents ingested and built in {took:.1f} s")
        saved = {p: p + ".saved" for p in (db + ".index", related_path(db + ".index"))}
        for path, copy in saved.items():
            shutil.copyfile(path, copy)

        rec = Recommender(url)
        extra = reviews(args.docs, args.appended)
        stored, _ = rec.add([{"id": r.id, "text": r.text} for r in extra])
        for doc_id in stored[:10]:
            rec.remove(doc_id)
        rec.save()  # the current files
        _, current = timed_open(url)
        for path, copy in saved.items():
            shutil.copyfile(copy, path)  # back to the files of before the writes
        caught_up, catch_up = timed_open(url)
        os.remove(related_path(db + ".index"))
        os.remove(db + ".index")
        rebuilt, rebuild = timed_open(url)
        old = rebuilt.store.existing_external_ids([r.id for r in reviews(0, 100)])
        queries = stored[10:60] + sorted(old)[:50]
        same = all(
            [(m.id, m.score) for m in caught_up.similar(q, k=10)]
            == [(m.id, m.score) for m in rebuilt.similar(q, k=10)]
            and [(m.id, m.distance) for m in caught_up.similar(q, k=10, mode="hamming")]
            == [(m.id, m.distance) for m in rebuilt.similar(q, k=10, mode="hamming")]
            for q in queries
        )
        print(f"appended {len(stored):,}, removed 10, without saving; then opening a Recommender:")
        print(f"  current files            {current:7.2f} s")
        print(f"  catch-up (files before)  {catch_up:7.2f} s")
        print(f"  rebuild (no files)       {rebuild:7.2f} s   ({rebuild / catch_up:.1f}x catch-up)")
        print(f"  caught-up and rebuilt indexes rank alike on {len(queries)} queries: {same}")


if __name__ == "__main__":
    main()

"""Hamming top-k inside PostgreSQL against the in-memory index, at 1M rows.

Usage: python bench/pg_query.py [--rows 1000000] [--queries 30] [--k 10]

Starts a throw-away PostgreSQL server (initdb + pg_ctl on 127.0.0.1), stores N documents
with random fingerprints through textrec's store, then times the same queries three ways, in
the same run: `Store.search_in_database` (`bit_count((fp # q)::bit(64))`, PostgreSQL's
default parallel plan), the same with parallel workers off, and `HammingIndex.search`.
Results are checked to be identical.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pgserver import PostgresServer, pg_bindir
from textrec import HammingIndex, Store
from textrec.content.tfidf import DFSnapshot


def _ms(samples: list[float]) -> str:
    p50 = statistics.median(samples) * 1e3
    p99 = float(np.percentile(samples, 99)) * 1e3
    return f"p50 {p50:9.2f} ms  p99 {p99:9.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    bindir = pg_bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (Debian: apt-get install postgresql)")
    server = PostgresServer(bindir)
    server.start()
    try:
        url = server.create_database()
        store = Store(url)
        rng = np.random.default_rng(0)
        codes = rng.integers(0, 2**64, size=args.rows, dtype=np.uint64)
        snap = DFSnapshot.from_counts(args.rows, {})
        t0 = time.perf_counter()
        raw = store.engine.raw_connection()
        try:
            cur = raw.cursor()
            copy_sql = (
                "COPY documents (id, external_id, text, meta, created_at, updated_at) FROM STDIN"
            )
            with cur.copy(copy_sql) as copy:  # type: ignore[attr-defined]
                for i in range(1, args.rows + 1):
                    copy.write_row((i, f"d{i}", "x", "{}", "2026-01-01", "2026-01-01"))
            raw.commit()
        finally:
            raw.close()
        store.begin_snapshot(snap, "simhash64-v1")
        ids = np.arange(1, args.rows + 1, dtype=np.int64)
        batch = 100_000
        for s in range(0, args.rows, batch):
            store.put_fingerprints(
                snap.id,
                "simhash64-v1",
                zip(ids[s : s + batch].tolist(), codes[s : s + batch].tolist(), strict=True),
            )
        with store.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE fingerprints"))
        print(f"loaded {args.rows:,} rows in {time.perf_counter() - t0:.1f} s")

        index = HammingIndex(snapshot_id=snap.id)
        index.add(ids, codes)
        queries = [int(q) for q in rng.integers(0, 2**64, size=args.queries, dtype=np.uint64)]

        def timed(fn: object) -> list[float]:
            out = []
            for q in queries:
                t = time.perf_counter()
                fn(q)  # type: ignore[operator]
                out.append(time.perf_counter() - t)
            return out

        for q in queries[:3]:
            exp_ids, exp_d = index.search(q, args.k)
            got = store.search_in_database(snap.id, q, args.k)
            assert got == list(zip(exp_ids.tolist(), exp_d.tolist(), strict=True)), "mismatch"
        store.search_in_database(snap.id, queries[0], args.k)  # warm the buffer cache
        pg_parallel = timed(lambda q: store.search_in_database(snap.id, q, args.k))
        with store.engine.begin() as conn:
            name = url.rsplit("/", 1)[1]
            conn.execute(
                sa.text(f'ALTER DATABASE "{name}" SET max_parallel_workers_per_gather = 0')
            )
        store.engine.dispose()
        pg_serial = timed(lambda q: store.search_in_database(snap.id, q, args.k))
        memory = timed(lambda q: index.search(q, args.k))
        print(f"rows {args.rows:,}, k {args.k}, {args.queries} queries, results identical")
        print(f"PostgreSQL, default parallel plan : {_ms(pg_parallel)}")
        print(f"PostgreSQL, no parallel workers   : {_ms(pg_serial)}")
        print(f"in-memory HammingIndex.search     : {_ms(memory)}")
        ratio = statistics.median(pg_parallel) / statistics.median(memory)
        print(f"ratio PostgreSQL (parallel) / in-memory, p50: {ratio:.0f}x")
        store.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()

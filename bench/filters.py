"""Filters inside the top k: what they cost, and what filtering after the top k would lose.

The 50,000 YNAT headlines (``../shared/data/ynat_headlines_7cat.jsonl``, 7 sections) get two
metadata fields of their own: ``bucket`` (the line number mod 50: one value passes 2 % of the
headlines) and ``rare`` (mod 500: 0.2 %), and a ``time`` spread over 2026 (line number mod 365
days). For 300 seeded query headlines, ``similar(k=10)`` (mode ``related``, copies collapsed) is
timed without filters and with each filter; the table gives p50 and p99 latency, the ratio of
p50 to the unfiltered p50 in the same run, the candidates whose metadata was read from the
store per query (the Recommender keeps what it read), the share of queries that got 10
results, and how many of the 10 a filter applied after the unfiltered top 10 would have kept.

Run: ``nice .venv/bin/python bench/filters.py`` (about a minute: most of it is ingest).
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textrec import Filters, Recommender, Store, build, ingest, read_records

YNAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "ynat_headlines_7cat.jsonl"
QUERIES = 300
K = 10


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="textrec-filters-"))
    src = folder / "ynat.jsonl"
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with open(YNAT, encoding="utf-8") as f, open(src, "w", encoding="utf-8") as out:
        for n, line in enumerate(f):
            d = json.loads(line)
            d["bucket"] = n % 50
            d["rare"] = n % 500
            d["time"] = (start + timedelta(days=n % 365)).date().isoformat()
            out.write(json.dumps(d, ensure_ascii=False) + "\n")
    url = f"sqlite:///{folder / 'ynat.db'}"
    store = Store(url)
    t0 = time.perf_counter()
    ingest(store, read_records(str(src)))
    build(store)
    took = time.perf_counter() - t0
    print(f"ingested and built {store.count_documents():,} headlines in {took:.0f} s")
    rec = Recommender(url)
    ids = [d.external_id for d in store.iter_documents()]
    queries = random.Random(0).sample(ids, QUERIES)
    read = [0]
    facts = rec.store.document_facts

    def counting(doc_ids):  # type: ignore[no-untyped-def]
        read[0] += len(doc_ids)
        return facts(doc_ids)

    rec.store.document_facts = counting  # type: ignore[method-assign]
    configs = [
        ("none", Filters()),
        ("where label=경제 (~14 %)", Filters.parse(where=["label=경제"])),
        ("where bucket=7 (2 %)", Filters.parse(where=["bucket=7"])),
        ("where rare=7 (0.2 %)", Filters.parse(where=["rare=7"])),
        ("since 2026-12-01 (8 %)", Filters.parse(since="2026-12-01")),
        ("recency 30 days", Filters.parse(recency_days=30)),
    ]
    for q in queries[:20]:  # warm up
        rec.similar(q, k=K)
    base_p50 = None
    print(
        f"{'filter':<26} {'p50 ms':>7} {'p99 ms':>7} {'x none':>7} {'read/query':>10} "
        f"{'k full':>7} {'after-top-k kept':>16}"
    )
    for name, f in configs:
        times, full, kept_after = [], 0, []
        read[0] = 0
        for q in queries:
            t = time.perf_counter()
            got = rec.similar(q, k=K, filters=f)
            times.append((time.perf_counter() - t) * 1000)
            full += len(got) == K
            if f.filters():
                top = rec.similar(q, k=K)
                docs = rec.store.get_documents(
                    list(rec.store.internal_ids([m.id for m in top]).values())
                )
                kept_after.append(sum(f.passes(d) for d in docs.values()))
        times.sort()
        p50 = statistics.median(times)
        p99 = times[int(0.99 * (len(times) - 1))]
        base_p50 = base_p50 or p50
        after = f"{statistics.mean(kept_after):.2f} of {K}" if kept_after else "-"
        print(
            f"{name:<26} {p50:>7.2f} {p99:>7.2f} {p50 / base_p50:>7.2f} "
            f"{read[0] / QUERIES:>10.0f} {full / QUERIES:>7.0%} {after:>16}"
        )


if __name__ == "__main__":
    main()

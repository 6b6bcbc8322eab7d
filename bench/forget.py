"""What erasing readers costs: ``Recommender.forget``, an expiry, and the rebuild a running
server does when another process erased events.

The bundled Wikinews sample (644 posts) and a seeded click log of 100,000 events: 5,000 readers
who each read 20 posts, a third of them from a popular fifth of the posts, with times spread
over the last 100 days. Then, in one process, timed: forgetting 50 readers one by one
(``Recommender.forget``: the store's delete, the readings left, the signatures of the posts
they read made again), the same through the store alone (``Store.forget_user``, what
``textrec events forget`` does), an expiry of the events older than 90 days
(``Recommender.expire_events``), and the readers index built again from every event left
(``ReadersIndex.catch_up`` after another process's erasure), against the same build at
start-up as the peer.

Run: ``nice .venv/bin/python bench/forget.py [--readers-store redis://...]``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textrec import Recommender, Store, build, ingest, read_records

WIKINEWS = Path(__file__).resolve().parents[1] / "textrec" / "data" / "wikinews_ko.jsonl.gz"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readers-store", default=None)
    args = parser.parse_args()
    url = f"sqlite:///{Path(tempfile.mkdtemp(prefix='textrec-forget-')) / 'w.db'}"
    store = Store(url)
    ingest(store, read_records(str(WIKINEWS)))
    build(store)
    rec = Recommender(url, readers_store=args.readers_store)
    ids = [d.external_id for d in store.iter_documents()]
    rng = random.Random(0)
    popular = ids[: len(ids) // 5]
    now = datetime.now(UTC)
    events = []
    for u in range(5000):
        for _ in range(20):
            item = rng.choice(popular) if rng.random() < 1 / 3 else rng.choice(ids)
            when = now - timedelta(days=rng.uniform(0, 100))
            events.append({"user": f"reader-{u}", "item": item, "time": when.isoformat()})
    for i in range(0, len(events), 10_000):
        rec.add_events(events[i : i + 10_000])
    print(f"{store.count_events():,} events, {len(rec.readers):,} posts with readers")

    def timed(label: str, runs: list[float]) -> None:
        runs = sorted(runs)
        print(
            f"{label:<44} p50 {statistics.median(runs) * 1000:8.2f} ms  "
            f"max {runs[-1] * 1000:8.2f} ms  ({len(runs)} runs)"
        )

    forget = []
    for u in range(50):
        t = time.perf_counter()
        rec.forget(f"reader-{u}")
        forget.append(time.perf_counter() - t)
    timed("Recommender.forget (store + signatures)", forget)
    alone = []
    for u in range(50, 100):
        t = time.perf_counter()
        store.forget_user(f"reader-{u}")
        alone.append(time.perf_counter() - t)
    timed("Store.forget_user (textrec events forget)", alone)
    t = time.perf_counter()
    rebuilt = rec.readers.catch_up(store)  # another process erased: built again
    timed(f"readers index rebuilt ({rebuilt:,} events)", [time.perf_counter() - t])
    t = time.perf_counter()
    expired = rec.expire_events(now - timedelta(days=90))
    timed(f"Recommender.expire_events ({expired:,} events)", [time.perf_counter() - t])
    t = time.perf_counter()
    fresh = Recommender(url, readers_store=args.readers_store)
    timed(f"peer: start-up's build ({store.count_events():,} events)", [time.perf_counter() - t])
    assert len(fresh.readers) == len(rec.readers)


if __name__ == "__main__":
    main()

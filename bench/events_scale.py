"""Events at scale: import rate into SQLite, an event's effect on the next query, the latency
of ``similar(mode="readers")``, and (unless ``--no-recommend``) ALS trained as ``textrec train``
does, the latency of ``recommend`` for readers in each mode, and the time from a reader's new
event to their changed list.

Documents are stored with the whitespace tokenizer (the terms do not matter here, and Mecab
would dominate the set-up); events are drawn with a fixed seed: readers have a home topic of
documents and read mostly within it, popularity within a topic following a Zipf law.

    python bench/events_scale.py --docs 100000 --events 5000000 --users 500000

``--reopen``: after the first start-up (the readers' index derived from every event, its file
deleted first), save the index files and time a new ``Recommender`` that reads the readers'
file instead, checking that it answers as the first one.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time

import numpy as np

from textrec import Analyzer, Recommender, Store, build, ingest, whitespace_tokenizer
from textrec.collab.events import read_events, store_events
from textrec.pipeline.records import Record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--users", type=int, default=50_000)
    parser.add_argument("--topics", type=int, default=500)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument(
        "--reuse",
        metavar="FOLDER",
        help="a folder an earlier run of the same arguments left (its events.db and model): "
        "skip making and importing the events, and training",
    )
    parser.add_argument(
        "--reopen",
        action="store_true",
        help="save the index files, then time a start-up from the readers' file",
    )
    parser.add_argument(
        "--no-recommend",
        action="store_true",
        help="skip training ALS and timing per-reader recommendations",
    )
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.docs:,} documents, "
        f"{args.events:,} events, {args.users:,} readers"
    )
    rng = np.random.default_rng(0)
    folder = args.reuse or tempfile.mkdtemp(prefix="textrec-events-")
    print(f"# store in {folder}")
    url = f"sqlite:///{os.path.join(folder, 'events.db')}"
    store = Store(url)
    analyzer = Analyzer(tokenizer=whitespace_tokenizer)
    records = (
        Record("<bench>", i + 1, f"d{i}", f"topic{i % args.topics} word{i % 97} w{i}")
        for i in range(args.docs)
    )
    if not args.reuse:
        ingest(store, records, analyzer=analyzer, batch_size=5000)
        build(store, analyzer=analyzer)

    # Events: each reader's home topic; documents of a topic by a Zipf-like popularity.
    per_topic = args.docs // args.topics
    home = rng.integers(0, args.topics, args.users)
    users = rng.integers(0, args.users, args.events)
    topic = np.where(
        rng.random(args.events) < 0.9, home[users], rng.integers(0, args.topics, args.events)
    )
    rank = np.minimum(rng.zipf(1.3, args.events) - 1, per_topic - 1)
    items = topic + rank * args.topics
    if not args.reuse:
        path = os.path.join(folder, "events.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            for u, i in zip(users.tolist(), items.tolist(), strict=True):
                stamp = "2026-11-01T00:00:00+00:00"
                f.write(f'{{"user": "u{u}", "item": "d{i}", "time": "{stamp}"}}\n')
        started, cpu = time.perf_counter(), time.process_time()
        report = store_events(store, read_events(path))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        print(json.dumps({"import_events": report.stored, "seconds": round(seconds, 1),
                          "events_per_second": round(report.stored / seconds),
                          "events_per_cpu_second": round(report.stored / cpu),
                          "load_average": os.getloadavg()[0]}))  # fmt: skip

    readers_file = os.path.join(folder, "events.db.index.readers")
    if os.path.exists(readers_file):  # written by the build, before the events
        os.remove(readers_file)
    started, cpu = time.perf_counter(), time.process_time()
    rec = Recommender(url, analyzer=analyzer)  # derives the readers' index from the events
    start_up_s = time.perf_counter() - started
    print(json.dumps({"start_up_s": round(start_up_s, 1),
                      "start_up_cpu_s": round(time.process_time() - cpu, 1),
                      "documents_with_readers": len(rec.readers)}))  # fmt: skip
    queried = rng.choice(args.docs, args.queries, replace=False)
    if args.reopen:
        rec = reopen(rec, url, analyzer, queried, started_s=start_up_s)
    times = []
    for q in queried.tolist():
        t = time.perf_counter()
        rec.similar(f"d{q}", k=10, mode="readers")
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    visible = []
    run = time.strftime("%H%M%S")  # new readers of this run (a reused store has earlier ones)
    for n, q in enumerate(queried[:50].tolist()):
        before = rec.readers_of(f"d{q}")
        t = time.perf_counter()
        rec.add_events([{"user": f"new-{run}-{n}", "item": f"d{q}"}])
        rec.similar(f"d{q}", k=10, mode="readers")
        visible.append((time.perf_counter() - t) * 1e3)
        assert rec.readers_of(f"d{q}") == before + 1, "the event is not reflected"
    print(json.dumps({
        "readers_p50_ms": round(statistics.median(times), 2),
        "readers_p99_ms": round(times[int(0.99 * (len(times) - 1))], 2),
        "event_to_next_query_p50_ms": round(statistics.median(visible), 2),
    }))  # fmt: skip
    if not args.no_recommend:
        recommend(rec, args, rng, home)


def reopen(
    rec: Recommender, url: str, analyzer: Analyzer, queried: np.ndarray, started_s: float
) -> Recommender:
    """Save the index files, then start a new Recommender from them (the readers' file
    instead of the events); it must answer as the first."""
    started = time.perf_counter()
    rec.save()
    save_s = time.perf_counter() - started
    assert rec.index_path is not None
    size = os.path.getsize(rec.index_path + ".readers")
    started, cpu = time.perf_counter(), time.process_time()
    again = Recommender(url, analyzer=analyzer)
    seconds = time.perf_counter() - started
    cpu = time.process_time() - cpu
    assert not again.changed, "the readers' file was not used as it is"
    for q in queried[:100].tolist():
        a = [(m.id, m.score) for m in again.similar(f"d{q}", k=10, mode="readers")]
        assert a == [(m.id, m.score) for m in rec.similar(f"d{q}", k=10, mode="readers")]
    print(json.dumps({"save_s": round(save_s, 1), "readers_file_mb": round(size / 1e6, 1),
                      "start_up_from_file_s": round(seconds, 2),
                      "start_up_from_file_cpu_s": round(cpu, 2),
                      "speed_up": round(started_s / seconds, 1)}))  # fmt: skip
    return again


def recommend(
    rec: Recommender, args: argparse.Namespace, rng: np.random.Generator, home: np.ndarray
) -> None:
    """Train ALS as ``textrec train`` does, then time ``recommend`` for readers (hybrid and
    ALS), and the time from a reader's new event to their changed list."""
    from textrec.collab.factors import FactorModel, model_path

    assert rec.index_path is not None
    path = model_path(rec.index_path, "als")
    if not (args.reuse and os.path.exists(path)):
        started = time.perf_counter()
        model = FactorModel.train(rec.store, model="als", threads=os.cpu_count() or 1)
        model.save(path)
        train_s = time.perf_counter() - started
        print(json.dumps({"train_als_s": round(train_s, 1), "factors": model.params["factors"],
                          "iterations": model.params["iterations"]}))  # fmt: skip
    rec.load_models()
    readers = rng.choice(args.users, args.queries, replace=False)
    out: dict[str, float] = {}
    # The hybrid twice: first with no readers-also-read list kept yet (each post's list is
    # kept for a minute, textrec.collab.readers.RECENT_SECONDS), then as a running server
    # answers.
    runs = [("hybrid_first", "hybrid"), ("hybrid", "hybrid"), ("als", "als")]
    runs += [("readers", "readers"), ("related", "related")]
    for label, mode in runs:
        times = []
        for u in readers.tolist():
            t = time.perf_counter()
            rec.recommend(f"u{u}", k=10, mode=mode)
            times.append((time.perf_counter() - t) * 1e3)
        times.sort()
        out[f"recommend_{label}_p50_ms"] = round(statistics.median(times), 2)
        out[f"recommend_{label}_p99_ms"] = round(times[int(0.99 * (len(times) - 1))], 2)
    print(json.dumps(out))
    visible, changed = [], 0
    for u in readers[:50].tolist():
        before = [r.id for r in rec.recommend(f"u{u}", k=10).results]
        far = (int(home[u]) + args.topics // 2) % args.topics  # another topic's top post
        t = time.perf_counter()
        rec.add_events([{"user": f"u{u}", "item": f"d{far}", "kind": "like"}])
        after = [r.id for r in rec.recommend(f"u{u}", k=10).results]
        visible.append((time.perf_counter() - t) * 1e3)
        changed += after != before
    p50 = round(statistics.median(visible), 2)
    print(json.dumps({"event_to_changed_recommendation_p50_ms": p50,
                      "changed": f"{changed}/{len(visible)}"}))  # fmt: skip


if __name__ == "__main__":
    main()

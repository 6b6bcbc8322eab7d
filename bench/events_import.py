"""The rate of ``textrec events import`` into SQLite, alone: a store of documents, a JSON Lines
file of events drawn with a fixed seed (as ``bench/events_scale.py`` draws them), imported with
``store_events(read_events(...))`` as the command does, into a fresh copy of the store for each
of ``--repeat`` runs.

To compare two versions of textrec in the same session, run it with each on ``PYTHONPATH``
(for example an older commit extracted with ``git archive``), one after the other.

    python bench/events_import.py --docs 20000 --events 2000000 --users 200000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time

import numpy as np

import textrec
from textrec import Analyzer, Store, ingest, whitespace_tokenizer
from textrec.collab.events import read_events, store_events
from textrec.pipeline.records import Record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--topics", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: textrec from "
        f"{os.path.dirname(textrec.__file__)}; {args.docs:,} documents, {args.events:,} events, "
        f"{args.users:,} readers"
    )
    folder = tempfile.mkdtemp(prefix="textrec-import-")
    base = os.path.join(folder, "base.db")
    store = Store(f"sqlite:///{base}")
    records = (
        Record("<bench>", i + 1, f"d{i}", f"topic{i % args.topics} w{i}") for i in range(args.docs)
    )
    ingest(store, records, analyzer=Analyzer(tokenizer=whitespace_tokenizer), batch_size=5000)
    store.close()
    rng = np.random.default_rng(0)
    per_topic = args.docs // args.topics
    home = rng.integers(0, args.topics, args.users)
    users = rng.integers(0, args.users, args.events)
    topic = np.where(
        rng.random(args.events) < 0.9, home[users], rng.integers(0, args.topics, args.events)
    )
    items = topic + np.minimum(rng.zipf(1.3, args.events) - 1, per_topic - 1) * args.topics
    path = os.path.join(folder, "events.jsonl")
    with open(path, "w", encoding="utf-8") as f:
        for u, i in zip(users.tolist(), items.tolist(), strict=True):
            f.write(f'{{"user": "u{u}", "item": "d{i}", "time": "2026-11-01T00:00:00+00:00"}}\n')
    for run in range(args.repeat):
        db = os.path.join(folder, f"run{run}.db")
        shutil.copy(base, db)
        store = Store(f"sqlite:///{db}")
        started, cpu = time.perf_counter(), time.process_time()
        report = store_events(store, read_events(path))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        store.close()
        print(json.dumps({"import_events": report.stored, "seconds": round(seconds, 1),
                          "events_per_second": round(report.stored / seconds),
                          "events_per_cpu_second": round(report.stored / cpu),
                          "load_average": round(os.getloadavg()[0], 2)}))  # fmt: skip
        os.remove(db)
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()

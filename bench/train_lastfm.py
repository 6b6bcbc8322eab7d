"""Reader models at lastfm-360K scale: training time per iteration, recommendation latency, and
the time from a reader's new event to a changed recommendation.

The matrix is synthetic, shaped like lastfm-360K (360,000 users, 160,000 items, about 9.5
million user-item pairs): each user's number of items is log-normal (median about 20), items
are drawn with power-law popularity (Zipf-like, exponent 1.0 over the item rank, offset 5),
and each pair's weight (a play count) is geometric. Everything is drawn with a fixed seed.

- training: :meth:`FactorModel.fit` (what ``textrec train`` runs after reading the events) at
  64 factors, ``--iterations`` passes, with 1 and 2 threads; the time an iteration is the
  whole fit divided by the passes;
- ``recommend`` p50/p99 over 1,000 users, their items excluded (top 10);
- a new event: the user's history plus one item ranked low for them, then ``recommend``
  again: the time of that call (the fold-in and the ranking), and whether the scores and the
  top 10 changed (on this matrix, which has no structure but popularity, one event seldom
  moves the top 10).

- with ``--store-events N``: the first users' pairs, N events in all, stored in a SQLite file
  (documents with the whitespace tokenizer), then ``textrec train --iterations 1`` on it: how
  long reading the events takes against the fit.

    nice python bench/train_lastfm.py [--users 360000] [--items 160000] [--iterations 3]
        [--store-events 0]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import scipy.sparse as sp

from textrec.collab.factors import FactorModel


def lastfm_like(users: int, items: int, seed: int = 0) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    per_user = np.clip(rng.lognormal(mean=3.015, sigma=0.8, size=users), 1, 2000).astype(np.int64)
    total = int(per_user.sum())
    weights = 1.0 / (np.arange(items) + 5.0) ** 1.0
    order = rng.permutation(items)  # popular items are not the low ids
    cdf = np.cumsum(weights[order])
    cdf /= cdf[-1]
    cols = np.searchsorted(cdf, rng.random(total), side="right")
    rows = np.repeat(np.arange(users), per_user)
    plays = rng.geometric(0.05, size=total).astype(np.float32)
    matrix = sp.csr_matrix((plays, (rows, cols)), shape=(users, items))
    matrix.sum_duplicates()
    return matrix


def _history(matrix: sp.csr_matrix, user: int) -> dict[int, float]:
    lo, hi = matrix.indptr[user], matrix.indptr[user + 1]
    return dict(zip(matrix.indices[lo:hi].tolist(), matrix.data[lo:hi].tolist(), strict=True))


def store_and_train(matrix: sp.csr_matrix, events: int, factors: int) -> None:
    """Store ``events`` of the matrix's pairs and time ``textrec train`` on them."""
    import shutil
    import tempfile
    from datetime import UTC, datetime

    from textrec import Analyzer, Store, ingest, whitespace_tokenizer
    from textrec.cli.main import main as cli
    from textrec.pipeline.records import Record
    from textrec.store.sql import NewEvent

    folder = tempfile.mkdtemp(prefix="textrec-lastfm-")
    url = f"sqlite:///{os.path.join(folder, 'lastfm.db')}"
    store = Store(url)
    users = int(np.searchsorted(matrix.indptr, events, side="right")) - 1
    part = matrix[:users]
    items = np.unique(part.indices)
    t = time.perf_counter()
    records = (Record("<bench>", n + 1, f"i{i}", f"item {i}") for n, i in enumerate(items.tolist()))
    ingest(store, records, analyzer=Analyzer(tokenizer=whitespace_tokenizer), batch_size=5000)
    ids = store.internal_ids([f"i{i}" for i in items.tolist()])
    doc = {int(i): ids[f"i{i}"] for i in items.tolist()}
    when = datetime(2026, 11, 1, tzinfo=UTC)
    coo = part.tocoo()
    batch: list[NewEvent] = []
    for u, i in zip(coo.row.tolist(), coo.col.tolist(), strict=True):
        batch.append(NewEvent(f"u{u}", doc[i], "view", when))
        if len(batch) == 50_000:
            store.add_events(batch, ids=False)
            batch = []
    store.add_events(batch, ids=False)
    print(
        f"stored {len(items):,} documents and {part.nnz:,} events of {users:,} users in "
        f"{time.perf_counter() - t:.1f} s",
        flush=True,
    )
    t = time.perf_counter()
    read = sum(len(b) for b in store.iter_events())
    assert read == part.nnz
    read_s = time.perf_counter() - t
    t = time.perf_counter()
    cli(["--db", url, "-q", "train", "--factors", str(factors), "--iterations", "1"])
    train_s = time.perf_counter() - t
    fit_t = time.perf_counter()
    FactorModel.fit(part, factors=factors, iterations=1)
    fit_s = time.perf_counter() - fit_t
    shutil.rmtree(folder)
    print(
        f"textrec train --iterations 1 on {part.nnz:,} stored events: {train_s:.1f} s "
        f"(reading the events alone {read_s:.1f} s, {part.nnz / read_s:,.0f} a second; the "
        f"fit of the same matrix {fit_s:.1f} s)",
        flush=True,
    )


def _ms(values: list[float], q: float) -> float:
    return float(np.percentile(values, q) * 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--items", type=int, default=160_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--models", nargs="*", default=["als", "bpr"])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--store-events", type=int, default=0)
    args = parser.parse_args()
    started = time.perf_counter()
    matrix = lastfm_like(args.users, args.items)
    print(
        f"# synthetic lastfm-shaped matrix: {matrix.shape[0]:,} users, {matrix.shape[1]:,} "
        f"items, {matrix.nnz:,} pairs, made in {time.perf_counter() - started:.1f} s; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load {os.getloadavg()[0]:.2f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        flush=True,
    )
    if args.store_events:
        store_and_train(matrix, args.store_events, args.factors)
    rng = np.random.default_rng(1)
    sample = rng.choice(matrix.shape[0], size=args.queries, replace=False)
    for kind in args.models:
        model = None
        for threads in args.threads:
            t = time.perf_counter()
            model = FactorModel.fit(
                matrix, model=kind, factors=args.factors, iterations=args.iterations,
                threads=threads,
            )  # fmt: skip
            fit_s = time.perf_counter() - t
            print(
                f"{kind}: fit {args.factors} factors x {args.iterations} iterations, {threads} "
                f"thread(s): {fit_s:.1f} s, {fit_s / args.iterations:.2f} s an iteration",
                flush=True,
            )
        assert model is not None
        latencies, changed, moved, event_latencies = [], 0, 0, []
        for user in sample.tolist():
            history = _history(matrix, user)
            t = time.perf_counter()
            before, _ = model.recommend(str(user), history, 10, exclude=history)
            latencies.append(time.perf_counter() - t)
            # A new event on an item ranked far down for this user.
            _, scores = model.scores(str(user), history)
            new_item = int(np.argsort(scores)[len(scores) // 4])
            history[new_item] = history.get(new_item, 0.0) + 1.0
            t = time.perf_counter()
            after, _ = model.recommend(str(user), history, 10, exclude=history)
            event_latencies.append(time.perf_counter() - t)
            changed += not np.array_equal(before, after)
            moved += not np.array_equal(scores, model.scores(str(user), history)[1])
        print(
            f"{kind}: recommend p50 {_ms(latencies, 50):.2f} ms, p99 {_ms(latencies, 99):.2f} ms "
            f"over {len(latencies):,} users; new event to recommendation p50 "
            f"{_ms(event_latencies, 50):.2f} ms, p99 {_ms(event_latencies, 99):.2f} ms, "
            f"scores changed for {moved}/{len(sample)} users, top 10 for {changed} "
            f"(mean history {statistics.mean(np.diff(matrix.indptr)[sample]):.1f} items)",
            flush=True,
        )


if __name__ == "__main__":
    main()

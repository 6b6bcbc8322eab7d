"""Load test of ``textrec serve`` on loopback: similar-by-id and append, with concurrent clients.

    python bench/load.py --docs 1000000 --clients 8 --seconds 20

Builds (once, then reused) a SQLite store holding the bundled Korean Wikinews sample (644 real
articles, ingested and built with Mecab) plus synthetic documents up to ``--docs``: short
stored rows of 12 vocabulary terms each (drawn by document frequency) with random 64-bit
fingerprints under the current DF snapshot, so both indexes have the full size while the
set-up takes minutes rather than the hours Mecab would need. Then it
starts a real ``textrec serve`` (uvicorn, 127.0.0.1, a free port) and runs, each for
``--seconds``:

0. ``GET /health``, the peer: what HTTP, uvicorn and FastAPI alone cost on this machine;
1. ``GET /documents/{id}/similar?k=10`` for random ids (real and synthetic);
2. ``POST /documents`` of one real Korean article under a new id (Mecab, fingerprint, SQLite
   commit, index append);
3. both at once (half the clients each).

It prints requests/s and p50/p99 latency per endpoint and the number of errors (any status
other than the expected one, or a failed connection), and exits 1 when there was any error.
The clients are threads in this process, one keep-alive connection each.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from textrec import Store, build, ingest, read_records
from textrec.artifacts.indexes import default_index_path, index_from_store
from textrec.store.sql import NewDocument

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "textrec" / "data" / "wikinews_ko.jsonl.gz"
TOKEN = "bench-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def prepare(path: Path, n_docs: int) -> str:
    """The store at ``path`` with the Wikinews sample plus synthetic documents up to n_docs."""
    url = f"sqlite:///{path}"
    store = Store(url)
    if store.count_documents() == 0:
        t = time.perf_counter()
        ingest(store, read_records(str(CORPUS)))
        build(store)
        print(f"wikinews sample ingested and built in {time.perf_counter() - t:.1f} s")
    current = store.current_snapshot()
    assert current is not None
    snapshot, scheme = current
    have = store.count_documents()
    if have < n_docs:
        t = time.perf_counter()
        rng = np.random.default_rng(have)
        # Each synthetic document gets 12 distinct terms of the sample's vocabulary, drawn in
        # proportion to their document frequency, so the related-posts index has postings of
        # a realistic shape; its fingerprint is random (no Mecab, no hashing needed).
        vocab = sorted(snapshot.df)
        df = np.array([snapshot.df[t] for t in vocab], dtype=np.float64)
        p = df / df.sum()
        batch = 20_000
        for start in range(have, n_docs, batch):
            count = min(batch, n_docs - start)
            picks = [rng.choice(len(vocab), size=12, replace=False, p=p) for _ in range(count)]
            docs = [
                NewDocument(
                    external_id=f"syn-{i:07d}",
                    title=f"합성 문서 {i}",
                    text=" ".join(vocab[j] for j in pick),
                    terms={vocab[j]: 1 for j in pick},
                )
                for i, pick in zip(range(start, start + count), picks, strict=True)
            ]
            fps = rng.integers(0, 2**64, size=count, dtype=np.uint64, endpoint=False)
            store.add_documents(docs, fingerprints=(snapshot.id, scheme, [int(x) for x in fps]))
            done = start + count
            if done % 100_000 < batch:
                print(f"  {done:,} documents stored ({time.perf_counter() - t:.0f} s)")
        index_path = default_index_path(store)
        assert index_path is not None
        index_from_store(store, snapshot.id, scheme).save(index_path)
        print(f"synthetic documents stored and index written in {time.perf_counter() - t:.0f} s")
    store.close()
    return url


@contextmanager
def server(url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "textrec.cli.main",
        "-q",
        "--db",
        url,
        "serve",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        [*cmd, "--token", TOKEN], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base = f"http://127.0.0.1:{port}"
    t = time.perf_counter()
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"textrec serve exited with {proc.returncode}")
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        print(f"server up on {base} in {time.perf_counter() - t:.1f} s")
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


Request = Callable[[httpx.Client, random.Random, int], tuple[httpx.Response, int]]


def run(
    base: str, seconds: float, groups: list[tuple[str, int, Request]]
) -> dict[str, tuple[Stats, float]]:
    """Run ``clients`` threads per named request for ``seconds``; return stats and elapsed."""
    stats = {name: Stats() for name, _, _ in groups}
    stop = time.monotonic() + seconds
    barrier = threading.Barrier(sum(c for _, c, _ in groups) + 1)

    def client(name: str, make: Request, seed: int) -> None:
        st = stats[name]
        rng = random.Random(seed)
        lat: list[float] = []
        errs: list[str] = []
        n = 0
        with httpx.Client(base_url=base, timeout=60) as http:
            barrier.wait()
            while time.monotonic() < stop:
                t = time.perf_counter()
                try:
                    response, expected = make(http, rng, n)
                    if response.status_code != expected:
                        errs.append(f"{response.status_code}: {response.text[:200]}")
                except httpx.HTTPError as exc:
                    errs.append(repr(exc))
                lat.append(time.perf_counter() - t)
                n += 1
        with st.lock:
            st.latencies.extend(lat)
            st.errors.extend(errs)

    threads = []
    seed = 0
    for name, clients, make in groups:
        for _ in range(clients):
            seed += 1
            threads.append(threading.Thread(target=client, args=(name, make, seed)))
    for th in threads:
        th.start()
    barrier.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t0
    return {name: (st, elapsed) for name, st in stats.items()}


def report(title: str, results: dict[str, tuple[Stats, float]]) -> int:
    errors = 0
    for name, (st, elapsed) in results.items():
        lat = np.array(st.latencies) * 1000
        p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (float("nan"),) * 2
        print(
            f"{title:<8} {name:<22} {lat.size:>7,} req  {lat.size / elapsed:>8.1f} req/s  "
            f"p50 {p50:>7.1f} ms  p99 {p99:>7.1f} ms  errors {len(st.errors)}"
        )
        for e in st.errors[:3]:
            print(f"    error: {e}")
        errors += len(st.errors)
    return errors


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--docs", type=int, default=1_000_000, help="index size (default: 1,000,000)")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients (default: 8)")
    ap.add_argument("--seconds", type=float, default=20.0, help="per phase (default: 20)")
    ap.add_argument(
        "--db",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "textrec-bench-load" / "load-v2.db",
        help="SQLite file to build or reuse (a copy is served, so reruns start equal)",
    )
    args = ap.parse_args()
    args.db.parent.mkdir(parents=True, exist_ok=True)
    prepare(args.db, args.docs)
    # Serve a copy, so the documents appended by one run do not change the next.
    work = args.db.with_name("serving.db")
    for suffix in ("", ".index"):
        with open(f"{args.db}{suffix}", "rb") as src, open(f"{work}{suffix}", "wb") as dst:
            while chunk := src.read(1 << 24):
                dst.write(chunk)
    for suffix in ("-wal", "-shm"):
        Path(f"{work}{suffix}").unlink(missing_ok=True)

    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        articles = [json.loads(line) for line in f]
    n_synthetic = args.docs - len(articles)
    run_id = f"{time.time_ns():x}"
    serial = itertools.count()  # next() on it is atomic under the GIL: ids never repeat

    def similar(http: httpx.Client, rng: random.Random, n: int) -> tuple[httpx.Response, int]:
        if rng.random() < 0.5:
            doc_id = rng.choice(articles)["id"]
        else:
            doc_id = f"syn-{rng.randrange(len(articles), len(articles) + n_synthetic):07d}"
        return http.get(f"/documents/{doc_id}/similar", params={"k": 10}), 200

    def health_check(http: httpx.Client, rng: random.Random, n: int) -> tuple[httpx.Response, int]:
        return http.get("/health"), 200

    def append(http: httpx.Client, rng: random.Random, n: int) -> tuple[httpx.Response, int]:
        a = rng.choice(articles)
        doc = {"id": f"load-{run_id}-{next(serial)}", "title": a.get("title"), "text": a["text"]}
        headers = {"Authorization": f"Bearer {TOKEN}"}
        return http.post("/documents", json={"documents": [doc]}, headers=headers), 201

    print(
        f"machine: {os.cpu_count()} cores; {args.docs:,} documents; "
        f"{args.clients} clients; {args.seconds:.0f} s a phase"
    )
    errors = 0
    with server(f"sqlite:///{work}") as (base, _):
        health = httpx.get(f"{base}/health").json()
        print(f"serving {health['documents']:,} documents")
        c = args.clients
        # Peer: the cheapest endpoint, the floor set by HTTP, uvicorn and FastAPI on this machine.
        errors += report("peer", run(base, args.seconds, [("GET /health", c, health_check)]))
        errors += report("alone", run(base, args.seconds, [("GET similar?k=10", c, similar)]))
        errors += report("alone", run(base, args.seconds, [("POST /documents (1)", c, append)]))
        mixed = [("GET similar?k=10", max(1, c // 2), similar)]
        mixed.append(("POST /documents (1)", max(1, c - c // 2), append))
        errors += report("mixed", run(base, args.seconds, mixed))
        final = httpx.get(f"{base}/health").json()["documents"]
        print(f"documents at the end: {final:,}")
    print("errors: " + str(errors))
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())

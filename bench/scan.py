"""Scan speed of HammingIndex against faiss IndexBinaryFlat, plain NumPy and the read floor.

    python bench/scan.py --sizes 1e6,1e7,6e7            # random codes
    python bench/scan.py --real /tmp/textrec-real.npy    # fingerprints of the shared corpora
    python bench/scan.py --fingerprint /tmp/textrec-real.npy --limit 200000   # make that file
    python bench/scan.py --kernel-ab 1e7     # bit-sliced vs popcount batch kernel, by batch size
    python bench/scan.py --sizes 1e7,6e7 --kernel avx2 --threads 1 --no-snapshot
                                             # the AVX2 kernel forced on an AVX-512 host

Prints one line per measurement: p50 and p99 milliseconds per call (a call is one query, or one
batch of 100 queries), for 1 and 2 threads (``--threads``), and for each size the ratios the
targets are stated in (one thread): once with the calls interleaved round by round (the figure
to quote on a shared machine), once from the rows' p50s. "floor" is one NumPy ``sum`` over the
fingerprint array: the time to read it once. ``--kernel`` forces a kernel of
``textrec._hamming`` (as the tests' ``use_kernel`` hook does); the kernel that ran is printed
with each size. The machine is shared: compare rows of one run as ratios. Needs the ``bench``
extra (faiss-cpu, psutil).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast

import numpy as np

from textrec.content.hamming import HammingIndex, _topk_numpy, kernel_name

K = 10
BATCH = 100


def timed(fn: Callable[[], object], reps: int, budget_s: float) -> tuple[float, float, int, float]:
    """p50 and p99 wall ms of ``fn`` over up to ``reps`` runs (stopping after ``budget_s``), and
    p50 CPU ms of the calling thread: on a shared machine the wall time includes the time other
    processes held the core, the thread's CPU time does not (memory stalls count in both)."""
    fn()  # warm up
    times, cpu = [], []
    start = time.perf_counter()
    for _ in range(reps):
        c0 = time.thread_time()
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu.append((time.thread_time() - c0) * 1e3)
        if time.perf_counter() - start > budget_s:
            break
    a = np.array(times)
    return (
        float(np.percentile(a, 50)),
        float(np.percentile(a, 99)),
        len(times),
        float(np.percentile(cpu, 50)),
    )


def report(
    label: str, p50: float, p99: float, runs: int, cpu: float, per: int = 1
) -> dict[str, object]:
    extra = f"  ({p50 / per:.3f} ms/query, cpu {cpu / per:.3f})" if per > 1 else ""
    print(
        f"  {label:<34} p50 {p50:9.2f} ms  p99 {p99:9.2f} ms  cpu p50 {cpu:9.2f} ms"
        f"  [{runs} runs]{extra}",
        flush=True,
    )
    return {"label": label, "p50": p50, "p99": p99, "runs": runs, "cpu": cpu}


def bench(
    codes: np.ndarray,
    name: str,
    radius: bool,
    reps: int,
    real: bool = False,
    threads_list: tuple[int, ...] = (1, 2),
) -> list[dict[str, object]]:
    import faiss

    n = codes.shape[0]
    rng = np.random.default_rng(7)
    ids = np.arange(n, dtype=np.int64)
    index = HammingIndex()
    index.add(ids, codes)
    del ids
    gc.collect()
    if real:
        # queries: the fingerprints of stored documents ("posts related to this one")
        qs = codes[rng.integers(0, n, BATCH)].copy()
    else:
        # queries: half random, half stored codes with a bit flipped (near duplicates)
        qs = rng.integers(0, 2**64, size=BATCH, dtype=np.uint64)
        stored = codes[rng.integers(0, n, BATCH // 2)]
        flip = np.uint64(1) << rng.integers(0, 64, BATCH // 2).astype(np.uint64)
        qs[: BATCH // 2] = stored ^ flip
    stored_codes, stored_ids = index.codes, index.ids
    fidx = faiss.IndexBinaryFlat(64)
    fidx.add(codes.view(np.uint8).reshape(n, 8))
    fq = qs.view(np.uint8).reshape(BATCH, 8)
    budget = 8.0
    print(
        f"{name}: {n:,} codes, kernel {kernel_name()}, faiss {faiss.__version__}, k={K}",
        flush=True,
    )
    rows = []
    qi = iter(range(10**9))

    def one() -> np.uint64:
        return qs[next(qi) % BATCH]

    rows.append(report("floor: numpy sum (1 thread)", *timed(lambda: codes.sum(), reps, budget)))
    for threads in threads_list:
        faiss.omp_set_num_threads(threads)
        rows.append(
            report(
                f"textrec single, {threads} thr",
                *timed(lambda t=threads: index.search(one(), K, threads=t), reps, budget),
            )
        )
        rows.append(
            report(
                f"faiss single, {threads} thr",
                *timed(lambda: fidx.search(fq[(j := next(qi) % BATCH) : j + 1], K), reps, budget),
            )
        )
        rows.append(
            report(
                f"textrec batch {BATCH}, {threads} thr",
                *timed(
                    lambda t=threads: index.search_batch(qs, K, threads=t), max(3, reps // 4), 15
                ),
                per=BATCH,
            )
        )
        rows.append(
            report(
                f"faiss batch {BATCH}, {threads} thr",
                *timed(lambda: fidx.search(fq, K), max(2, reps // 10), 15),
                per=BATCH,
            )
        )
    rows.append(
        report(
            "numpy single (1 thread)",
            *timed(lambda: _topk_numpy(stored_codes, stored_ids, one(), K), max(3, reps // 4), 15),
        )
    )
    faiss.omp_set_num_threads(1)
    interleaved(
        {
            "floor": lambda i: codes.sum(),
            "single": lambda i: index.search(qs[i % BATCH], K, threads=1),
            "faiss single": lambda i: fidx.search(fq[i % BATCH : i % BATCH + 1], K),
            "radius 4 scan": lambda i: index.within(qs[i % BATCH], 4),
            "batch": lambda i: index.search_batch(qs, K, threads=1),
        },
        max(5, reps // 3),
    )
    fidx.reset()  # free faiss's copy before the radius tables are built
    gc.collect()
    if radius:
        t0 = time.perf_counter()
        index.enable_radius_index()
        build = time.perf_counter() - t0
        print(
            f"  radius tables: built in {build:.2f} s, "
            f"{index.radius_index_nbytes / n:.2f} extra bytes/doc",
            flush=True,
        )
        for r in (4, 8):
            found = [len(index.within(q, r)[0]) for q in qs[:10]]
            rows.append(
                report(
                    f"radius {r} (tables; ~{int(np.mean(found))} hits)",
                    *timed(lambda r=r: index.within(one(), r), reps * 3, budget),
                )
            )
        index.disable_radius_index()
        rows.append(
            report("radius 4 (scan, 1 thr)", *timed(lambda: index.within(one(), 4), reps, budget))
        )
    summarize(rows)
    return rows


def interleaved(calls: dict[str, Callable[[int], object]], rounds: int) -> None:
    """The calls in turn (one thread), ``rounds`` times: the median over rounds of the ratios
    the targets are stated in, wall and CPU time. A neighbour's load shifts these less than the
    separate rows above, which are measured seconds apart."""
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(rounds):
        for name, fn in calls.items():
            c0, t0 = time.thread_time(), time.perf_counter()
            fn(i)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.thread_time() - c0)
    ratios = {
        "single/floor": ("single", "floor", 1),
        "radius 4 scan/floor": ("radius 4 scan", "floor", 1),
        "faiss single/single": ("faiss single", "single", 1),
        f"{BATCH} single/batch of {BATCH}": ("single", "batch", BATCH),
    }
    parts = []
    for label, (top, bottom, scale) in ratios.items():
        w, c = (np.median(scale * np.array(t[top]) / np.array(t[bottom])) for t in (wall, cpu))
        parts.append(f"{label} {w:.2f} (cpu {c:.2f})")
    print(f"  interleaved, {rounds} rounds, median ratios: " + ", ".join(parts), flush=True)


def summarize(rows: list[dict[str, object]]) -> None:
    """The one-thread ratios of the targets, from the p50s of this run."""
    p50 = {str(r["label"]): cast(float, r["p50"]) for r in rows}
    floor, single = p50["floor: numpy sum (1 thread)"], p50.get("textrec single, 1 thr")
    if single is None:
        return
    parts = [
        f"single/floor {single / floor:.2f}",
        f"faiss single/textrec single {p50['faiss single, 1 thr'] / single:.2f}",
        f"100 single/batch of {BATCH} {BATCH * single / p50[f'textrec batch {BATCH}, 1 thr']:.2f}",
    ]
    if "radius 4 (scan, 1 thr)" in p50:
        parts.append(f"radius 4 scan/floor {p50['radius 4 (scan, 1 thr)'] / floor:.2f}")
    print("  ratios (1 thread, p50): " + ", ".join(parts), flush=True)


def snapshot_load(codes: np.ndarray) -> None:
    """Save a snapshot, then open it in a fresh process: load time and RSS per document."""
    n = codes.shape[0]
    index = HammingIndex()
    index.add(np.arange(n, dtype=np.int64), codes)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TEXTREC_BENCH_TMP", "/tmp")) as tmp:
        path = Path(tmp) / "bench.index"
        index.save(path)
        del index
        gc.collect()
        child = r"""
import json, sys, time, psutil, numpy as np
from textrec.content.hamming import HammingIndex
path = sys.argv[1]
proc = psutil.Process()
out = {}
for mmap, verify in ((True, False), (True, True), (False, False)):
    t0 = time.perf_counter()
    idx = HammingIndex.load(path, mmap=mmap, verify=verify)
    out[f"load mmap={mmap} verify={verify} s"] = time.perf_counter() - t0
    del idx
base = proc.memory_info().rss
idx = HammingIndex.load(path, mmap=False, verify=False)
idx.search(0, 10)
out["rss bytes/doc (loaded in memory)"] = (proc.memory_info().rss - base) / len(idx)
idx.enable_radius_index()
out["rss bytes/doc (with radius tables)"] = (proc.memory_info().rss - base) / len(idx)
print(json.dumps(out))
"""
        res = subprocess.run(
            [sys.executable, "-c", child, str(path)], capture_output=True, text=True, check=True
        )
        for key, value in json.loads(res.stdout).items():
            print(f"  snapshot {key:<40} {value:.3f}", flush=True)


def fingerprint_corpora(out: Path, limit: int) -> None:
    """Fingerprint petitions + ynat headlines + nsmc reviews with textrec's Analyzer (Mecab)."""
    import gzip

    from textrec import Analyzer, DFSnapshot

    data = Path("/work/shared/data")
    docs = []
    with (data / "petitions_ko_17cat.jsonl").open(encoding="utf-8") as f:
        docs += [json.loads(line) for line in f]
    with (data / "ynat_headlines_7cat.jsonl").open(encoding="utf-8") as f:
        docs += [json.loads(line) for line in f]
    with gzip.open(data / "nsmc_raw_reviews.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            if len(docs) >= limit:
                break
            docs.append(json.loads(line))
    analyzer = Analyzer()
    t0 = time.perf_counter()
    counts = [analyzer.term_counts(d["text"] or "", d.get("title")) for d in docs]
    snapshot = DFSnapshot.from_documents(counts)
    fps = np.array([analyzer.fingerprint(c, snapshot) for c in counts], dtype=np.uint64)
    np.save(out, fps)
    print(f"{len(fps):,} fingerprints in {time.perf_counter() - t0:.0f} s -> {out}")


def kernel_ab(size: int, reps: int) -> None:
    """The bit-sliced batch kernel against the popcount batch kernel, calls interleaved in one
    process, for several batch sizes: CPU ms per query (1 thread) and their ratio."""
    from textrec.content.hamming import _compiled

    if _compiled is None or kernel_name() not in ("avx512-vpopcntdq", "avx2"):
        print(f"kernel A/B: needs the AVX-512 or AVX2 kernel, have {kernel_name()}")
        return
    rng = np.random.default_rng(size)
    codes = rng.integers(0, 2**64, size=size, dtype=np.uint64)
    pool = rng.integers(0, 2**64, size=BATCH, dtype=np.uint64)
    pool[: BATCH // 2] = codes[rng.integers(0, size, BATCH // 2)] ^ np.uint64(1)
    rng.shuffle(pool)
    print(
        f"kernel A/B, {size:,} random codes, kernel {kernel_name()}, k={K}, CPU ms per query,"
        " 1 thread",
        flush=True,
    )
    previous = _compiled.sliced_min(64)
    try:
        for m in (17, 18, 24, 34, 50, 64, 100, 200):
            qs = np.resize(pool, m)
            out = np.zeros((m, K), dtype=np.uint64)
            cpu: dict[str, list[float]] = {"popcount": [], "sliced": []}
            for _ in range(max(3, reps // 10)):
                for name, threshold in (("popcount", 10**9), ("sliced", 2)):
                    _compiled.sliced_min(threshold)
                    c0 = time.thread_time()
                    _compiled.topk(codes, qs, K, out)
                    cpu[name].append((time.thread_time() - c0) * 1e3 / m)
            pop, sl = (float(np.median(cpu[x])) for x in ("popcount", "sliced"))
            ratio = pop / sl
            print(
                f"  batch {m:>3}: popcount {pop:.3f}  sliced {sl:.3f}  ratio {ratio:.2f}",
                flush=True,
            )
    finally:
        _compiled.sliced_min(previous)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", default="1e6,1e7,6e7", help="random-code index sizes")
    ap.add_argument("--real", type=Path, help=".npy of real fingerprints to benchmark")
    ap.add_argument("--fingerprint", type=Path, help="write real fingerprints to this .npy")
    ap.add_argument("--limit", type=int, default=800_000, help="documents to fingerprint")
    ap.add_argument("--reps", type=int, default=40, help="repetitions per measurement")
    ap.add_argument("--no-snapshot", action="store_true", help="skip the snapshot load test")
    ap.add_argument(
        "--kernel-ab", type=float, metavar="N", help="only compare the two batch kernels at N codes"
    )
    ap.add_argument(
        "--kernel",
        help="force a scan kernel: generic, popcnt, avx2 or avx512-vpopcntdq (default: the best)",
    )
    ap.add_argument("--threads", default="1,2", help="thread counts of the scan rows")
    args = ap.parse_args()
    threads_list = tuple(int(t) for t in args.threads.split(",") if t)
    if args.kernel:
        from textrec.content.hamming import _compiled

        if _compiled is None:
            ap.error("--kernel needs the compiled kernel (textrec._hamming)")
        try:
            _compiled.use_kernel(args.kernel)
        except ValueError as e:
            ap.error(str(e))
    if args.fingerprint:
        fingerprint_corpora(args.fingerprint, args.limit)
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cpus, load {os.getloadavg()}")
    if args.kernel_ab:
        kernel_ab(int(args.kernel_ab), args.reps)
        return
    if args.real:
        real = np.load(args.real)
        bench(real, f"real fingerprints {args.real.name}", True, args.reps, True, threads_list)
        # ~10 M and ~60 M codes: copies of the real set, each XORed with its own random mask
        # (distances within a copy are kept, copies are ~32 bits apart: unrelated corpora)
        for copies in (13, 78):
            masks = np.random.default_rng(copies).integers(0, 2**64, copies, dtype=np.uint64)
            masks[0] = 0
            tiled = (real[None, :] ^ masks[:, None]).ravel()
            bench(tiled, f"real fingerprints x{copies}", False, args.reps, True, threads_list)
            del tiled
            gc.collect()
    for size in [int(float(s)) for s in args.sizes.split(",") if s]:
        codes = np.random.default_rng(size).integers(0, 2**64, size=size, dtype=np.uint64)
        bench(codes, f"random {size:,}", True, args.reps, threads_list=threads_list)
        if size >= 10**7 and not args.no_snapshot:
            snapshot_load(codes)
        del codes
        gc.collect()


if __name__ == "__main__":
    main()

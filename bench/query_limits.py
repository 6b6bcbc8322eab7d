"""The worst one request can cost at the server's limits: a real ``textrec serve`` (default
limits: ``--max-query-chars 50000``, 1 MiB bodies, ``k`` at most 100) on the bundled Wikinews
sample, sent the most expensive ``POST /similar`` texts the limits allow, ``--concurrent`` at
once, each kind ``--rounds`` times.

    python bench/query_limits.py --concurrent 3

Prints one JSON line per kind of text: the slowest answer (s), the server's CPU seconds
for the round, its peak resident memory (VmHWM) and its resident memory afterwards (VmRSS),
in MiB, measured from /proc (Linux); and the slowest answer as a multiple of that of an
ordinary query (1,000 characters of news, sent the same way, last). Figures are recorded in
RELIABILITY.md and bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.helpers import WIKINEWS  # noqa: E402
from textrec import Store, build, ingest, read_records  # noqa: E402


def texts(n: int) -> dict[str, str]:
    rng = random.Random(0)
    real = " ".join(r.text for r in read_records(str(WIKINEWS)) if hasattr(r, "text"))
    return {
        "latin, unbroken": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n)),
        "hangul, unbroken": "".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(n)),
        "hangul, random words": " ".join(
            "".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(rng.randint(1, 6)))
            for _ in range(n // 4)
        )[:n],
        "digits and symbols": "".join(rng.choice("0123456789!?.,-") for _ in range(n)),
        "real news text": real[:n],
        "ordinary: 1,000 characters of news": real[:1000],
    }


def proc_status(pid: int) -> dict[str, int]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--concurrent", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--chars", type=int, default=50_000, help="the server's limit")
    args = parser.parse_args()
    import subprocess

    from tests.live_server import free_port

    with tempfile.TemporaryDirectory(prefix="query-limits-") as tmp:
        db = f"sqlite:///{Path(tmp) / 'wiki.db'}"
        store = Store(db)
        ingest(store, read_records(str(WIKINEWS)))
        build(store)
        store.close()
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "textrec", "-q", "--db", db, "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"{base}/health", timeout=2).close()
                    break
                except OSError:
                    time.sleep(0.2)
            before = proc_status(proc.pid)
            print(json.dumps({"machine": platform.node(), "cpus": os.cpu_count(), **before}))

            def ask(text: str) -> tuple[int, float]:
                body = json.dumps({"text": text, "k": 100}).encode()
                req = urllib.request.Request(
                    f"{base}/similar", body, {"Content-Type": "application/json"}
                )
                start = time.perf_counter()
                try:
                    with urllib.request.urlopen(req, timeout=600) as r:
                        status = r.status
                except urllib.error.HTTPError as e:
                    status = e.code
                return status, time.perf_counter() - start

            rows = []
            for kind, text in texts(args.chars).items():
                for _ in range(args.rounds):
                    cpu0 = cpu_seconds(proc.pid)
                    with ThreadPoolExecutor(args.concurrent) as pool:
                        answers = list(pool.map(ask, [text] * args.concurrent))
                    time.sleep(0.5)
                    rows.append(
                        {
                            "kind": kind,
                            "chars": len(text),
                            "concurrent": args.concurrent,
                            "statuses": sorted({s for s, _ in answers}),
                            "slowest_s": round(max(t for _, t in answers), 3),
                            "server_cpu_s": round(cpu_seconds(proc.pid) - cpu0, 2),
                            **proc_status(proc.pid),
                        }
                    )
            ordinary = rows[-1]["slowest_s"]
            for row in rows:
                row["x_ordinary"] = round(row["slowest_s"] / ordinary, 1)
                print(json.dumps(row, ensure_ascii=False))
        finally:
            proc.terminate()
            proc.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())

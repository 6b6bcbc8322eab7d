"""Load with a writer: one client keeps appending documents over HTTP while concurrent readers
query a real ``textrec serve`` on loopback, for a bounded time. Zero errors; every appended
document is findable afterwards (by id, and by its own text at distance 0); the store passes
``textrec check``. The p99 latency is printed (``bench/load_writer.py`` runs it longer and
RELIABILITY.md records the figures)."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import copy_database
from textrec import Store
from textrec.check import check

from .live_server import serve

pytestmark = pytest.mark.slow  # a soak on loopback for a bounded time

CORPUS = Path(__file__).resolve().parents[1] / "textrec" / "data" / "wikinews_ko.jsonl.gz"
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"
TOKEN = "load-token"


@dataclass
class LoadResult:
    seconds: float
    readers: int
    appended: list[str] = field(default_factory=list)
    read_ms: list[float] = field(default_factory=list)
    write_ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        r = np.array(self.read_ms or [0.0])
        w = np.array(self.write_ms or [0.0])
        return {
            "seconds": self.seconds,
            "readers": self.readers,
            "queries": len(self.read_ms),
            "queries_per_s": round(len(self.read_ms) / self.seconds, 1),
            "read_p50_ms": round(float(np.percentile(r, 50)), 1),
            "read_p99_ms": round(float(np.percentile(r, 99)), 1),
            "appended": len(self.appended),
            "write_p50_ms": round(float(np.percentile(w, 50)), 1),
            "write_p99_ms": round(float(np.percentile(w, 99)), 1),
            "errors": len(self.errors),
        }


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=60)

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, json.loads(raw) if raw else None

    def close(self) -> None:
        self.conn.close()


def new_documents() -> Iterator[dict[str, Any]]:
    """Real Korean documents (the petitions fixture) under new ids, for the writer: round
    after round, so that the writer never runs out."""
    with open(FIXTURE, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    for round_ in itertools.count():
        for n, d in enumerate(rows):
            yield {"id": f"appended-{round_}-{n:04d}", "title": d["title"], "text": d["text"]}


def run_load(db: str, seconds: float, readers: int) -> LoadResult:
    """Serve ``db`` (which holds the Wikinews sample), run the writer and the readers."""
    result = LoadResult(seconds, readers)
    lock = threading.Lock()
    pending = new_documents()
    sent: dict[str, dict[str, Any]] = {}
    with serve(db, "--token", TOKEN) as base:
        stop = time.monotonic() + seconds

        def writer() -> None:
            c = Client(base)
            try:
                while time.monotonic() < stop:
                    doc = next(pending)
                    sent[doc["id"]] = doc
                    t = time.perf_counter()
                    status, out = c.call("POST", "/documents", {"documents": [doc]})
                    ms = (time.perf_counter() - t) * 1000
                    with lock:
                        if status == 201 and out["ids"] == [doc["id"]]:
                            result.appended.append(doc["id"])
                            result.write_ms.append(ms)
                        else:
                            result.errors.append(f"POST {doc['id']}: {status} {out}")
            except Exception as exc:
                with lock:
                    result.errors.append(f"writer: {exc!r}")
            finally:
                c.close()

        def reader(r: int) -> None:
            c = Client(base)
            i = 0
            try:
                while time.monotonic() < stop:
                    if i % 3 == 0:
                        path = f"/documents/wikinews-{(i * 37 + r) % 644:04d}/similar?k=10"
                        t = time.perf_counter()
                        status, out = c.call("GET", path)
                    elif i % 3 == 1:
                        t = time.perf_counter()
                        body = {"text": "화성 탐사선 로버가 암석 시료를 채취했다", "k": 10}
                        status, out = c.call("POST", "/similar", body)
                    else:
                        with lock:
                            recent = result.appended[-1] if result.appended else None
                        path = f"/documents/{recent or 'wikinews-0001'}/similar?k=5"
                        t = time.perf_counter()
                        status, out = c.call("GET", path)
                    ms = (time.perf_counter() - t) * 1000
                    with lock:
                        if status == 200:
                            result.read_ms.append(ms)
                        else:
                            result.errors.append(f"reader {r}: {status} {out}")
                    i += 1
            except Exception as exc:
                with lock:
                    result.errors.append(f"reader {r}: {exc!r}")
            finally:
                c.close()

        threads = [threading.Thread(target=writer)]
        threads += [threading.Thread(target=reader, args=(r,)) for r in range(readers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=seconds + 120)
        # Afterwards: every appended document is findable, by id and by its own text.
        c = Client(base)
        for doc_id in result.appended:
            status, out = c.call("GET", f"/documents/{doc_id}")
            if status != 200 or out["id"] != doc_id:
                result.errors.append(f"GET /documents/{doc_id}: {status}")
                continue
            d = sent[doc_id]  # the same text is appended once a round: k covers the copies
            query = {"text": d["text"], "title": d["title"], "k": 100, "collapse": -1}
            status, out = c.call("POST", "/similar", query)
            hits = {m["id"] for m in out["results"] if m["distance"] == 0} if status == 200 else {}
            if doc_id not in hits:
                result.errors.append(f"{doc_id} not found by its own text: {status}")
        status, health = c.call("GET", "/health")
        c.close()
        if health["documents"] != 644 + len(result.appended):
            result.errors.append(f"/health says {health['documents']} documents")
    return result


def test_readers_and_a_writer_on_loopback(wikinews_db: Path, tmp_path: Path) -> None:
    db = copy_database(wikinews_db, tmp_path)
    result = run_load(db, seconds=5.0, readers=3)
    print("load with a writer:", json.dumps(result.summary()))
    assert result.errors == []
    assert len(result.appended) >= 5 and len(result.read_ms) >= 30
    store = Store(db)
    assert store.count_documents() == 644 + len(result.appended)
    report = check(store, sample=1000)
    assert report.ok, report.problems
    store.close()

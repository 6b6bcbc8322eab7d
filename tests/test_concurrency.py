"""Queries stay correct while documents are appended and removed from other threads
(the Python API) and from other requests (a real ``textrec serve`` on 127.0.0.1).

"Correct" means: every query answers without error; its results are in order of score,
without the query document, at most ``k`` and no fewer than before the writers started; it
never returns a document whose removal had finished before the query started; a document
whose append had finished is found by the next query; and at the end the index holds
exactly the stored documents.
"""

from __future__ import annotations

import json
import random
import threading
import time
import traceback
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.helpers import copy_database
from textrec import Recommender, Store

from .live_server import serve

pytestmark = pytest.mark.slow  # time-bounded runs of readers and writers

CORPUS = Path(__file__).resolve().parents[1] / "textrec" / "data" / "wikinews_ko.jsonl.gz"
SECONDS = 4.0  # each scenario runs this long
K = 10
MARS_QUERY = "화성 탐사선 로버가 암석 시료를 채취했다"


@pytest.fixture
def db(wikinews_db: Path, tmp_path: Path) -> str:
    return copy_database(wikinews_db, tmp_path)


NOUNS = [
    "사과",
    "바다",
    "학교",
    "음악",
    "경제",
    "정부",
    "시장",
    "기차",
    "도서관",
    "병원",
    "축구",
    "영화",
    "과학",
    "문화",
    "교육",
    "날씨",
    "공항",
    "항구",
    "농업",
    "산업",
    "예술",
    "역사",
    "선거",
    "법원",
    "은행",
    "주식",
    "환율",
    "기후",
    "태풍",
    "지진",
    "화산",
    "우주",
    "위성",
    "로켓",
    "컴퓨터",
    "전기",
    "배터리",
    "도로",
    "교량",
    "공원",
]


def new_doc(n: int, writer: int) -> dict[str, str]:
    """A distinct document of one near-duplicate family (appended documents rank near each
    other, so removals race with the queries that find them), told apart by four nouns."""
    extra = " ".join(random.Random(f"{writer}-{n}").sample(NOUNS, 4))
    return {
        "id": f"w{writer}-{n}",
        "title": f"화성 탐사 보고 {extra}",
        "text": f"화성 탐사선 로버가 암석 시료를 채취했다. {extra}. "
        "탐사선은 붉은 행성의 표면에서 물의 흔적을 발견했다.",
    }


def found_at_zero(doc_id: str, ids: list[str], dists: list[int]) -> bool:
    return any(i == doc_id and d == 0 for i, d in zip(ids, dists, strict=True))


class Log:
    """What the writers did and when, to judge each query's result against."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.removed_at: dict[str, float] = {}
        self.errors: list[str] = []

    def removed(self, doc_id: str) -> None:
        with self.lock:
            self.removed_at[doc_id] = time.monotonic()

    def error(self, message: str) -> None:
        with self.lock:
            self.errors.append(message)

    def check_result(
        self, started: float, query: str | None, ids: list[str], scores: list[float], least: int
    ) -> None:
        """``least``: how many results the query had before any writer started; writers only
        add documents of their own and remove those, so no query may return fewer."""
        if not least <= len(ids) <= K:
            self.error(f"{query}: {len(ids)} results, expected {least}..{K}")
        if scores != sorted(scores, reverse=True):
            self.error(f"{query}: scores out of order {scores}")
        if query is not None and query in ids:
            self.error(f"{query}: the query document is in its own results")
        with self.lock:
            stale = [i for i in ids if self.removed_at.get(i, float("inf")) < started]
        if stale:
            self.error(f"{query}: returned {stale}, removed before the query started")


def run_threads(targets: list[Any]) -> None:
    threads = [threading.Thread(target=t, daemon=True) for t in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=SECONDS + 60)
        assert not t.is_alive(), "a worker did not finish"


def test_python_api_under_concurrent_writes(db: str) -> None:
    rec = Recommender(db)
    log = Log()
    stop = time.monotonic() + SECONDS
    kept: list[str] = []
    counts = {"queries": 0, "added": 0, "removed": 0}

    def writer(w: int) -> None:
        n = 0
        try:
            while time.monotonic() < stop:
                docs = [new_doc(n + i, w) for i in range(3)]
                n += 3
                stored, rejected = rec.add(docs)
                if stored != [d["id"] for d in docs] or rejected:
                    log.error(f"add: stored {stored}, rejected {rejected}")
                # Visible to the very next query, with no rebuild.
                top = rec.similar_text(docs[0]["text"], k=3, title=docs[0]["title"], collapse=None)
                if not found_at_zero(docs[0]["id"], [m.id for m in top], [m.distance for m in top]):
                    log.error(f"{docs[0]['id']} not found right after add: {top}")
                for d in docs[:2]:
                    rec.remove(d["id"])
                    log.removed(d["id"])
                kept.append(docs[2]["id"])
                with log.lock:
                    counts["added"] += 3
                    counts["removed"] += 2
        except Exception as exc:  # reported, not swallowed: the test fails on any
            log.error(f"writer {w}: {exc!r}")

    queries = ["wikinews-0001", "wikinews-0054", "wikinews-0300", "wikinews-0429"]
    least = {q: len(rec.similar(q, k=K)) for q in queries}
    least[None] = len(rec.similar_text(MARS_QUERY, k=K))  # type: ignore[index]
    assert least[None] >= 1 and all(n == K for q, n in least.items() if q), least  # type: ignore[index]

    def reader(r: int) -> None:
        i = 0
        try:
            while time.monotonic() < stop:
                started = time.monotonic()
                if i % 2:
                    q = queries[(i // 2) % len(queries)]
                    ms = rec.similar(q, k=K)
                else:
                    q = None
                    ms = rec.similar_text(MARS_QUERY, k=K)
                log.check_result(
                    started,
                    q,
                    [m.id for m in ms],
                    [m.score for m in ms],
                    least[q],  # type: ignore[index]
                )
                i += 1
                with log.lock:
                    counts["queries"] += 1
        except Exception as exc:
            log.error(f"reader {r}: {exc!r}\n{traceback.format_exc()}")

    run_threads(
        [lambda w=w: writer(w) for w in range(2)] + [lambda r=r: reader(r) for r in range(3)]
    )
    assert log.errors == []
    assert counts["added"] >= 6 and counts["removed"] >= 4 and counts["queries"] >= 20, counts
    # The index holds exactly the stored documents; a fresh Recommender agrees.
    assert len(rec) == 644 + len(kept)
    stored_ids = {d.id for d in rec.store.iter_documents()}
    assert set(rec.index.ids.tolist()) == stored_ids
    fresh = Recommender(db)
    assert np.array_equal(np.sort(fresh.index.ids), np.sort(rec.index.ids))
    for doc_id in kept[:5]:
        assert [m.id for m in fresh.similar(doc_id, k=K)] == [
            m.id for m in rec.similar(doc_id, k=K)
        ]


def _call(method: str, url: str, body: object | None = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", "Bearer tok")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            raw = r.read()
            return r.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def test_http_under_concurrent_writes(db: str) -> None:
    log = Log()
    counts = {"queries": 0, "added": 0}
    with serve(db, "--token", "tok") as base:
        stop = time.monotonic() + SECONDS

        def writer(w: int) -> None:
            n = 0
            try:
                while time.monotonic() < stop:
                    docs = [new_doc(n, w), new_doc(n + 1, w)]
                    n += 2
                    status, out = _call("POST", f"{base}/documents", {"documents": docs})
                    if status != 201 or out["ids"] != [d["id"] for d in docs]:
                        log.error(f"POST /documents: {status} {out}")
                        continue
                    q = {"text": docs[0]["text"], "title": docs[0]["title"], "k": 3, "collapse": -1}
                    status, out = _call("POST", f"{base}/similar", q)
                    res = out["results"] if status == 200 else []
                    ids, dists = [m["id"] for m in res], [m["distance"] for m in res]
                    if not found_at_zero(docs[0]["id"], ids, dists):
                        log.error(f"{docs[0]['id']} not found right after POST: {status} {out}")
                    status, _ = _call("DELETE", f"{base}/documents/{docs[0]['id']}")
                    if status != 204:
                        log.error(f"DELETE: {status}")
                    log.removed(docs[0]["id"])
                    with log.lock:
                        counts["added"] += 2
            except Exception as exc:
                log.error(f"writer {w}: {exc!r}")

        queries = [f"wikinews-{i * 37 % 644:04d}" for i in range(12)]
        least: dict[str | None, int] = {
            q: len(_call("GET", f"{base}/documents/{q}/similar?k={K}")[1]["results"])
            for q in queries
        }
        least[None] = len(
            _call("POST", f"{base}/similar", {"text": MARS_QUERY, "k": K})[1]["results"]
        )
        assert least[None] >= 1

        def reader(r: int) -> None:
            i = 0
            try:
                while time.monotonic() < stop:
                    started = time.monotonic()
                    if i % 2:
                        q = queries[(i // 2) % len(queries)]
                        status, out = _call("GET", f"{base}/documents/{q}/similar?k={K}")
                    else:
                        q = None
                        body = {"text": MARS_QUERY, "k": K}
                        status, out = _call("POST", f"{base}/similar", body)
                    if status != 200:
                        log.error(f"query {q}: {status} {out}")
                    else:
                        res = out["results"]
                        ids = [m["id"] for m in res]
                        scores = [m["score"] for m in res]
                        log.check_result(started, q, ids, scores, least[q])
                    i += 1
                    with log.lock:
                        counts["queries"] += 1
            except Exception as exc:
                log.error(f"reader {r}: {exc!r}")

        run_threads(
            [lambda w=w: writer(w) for w in range(2)] + [lambda r=r: reader(r) for r in range(3)]
        )
        assert log.errors == []
        assert counts["added"] >= 4 and counts["queries"] >= 10, counts
        status, health = _call("GET", f"{base}/health")
        assert status == 200 and health["documents"] == 644 + counts["added"] // 2
    # What the server acknowledged is in the store.
    assert Store(db).count_documents() == 644 + counts["added"] // 2

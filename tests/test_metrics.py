"""GET /metrics: the Prometheus text format, behind the token when one is set (issue 20,
item 12)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

from fastapi.testclient import TestClient

from tests.helpers import copy_database
from textrec import Store, ingest, read_records
from textrec.serve.app import create_app

LINE = re.compile(r'^[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? (-?[0-9.e+]+|NaN|\+Inf)$')


def parse(text: str) -> dict[str, float]:
    values = {}
    for line in text.splitlines():
        if line.startswith("#"):
            assert re.match(r"^# (HELP|TYPE) [a-z_]+ .+$", line), line
            continue
        assert LINE.match(line), line
        key, _, value = line.rpartition(" ")
        values[key] = float(value)
    return values


def test_metrics_count_requests_documents_events_and_lag(wikinews_db: Path, tmp_path: Path) -> None:
    url = copy_database(wikinews_db, tmp_path)
    auth = {"Authorization": "Bearer t"}
    with TestClient(create_app(url, token="t", refresh_interval=None)) as c:
        assert c.get("/metrics").status_code == 401  # behind the token
        c.get("/documents/wikinews-0001/similar?k=3")
        c.get("/documents/wikinews-0002/similar?k=3")
        c.get("/documents/no-such-id")
        events = [
            {"user": "u1", "item": "wikinews-0001"},
            {"user": "u1", "item": "no-such-id"},
        ]
        assert c.post("/events", json={"events": events}).status_code == 202
        r = c.get("/metrics", headers=auth)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
        m = parse(r.text)
        similar = 'method="GET",route="/documents/{id}/similar"'
        assert m[f'textrec_http_requests_total{{{similar},status="200"}}'] == 2
        assert (
            m['textrec_http_requests_total{method="GET",route="/documents/{id}",status="404"}'] == 1
        )
        assert m[f"textrec_http_request_duration_seconds_count{{{similar}}}"] == 2
        assert m[f'textrec_http_request_duration_seconds_bucket{{{similar},le="+Inf"}}'] == 2
        assert m[f"textrec_http_request_duration_seconds_sum{{{similar}}}"] > 0
        assert m["textrec_documents"] == 644
        assert m['textrec_index_bytes{index="related"}'] > 0
        assert m["textrec_events_accepted_total"] == 1
        assert m["textrec_events_rejected_total"] == 1
        assert m["textrec_catch_up_lag_generations"] == 0
        assert math.isnan(m["textrec_catch_up_age_seconds"])  # never looked: no follower
        generation = m["textrec_store_generation"]
        # another process writes: the lag shows until the server catches up
        src = tmp_path / "new.jsonl"
        src.write_text(json.dumps({"id": "new", "text": "화성 탐사선 착륙"}, ensure_ascii=False))
        ingest(Store(url), read_records(str(src)))
        m = parse(c.get("/metrics", headers=auth).text)
        assert m["textrec_store_generation"] == generation + 1
        assert m["textrec_catch_up_lag_generations"] == 1
        c.app.state.recommender.refresh()  # type: ignore[attr-defined]
        m = parse(c.get("/metrics", headers=auth).text)
        assert m["textrec_catch_up_lag_generations"] == 0 and m["textrec_documents"] == 645


def test_metrics_are_open_without_a_token(wikinews_db: Path, tmp_path: Path) -> None:
    with TestClient(create_app(copy_database(wikinews_db, tmp_path))) as c:
        assert c.get("/metrics").status_code == 200

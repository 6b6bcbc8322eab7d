"""Readers' events: stored for real (SQLite and PostgreSQL), checked, imported, served, and
the real-time "readers also read" mode built on them."""

from __future__ import annotations

import gzip
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import built_petitions, copy_database
from textrec import Recommender, Store
from textrec.cli.main import main
from textrec.collab.buckets import open_buckets
from textrec.collab.events import KIND_WEIGHTS, Event, parse_event, read_events, store_events
from textrec.collab.readers import NUM_PERM, READERS_SCHEME, ReadersIndex
from textrec.collab.synthetic import click_log
from textrec.evaluation.events import Interactions, evaluate_events
from textrec.pipeline.records import RecordError
from textrec.serve.app import create_app
from textrec.serve.guard import EventGuard

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"


@pytest.fixture
def small(db_url: str, tmp_path: Path) -> str:
    """60 petitions, built, in a database of each kind."""
    return built_petitions(db_url, tmp_path, 60)


def _ids(url: str) -> list[str]:
    return [d.external_id for d in Store(url).iter_documents()]


def test_events_are_stored_and_bad_ones_refused_with_the_reason(small: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rec = Recommender(small, index_path=str(tmp_path / "i.index"))
    a, b = _ids(small)[:2]
    stored, rejected = rec.add_events(
        [
            {"user": "u1", "item": a},
            {"user": "u1", "item": b, "kind": "click", "source": "related"},
            {"user": "", "item": a},
            {"user": "x" * 257, "item": a},
            {"user": "u2", "item": "no-such-post"},
            {"user": "u2", "item": a, "kind": "purchase"},
            {"user": "u2", "item": a, "time": "yesterday"},
            {"user": "u2", "item": a, "time": "2999-01-01T00:00:00"},
            {"user": "u2", "item": a, "colour": "red"},
            "not an object",
            {"user": "u3", "item": b, "time": "2026-11-30T09:00:00+09:00"},
        ]
    )
    assert stored == 3
    reasons = {e.line: e.reason for e in rejected}
    assert set(reasons) == {3, 4, 5, 6, 7, 8, 9, 10}
    assert "'user' must be a non-empty string" in reasons[3]
    assert "the limit is 256" in reasons[4]
    assert "unknown item 'no-such-post'" in reasons[5]
    assert "the kinds are view, click, like, share" in reasons[6]
    assert "not an ISO 8601 time" in reasons[7] and "in the future" in reasons[8]
    assert "Unix time" not in reasons[7]
    assert "unknown field 'colour'" in reasons[9] and "an event is an object" in reasons[10]
    stats = rec.store.event_stats()
    assert (
        stats["events"] == 3 and stats["users"] == 2 and stats["kinds"] == {"click": 1, "view": 2}
    )
    assert stats["first"].startswith("2026-11-30T00:00:00")  # stored in UTC


@pytest.mark.parametrize("kind", [["click"], {"kind": "click"}, 3, "x" * 500])
def test_a_kind_of_the_wrong_type_is_refused_with_the_reason(kind: object) -> None:
    got = parse_event({"user": "u", "item": "a", "kind": kind}, where="e.jsonl", line=7)
    assert not isinstance(got, Event)
    assert (got.source, got.line) == ("e.jsonl", 7)
    assert "field 'kind' is " in got.reason and "the kinds are view, click" in got.reason
    assert len(got.reason) < 120  # a long value is cut, not echoed whole


def test_removing_a_document_removes_its_events_and_its_readers(
    small: str, tmp_path: Path, readers_store: str | None
) -> None:
    rec = Recommender(small, index_path=str(tmp_path / "i.index"), readers_store=readers_store)
    a, b, c = _ids(small)[:3]
    rec.add_events([{"user": f"u{i}", "item": x} for i in range(5) for x in (a, b, c)])
    assert [m.id for m in rec.similar(a, k=5, mode="readers")] == [b, c]
    rec.remove(b)
    assert [m.id for m in rec.similar(a, k=5, mode="readers")] == [c]
    assert rec.store.count_events() == 10
    again = Recommender(small, index_path=str(tmp_path / "i.index"), readers_store=readers_store)
    assert [m.id for m in again.similar(a, k=5, mode="readers")] == [c]


def test_an_event_changes_the_next_query_at_once(
    copy_of_built: str, readers_store: str | None
) -> None:
    rec = Recommender(copy_of_built, readers_store=readers_store)
    rec.add_events([{"user": f"u{i}", "item": "wikinews-0001"} for i in range(3)])
    rec.add_events([{"user": f"u{i}", "item": "wikinews-0002"} for i in range(3)])
    assert [m.id for m in rec.similar("wikinews-0001", k=3, mode="readers")] == ["wikinews-0002"]
    assert rec.similar("wikinews-0003", k=3, mode="readers") == []
    assert rec.readers_of("wikinews-0003") == 0
    rec.add_events([{"user": "u0", "item": "wikinews-0003"}])
    assert [m.id for m in rec.similar("wikinews-0003", k=3, mode="readers")] == [
        "wikinews-0001",
        "wikinews-0002",
    ]
    # A new Recommender reads the same state from the events table.
    again = Recommender(copy_of_built, readers_store=readers_store)
    for doc in ("wikinews-0001", "wikinews-0003"):
        got = [(m.id, m.score) for m in again.similar(doc, k=3, mode="readers")]
        assert got == [(m.id, m.score) for m in rec.similar(doc, k=3, mode="readers")]


def test_signatures_are_pinned() -> None:
    index = ReadersIndex()
    index.add([(f"user-{i}", 7, "view") for i in range(10)])
    sig = index._signatures[7]
    assert READERS_SCHEME == "minhash128-affine32-sha1-seed1/datasketch-2.0"
    assert sig.shape == (NUM_PERM,)
    # Golden values: the same readers give the same signature everywhere.
    assert sig[:4].tolist() == GOLDEN_SIGNATURE_HEAD
    again = ReadersIndex()
    for i in reversed(range(10)):  # order and batching do not matter
        again.add([(f"user-{i}", 7, "click")])
    assert np.array_equal(again._signatures[7], sig)


GOLDEN_SIGNATURE_HEAD = [275238267, 1098796439, 617720362, 1502801500]


def test_candidates_are_the_documents_sharing_signature_values(readers_store: str | None) -> None:
    events = click_log({"a": ["1", "2", "3"], "b": ["4", "5", "6"]}, users=60, seed=3)
    index = ReadersIndex(buckets=open_buckets(readers_store, num_perm=NUM_PERM, namespace="t1"))
    index.add((e["user"], int(e["item"]), e["kind"]) for e in events)
    for doc in range(1, 7):
        brute = {
            other: int((index._signatures[doc] == index._signatures[other]).sum())
            for other in range(1, 7)
            if other != doc
        }
        expected = sorted(((o, n) for o, n in brute.items() if n), key=lambda kv: (-kv[1], kv[0]))
        assert index.candidates(doc) == expected
    top = index.similar(1, 2)[0].tolist()
    assert set(top) == {2, 3}  # readers of "a" read "a"


def test_click_log_is_deterministic_and_topical() -> None:
    groups = {"x": ["1", "2"], "y": ["3", "4"]}
    first = click_log(groups, users=30, seed=5)
    assert first == click_log(groups, users=30, seed=5)
    assert first != click_log(groups, users=30, seed=6)
    assert all(e["kind"] in KIND_WEIGHTS for e in first)
    assert parse_event(first[0]).user == first[0]["user"]  # type: ignore[union-attr]


def test_events_import_jsonl_csv_and_gzip_with_file_and_line(
    copy_of_built: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    jsonl = tmp_path / "e.jsonl"
    jsonl.write_text(
        '{"user": "a", "item": "wikinews-0001"}\n'
        "not json\n"
        '{"user": "a", "item": "nope"}\n'
        '{"user": "b", "item": "wikinews-0001", "kind": "like"}\n',
        "utf-8",
    )
    csv_gz = tmp_path / "e.csv.gz"
    with gzip.open(csv_gz, "wt", encoding="utf-8") as f:
        f.write("user,item,kind,time\nc,wikinews-0002,click,2026-11-01T10:00:00\nd,,view,\n")
    assert main(["--db", copy_of_built, "events", "import", str(jsonl), str(csv_gz)]) == 1
    err = capsys.readouterr().err
    assert f"{jsonl}:2: invalid JSON" in err
    assert f"{jsonl}:3: unknown item 'nope'" in err
    assert f"{csv_gz}:3: field 'item' must be a non-empty string" in err
    assert f"{jsonl}: 2 events stored" in err and f"{csv_gz}: 1 events stored" in err
    assert main(["--db", copy_of_built, "events", "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["events"] == 3 and stats["kinds"] == {"click": 1, "like": 1, "view": 1}
    assert main(["--db", copy_of_built, "similar", "wikinews-0003", "--mode", "readers"]) == 0
    assert "no readers yet" in capsys.readouterr().out


def test_a_file_import_checks_every_line_as_json_loads_would(
    copy_of_built: str, tmp_path: Path
) -> None:
    """The import's fast reading (JSON's scanner, times parsed once a string) keeps every
    check: the same reasons as a line-by-line json.loads and parse_event, lines that share a
    time string each checked against the future, and nothing of a batch half-written."""
    lines = [
        '{"user": "a", "item": "wikinews-0001", "time": "2026-11-01T10:00:00+09:00"}',
        '{"user": "b", "item": "wikinews-0002", "time": "2026-11-01T10:00:00+09:00"} x',
        '{"user": "c", "item": "wikinews-0002", "time": "2026-11-01T10:00:00+09:00"}',
        "  ",
        '{"user": "d", "item": "wikinews-0003", "time": "2999-01-01T00:00:00"}',
        '{"user": "d", "item": "wikinews-0003", "time": "2999-01-01T00:00:00"}',
        '{"user": "e", "item": "wikinews-0003", "time": "soon"}',
        '{"user": "e", "item": "wikinews-0003", "time": "soon"}',
        '{"user": "f", "item": "wikinews-0003", "when": "now"}',
        "[1, 2]",
        '{"user": "g", "item": "wikinews-0004"',
        '\ufeff{"user": "h", "item": "wikinews-0004"}',
        '{"user": "i", "item": "no-such-post"}',
        '{"user": "j", "item": "wikinews-0004", "kind": "click", "source": "related"}',
    ]
    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    store = Store(copy_of_built)
    report = store_events(store, read_events(str(path)), batch_size=4)
    want: dict[int, str] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            parsed = parse_event(json.loads(line.strip()), where=str(path), line=n)
        except json.JSONDecodeError as exc:
            want[n] = f"invalid JSON: {exc.msg}"
            continue
        if not isinstance(parsed, Event):
            want[n] = parsed.reason
    want[13] = "unknown item 'no-such-post'"
    assert {e.line: e.reason for e in report.rejected} == want
    assert set(want) == {2, 5, 6, 7, 8, 9, 10, 11, 12, 13}
    assert report.stored == 3 == store.count_events()
    stored = [e for batch in store.iter_events() for e in batch]
    assert [(e.user, e.kind) for e in stored] == [("a", "view"), ("c", "view"), ("j", "click")]
    assert stored[0].time.replace(tzinfo=None) == datetime(2026, 11, 1, 1, 0)  # in UTC


def test_http_events_are_bounded_and_counted(copy_of_built: str) -> None:
    db = copy_of_built
    guard = EventGuard(rate=0.0, burst=5)  # five events, then nothing (no refill)
    with TestClient(create_app(db, guard=guard)) as c:
        r = c.post(
            "/events",
            json={
                "events": [
                    {"user": "r1", "item": "wikinews-0001"},
                    {"user": "r1", "item": "wikinews-0001"},  # the same view again
                    {"user": "r1", "item": "nope"},
                    {"user": "r1", "item": "wikinews-0002", "kind": "click", "source": "related"},
                    {"user": "r2", "item": "wikinews-0002"},
                    {"user": "r3", "item": "wikinews-0002"},  # over the rate
                ]
            },
        )
        assert r.status_code == 202, r.text
        out = r.json()
        assert out["accepted"] == 3
        assert [(x["index"], x["reason"]) for x in out["rejected"]] == [
            (1, "a repeated view within the window"),
            (2, "unknown item 'nope'"),
            (5, "over this client's rate of events"),
        ]
        assert (
            c.post(
                "/events", json={"events": [{"user": "r4", "item": "wikinews-0003"}]}
            ).status_code
            == 429
        )
        assert c.post("/events", json={"events": [{"user": "x"}] * 101}).status_code == 422
        r = c.get("/documents/wikinews-0001/similar", params={"mode": "readers"})
        assert r.status_code == 200 and [m["id"] for m in r.json()["results"]] == ["wikinews-0002"]
        r = c.get("/documents/wikinews-0400/similar", params={"mode": "readers"})
        assert r.json()["results"] == [] and "no readers yet" in r.json()["note"]


def test_one_client_brings_a_bounded_number_of_new_readers(copy_of_built: str) -> None:
    now = [0.0]
    guard = EventGuard(rate=1000.0, burst=1000, new_readers=3, clock=lambda: now[0])
    with TestClient(create_app(copy_of_built, guard=guard)) as c:
        events = [{"user": f"r{n}", "item": "wikinews-0001"} for n in range(5)]
        events.append({"user": "r0", "item": "wikinews-0002"})  # a reader already brought
        r = c.post("/events", json={"events": events})
        assert r.status_code == 202, r.text
        assert r.json()["accepted"] == 4
        assert [(x["index"], x["reason"]) for x in r.json()["rejected"]] == [
            (3, "too many new readers from this client"),
            (4, "too many new readers from this client"),
        ]
        now[0] = 3600.0  # the window has passed: room for new readers again
        r = c.post("/events", json={"events": [{"user": "r9", "item": "wikinews-0003"}]})
        assert r.json()["accepted"] == 1
    assert EventGuard(new_readers=None).admit_reader("c", "u")
    with pytest.raises(ValueError, match="new_readers"):
        EventGuard(new_readers=0)


def test_http_events_can_require_the_token(copy_of_built: str) -> None:
    app = create_app(copy_of_built, token="t0k3n", events_need_token=True)
    with TestClient(app) as c:
        body = {"events": [{"user": "r1", "item": "wikinews-0001"}]}
        assert c.post("/events", json=body).status_code == 401
        r = c.post("/events", json=body, headers={"Authorization": "Bearer t0k3n"})
        assert r.status_code == 202 and r.json()["accepted"] == 1


def test_the_http_modes_are_the_sources_modes() -> None:
    import typing

    from textrec.serve.app import Mode
    from textrec.sources import MODES

    assert typing.get_args(typing.get_args(Mode)[0]) == MODES


def test_eval_events_on_events_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    groups = {g: [f"{g}-{i}" for i in range(12)] for g in "abcdef"}
    events = click_log(groups, users=300, reads=(6, 12), seed=1)
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in events), "utf-8")
    args = ["eval-events", str(path), "--seed", "0", "--models", "popular,readers", "--json"]
    assert main(args) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in rows] == ["popular", "readers"]
    assert set(rows[0]) == {
        "model",
        "precision@10",
        "recall@10",
        "ndcg@10",
        "coverage",
        "users",
        "fit_s",
    }
    popular, readers = rows
    assert readers["ndcg@10"] > popular["ndcg@10"] + 0.1  # topical readers: item-item wins
    assert main([*args[:-1], "--protocol", "leave-last-out"]) == 0


def test_leave_last_out_holds_out_each_users_last() -> None:
    data = Interactions.from_triples(
        [
            ("a", "1", 1.0),
            ("a", "2", 3.0),
            ("a", "3", 2.0),
            ("b", "1", 1.0),
            ("c", "1", 5.0),
            ("c", "2", 5.0),
        ]
    )
    train, test = data.split("leave-last-out", 0)
    assert test.tolist() == [False, True, False, False, False, True]
    assert (train == ~test).all()
    [score] = evaluate_events(data, protocol="leave-last-out", models=["popular"])
    assert score.users == 2


@pytest.fixture
def copy_of_built(wikinews_db: Path, tmp_path: Path) -> str:
    return copy_database(wikinews_db, tmp_path)


def test_a_bad_readers_store_is_a_clear_error(copy_of_built: str) -> None:
    with pytest.raises(ValueError, match="must be a redis:// URL"):
        Recommender(copy_of_built, readers_store="http://localhost:1")
    with pytest.raises(ValueError, match="cannot reach the readers store"):
        Recommender(copy_of_built, readers_store="redis://127.0.0.1:1/0")


def test_a_unix_time_is_refused_with_how_to_write_it() -> None:
    for raw in ("1733011200", 1733011200, 1733011200.5):
        err = parse_event({"user": "u", "item": "d", "time": raw}, line=4, where="log.csv")
        assert isinstance(err, RecordError) and err.line == 4
        assert "a Unix time?" in err.reason and "2024-12-01T00:00:00+00:00" in err.reason
    ok = parse_event({"user": "u", "item": "d", "time": "2024-12-01T00:00:00+00:00"}, line=1)
    assert not isinstance(ok, RecordError)

"""Readers' privacy: erasing a reader (store, readers index in memory and in Redis, command line,
HTTP), the events' retention, and the reader ids that open a reader's own data."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa
from fastapi import Depends
from fastapi.testclient import TestClient

from tests.helpers import built_petitions, copy_database
from textrec import Recommender, Store
from textrec.cli.main import main
from textrec.serve.app import create_app, reader_key

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"


@pytest.fixture
def small(db_url: str, tmp_path: Path) -> str:
    """40 petitions, built, in a database of each kind."""
    return built_petitions(db_url, tmp_path, 40)


def _ids(url: str) -> list[str]:
    return [d.external_id for d in Store(url).iter_documents()]


def _events(ids: list[str]) -> list[dict[str, str]]:
    """Readers 0..9 read posts 0..5; reader "x" reads 0 and 6..9 (so 6..9 are read by x
    alone), and reader "y" reads 0 and 6."""
    events = [{"user": f"u{i}", "item": ids[j]} for i in range(10) for j in range(6) if (i + j) % 3]
    events += [{"user": "x", "item": ids[j], "kind": "click"} for j in (0, 6, 7, 8, 9)]
    events += [{"user": "y", "item": ids[j]} for j in (0, 6)]
    return events


def _state(rec: Recommender, ids: list[str]) -> dict[str, list[tuple[str, float]]]:
    return {
        i: [(m.id, round(m.score, 9)) for m in rec.similar(i, k=10, mode="readers")] for i in ids
    }


def _same_index(a: Recommender, b: Recommender) -> None:
    sa, sb = a.readers._signatures, b.readers._signatures
    assert sa.keys() == sb.keys()
    for doc_id in sa:
        assert np.array_equal(sa[doc_id], sb[doc_id])
    assert a.readers._readers == b.readers._readers
    assert a.readers._read_by == b.readers._read_by and a.readers._pairs == b.readers._pairs


def test_the_store_forgets_a_reader_and_expires_old_events(small: str) -> None:
    store = Store(small)
    ids = _ids(small)
    rec = Recommender(store)
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    rec.add_events([*_events(ids), {"user": "u1", "item": ids[0], "time": old}])
    before = store.count_events()
    stamp = store.stamp()
    assert store.forget_user("x") == 5
    assert store.count_events() == before - 5 and store.stamp().generation == stamp.generation + 1
    assert store.erasures() == 1
    assert store.forget_user("x") == 0 and store.forget_user("nobody") == 0
    assert store.forget_user("a\x00b") == 0  # never stored; PostgreSQL refuses NUL
    assert store.erasures() == 1 and store.stamp().generation == stamp.generation + 1
    assert store.expire_events(datetime.now(UTC) - timedelta(days=30)) == 1
    assert store.count_events() == before - 6 and store.erasures() == 2
    assert store.expire_events(datetime.now(UTC) - timedelta(days=30)) == 0


def test_forget_drops_the_readings_and_remakes_the_signatures(
    small: str, tmp_path: Path, readers_store: str | None
) -> None:
    index = str(tmp_path / "i.index")
    rec = Recommender(small, index_path=index, readers_store=readers_store)
    ids = _ids(small)
    rec.add_events(_events(ids))
    assert [m.id for m in rec.similar(ids[6], k=5, mode="readers")][:1] == [ids[0]]
    assert rec.readers_of(ids[7]) == 1 and rec.readers_of(ids[0]) == 8
    assert rec.forget("x") == 5
    # x's posts lost their only reader; post 0 lost one of its readers; 6 keeps y.
    assert rec.readers_of(ids[7]) == 0 and rec.similar(ids[7], k=5, mode="readers") == []
    assert rec.readers_of(ids[0]) == 7 and rec.readers_of(ids[6]) == 1
    assert rec.readers.read_by("x") == set()
    assert rec.forget("x") == 0
    # The same index as a new start-up builds from the events left, in the same buckets.
    fresh = Recommender(small, index_path=index, readers_store=readers_store)
    _same_index(rec, fresh)
    assert _state(rec, ids[:10]) == _state(fresh, ids[:10])
    # New events after the deletion are caught up as ever (ids only grow).
    rec.add_events([{"user": "z", "item": ids[7]}, {"user": "z", "item": ids[8]}])
    fresh.refresh()
    assert [m.id for m in fresh.similar(ids[7], k=5, mode="readers")] == [ids[8]]


def test_another_process_forgetting_is_followed_at_the_next_refresh(
    small: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], readers_store: str | None
) -> None:
    index = str(tmp_path / "i.index")
    serving = Recommender(small, index_path=index, readers_store=readers_store)
    ids = _ids(small)
    serving.add_events(_events(ids))
    assert serving.readers_of(ids[7]) == 1
    assert main(["--db", small, "--index", index, "events", "forget", "x", "nobody"]) == 0
    err = capsys.readouterr().err
    assert "x: 5 event(s) deleted" in err and "nobody: 0 event(s) deleted" in err
    assert serving.readers_of(ids[7]) == 1  # not yet
    assert serving.refresh()
    assert serving.readers_of(ids[7]) == 0
    before = _state(serving, ids[:10])
    _same_index(serving, Recommender(small, index_path=index, readers_store=readers_store))
    assert _state(serving, ids[:10]) == before
    # This process's own forget needs no rebuild: its count of erasures follows.
    serving.forget("y")
    assert serving.readers.erasures == Store(small).erasures() == 2


def test_expiry_keeps_a_reading_that_has_newer_events(
    small: str, tmp_path: Path, readers_store: str | None
) -> None:
    index = str(tmp_path / "i.index")
    rec = Recommender(small, index_path=index, readers_store=readers_store)
    ids = _ids(small)
    old = (datetime.now(UTC) - timedelta(days=100)).isoformat()
    rec.add_events(
        [
            {"user": "a", "item": ids[1], "time": old, "kind": "like"},
            {"user": "a", "item": ids[1]},  # kept: a still read 1, with the weight of a view
            {"user": "a", "item": ids[2], "time": old},  # gone
            {"user": "b", "item": ids[1]},
            {"user": "b", "item": ids[2], "time": old},  # gone
            {"user": "b", "item": ids[3]},
        ]
    )
    assert rec.readers.read_by("a") == {rec.document(ids[i]).id for i in (1, 2)}
    assert rec.expire_events(datetime.now(UTC) - timedelta(days=30)) == 3
    assert rec.readers_of(ids[1]) == 2 and rec.readers_of(ids[2]) == 0
    assert rec.readers._readers[rec.document(ids[1]).id]["a"] == 1.0  # the like expired
    _same_index(rec, Recommender(small, index_path=index, readers_store=readers_store))
    rec.add_events([{"user": "c", "item": ids[4], "time": old}])
    assert main(["--db", small, "events", "expire", "--older-than-days", "50"]) == 0
    assert Store(small).count_events() == 3


def _probe(app: object) -> None:
    """A route behind the reader rule, as the lead's /users/{id}/recommendations will be."""
    app.add_api_route(  # type: ignore[attr-defined]
        "/users/{id:anyid}/probe",
        lambda: {"ok": True},
        dependencies=[Depends(app.state.require_reader)],  # type: ignore[attr-defined]
    )


def test_a_readers_own_data_needs_their_key_or_the_token(
    wikinews_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = copy_database(wikinews_db, tmp_path)
    monkeypatch.delenv("TEXTREC_READER_SECRET", raising=False)
    app = create_app(url, refresh_interval=None)
    _probe(app)
    with TestClient(app) as client:
        made = client.post("/readers")
        assert made.status_code == 201
        me, key = made.json()["id"], made.json()["key"]
        other = client.post("/readers").json()
        assert me.startswith("anon-") and me != other["id"] and len(key) == 64
        assert key == reader_key(Store(url).reader_secret(), me)  # the secret kept in the store
        ok = client.get(f"/users/{me}/probe", headers={"X-Reader-Key": key})
        assert ok.status_code == 200 and ok.json() == {"ok": True}
        assert client.get(f"/users/{me}/probe", headers={"X-Reader-Key": key.upper()}).is_success
        none = client.get(f"/users/{me}/probe")
        assert none.status_code == 403 and "X-Reader-Key" in none.json()["detail"]
        wrong = client.get(f"/users/{me}/probe", headers={"X-Reader-Key": "0" * 64})
        assert wrong.status_code == 403 and "not this reader's key" in wrong.json()["detail"]
        theirs = client.get(f"/users/{me}/probe", headers={"X-Reader-Key": other["key"]})
        assert theirs.status_code == 403
        # An id the server did not make has no key at all.
        assert (
            client.get("/users/anon-mine/probe", headers={"X-Reader-Key": key}).status_code == 403
        )
    # The secret is the store's: a restarted server knows the keys it gave.
    again = create_app(url, refresh_interval=None)
    _probe(again)
    with TestClient(again) as client:
        assert client.get(f"/users/{me}/probe", headers={"X-Reader-Key": key}).status_code == 200
    # TEXTREC_READER_SECRET, when set, signs instead.
    monkeypatch.setenv("TEXTREC_READER_SECRET", "s3cret")
    third = create_app(url, refresh_interval=None)
    _probe(third)
    with TestClient(third) as client:
        assert client.get(f"/users/{me}/probe", headers={"X-Reader-Key": key}).status_code == 403
        mine = client.post("/readers").json()
        assert mine["key"] == reader_key("s3cret", mine["id"])


def test_with_a_token_the_token_or_the_key_opens_a_readers_data(
    wikinews_db: Path, tmp_path: Path
) -> None:
    url = copy_database(wikinews_db, tmp_path)
    app = create_app(url, refresh_interval=None, token="tok", reader_secret="k")
    _probe(app)
    with TestClient(app) as client:
        me = client.post("/readers").json()
        bearer = {"Authorization": "Bearer tok"}
        assert client.get("/users/anyone/probe", headers=bearer).status_code == 200
        key = {"X-Reader-Key": me["key"]}
        assert client.get(f"/users/{me['id']}/probe", headers=key).status_code == 200
        none = client.get(f"/users/{me['id']}/probe")
        assert none.status_code == 401 and "token" in none.json()["detail"]
        bad = {"Authorization": "Bearer nope"}
        assert client.get(f"/users/{me['id']}/probe", headers=bad).status_code == 401
        assert client.get("/users/anyone/probe", headers=key).status_code == 403


def test_delete_a_reader_over_http(wikinews_db: Path, tmp_path: Path) -> None:
    url = copy_database(wikinews_db, tmp_path)
    app = create_app(url, refresh_interval=None, token="tok", reader_secret="k")
    with TestClient(app) as client:
        me = client.post("/readers").json()
        events = [{"user": me["id"], "item": f"wikinews-000{i}"} for i in range(4)]
        events += [{"user": "other", "item": f"wikinews-000{i}"} for i in range(4)]
        assert client.post("/events", json={"events": events}).json()["accepted"] == 8
        rec: Recommender = app.state.recommender
        assert rec.readers_of("wikinews-0001") == 2
        assert client.delete(f"/users/{me['id']}").status_code == 401
        wrong = client.delete("/users/other", headers={"X-Reader-Key": me["key"]})
        assert wrong.status_code == 403
        res = client.delete(f"/users/{me['id']}", headers={"X-Reader-Key": me["key"]})
        assert res.status_code == 200 and res.json() == {"user": me["id"], "forgotten": 4}
        assert rec.readers_of("wikinews-0001") == 1
        # The server's memory of recent views forgot them too: a view now counts again.
        again = client.post("/events", json={"events": events[:1]}).json()
        assert again["accepted"] == 1 and again["rejected"] == []
        assert client.post("/events", json={"events": events[:1]}).json()["accepted"] == 0
        res = client.delete(f"/users/{me['id']}", headers={"X-Reader-Key": me["key"]})
        assert res.json()["forgotten"] == 1
        # A reader never seen: 200 and 0, as for one already forgotten.
        res = client.delete("/users/nobody", headers={"Authorization": "Bearer tok"})
        assert res.status_code == 200 and res.json()["forgotten"] == 0
        res = client.delete("/users/other", headers={"Authorization": "Bearer tok"})
        assert res.json()["forgotten"] == 4 and rec.store.count_events() == 0
    # Without a token, erasing is open as the other writes are.
    with TestClient(create_app(url, refresh_interval=None)) as client:
        assert client.delete("/users/whoever").json() == {"user": "whoever", "forgotten": 0}


def _old_events(url: str, days: int, n: int) -> None:
    when = (datetime.now(UTC) - timedelta(days=days)).isoformat()
    rec = Recommender(url)
    rec.add_events([{"user": f"u{i}", "item": "wikinews-0001", "time": when} for i in range(n)])
    rec.add_events([{"user": f"u{i}", "item": "wikinews-0002"} for i in range(n)])


def test_the_server_applies_the_retention_at_start_up(
    wikinews_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = copy_database(wikinews_db, tmp_path)
    _old_events(url, 60, 3)
    monkeypatch.setenv("TEXTREC_EVENTS_RETENTION_DAYS", "30")
    app = create_app(url, refresh_interval=None)
    with TestClient(app) as client:
        rec: Recommender = app.state.recommender
        assert rec.store.count_events() == 3 and rec.readers_of("wikinews-0001") == 0
        assert client.get("/health").status_code == 200
    monkeypatch.setenv("TEXTREC_EVENTS_RETENTION_DAYS", "soon")
    with pytest.raises(ValueError, match="TEXTREC_EVENTS_RETENTION_DAYS"):
        create_app(url)


@pytest.mark.slow
def test_the_server_applies_the_retention_periodically(wikinews_db: Path, tmp_path: Path) -> None:
    url = copy_database(wikinews_db, tmp_path)
    app = create_app(url, refresh_interval=None, events_retention_days=30, retention_interval=0.2)
    with TestClient(app):
        rec: Recommender = app.state.recommender
        _old_events(url, 45, 2)  # written by another process meanwhile
        deadline = time.monotonic() + 30
        while rec.store.count_events() != 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert rec.store.count_events() == 2


def test_serve_and_events_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'e.db'}"
    with pytest.raises(SystemExit) as exit_:
        main(["--db", url, "events", "expire", "--older-than-days", "0"])
    assert exit_.value.code == 2 and "--older-than-days" in capsys.readouterr().err
    assert main(["--db", url, "events", "forget", "nobody"]) == 0
    assert json.loads(json.dumps(Store(url).event_stats()))["events"] == 0


def test_the_event_guard_forgets_a_reader() -> None:
    from textrec.serve.guard import EventGuard

    guard = EventGuard(new_readers=1, clock=lambda: 100.0)
    assert guard.admit_reader("client", "u1") and not guard.admit_reader("client", "u2")
    assert guard.first_view("u1", "post") and not guard.first_view("u1", "post")
    guard.forget("u1")
    assert guard.first_view("u1", "post")
    assert guard.admit_reader("client", "u2")  # u1 no longer counts against the client


def test_a_read_only_store_still_gives_reader_keys(
    wikinews_db: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No secret can be kept in a read-only store: the server makes its own, says so in its
    log, and its keys hold until it restarts."""
    url = copy_database(wikinews_db, tmp_path)
    monkeypatch.delenv("TEXTREC_READER_SECRET", raising=False)
    app = create_app(f"{url}?mode=ro", refresh_interval=None)
    _probe(app)
    with TestClient(app) as client:
        me = client.post("/readers")
        assert me.status_code == 201
        key = {"X-Reader-Key": me.json()["key"]}
        assert client.get(f"/users/{me.json()['id']}/probe", headers=key).status_code == 200
    assert "set TEXTREC_READER_SECRET" in caplog.text
    with Store(url).engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT key FROM textrec_meta")).scalars().all()
    assert "reader_secret" not in rows

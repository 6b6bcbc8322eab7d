"""Filters and freshness on related lists: applied inside the top k (k results come back when k
documents pass), through the library, the HTTP API and the command line, on SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.pgserver import PostgresServer
from textrec import Recommender, Store, build, ingest, read_records
from textrec.cli.main import main
from textrec.filters import NO_FILTERS, FilterError, Filters, select
from textrec.serve.app import create_app

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"
QUERY = "petition-814"
LABEL = "인권/성평등"  # 9 of the 300 petitions (3 %), none in QUERY's unfiltered top 36


@pytest.fixture(scope="module")
def petitions(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The 300 labelled petitions, built (read-only for the tests)."""
    path = tmp_path_factory.mktemp("filters") / "p.db"
    store = Store(f"sqlite:///{path}")
    ingest(store, read_records(str(FIXTURE)))
    build(store)
    store.close()
    return f"sqlite:///{path}"


def _labels(url: str) -> dict[str, str]:
    return {d.external_id: d.meta["label"] for d in Store(url).iter_documents()}


def _check_selective_filter(rec: Recommender, labels: dict[str, str]) -> None:
    unfiltered = rec.similar(QUERY, k=100, collapse=None)
    assert all(labels[m.id] != LABEL for m in unfiltered[:10])  # the 10 best all fail it
    expected = [m.id for m in unfiltered if labels[m.id] == LABEL]
    assert len(expected) >= 5
    where = Filters.parse(where=[f"label={LABEL}"])
    for k in (1, 3, 5):
        got = rec.similar(QUERY, k=k, collapse=None, filters=where)
        assert [m.id for m in got] == expected[:k]
        by_id = {m.id: m for m in unfiltered}
        assert [m.score for m in got] == [by_id[i].score for i in expected[:k]]
    # With the default collapse of copies too, k come back, all of the label.
    got = rec.similar(QUERY, k=5, filters=where)
    assert len(got) == 5 and {labels[m.id] for m in got} == {LABEL}
    # Fewer pass than asked for: every one that has a score comes back, and nothing else.
    every = rec.similar(QUERY, k=100, collapse=None, filters=where)
    assert [m.id for m in every][: len(expected)] == expected
    assert {labels[m.id] for m in every} == {LABEL} and len(every) <= 9


def test_a_selective_filter_still_gives_k_results(petitions: str) -> None:
    _check_selective_filter(Recommender(petitions), _labels(petitions))


def test_a_selective_filter_on_postgresql(postgres: PostgresServer) -> None:
    db_url = postgres.create_database()
    store = Store(db_url)
    ingest(store, read_records(str(FIXTURE)))
    build(store)
    _check_selective_filter(Recommender(db_url), _labels(db_url))


def test_the_ranking_is_widened_until_k_pass_not_for_a_fixed_number_of_rounds() -> None:
    """20 of 40,000 candidates pass; they are the last ones: every one is found, in a few
    rounds, each candidate is read once, and the ranking is never asked for more than it has."""
    n = 40_000
    passing = set(range(n - 200, n, 10))  # 20, at the very end of the ranking
    asked: list[int] = []
    read: list[int] = []

    class Doc:
        def __init__(self, i: int) -> None:
            self.external_id = f"d{i}"
            self.meta = {"ok": "1" if i in passing else "0"}
            self.created_at = datetime(2026, 1, 1, tzinfo=UTC)

    def rank(m: int) -> list[tuple[int, float]]:
        asked.append(m)
        return [(i, 1.0 - i / n) for i in range(min(m, n))]

    def documents(ids: list[int]) -> dict[int, Doc]:
        read.extend(ids)
        return {i: Doc(i) for i in ids}

    got = select(rank, 20, Filters.parse(where=["ok=1"]), documents, limit=n)
    assert [i for i, _, _ in got] == sorted(passing)
    assert len(asked) <= 8  # the widening follows the share that passes, not a doubling only
    assert len(read) == len(set(read)) == n and max(asked) == n
    # Nothing passes: the whole ranking is read once, and then the answer is empty.
    asked.clear()
    assert select(rank, 5, Filters.parse(where=["ok=2"]), documents, limit=n) == []
    assert max(asked) == n and len(asked) <= 8


def test_exclude_since_and_parse_errors(petitions: str) -> None:
    rec = Recommender(petitions)
    top = [m.id for m in rec.similar(QUERY, k=5, collapse=None)]
    got = rec.similar(QUERY, k=5, collapse=None, filters=Filters.parse(exclude=top[:2]))
    assert (
        [m.id for m in got][:3] == top[2:]
        and len(got) == 5
        and not set(top[:2]) & {m.id for m in got}
    )
    # Every petition was stored just now: a date in the past keeps all, one ahead keeps none.
    past = Filters.parse(since="2020-01-01")
    assert [m.id for m in rec.similar(QUERY, k=5, collapse=None, filters=past)] == top
    ahead = Filters.parse(since=(datetime.now(UTC) + timedelta(days=2)).date().isoformat())
    assert rec.similar(QUERY, k=5, filters=ahead) == []
    for kwargs, argument, value in [
        ({"where": ["label"]}, "where", "'label'"),
        ({"where": ["=x"]}, "where", "'=x'"),
        ({"since": "yesterday"}, "since", "'yesterday'"),
        ({"recency_days": "0"}, "recency_days", "'0'"),
        ({"recency_days": "soon"}, "recency_days", "'soon'"),
        ({"exclude": [""]}, "exclude", "''"),
    ]:
        with pytest.raises(FilterError) as info:
            Filters.parse(**kwargs)  # type: ignore[arg-type]
        assert info.value.argument == argument and value in str(info.value)
        assert str(info.value).startswith(f"{argument}: ")
    assert not NO_FILTERS.active() and Filters.parse(recency_days=3).active()


def _timed_store(url: str, folder: Path) -> tuple[Recommender, datetime]:
    """Posts on one subject: three with a metadata time, two without (ingested before and
    after the time returned), one whose time is not a time."""
    text = "서울 지하철 노선 연장 공사 계획 발표 지하철 요금 인상 반대"
    store = Store(url)
    first = [
        {"id": "old", "text": text + " 과거", "time": "2019-05-01"},
        {"id": "new", "text": text + " 최근", "time": "2026-11-20T09:00:00+09:00"},
        {"id": "num", "text": text + " 숫자", "time": 20261120, "year": 2020},
        {"id": "bad", "text": text + " 이상", "time": "yesterday", "year": "2020"},
        {"id": "early", "text": text + " 먼저", "tags": ["교통", "서울"]},
    ]
    src = folder / "timed.jsonl"
    background = FIXTURE.read_text("utf-8").splitlines(True)[:40]  # for the terms' weights
    lines = [json.dumps(d, ensure_ascii=False) + "\n" for d in first]
    src.write_text("".join(background + lines), "utf-8")
    ingest(store, read_records(str(src)))
    build(store)
    time.sleep(0.05)
    between = datetime.now(UTC)
    time.sleep(0.05)
    rec = Recommender(url)
    rec.add([{"id": "late", "text": text + " 나중"}])
    return rec, between


def test_since_reads_the_metadata_time_else_the_ingest_time(db_url: str, tmp_path: Path) -> None:
    rec, between = _timed_store(db_url, tmp_path)
    query = "서울 지하철 노선 연장 공사"
    timed = {"old", "new", "num", "bad", "early", "late"}
    assert timed <= {m.id for m in rec.similar_text(query, k=100, collapse=None)}

    def ids(**kwargs: object) -> set[str]:
        f = Filters.parse(**kwargs)  # type: ignore[arg-type]
        return timed & {m.id for m in rec.similar_text(query, k=100, collapse=None, filters=f)}

    # "num" and "bad" have no readable time: their ingest time (before `between`) counts.
    assert ids(since=between) == {"late"}
    assert ids(since="2020-01-01") == {"new", "num", "bad", "early", "late"}
    assert ids(since="2026-11-20T00:00:00Z") == {"new", "num", "bad", "early", "late"}
    assert ids(since="2026-11-20T00:00:01Z") == {"num", "bad", "early", "late"}  # 09:00+09:00
    # Metadata compared as text: a number matches its digits, a list any of its items.
    assert ids(where=["year=2020"]) == {"num", "bad"}
    assert ids(where={"tags": "교통"}) == {"early"}
    assert ids(where=["year=2020", "id=num"]) == set()  # not a metadata field


def test_recency_boost_reorders_by_score_times_weight(tmp_path: Path) -> None:
    rec, _ = _timed_store(f"sqlite:///{tmp_path / 'r.db'}", tmp_path)
    query = "서울 지하철 노선 연장 공사"
    plain = rec.similar_text(query, k=100, collapse=None)
    boost = Filters.parse(recency_days="30")
    boosted = rec.similar_text(query, k=100, collapse=None, filters=boost)
    assert {m.id for m in boosted} == {m.id for m in plain}
    now = datetime.now(UTC)
    docs = {m.id: rec.document(m.id) for m in plain}
    expected = sorted(
        ((m.score * boost.weight(docs[m.id], now), m.id) for m in plain), key=lambda x: -x[0]
    )
    assert [m.id for m in boosted] == [i for _, i in expected]
    for m, (score, _) in zip(boosted, expected, strict=True):
        assert m.score == pytest.approx(score, rel=1e-3)
    # The six posts tie without the boost ("old", stored first, leads); with it, the post
    # seven years old falls below every petition, and the one two weeks old below the new ones.
    assert plain[0].id == "old" and plain[0].score == plain[5].score
    assert boosted[-1].id == "old" and boosted[4].id == "new"
    # The weight: half at one half-life, 1 for a post from the future.
    doc = docs["new"]
    published = datetime(2026, 11, 20, tzinfo=UTC)
    assert boost.weight(doc, published + timedelta(days=30)) == pytest.approx(0.5)
    assert boost.weight(doc, published - timedelta(days=3)) == 1.0
    assert NO_FILTERS.weight(doc, now) == 1.0


def test_filters_over_http(petitions: str) -> None:
    labels = _labels(petitions)
    with TestClient(create_app(petitions, refresh_interval=None)) as client:
        res = client.get(
            f"/documents/{QUERY}/similar",
            params={"k": 5, "where": f"label={LABEL}", "exclude": "petition-1"},
        )
        assert res.status_code == 200, res.text
        results = res.json()["results"]
        assert len(results) == 5 and {labels[r["id"]] for r in results} == {LABEL}
        first = results[0]["id"]
        res = client.get(
            f"/documents/{QUERY}/similar",
            params=[("k", "5"), ("where", f"label={LABEL}"), ("exclude", first)],
        )
        assert first not in [r["id"] for r in res.json()["results"]]
        assert len(res.json()["results"]) == 5
        for params, name in [
            ({"since": "yesterday"}, "since"),
            ({"where": "label"}, "where"),
            ({"recency_days": "-1"}, "recency_days"),
        ]:
            res = client.get(f"/documents/{QUERY}/similar", params=params)
            assert res.status_code == 422, res.text
            detail = res.json()["detail"][0]
            assert detail["loc"] == ["query", name] and params[name] in detail["msg"]
        text = Recommender(petitions).document(QUERY).text
        res = client.post(
            "/similar",
            json={"text": text, "k": 4, "where": {"label": LABEL}, "since": "2020-01-01"},
        )
        assert res.status_code == 200, res.text
        assert [labels[r["id"]] for r in res.json()["results"]] == [LABEL] * 4
        res = client.get(f"/documents/{QUERY}/similar", params={"where": "label=없는 분야"})
        assert res.json()["results"] == []
        assert res.json()["note"] == "no related document passes the filters (label=없는 분야)"
        res = client.post("/similar", json={"text": text, "since": "later"})
        assert res.status_code == 422 and res.json()["detail"][0]["loc"] == ["body", "since"]


def test_filters_on_the_command_line(petitions: str, capsys: pytest.CaptureFixture[str]) -> None:
    labels = _labels(petitions)
    argv = ["--db", petitions, "similar", QUERY, "-k", "5", "--json", "--collapse", "off"]
    argv += ["--where", f"label={LABEL}"]
    assert main([*argv, "--since", "2020-01-01", "--recency-days", "365"]) == 0
    results = json.loads(capsys.readouterr().out)["results"]
    assert len(results) == 5 and {labels[r["id"]] for r in results} == {LABEL}
    assert main([*argv, "--exclude", results[0]["id"], "--exclude", results[1]["id"]]) == 0
    again = [r["id"] for r in json.loads(capsys.readouterr().out)["results"]]
    assert again[:3] == [r["id"] for r in results[2:]] and len(again) == 5
    assert main(["--db", petitions, "similar", QUERY, "--since", "yesterday"]) == 2
    err = capsys.readouterr().err
    assert "--since" in err and "'yesterday'" in err
    assert main(["--db", petitions, "query", "지하철 요금", "--where", "label"]) == 2
    assert "--where: expected FIELD=VALUE" in capsys.readouterr().err

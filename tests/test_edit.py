"""Editing a post: `ingest --update`, `Recommender.update` and `PUT /documents/{id}` replace
its title, text and metadata, re-derive its terms, fingerprint and index entries at once, and
keep its id and its readers' events; `check` passes afterwards."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import copy_database
from textrec import Analyzer, Recommender, Store, build, ingest, read_records
from textrec.check import check
from textrec.cli.main import main
from textrec.serve.app import create_app

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"
MARS = {
    "title": "화성 탐사선 소식",
    "text": "화성 탐사선이 붉은 행성의 표면에서 물의 흔적을 발견했다. 탐사선 로버는 암석 "
    "시료를 채취했다. NASA 는 화성 탐사를 이어간다.",
    "source": "edited",
}


def _rows(start: int, stop: int) -> list[dict[str, object]]:
    return [json.loads(x) for x in FIXTURE.read_text("utf-8").splitlines()[start:stop]]


def _write(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return str(path)


@pytest.fixture
def built(db_url: str, tmp_path: Path) -> str:
    store = Store(db_url)
    ingest(store, read_records(_write(tmp_path / "p.jsonl", _rows(0, 60))))
    build(store)
    return db_url


def test_update_replaces_a_post_at_once_and_keeps_its_id_and_readers(
    built: str, readers_store: str | None
) -> None:
    rec = Recommender(built, readers_store=readers_store)
    target = str(_rows(0, 1)[0]["id"])
    neighbour = rec.similar(target, k=1)[0].id
    before = rec.document(target)
    stored, _ = rec.add_events(
        [{"user": f"u{i}", "item": target} for i in range(5)]
        + [{"user": f"u{i}", "item": neighbour} for i in range(3)]
    )
    assert stored == 8 and rec.readers_of(target) == 5
    mars_doc = {"id": "mars", "title": "화성 로버", "text": "화성 탐사선 로버가 암석 시료를 채취"}
    assert rec.add([mars_doc])[0] == ["mars"]

    assert rec.update(target, MARS) == []
    after = rec.document(target)
    assert (after.title, after.text, after.meta) == (
        MARS["title"],
        MARS["text"],
        {"source": "edited"},
    )
    assert after.created_at == before.created_at and after.id != before.id
    assert after.terms == Analyzer().term_counts(MARS["text"], MARS["title"])
    # Its related posts, its fingerprint and everyone else's lists follow the new text now.
    assert rec.similar(target, k=1)[0].id == "mars"
    assert rec.similar("mars", k=1)[0].id == target
    assert "화성" in rec.similar("mars", k=1)[0].shared_terms
    assert rec.near_duplicates(target) == []
    assert all(m.id != target or m.score < 0.2 for m in rec.similar(neighbour, k=60))
    # Its readers stayed with it, in memory and in the store.
    assert rec.readers_of(target) == 5
    assert [m.id for m in rec.similar(target, k=1, mode="readers")] == [neighbour]
    assert rec.store.count_events() == 8
    assert rec.store.count_documents() == 61
    report = check(rec.store, sample=1000)
    assert report.ok, report.problems
    # A fresh start answers the same: from the build's index files caught up with the edit
    # (SQLite), or from the store, and again from the files saved after it.
    expected = [m.id for m in rec.similar(target, k=5)]
    for save in (False, True):
        if save:
            rec.save()
        fresh = Recommender(built, readers_store=readers_store)
        assert [m.id for m in fresh.similar(target, k=5)] == expected
        assert fresh.readers_of(target) == 5 and len(fresh) == 61
        assert [m.id for m in fresh.similar(target, k=1, mode="readers")] == [neighbour]


def test_update_refuses_unknown_ids_and_bad_documents_storing_nothing(built: str) -> None:
    from textrec.recommend import UnknownDocumentError

    rec = Recommender(built)
    target = str(_rows(0, 1)[0]["id"])
    generation = rec.store.stamp().generation
    with pytest.raises(UnknownDocumentError):
        rec.update("no-such-post", MARS)
    with pytest.raises(ValueError, match="field 'text' is empty"):
        rec.update(target, {"text": " "})
    with pytest.raises(ValueError, match="field 'id' is 'other'"):
        rec.update(target, {**MARS, "id": "other"})
    assert rec.store.stamp().generation == generation
    assert rec.document(target).text == _rows(0, 1)[0]["text"]
    # A post edited into one without terms: stored, listed, in no index.
    warnings = rec.update(target, {"text": "😀🎉"})
    assert [w.reason.split(":")[0] for w in warnings] == ["no terms found in title or text"]
    assert rec.similar(target) == [] and len(rec) == 59
    assert check(rec.store, sample=1000).ok


def test_ingest_update_replaces_stored_posts_and_adds_new_ones(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = _write(tmp_path / "a.jsonl", _rows(0, 30))
    assert main(["--db", db_url, "-q", "ingest", first]) == 0
    assert main(["--db", db_url, "-q", "build"]) == 0
    edited = _rows(0, 2)
    edited[0] = {**edited[0], **MARS}
    rows = [edited[0], _rows(30, 31)[0]]
    changes = _write(tmp_path / "b.jsonl", rows)
    capsys.readouterr()
    assert main(["--db", db_url, "-q", "ingest", changes]) == 1  # without --update: refused
    err = capsys.readouterr().err  # (the new one is stored)
    assert "b.jsonl:1: id already stored" in err and "1 stored, 1 fingerprinted, 1 rejected" in err
    assert main(["--db", db_url, "-q", "ingest", "--update", changes]) == 0
    err = capsys.readouterr().err
    assert "2 stored (2 of them replaced), 2 fingerprinted, 0 rejected" in err, err
    store = Store(db_url)
    assert store.count_documents() == 31
    doc = store.find_document(str(edited[0]["id"]))
    assert doc is not None and doc.text == MARS["text"]
    assert main(["--db", db_url, "check"]) == 0
    assert main(["--db", db_url, "-q", "ingest", "--upsert", changes]) == 0  # the same again
    assert Store(db_url).count_documents() == 31 and check(Store(db_url), sample=1000).ok


TOKEN = "edit-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def client(wikinews_db: Path, tmp_path: Path) -> Iterator[TestClient]:
    db = copy_database(wikinews_db, tmp_path)
    with TestClient(create_app(db, token=TOKEN)) as c:
        yield c


def test_put_document_over_http(client: TestClient) -> None:
    url = "/documents/wikinews-0001"
    old = {m["id"] for m in client.get(f"{url}/similar", params={"k": 3}).json()["results"]}
    assert "wikinews-0054" in old  # the World Cup story
    assert client.put(url, json=MARS).status_code == 401  # a write: the token is needed
    assert client.put(url, json=MARS, headers={"Authorization": "Bearer x"}).status_code == 401
    assert client.put("/documents/nope", json=MARS, headers=AUTH).status_code == 404
    r = client.put(url, json={"title": "x"}, headers=AUTH)
    assert r.status_code == 422 and "missing field 'text'" in r.json()["detail"]
    r = client.put(url, json={**MARS, "id": "wikinews-0002"}, headers=AUTH)
    assert r.status_code == 422 and "field 'id'" in r.json()["detail"]
    r = client.put(url, json=MARS, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json() == {"id": "wikinews-0001", "warnings": []}
    doc = client.get(url).json()
    assert doc["text"] == MARS["text"] and doc["title"] == MARS["title"]
    similar = client.get(f"{url}/similar", params={"k": 3}).json()["results"]
    assert len(similar) == 3 and not old & {m["id"] for m in similar}
    assert set(similar[0]["shared_terms"]) & {"행성", "발견", "표면", "물", "흔적", "화성"}
    assert client.get("/health").json()["documents"] == 644
    r = client.put(url, json={"text": "!!!"}, headers=AUTH)
    assert r.status_code == 200 and r.json()["warnings"][0]["reason"].startswith("no terms")
    assert client.get(f"{url}/similar").json()["results"] == []


def test_a_post_edited_while_its_list_is_made_is_not_its_own_related_post(built: str) -> None:
    """The window the threads below hit: the query post is read, then edited (a new version
    under a new internal id) before the search runs. The new version is the post itself, so it
    is left out like the old one, and k others still come back."""
    rec = Recommender(built)
    target = str(_rows(0, 1)[0]["id"])
    doc = rec._document(target)  # the query post as the search has read it
    rec.update(target, {"title": doc.title, "text": doc.text})  # the same words, a new id
    found = rec._matches(rec._terms(doc), 10, doc.id, "related", None, None, itself=target)
    assert target not in [m.id for m in found] and len(found) == 10
    unguarded = rec._matches(rec._terms(doc), 10, doc.id, "related", None, None)
    assert unguarded[0].id == target  # what the guard removes: itself, ranked first


def test_queries_during_edits_never_fail_nor_see_a_post_twice(built: str) -> None:
    """Readers in other threads while a post is edited over and over: every answer is whole
    (k results where there are k, the edited post at most once, never itself), and check
    passes after."""
    import threading

    rec = Recommender(built)
    rows = _rows(0, 60)
    target = str(rows[0]["id"])
    versions = [MARS, {"title": rows[1]["title"], "text": rows[1]["text"]}]
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                for query in (target, str(rows[2]["id"]), str(rows[1]["id"])):
                    ids = [m.id for m in rec.similar(query, k=10)]
                    assert len(set(ids)) == len(ids) and query not in ids
                    # (the Mars version of the target has few related petitions)
                    assert len(ids) == 10 or query == target, (query, ids)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for n in range(8):
            rec.update(target, versions[n % 2])
    finally:
        done.set()
        for t in readers:
            t.join()
    assert errors == []
    assert rec.document(target).text == versions[1]["text"]
    assert check(rec.store, sample=1000).ok

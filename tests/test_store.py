"""The SQL store, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from textrec import DFSnapshot
from textrec.store.sql import DuplicateIdError, NewDocument, Store

EDGES = [0, 1, 2**63 - 1, 2**63, 2**64 - 1]


def _doc(i: int | str, **kw: object) -> NewDocument:
    return NewDocument(external_id=str(i), text=f"본문 {i}", title=f"제목 {i}", **kw)  # type: ignore[arg-type]


def test_documents_round_trip(db_url: str) -> None:
    store = Store(db_url)
    ids = store.add_documents(
        [
            NewDocument("a", "첫 글", "제목", {"label": "x", "n": [1, 2]}, {"글": 1}),
            NewDocument("b", "둘째 글", None),
        ]
    )
    assert len(ids) == 2 and ids[0] < ids[1]
    doc = store.find_document("a")
    assert doc is not None
    assert (doc.title, doc.text, doc.meta, doc.terms) == (
        "제목",
        "첫 글",
        {"label": "x", "n": [1, 2]},
        {"글": 1},
    )
    assert store.get_document(ids[1]).title is None  # type: ignore[union-attr]
    assert store.count_documents() == 2
    assert [d.external_id for d in store.iter_documents(batch_size=1)] == ["a", "b"]
    total, page = store.list_documents(title_contains="제")
    assert total == 1 and page[0].external_id == "a"
    total, page = store.list_documents(title_contains="%")  # wildcards are escaped
    assert total == 0


def test_duplicate_ids_store_nothing(db_url: str) -> None:
    store = Store(db_url)
    store.add_documents([_doc(1)])
    with pytest.raises(DuplicateIdError, match="'1'"):
        store.add_documents([_doc(2), _doc(1)])
    with pytest.raises(DuplicateIdError, match="'3'"):
        store.add_documents([_doc(3), _doc(3)])
    assert store.count_documents() == 1
    assert store.find_document("2") is None


@pytest.mark.parametrize("value", EDGES)
def test_fingerprint_edges_round_trip(db_url: str, value: int) -> None:
    store = Store(db_url)
    [doc_id] = store.add_documents([_doc("x")])
    snap = DFSnapshot.from_counts(1, {"본문": 1})
    store.begin_snapshot(snap, "simhash64-v1")
    store.put_fingerprints(snap.id, "simhash64-v1", [(doc_id, value)])
    assert store.fingerprint_of(snap.id, doc_id) == value
    ids, codes, scheme = store.fingerprints(snap.id)
    assert list(ids) == [doc_id] and int(codes[0]) == value and scheme == "simhash64-v1"
    # Stored signed: exactly the 64 bits, in a BIGINT.
    with store.engine.connect() as conn:
        raw = conn.execute(sa.text("SELECT fp FROM fingerprints")).scalar_one()
    assert raw == (value - 2**64 if value >= 2**63 else value)


def test_fingerprint_out_of_range_is_refused(db_url: str) -> None:
    store = Store(db_url)
    [doc_id] = store.add_documents([_doc("x")])
    snap = DFSnapshot.from_counts(1, {"본문": 1})
    store.begin_snapshot(snap, "simhash64-v1")
    with pytest.raises(sa.exc.StatementError, match="unsigned 64-bit"):
        store.put_fingerprints(snap.id, "simhash64-v1", [(doc_id, 2**64)])
    with pytest.raises(sa.exc.StatementError, match="unsigned 64-bit"):
        store.put_fingerprints(snap.id, "simhash64-v1", [(doc_id, -1)])


def test_snapshot_lifecycle(db_url: str) -> None:
    store = Store(db_url)
    ids = store.add_documents([_doc(i) for i in range(3)])
    assert store.current_snapshot() is None
    old = DFSnapshot.from_counts(3, {"본문": 3})
    store.begin_snapshot(old, "s1")
    store.put_fingerprints(old.id, "s1", [(i, 7) for i in ids])
    assert store.current_snapshot() is None  # building, not yet current
    store.activate_snapshot(old.id)
    snap, scheme = store.current_snapshot()  # type: ignore[misc]
    assert snap == old and scheme == "s1"
    assert store.fingerprint_summary(old.id) == (3, sum(ids))
    new = DFSnapshot.from_counts(4, {"본문": 4})
    store.begin_snapshot(new, "s1")
    store.put_fingerprints(new.id, "s1", [(ids[0], 9)])
    assert store.current_snapshot_id() == old.id  # readers still see the old snapshot
    assert [d.id for d in store.documents_without_fingerprint(new.id)] == ids[1:]
    store.activate_snapshot(new.id)
    assert store.current_snapshot_id() == new.id
    assert store.count_fingerprints(old.id) == 0  # the index never mixes snapshots
    assert store.snapshot_status(new.id) == ("ready", "s1")


def test_add_with_fingerprints_is_one_transaction(db_url: str) -> None:
    store = Store(db_url)
    snap = DFSnapshot.from_counts(1, {"본문": 1})
    store.begin_snapshot(snap, "s1")
    store.activate_snapshot(snap.id)
    with pytest.raises(ValueError, match="1 fingerprints for 2 documents"):
        store.add_documents([_doc(1), _doc(2)], fingerprints=(snap.id, "s1", [5]))
    assert store.count_documents() == 0
    ids = store.add_documents([_doc(1), _doc(2)], fingerprints=(snap.id, "s1", [5, 2**64 - 1]))
    assert store.fingerprint_of(snap.id, ids[1]) == 2**64 - 1


def test_remove_document(db_url: str) -> None:
    store = Store(db_url)
    ids = store.add_documents([_doc(1), _doc(2)])
    snap = DFSnapshot.from_counts(2, {"본문": 2})
    store.begin_snapshot(snap, "s1")
    store.put_fingerprints(snap.id, "s1", [(i, 1) for i in ids])
    assert store.remove_document(ids[0]) is True
    assert store.remove_document(ids[0]) is False
    assert store.count_fingerprints(snap.id) == 1
    [new] = store.add_documents([_doc(3)])
    assert new > ids[1]  # ids are never reused


def test_url_from_environment(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("TEXTREC_DB", url)
    store = Store()
    assert store.url == url
    assert store.sqlite_path == str(tmp_path / "env.db")


def test_search_in_database_equals_the_index(db_url: str) -> None:
    import numpy as np

    from textrec.content.hamming import HammingIndex

    store = Store(db_url)
    rng = np.random.default_rng(3)
    ids = store.add_documents([_doc(i) for i in range(300)])
    codes = [int(c) for c in rng.integers(0, 2**64, size=300, dtype=np.uint64)]
    codes[:4] = EDGES[1:]  # the extremes, and ties
    codes[10] = codes[11] = codes[12]
    snap = DFSnapshot.from_counts(300, {"본문": 300})
    store.begin_snapshot(snap, "s1")
    store.put_fingerprints(snap.id, "s1", list(zip(ids, codes, strict=True)))
    if not db_url.startswith("postgresql"):
        with pytest.raises(ValueError, match="needs PostgreSQL"):
            store.search_in_database(snap.id, 0, 5)
        return
    index = HammingIndex(snapshot_id=snap.id)
    index.add(ids, codes)
    for q in [codes[10], 0, 2**64 - 1, 2**63, int(rng.integers(0, 2**63))]:
        expected_ids, expected_d = index.search(q, 25)
        got = store.search_in_database(snap.id, q, 25)
        assert got == list(zip(expected_ids.tolist(), expected_d.tolist(), strict=True))

"""The readers' file ``<index file>.readers``: saved beside the other index files, read at
start-up instead of every event again, caught up with the store's writes since, and rebuilt
from the events when it cannot serve."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import copy_database
from textrec import Recommender, Store
from textrec.check import check
from textrec.collab import readers as readers_module
from textrec.collab.readers import ReadersIndex, readers_path
from textrec.collab.synthetic import click_log


@pytest.fixture
def with_events(wikinews_db: Path, tmp_path: Path) -> str:
    """A private copy of the built Wikinews store with a seeded click log over 120 posts."""
    url = copy_database(wikinews_db, tmp_path)
    ids = [d.external_id for d in Store(url).iter_documents()][:120]
    groups = {f"g{g}": ids[g::6] for g in range(6)}
    rec = Recommender(url)
    stored, rejected = rec.add_events(click_log(groups, users=150, seed=7))
    assert stored > 1000 and not rejected
    return url


def _index_path(url: str) -> str:
    return url.removeprefix("sqlite:///") + ".index"


def _same_state(got: ReadersIndex, want: ReadersIndex) -> None:
    assert got._readers == want._readers
    assert got._read_by == want._read_by
    assert got._signatures.keys() == want._signatures.keys()
    for doc_id, sig in want._signatures.items():
        assert np.array_equal(got._signatures[doc_id], sig), doc_id
    assert got._pairs == want._pairs


def _same_answers(got: Recommender, want: Recommender) -> int:
    """Every document's readers-also-read list is the same from both; returns how many
    documents had a non-empty list."""
    answered = 0
    for doc in got.store.iter_documents():
        a = [(m.id, m.score) for m in got.similar(doc.external_id, k=10, mode="readers")]
        b = [(m.id, m.score) for m in want.similar(doc.external_id, k=10, mode="readers")]
        assert a == b, doc.external_id
        answered += bool(a)
    return answered


def _fresh(url: str) -> Recommender:
    """A Recommender whose readers' index is derived from the events, not from a file."""
    return Recommender(url, index_path=str(Path(url.removeprefix("sqlite:///")).parent / "none"))


def _forbid_rebuild(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> ReadersIndex:
        raise AssertionError("the readers index was rebuilt from the events")

    monkeypatch.setattr(ReadersIndex, "from_store", refuse)


def test_a_saved_file_restores_the_index_without_reading_the_events(
    with_events: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rec = Recommender(with_events)
    assert rec.changed  # the readers' index was derived from the events: not saved yet
    rec.save()
    assert Path(readers_path(_index_path(with_events))).exists() and not rec.changed
    fresh = _fresh(with_events)
    _forbid_rebuild(monkeypatch)
    again = Recommender(with_events)
    assert not again.changed
    _same_state(again.readers, fresh.readers)
    assert again.readers.last_event == fresh.readers.last_event > 0
    assert _same_answers(again, fresh) > 100
    # The restored buckets take new events as built ones do.
    docs = [d.external_id for d in Store(with_events).iter_documents()][:200:3]
    new = [{"user": f"new{i}", "item": d} for i, d in enumerate(docs)]
    new += [{"user": "new0", "item": e["item"]} for e in new[:20]]
    for r in (again, fresh):
        r.add_events(new)
    _same_state(again.readers, fresh.readers)
    assert _same_answers(again, fresh) > 100


def test_a_file_behind_the_store_is_caught_up(
    with_events: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    Recommender(with_events).save()
    other = Recommender(with_events, index_path=_index_path(with_events) + ".other")
    ids = [d.external_id for d in other.store.iter_documents()]
    read = sorted({a for a in ids[:120] if other.readers_of(a)})
    other.add_events([{"user": f"late{i}", "item": read[i % 9]} for i in range(40)])
    other.remove(read[0])  # its events go with it
    # An edited document gets a new id, and its events go along.
    other.update(read[1], {"text": "고친 글입니다. 새 내용이 들어갔습니다."})
    other.forget("nobody")  # no event deleted: no erasure
    _forbid_rebuild(monkeypatch)
    again = Recommender(with_events)
    assert again.changed  # caught up: the file should be written again
    monkeypatch.undo()
    fresh = _fresh(with_events)
    _same_state(again.readers, fresh.readers)
    assert again.readers_of(read[1]) == fresh.readers_of(read[1]) > 0
    assert _same_answers(again, fresh) > 100
    again.save()
    _forbid_rebuild(monkeypatch)
    assert not Recommender(with_events).changed


def test_deleted_events_make_the_file_rebuilt(
    with_events: str, caplog: pytest.LogCaptureFixture
) -> None:
    Recommender(with_events).save()
    other = Recommender(with_events, index_path=_index_path(with_events) + ".other")
    user = other.store.iter_events().__next__()[0].user
    assert other.forget(user) > 0
    built = []
    real = ReadersIndex.from_store

    def spy(*args: object, **kwargs: object) -> ReadersIndex:
        built.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as mp, caplog.at_level(logging.INFO):
        mp.setattr(ReadersIndex, "from_store", spy)
        again = Recommender(with_events)
    assert built == [1] and "does not match the store" in caplog.text
    assert not again.readers.read_by(user)
    _same_state(again.readers, _fresh(with_events).readers)


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_file_that_cannot_be_read_is_rebuilt_with_a_warning(
    with_events: str, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    Recommender(with_events).save()
    path = Path(readers_path(_index_path(with_events)))
    data = path.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "garbage": b"\x93NUMPY" + bytes(range(256)) * 9,
        "empty": b"",
    }
    path.write_bytes(damaged[damage])
    with caplog.at_level(logging.WARNING):
        again = Recommender(with_events)
    assert "readers file" in caplog.text and "rebuilding it from the store" in caplog.text
    assert again.changed
    _same_state(again.readers, _fresh(with_events).readers)
    report = check(Store(with_events))
    assert any("readers file" in p and "cannot be read" in p for p in report.problems)
    again.save()  # written again whole
    assert not any("readers file" in p for p in check(Store(with_events)).problems)


def test_a_file_of_another_store_is_rebuilt(
    with_events: str, wikinews_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Recommender(with_events).save()
    other_folder = tmp_path / "other"
    other_folder.mkdir()
    other = copy_database(wikinews_db, other_folder)  # another copy: the same identity...
    Recommender(other).add_events([{"user": "x", "item": "wikinews-0001"}])  # ...diverged
    shutil.copy(readers_path(_index_path(with_events)), readers_path(_index_path(other)))
    warnings = check(Store(other)).warnings
    assert any("readers file" in w and "another database" in w for w in warnings)
    rebuilt = []
    real = readers_module.ReadersIndex.from_store

    def spy(*args: object, **kwargs: object) -> ReadersIndex:
        rebuilt.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ReadersIndex, "from_store", spy)
    again = Recommender(other)
    assert rebuilt == [1] and len(again.readers) == 1


def test_check_reports_a_readers_file_behind_or_missing(with_events: str) -> None:
    path = Path(readers_path(_index_path(with_events)))
    assert path.exists()  # the build's, before the events
    report = check(Store(with_events))
    assert any("readers file" in w and "behind" in w for w in report.warnings)
    path.unlink()
    report = check(Store(with_events))
    assert any("readers file" in w and "does not exist" in w for w in report.warnings)
    rec = Recommender(with_events)
    rec.save()
    report = check(Store(with_events))
    assert not any("readers file" in w for w in report.warnings + report.problems)
    assert report.facts["readers_documents"] == len(rec.readers)
    rec.add_events([{"user": "late", "item": "wikinews-0001"}])
    report = check(Store(with_events))
    assert any("readers file" in w and "behind" in w for w in report.warnings)


def test_the_redis_buckets_are_filled_from_the_file(with_events: str, redis_server) -> None:  # type: ignore[no-untyped-def]
    Recommender(with_events).save()
    again = Recommender(with_events, readers_store=redis_server.url)
    assert not again.changed
    assert _same_answers(again, _fresh(with_events)) > 100

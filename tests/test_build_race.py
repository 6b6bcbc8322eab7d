"""An ingest that commits while `textrec build` is between listing the documents to
fingerprint and activating its new DF snapshot.

The ingest fingerprints its documents under the snapshot current at the time (the old one),
and activation drops every fingerprint of other snapshots; build then fingerprints those
documents under the new snapshot. An ingest that commits after the activation sees it in its
own transaction (the store refuses fingerprints of a snapshot that is no longer current) and
fingerprints under the new one. Either way `textrec check` passes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textrec import Store, build, ingest, read_records
from textrec.check import check

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"


def _file(path: Path, start: int, stop: int) -> str:
    lines = FIXTURE.read_text("utf-8").splitlines(True)[start:stop]
    path.write_text("".join(lines), "utf-8")
    return str(path)


def _built_then_grown(tmp_path: Path) -> tuple[str, Store, str]:
    """A store built over 40 petitions, then grown by 10 more (so the next DF differs):
    ``(url, store, id of the snapshot built)``."""
    url = f"sqlite:///{tmp_path / 'race.db'}"
    store = Store(url)
    ingest(store, read_records(_file(tmp_path / "a.jsonl", 0, 40)))
    build(store)
    old = store.current_snapshot_id()
    assert old is not None
    ingest(store, read_records(_file(tmp_path / "b.jsonl", 40, 50)))
    return url, store, old


@pytest.mark.parametrize(
    "runner", ["inprocess", "inline", pytest.param("local", marks=pytest.mark.slow)]
)
def test_documents_ingested_during_a_build_keep_a_fingerprint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, runner: str
) -> None:
    # Every runner shares the build sequence, its pass for late documents included (the
    # mrjob runners once lost such documents: 55 ingested, 50 fingerprinted).
    from textrec.pipeline.runners import build_with_runner

    url, store, old = _built_then_grown(tmp_path)
    other = Store(url)  # another process's ingest
    late = [read_records(_file(tmp_path / "c.jsonl", 50, 55))]
    listing = store.ids_without_fingerprint

    def list_then_let_the_other_ingest_commit(snapshot_id: str) -> set[int]:
        todo = listing(snapshot_id)
        if late:  # only during the first listing
            assert len(ingest(other, late.pop()).stored) == 5
        return todo

    monkeypatch.setattr(store, "ids_without_fingerprint", list_then_let_the_other_ingest_commit)
    if runner == "inprocess":
        build(store)
    else:
        build_with_runner(store, runner)
    assert not late  # the other ingest did commit during the build
    assert store.current_snapshot_id() != old
    report = check(Store(url), sample=1000)
    assert report.ok, json.dumps(report.problems, ensure_ascii=False)
    assert report.facts["fingerprints"] == 55


def test_an_ingest_that_started_before_a_build_fingerprints_under_the_new_snapshot(
    tmp_path: Path,
) -> None:
    from textrec.store.sql import NewDocument, SnapshotChangedError

    url, store, old = _built_then_grown(tmp_path)
    build(store)  # a new snapshot became current
    assert store.current_snapshot_id() != old
    # A writer still holding the old snapshot is refused, and nothing is stored.
    with pytest.raises(SnapshotChangedError, match="a build ran meanwhile"):
        store.add_documents([NewDocument("x", "버스 요금")], fingerprints=(old, "s", [1]))
    assert store.find_document("x") is None
    # So is an ingest that saw no snapshot at all and stores no fingerprints.
    with pytest.raises(SnapshotChangedError):
        store.add_documents([NewDocument("x", "버스 요금")], require_no_snapshot=True)
    # ingest itself retries under the current snapshot.
    report = ingest(store, read_records(_file(tmp_path / "c.jsonl", 50, 55)))
    assert len(report.stored) == 5 and report.fingerprinted == 5
    assert check(Store(url), sample=1000).ok

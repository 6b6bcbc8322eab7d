"""A server catches up with writes made by other processes (issue 20, item 6): documents
ingested by the CLI while it serves, removals, events, a build; several servers on one
store; and a server shutting down never overwrites fresher index files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import copy_database
from tests.live_server import serve
from textrec import Store, build, ingest, read_records
from textrec.artifacts.indexes import StoreIndexes
from textrec.check import check
from textrec.recommend import Recommender

NEW = [
    {"id": f"new-{i}", "title": "화성 탐사", "text": f"화성 탐사선 {i}호 착륙 성공 우주 로버"}
    for i in range(5)
]


def _write(path: Path, docs: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs), "utf-8")
    return path


def test_refresh_applies_another_process_writes(wikinews_db: Path, tmp_path: Path) -> None:
    url = copy_database(wikinews_db, tmp_path)
    rec = Recommender(url)
    n = len(rec)
    assert rec.refresh() is False  # nothing to do
    other = Store(url)  # another writer: its own connection and stamp
    ingest(other, read_records(str(_write(tmp_path / "new.jsonl", NEW))))
    doc = other.find_document("wikinews-0002")
    assert doc is not None
    other.remove_document(doc.id)
    assert rec.refresh() is True
    assert len(rec) == n + len(NEW) - 1
    # The new documents are copies of one another: not collapsed here.
    assert "new-1" in [m.id for m in rec.similar("new-0", k=5, collapse=None)]
    assert "wikinews-0002" not in [m.id for m in rec.similar("wikinews-0001", k=100)]
    fresh = Recommender(url)
    for q in ("new-0", "wikinews-0001"):
        assert [m.id for m in rec.similar(q)] == [m.id for m in fresh.similar(q)]
    build(other)  # another DF snapshot: the indexes are opened again
    assert rec.refresh() is True
    assert rec.snapshot.id == other.current_snapshot_id()
    assert [m.id for m in rec.similar("new-0")] == [m.id for m in Recommender(url).similar("new-0")]


def _get(base: str, path: str) -> dict[str, object]:
    with urllib.request.urlopen(base + path, timeout=30) as r:
        result: dict[str, object] = json.loads(r.read())
        return result


def _until(what: str, ok: object, seconds: float = 60.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        if ok():  # type: ignore[operator]
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds} s")


@pytest.mark.slow
def test_a_server_sees_cli_ingests_and_another_servers_writes(
    wikinews_db: Path, tmp_path: Path
) -> None:
    url = copy_database(wikinews_db, tmp_path)
    src = _write(tmp_path / "new.jsonl", NEW)
    with serve(url, "--refresh-interval", "1") as a, serve(url, "--refresh-interval", "1") as b:
        n = _get(a, "/health")["documents"]
        done = subprocess.run(
            [sys.executable, "-m", "textrec", "-q", "--db", url, "ingest", str(src)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        for base in (a, b):
            _until(
                "the CLI's documents", lambda base=base: _get(base, "/health")["documents"] == n + 5
            )
            found = _get(base, "/documents/new-0/similar?k=5&collapse=-1")  # copies kept
            ids = [r["id"] for r in found["results"]]  # type: ignore[index]
            assert "new-1" in ids
        req = urllib.request.Request(f"{a}/documents/new-4", method="DELETE")
        urllib.request.urlopen(req, timeout=30).close()
        _until("server A's removal, in B", lambda: _get(b, "/health")["documents"] == n + 4)


@pytest.mark.slow
def test_a_stopping_server_keeps_a_fresher_build(wikinews_db: Path, tmp_path: Path) -> None:
    url = copy_database(wikinews_db, tmp_path)
    db = Path(url.removeprefix("sqlite:///"))
    with serve(url, "--refresh-interval", "3600") as base:  # it does not catch up by itself
        req = urllib.request.Request(
            f"{base}/documents",
            json.dumps({"documents": NEW}).encode(),
            {"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=60).close()  # the server's indexes now differ
        done = subprocess.run(
            [sys.executable, "-m", "textrec", "-q", "--db", url, "build"],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr
        built = Store(url).current_snapshot_id()
    store = Store(url)
    indexes = StoreIndexes.open(store, Recommender(store).analyzer, f"{db}.index")
    assert indexes.snapshot.id == built and not indexes.changed  # the files are the build's
    assert check(store).ok


@pytest.mark.slow
def test_a_running_server_saves_its_files(wikinews_db: Path, tmp_path: Path) -> None:
    """``--save-interval``: the files a running server writes match the store, so that a
    start-up after a crash has nothing to catch up with."""
    url = copy_database(wikinews_db, tmp_path)
    db = Path(url.removeprefix("sqlite:///"))
    store = Store(url)
    analyzer = Recommender(store).analyzer

    def saved() -> bool:
        return not StoreIndexes.open(store, analyzer, f"{db}.index").changed

    assert saved()
    with serve(url, "--save-interval", "1", "--refresh-interval", "3600") as base:
        req = urllib.request.Request(
            f"{base}/documents",
            json.dumps({"documents": NEW}).encode(),
            {"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=60).close()
        _until("a save by the running server", saved)  # the files lag the store until then

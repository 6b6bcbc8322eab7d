"""A database replaced under a running server (issue 20, item 1): ``mv new.db blog.db`` left
the server writing to the old, unlinked file, answering 201 for writes the new file never
saw; ``cp`` over it made the file malformed. The server must notice and refuse writes (503,
naming the cause); a restart opens the new file."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import copy_database
from textrec.cli.main import main
from textrec.serve.app import create_app
from textrec.store.sql import Store, StoreReplacedError

TOKEN = {"Authorization": "Bearer t"}


def doc(i: str) -> dict[str, object]:
    return {"documents": [{"id": i, "text": f"화성 탐사선 {i} 착륙 소식"}]}


@pytest.fixture
def two(wikinews_db: Path, tmp_path: Path) -> tuple[Path, Path]:
    """The live database and another store (a separate build of the same sample)."""
    (tmp_path / "live").mkdir()
    (tmp_path / "other").mkdir()
    live = Path(copy_database(wikinews_db, tmp_path / "live").removeprefix("sqlite:///"))
    other = tmp_path / "other" / "blog.db"
    from tests.helpers import WIKINEWS
    from textrec import build, ingest, read_records

    store = Store(f"sqlite:///{other}")
    ingest(store, (r for n, r in enumerate(read_records(str(WIKINEWS))) if n < 100))
    build(store)
    store.close()
    return live, other


def _move(src: Path, dst: Path) -> None:
    for suffix in ("-wal", "-shm"):
        Path(f"{dst}{suffix}").unlink(missing_ok=True)
    os.replace(src, dst)


def test_a_database_moved_over_the_live_one_refuses_writes(two: tuple[Path, Path]) -> None:
    live, other = two
    url = f"sqlite:///{live}"
    with TestClient(create_app(url, token="t")) as c:
        assert c.post("/documents", json=doc("before"), headers=TOKEN).status_code == 201
        _move(other, live)  # mv other.db blog.db
        r = c.post("/documents", json=doc("after"), headers=TOKEN)
        assert r.status_code == 503, r.text
        assert "moved or replaced" in r.json()["detail"] and str(live) in r.json()["detail"]
        assert c.delete("/documents/wikinews-0001", headers=TOKEN).status_code == 503
        assert c.get("/documents/wikinews-0001").status_code == 200  # reads go on
    with TestClient(create_app(url, token="t")) as c:  # a restart opens the new file
        assert c.get("/health").json()["documents"] == 100
        assert c.post("/documents", json=doc("after"), headers=TOKEN).status_code == 201
    assert main(["--db", url, "check"]) == 0


def test_a_database_copied_over_the_live_one_refuses_writes(two: tuple[Path, Path]) -> None:
    live, other = two
    url = f"sqlite:///{live}"
    with TestClient(create_app(url, token="t"), raise_server_exceptions=False) as c:
        assert c.post("/documents", json=doc("before"), headers=TOKEN).status_code == 201
        shutil.copyfile(other, live)  # cp other.db blog.db: same inode, new bytes
        r = c.post("/documents", json=doc("after"), headers=TOKEN)
        assert r.status_code == 503, r.text
        assert "replaced" in r.json()["detail"] or "damaged" in r.json()["detail"]


def test_a_store_restored_from_an_older_copy_refuses_writes(
    wikinews_db: Path, tmp_path: Path
) -> None:
    url = copy_database(wikinews_db, tmp_path)
    path = Path(url.removeprefix("sqlite:///"))
    _sqlite_backup(path, tmp_path / "backup.db")  # a consistent copy: SQLite's backup API
    with TestClient(create_app(url, token="t")) as c:
        assert c.post("/documents", json=doc("a"), headers=TOKEN).status_code == 201
        assert c.post("/documents", json=doc("b"), headers=TOKEN).status_code == 201
        _sqlite_backup(tmp_path / "backup.db", path)  # restored in place, while it runs
        r = c.post("/documents", json=doc("c"), headers=TOKEN)
        assert r.status_code == 503 and "older copy" in r.json()["detail"], r.text


def _sqlite_backup(src: Path, dst: Path) -> None:
    import sqlite3

    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    try:
        a.backup(b)
    finally:
        a.close()
        b.close()


def test_the_library_and_the_cli_refuse_too(two: tuple[Path, Path]) -> None:
    live, other = two
    store = Store(f"sqlite:///{live}")
    _move(other, live)
    with pytest.raises(StoreReplacedError, match="moved or replaced"):
        store.remove_document(1)
    store.close()

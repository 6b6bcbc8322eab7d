"""What an operator gets wrong or runs into, answered in one line (issue 20, item 8): a bad
database URL, a refused connection, a missing folder, a corrupt SQLite file, a full disk, an
unreadable index file. No traceback; nothing already stored is lost."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import copy_database
from tests.live_server import free_port
from textrec.cli.main import main
from textrec.recommend import Recommender
from textrec.serve.app import create_app
from textrec.store.sql import Store, StoreUnavailableError


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err
    assert "Traceback" not in err and err.startswith("textrec: error: "), err
    assert err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("garbage", "not a database URL textrec can open"),
        ("nosuch://x", "not a database URL textrec can open"),
        ("sqlite:////nonexistent-folder/sub/x.db", "the folder /nonexistent-folder/sub does not"),
    ],
)
def test_a_bad_database_url_is_one_line(
    url: str, says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert says in one_line_error(capsys, ["--db", url, "stats"])
    with pytest.raises(StoreUnavailableError, match=says):
        Store(url)


def test_a_refused_postgresql_connection_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql+psycopg://textrec:secret@127.0.0.1:{free_port()}/textrec"
    err = one_line_error(capsys, ["--db", url, "stats"])
    assert "cannot connect to the database server" in err
    assert "secret" not in err and "***" in err


def test_a_corrupt_sqlite_file_is_named(
    tmp_path: Path, wikinews_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    noise = tmp_path / "noise.db"
    noise.write_bytes(bytes(range(256)) * 40)
    err = one_line_error(capsys, ["--db", f"sqlite:///{noise}", "check"])
    assert f"sqlite:///{noise}: not a readable SQLite database" in err
    # a real database damaged in the middle: its pages are overwritten
    url = copy_database(wikinews_db, tmp_path)
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()  # the with block commits but does not close
    with open(path, "r+b") as f:
        f.seek(8192)
        f.write(b"\xff" * 65536)
    for command in (["check"], ["similar", "wikinews-0001"], ["stats"]):
        err = one_line_error(capsys, ["--db", url, *command])
        assert "corrupt" in err, err


def _fill_the_disk(rec: Recommender) -> None:
    """SQLite's own limit on the file's pages: writes then fail with SQLITE_FULL, "database
    or disk is full", as on a full disk."""
    from sqlalchemy import event

    with rec.store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    rec.store.engine.dispose()

    def limit(dbapi_connection: object, record: object) -> None:
        cur = dbapi_connection.cursor()  # type: ignore[attr-defined]
        cur.execute(f"PRAGMA max_page_count={int(pages)}")
        cur.close()

    event.listen(rec.store.engine, "connect", limit)


def test_a_full_disk_is_507_and_loses_nothing(tmp_path: Path, wikinews_db: Path) -> None:
    url = copy_database(wikinews_db, tmp_path)
    text = "화성 탐사선 착륙 " * 2000
    with TestClient(create_app(url), raise_server_exceptions=False) as c:
        before = c.get("/health").json()["documents"]
        _fill_the_disk(c.app.state.recommender)  # type: ignore[attr-defined]
        docs = [{"id": f"full-{i}", "text": text} for i in range(20)]
        r = c.post("/documents", json={"documents": docs})
        assert r.status_code == 507, r.text
        assert "disk is full" in r.json()["detail"]
        assert c.get("/health").json()["documents"] == before
        assert c.get("/documents/wikinews-0001").status_code == 200
    assert main(["--db", url, "check"]) == 0


def test_a_full_disk_in_the_library_says_so(tmp_path: Path, wikinews_db: Path) -> None:
    from sqlalchemy.exc import OperationalError

    from textrec.store.sql import describe_database_error

    rec = Recommender(copy_database(wikinews_db, tmp_path))
    _fill_the_disk(rec)
    with pytest.raises(OperationalError) as exc:
        rec.add([{"id": f"x{i}", "text": "화성 탐사선 착륙 " * 2000} for i in range(20)])
    assert "the disk is full" in describe_database_error(exc.value, rec.store.url)


@pytest.mark.parametrize("suffix", [".index", ".index.related"])
def test_an_empty_index_file_is_rebuilt_with_a_warning(
    suffix: str,
    tmp_path: Path,
    wikinews_db: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = copy_database(wikinews_db, tmp_path)
    path = Path(url.removeprefix("sqlite:///") + suffix)
    path.write_bytes(b"")
    expected = [m.id for m in Recommender(f"sqlite:///{wikinews_db}").similar("wikinews-0001")]
    with caplog.at_level(logging.WARNING):
        rec = Recommender(url)
    assert [m.id for m in rec.similar("wikinews-0001")] == expected
    assert any(str(path) in r.message and "rebuilding" in r.message for r in caplog.records)
    assert main(["--db", url, "check"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(path) in err and "rebuilt from the store" in err
    assert main(["--db", url, "-q", "similar", "wikinews-0001", "-k", "3"]) == 0
    with TestClient(create_app(url)) as c:  # the server rebuilds it, and writes it back
        assert c.get("/documents/wikinews-0001/similar?k=10").status_code == 200
    assert path.stat().st_size > 0
    capsys.readouterr()
    assert main(["--db", url, "check"]) == 0

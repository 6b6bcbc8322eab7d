"""A read-only SQLite store can be read (issue 20, item 9): in a read-only folder, a WAL
database cannot make its ``-shm`` file, so every command failed. ``?mode=ro`` (plain or URI
form) and ``immutable=1`` open it for reading; ``check`` finds its index files; writes are
refused with a clear answer."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from textrec.cli.main import main
from textrec.recommend import Recommender
from textrec.serve.app import create_app


@pytest.fixture
def read_only_copy(wikinews_db: Path, tmp_path: Path) -> Iterator[Path]:
    """The built sample (checkpointed: no -wal, no -shm) in a folder nobody can write to: a
    read-only tmpfs as root (who may write anywhere else), a folder without write permission
    otherwise."""
    folder = tmp_path / "ro"
    folder.mkdir()
    mounted = False
    if os.geteuid() == 0:
        if subprocess.run(["mount", "-t", "tmpfs", "none", str(folder)], check=False).returncode:
            pytest.skip("running as root, and a read-only file system cannot be mounted here")
        mounted = True
    for suffix in ("", ".index", ".index.related"):
        shutil.copy(f"{wikinews_db}{suffix}", folder / f"wiki.db{suffix}")
    with sqlite3.connect(folder / "wiki.db") as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for leftover in ("wiki.db-wal", "wiki.db-shm"):
        (folder / leftover).unlink(missing_ok=True)
    if mounted:
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        yield folder / "wiki.db"
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(folder)], check=False)  # files still open
        else:
            folder.chmod(0o755)


def test_read_only_urls_read_and_check_clean(
    read_only_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = read_only_copy
    with pytest.raises(OSError):  # the folder really is read-only
        (path.parent / "probe").write_text("x")
    plain = f"sqlite:///{path}"
    assert main(["--db", plain, "stats"]) == 1
    assert "opens with ?mode=ro" in capsys.readouterr().err
    expected = None
    for url in (
        f"sqlite:///{path}?mode=ro",
        f"sqlite:///file:{path}?mode=ro&uri=true",
        f"sqlite:///file:{path}?immutable=1&uri=true",
    ):
        rec = Recommender(url)
        got = [m.id for m in rec.similar("wikinews-0001", k=5)]
        expected = expected or got
        assert got == expected and len(got) == 5
        assert rec.store.sqlite_path == str(path)
        capsys.readouterr()
        assert main(["--db", url, "check"]) == 0, capsys.readouterr().err
        assert "index_file: " + str(path) + ".index" in capsys.readouterr().out
        assert main(["--db", url, "-q", "similar", "wikinews-0001"]) == 0
        rec.store.close()


def test_a_read_only_server_answers_queries_and_refuses_writes(read_only_copy: Path) -> None:
    url = f"sqlite:///{read_only_copy}?mode=ro"
    with TestClient(create_app(url)) as c:
        assert c.get("/documents/wikinews-0001/similar?k=3").status_code == 200
        r = c.post("/documents", json={"documents": [{"id": "new", "text": "화성 탐사선"}]})
        assert r.status_code == 503 and "read-only" in r.json()["detail"]
        assert c.delete("/documents/wikinews-0001").status_code == 503
        assert c.get("/documents/wikinews-0001").status_code == 200

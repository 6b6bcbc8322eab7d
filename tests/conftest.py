"""Shared fixtures: real Mecab, real SQLite files and a real PostgreSQL 15 server.

The PostgreSQL server is started once per test session with ``initdb`` and ``pg_ctl`` as the
``postgres`` user on 127.0.0.1 and a free port, and stopped at the end. Without the server
binaries the PostgreSQL cases are skipped, unless ``TEXTREC_REQUIRE_POSTGRES=1`` (set by
``.ci/run``), where a missing server is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.pgserver import PostgresServer, pg_bindir

# In CI (CI=true) every hypothesis test draws the same examples each run and replays no
# stored failures, so a run's outcome depends on the code alone; locally they explore anew.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bindir = pg_bindir()
    required = os.environ.get("TEXTREC_REQUIRE_POSTGRES") == "1"
    if bindir is None:
        if required:
            pytest.fail("TEXTREC_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries found")
        pytest.skip("PostgreSQL server binaries not installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        if required:
            pytest.fail("TEXTREC_REQUIRE_POSTGRES=1 but psycopg is not installed")
        pytest.skip("psycopg not installed")
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture(scope="session")
def mecab():  # type: ignore[no-untyped-def]
    from textrec.tokenize import default_tokenizer

    return default_tokenizer()


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared corpus {path} not present")
    return path


@pytest.fixture(autouse=True)
def _dispose_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every engine a test's stores opened, so no connection outlives its test."""
    import sqlalchemy as sa

    import textrec.store

    engines: list[sa.Engine] = []
    real = textrec.store.create_engine

    def recording(*args: object, **kwargs: object) -> sa.Engine:
        engine = real(*args, **kwargs)  # type: ignore[call-overload]
        engines.append(engine)
        return engine

    monkeypatch.setattr(textrec.store, "create_engine", recording)
    yield
    for engine in engines:
        engine.dispose()


WIKINEWS = Path(__file__).resolve().parents[1] / "textrec" / "data" / "wikinews_ko.jsonl.gz"


@pytest.fixture(scope="session")
def wikinews_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled Wikinews sample, ingested and built once per test session (with its index
    files). Read-only: tests that write take a private copy with :func:`copy_database`."""
    from textrec import Store, build, ingest, read_records

    path = tmp_path_factory.mktemp("wikinews") / "wiki.db"
    store = Store(f"sqlite:///{path}")
    report = ingest(store, read_records(str(WIKINEWS)))
    assert len(report.stored) == 644 and not report.rejected
    build(store)
    store.close()
    return path


def copy_database(built: Path, folder: Path) -> str:
    """A private copy of a built SQLite database and its index files; returns its URL."""
    import shutil

    copy = folder / built.name
    for suffix in ("", ".index", ".index.related"):
        shutil.copy(f"{built}{suffix}", f"{copy}{suffix}")
    return f"sqlite:///{copy}"

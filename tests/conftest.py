"""Shared fixtures: real Mecab, real SQLite files and a real PostgreSQL 15 server.

The PostgreSQL server is started once per test session with ``initdb`` and ``pg_ctl`` as the
``postgres`` user on 127.0.0.1 and a free port, and stopped at the end. Without the server
binaries the PostgreSQL cases are skipped, unless ``TEXTREC_REQUIRE`` names ``postgres`` (as
``.ci/run`` does), where a missing server is an error (:mod:`tests.helpers`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.helpers import WIKINEWS, missing, required_parts
from tests.pgserver import PostgresServer, pg_bindir
from tests.redisserver import RedisServer, redis_binary

# In CI (CI=true) every hypothesis test draws the same examples each run and replays no
# stored failures, so a run's outcome depends on the code alone; locally they explore anew.
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")


def pytest_configure(config: pytest.Config) -> None:
    required_parts()  # an unknown name in TEXTREC_REQUIRE stops the run at once


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    bindir = pg_bindir()
    if bindir is None:
        missing("postgres", "no PostgreSQL server binaries are installed")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        missing("postgres", "psycopg is not installed")
    server = PostgresServer(bindir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    binary = redis_binary()
    if binary is None:
        missing("redis", "redis-server is not installed (Debian: apt-get install redis-server)")
    try:
        import redis  # noqa: F401
    except ImportError:
        missing("redis", "the redis package is not installed")
    server = RedisServer(binary)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["memory", "redis"])
def readers_store(request: pytest.FixtureRequest) -> str | None:
    """Each home of the readers' signature index: in memory (None) and a real Redis."""
    if request.param == "memory":
        return None
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


@pytest.fixture(scope="session")
def mecab():  # type: ignore[no-untyped-def]
    from textrec.content.tokenize import default_tokenizer

    return default_tokenizer(1)


@pytest.fixture(autouse=True)
def _dispose_engines(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Close every engine a test's stores opened, so no connection outlives its test."""
    import sqlalchemy as sa

    import textrec.store.sql

    engines: list[sa.Engine] = []
    real = textrec.store.sql.create_engine

    def recording(*args: object, **kwargs: object) -> sa.Engine:
        engine = real(*args, **kwargs)  # type: ignore[call-overload]
        engines.append(engine)
        return engine

    monkeypatch.setattr(textrec.store.sql, "create_engine", recording)
    yield
    for engine in engines:
        engine.dispose()


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

"""Schema migrations (Alembic): an old database with data upgrades without loss."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from textrec.cli.main import main
from textrec.content.tfidf import DFSnapshot
from textrec.store.sql import SCHEMA_VERSION, SchemaOutOfDateError, Store


def _config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "textrec.store:migrations")
    config.set_main_option("sqlalchemy.url", url)
    return config


def test_schema_version_is_the_head_revision() -> None:
    assert ScriptDirectory.from_config(_config("sqlite://")).get_current_head() == SCHEMA_VERSION


def test_upgrade_from_0001_keeps_every_row(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    # An existing database at the first revision, holding data written as version 0001 did.
    command.upgrade(_config(db_url), "0001")
    engine = sa.create_engine(db_url)
    snap = DFSnapshot.from_counts(3, {"버스": 2, "요금": 1})
    now = "2026-01-01 00:00:00+00:00"
    texts = ["버스 요금 인상", "버스 노선 변경", "요금 동결"]
    with engine.begin() as conn:
        for i, text in enumerate(texts, start=1):
            conn.execute(
                sa.text(
                    "INSERT INTO documents (external_id, title, text, meta, terms, created_at,"
                    " updated_at) VALUES (:e, :t, :x, '{}', NULL, :n, :n)"
                ),
                {"e": f"doc-{i}", "t": f"제목 {i}", "x": text, "n": now},
            )
        conn.execute(
            sa.text("INSERT INTO df_snapshots VALUES (:i, 3, 2, 'simhash64-v1', 'ready', :d, :n)"),
            {"i": snap.id, "d": b"x", "n": now},
        )
        conn.execute(
            sa.text("INSERT INTO fingerprints VALUES (:s, 1, 'simhash64-v1', -5)"), {"s": snap.id}
        )
    engine.dispose()

    with pytest.raises(SchemaOutOfDateError, match="textrec migrate"):
        Store(db_url)
    assert main(["--db", db_url, "migrate"]) == 0
    assert "upgraded from revision 0001 to 0004" in capsys.readouterr().out
    assert main(["--db", db_url, "migrate"]) == 0
    assert "already at revision 0004" in capsys.readouterr().out

    store = Store(db_url)
    assert store.count_documents() == 3
    for i, text in enumerate(texts, start=1):
        doc = store.find_document(f"doc-{i}")
        assert doc is not None and doc.text == text and doc.title == f"제목 {i}"
    assert store.fingerprint_of(snap.id, 1) == 2**64 - 5
    with store.engine.connect() as conn:
        hashes = dict(
            conn.execute(sa.text("SELECT external_id, content_hash FROM documents")).all()
        )
    assert hashes == {
        f"doc-{i}": hashlib.sha256(t.encode()).hexdigest() for i, t in enumerate(texts, start=1)
    }
    # New documents get their hash as they are stored.
    from textrec.store.sql import NewDocument

    # 0003: the store has an identity, at generation 0, and every write advances it.
    before = store.stamp()
    assert before.generation == 0 and len(before.identity) == 32
    store.add_documents([NewDocument("doc-4", "버스 요금 인상")])
    after = store.stamp()
    assert (after.identity, after.generation) == (before.identity, 1)
    assert after.write_tag != before.write_tag
    with store.engine.connect() as conn:
        same = conn.execute(
            sa.text("SELECT count(*) FROM documents WHERE content_hash = :h"),
            {"h": hashlib.sha256("버스 요금 인상".encode()).hexdigest()},
        ).scalar_one()
    assert same == 2


def test_migrations_build_the_same_schema_as_the_models(db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from tests.test_schema import describe_schema, second_database

    command.upgrade(_config(db_url), "head")
    engine = sa.create_engine(db_url)
    migrated = describe_schema(engine)
    engine.dispose()
    other = second_database(db_url, tmp_path)
    store = Store(other)
    assert describe_schema(store.engine) == migrated

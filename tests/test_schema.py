"""`sql/` matches the models, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from textrec.store.sql import SCHEMA_VERSION, Base, Store, schema_ddl

SQL = Path(__file__).resolve().parents[1] / "sql"
FILES = {"postgresql": SQL / "schema.sql", "sqlite": SQL / "schema.sqlite.sql"}


@pytest.mark.parametrize("dialect", sorted(FILES))
def test_schema_files_are_generated_from_the_models(dialect: str) -> None:
    assert FILES[dialect].read_text(encoding="utf-8") == schema_ddl(dialect), (
        f"{FILES[dialect]} is stale: regenerate it with `python -m textrec.store.schema {dialect}`"
    )


def describe_schema(engine: sa.Engine) -> dict[str, object]:
    insp = sa.inspect(engine)
    out: dict[str, object] = {}
    for table in sorted(insp.get_table_names()):
        cols = [
            (
                c["name"],
                str(c["type"].as_generic() if hasattr(c["type"], "as_generic") else c["type"]),
                c["nullable"],
            )
            for c in insp.get_columns(table)
        ]
        out[table] = {
            "columns": cols,
            "pk": insp.get_pk_constraint(table)["constrained_columns"],
            "fks": sorted(
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in insp.get_foreign_keys(table)
            ),
            "indexes": sorted(tuple(i["column_names"]) for i in insp.get_indexes(table)),
            "unique": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(table)),
        }
    return out


def apply_schema_file(db_url: str, dialect: str) -> None:
    """Run the dialect's schema file against a database, statement by statement."""
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        for stmt in FILES[dialect].read_text(encoding="utf-8").split(";"):
            lines = [ln for ln in stmt.splitlines() if not ln.startswith("--")]
            if "".join(lines).strip():
                conn.exec_driver_sql("\n".join(lines))
    engine.dispose()


def second_database(db_url: str, tmp_path: Path) -> str:
    """Another empty database of the same kind as ``db_url``."""
    if db_url.startswith("sqlite"):
        return f"sqlite:///{tmp_path / 'second.db'}"
    base, name = db_url.rsplit("/", 1)
    other = "m" + name[1:]
    admin = sa.create_engine(base + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{other}"')
    admin.dispose()
    return f"{base}/{other}"


def test_applied_schema_equals_the_models(db_url: str, tmp_path: Path) -> None:
    dialect = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    # Database 1: the schema file, applied statement by statement.
    apply_schema_file(db_url, dialect)
    engine = sa.create_engine(db_url)
    from_file = describe_schema(engine)
    engine.dispose()
    # Database 2: the models' create_all.
    store = Store(second_database(db_url, tmp_path))
    from_models = describe_schema(store.engine)
    store.close()
    assert from_file == from_models
    assert set(from_file) == {*Base.metadata.tables, "alembic_version"}


def test_a_database_made_from_the_schema_file_opens(db_url: str) -> None:
    dialect = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    apply_schema_file(db_url, dialect)
    store = Store(db_url)
    assert store.schema_revision() == SCHEMA_VERSION
    assert store.count_documents() == 0

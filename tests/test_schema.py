"""`sql/` matches the models, on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from textrec.store import Base, Store, schema_ddl

SQL = Path(__file__).resolve().parents[1] / "sql"
FILES = {"postgresql": SQL / "schema.sql", "sqlite": SQL / "schema.sqlite.sql"}


@pytest.mark.parametrize("dialect", sorted(FILES))
def test_schema_files_are_generated_from_the_models(dialect: str) -> None:
    assert FILES[dialect].read_text(encoding="utf-8") == schema_ddl(dialect), (
        f"{FILES[dialect]} is stale: regenerate it with `python -m textrec.schema {dialect}`"
    )


def _describe(engine: sa.Engine) -> dict[str, object]:
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


def test_applied_schema_equals_the_models(db_url: str, tmp_path: Path) -> None:
    dialect = "sqlite" if db_url.startswith("sqlite") else "postgresql"
    # Database 1: the schema file, applied statement by statement.
    engine = sa.create_engine(db_url)
    with engine.begin() as conn:
        for stmt in FILES[dialect].read_text(encoding="utf-8").split(";"):
            lines = [ln for ln in stmt.splitlines() if not ln.startswith("--")]
            if "".join(lines).strip():
                conn.exec_driver_sql("\n".join(lines))
    from_file = _describe(engine)
    engine.dispose()
    # Database 2: the models' create_all.
    if dialect == "sqlite":
        other = f"sqlite:///{tmp_path / 'models.db'}"
    else:
        other = db_url.rsplit("/", 1)[0] + "/" + "m" + db_url.rsplit("/", 1)[1][1:]
        admin = sa.create_engine(
            db_url.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT"
        )
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{other.rsplit("/", 1)[1]}"')
        admin.dispose()
    store = Store(other)
    from_models = _describe(store.engine)
    store.close()
    assert from_file == from_models
    assert set(from_file) == set(Base.metadata.tables)

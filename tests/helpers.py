"""Helpers shared by the tests: the parts they need, corpus paths, copies of built databases.

Tests import these from here; ``conftest.py`` holds only fixtures.

``TEXTREC_REQUIRE`` names, comma-separated, the parts that must not be skipped where they are
missing: a test that needs one of them fails instead (``.ci/run`` names them all). The parts
are the keys of :data:`PARTS`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import NoReturn

import pytest

PARTS = {
    "postgres": "a PostgreSQL server the tests start (Debian: apt-get install postgresql)",
    "spark": "pyspark with Java 17 (apt-get install openjdk-17-jre-headless)",
    "browser": "headless Chromium (apt-get install chromium chromium-driver)",
    "compiled": "textrec's C extensions, built by pip install",
    "shared-data": "the corpora in ../shared/data beside the repository",
    "redis": "a Redis server the tests start (Debian: apt-get install redis-server)",
    "cluster": (
        "containers with podman, as root: apt-get install podman runc netavark aardvark-dns "
        "buildah debootstrap, pip install podman-compose, and the images of "
        "docker/build-local.sh (docker/cluster-check.sh starts the compose cluster)"
    ),
}


def required_parts() -> set[str]:
    """The parts ``TEXTREC_REQUIRE`` names; an unknown name is an error."""
    names = {n.strip() for n in os.environ.get("TEXTREC_REQUIRE", "").split(",") if n.strip()}
    unknown = names - PARTS.keys()
    if unknown:
        raise pytest.UsageError(
            f"TEXTREC_REQUIRE names {', '.join(sorted(unknown))}: the parts are {', '.join(PARTS)}"
        )
    return names


def missing(part: str, reason: str) -> NoReturn:
    """Skip a test whose ``part`` is missing, or fail it when ``TEXTREC_REQUIRE`` names it."""
    assert part in PARTS, part
    if part in required_parts():
        pytest.fail(f"TEXTREC_REQUIRE names {part}, but {reason}")
    pytest.skip(reason)


SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.exists():
        missing("shared-data", f"the shared corpus {path} is not present")
    return path


WIKINEWS = Path(__file__).resolve().parents[1] / "textrec" / "data" / "wikinews_ko.jsonl.gz"


def copy_database(built: Path, folder: Path) -> str:
    """A private copy of a built SQLite database and its index files; returns its URL."""
    copy = folder / built.name
    for suffix in ("", ".index", ".index.related", ".index.readers"):
        if suffix != ".index.readers" or os.path.exists(f"{built}{suffix}"):
            shutil.copy(f"{built}{suffix}", f"{copy}{suffix}")
    return f"sqlite:///{copy}"


PETITIONS_300 = FIXTURES / "petitions_300.jsonl"


def built_petitions(db_url: str, folder: Path, n: int) -> str:
    """The first ``n`` petitions of the 300-petition fixture ingested into ``db_url`` and
    built, with the index file ``folder/i.index``; returns ``db_url``."""
    from textrec import Store, build, ingest, read_records

    src = folder / "docs.jsonl"
    src.write_text("".join(PETITIONS_300.read_text("utf-8").splitlines(True)[:n]), "utf-8")
    store = Store(db_url)
    ingest(store, read_records(str(src)))
    build(store, index_path=str(folder / "i.index"))
    return db_url


def stored_events(url: str) -> list[tuple[str, str, str | None, str]]:
    """``(document, kind, source, reader)`` of every event stored in ``url``, in order."""
    import sqlalchemy as sa

    from textrec import Store

    store = Store(url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT d.external_id, e.kind, e.source, e.user_id FROM events e "
                    "JOIN documents d ON d.id = e.document_id ORDER BY e.id"
                )
            ).all()
    finally:
        store.close()
    return [(r[0], r[1], r[2], r[3]) for r in rows]

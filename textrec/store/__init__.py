"""The SQL store: documents, DF snapshots and fingerprints, the source of truth.

:class:`~textrec.store.sql.Store` is the whole interface; ``schema`` writes the DDL and
``migrations`` holds the Alembic revisions (``textrec migrate``).
"""

from textrec.store.sql import (
    DuplicateIdError,
    NewDocument,
    NotBuiltError,
    SchemaOutOfDateError,
    SnapshotChangedError,
    Store,
    StoredDocument,
    resolve_db_url,
)

__all__ = [
    "DuplicateIdError",
    "NewDocument",
    "NotBuiltError",
    "SchemaOutOfDateError",
    "SnapshotChangedError",
    "Store",
    "StoredDocument",
    "resolve_db_url",
]

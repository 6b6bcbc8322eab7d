"""The SQL store: documents, DF snapshots and fingerprints, through SQLAlchemy 2.x.

The store is the one source of truth; the in-memory index and its snapshot files are derived
from it. Any SQLAlchemy URL works; by default a SQLite file ``textrec.db`` in the current
directory, or the URL in the ``TEXTREC_DB`` environment variable.

Tables (``sql/schema.sql`` for PostgreSQL and ``sql/schema.sqlite.sql`` for SQLite are
generated from these models and checked against them by the tests):

- ``documents``: internal ``id`` (the id used by the index), the caller's ``external_id``
  (unique), ``title``, ``text``, ``meta`` (JSON: every other field of the input record),
  ``terms`` (JSON: the document's term counts, computed once at ingest), timestamps.
- ``df_snapshots``: one row per DF snapshot: id, N, vocabulary size, fingerprint scheme,
  status (``building`` or ``ready``), the gzip-compressed canonical snapshot.
- ``fingerprints``: ``(snapshot_id, document_id) -> fp`` with the scheme. A fingerprint is an
  unsigned 64-bit integer, stored in a signed BIGINT (two's complement); the conversion is
  :class:`Fingerprint64`, and nowhere else.
- ``textrec_meta``: key/value pairs: the current snapshot, and the store's scheme (recorded
  by the first write that names one; see :mod:`textrec.content.scheme`); ``events_erased``,
  the count of deletions of events (:meth:`Store.erase_events`), and ``reader_secret``, which
  signs the reader ids a server makes (:meth:`Store.reader_secret`).
- ``events``: readers' events, append-only: ``user_id`` (an opaque string), ``document_id``,
  ``kind`` (``view``, ``click``, ...), ``source`` (the mode that recommended a clicked item),
  ``time``. Removing a document removes its events; forgetting a reader and the retention
  delete events too (:meth:`Store.erase_events`).
- ``textrec_state``: one row: the store's identity (random, made once with the store) and its
  generation (advanced by every write, with a random tag of that write): a derived file
  records the :class:`StoreStamp` it was made at, and matches the store when they are equal
  (:mod:`textrec.artifacts`).
- ``alembic_version``: the schema revision. A new database is created at the current
  revision; an older one is upgraded without loss by ``textrec migrate``
  (:meth:`Store.upgrade`), with the migrations in ``textrec/store/migrations``.

Every write is one transaction: a batch of documents is stored whole or not at all.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import secrets
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Connection,
    DateTime,
    Dialect,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
    update,
)
from sqlalchemy import text as sql_text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DatabaseError,
    IntegrityError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from textrec.content.simhash import SchemeMismatchError
from textrec.content.tfidf import DFSnapshot

__all__ = [
    "DEFAULT_DB_URL",
    "SCHEMA_VERSION",
    "DocumentFacts",
    "DuplicateIdError",
    "Erasure",
    "EventFields",
    "Fingerprint64",
    "NewDocument",
    "NewEvent",
    "NotBuiltError",
    "SchemaOutOfDateError",
    "SnapshotChangedError",
    "Store",
    "StoreReplacedError",
    "StoreStamp",
    "StoreUnavailableError",
    "StoredDocument",
    "StoredEvent",
    "describe_database_error",
    "is_disk_full",
    "resolve_db_url",
]

DEFAULT_DB_URL = "sqlite:///textrec.db"
SCHEMA_VERSION = "0004"
"""The Alembic revision of the schema that this version of textrec reads and writes."""

_U64 = 1 << 64
_I64_MAX = (1 << 63) - 1


class DuplicateIdError(ValueError):
    """A document id is already in the store (or twice in one batch)."""

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = list(ids)
        shown = ", ".join(repr(i) for i in self.ids[:5])
        more = f" and {len(self.ids) - 5} more" if len(self.ids) > 5 else ""
        super().__init__(f"document id already stored: {shown}{more}")


class SnapshotChangedError(RuntimeError):
    """Fingerprints were computed under a DF snapshot that is no longer current (a build
    activated another one meanwhile); nothing was stored."""

    def __init__(self, expected: str | None, current: str | None) -> None:
        self.expected, self.current = expected, current
        super().__init__(
            f"the current DF snapshot is {current or '(none)'}, not {expected or '(none)'}: "
            f"a build ran meanwhile; nothing was stored"
        )


class SchemaOutOfDateError(RuntimeError):
    """The database's schema revision is not the one this textrec uses."""


class NotBuiltError(RuntimeError):
    """The store has no DF snapshot yet."""

    def __init__(self, url: str) -> None:
        super().__init__(
            f"{url} has no DF snapshot and no fingerprints yet: run `textrec build` first."
        )


class StoreReplacedError(RuntimeError):
    """The store is no longer the one this process opened: its file was moved or copied
    over, or restored from an older copy. Writes are refused; restarting opens the new one."""


class StoreUnavailableError(OSError):
    """The database cannot be opened or used: the message says which and why, in one line."""


def _shown_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not even a URL: show it as given
        return url


def is_disk_full(exc: BaseException) -> bool:
    """Whether a database error means the disk (or the database's quota) is full."""
    orig = getattr(exc, "orig", exc)
    if getattr(orig, "sqlstate", None) == "53100":  # PostgreSQL's disk_full
        return True
    text = str(orig).lower()
    return "disk is full" in text or "no space left" in text


def describe_database_error(exc: BaseException, url: str) -> str:
    """A one-line description of a database error, for users: which database, and why."""
    shown = _shown_url(url)
    orig = getattr(exc, "orig", None) or exc
    first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
    low = first.lower()
    if is_disk_full(exc):
        return f"{shown}: the disk is full ({first}); nothing of the failed write was stored"
    if "is not a database" in low or "malformed" in low:
        return f"{shown}: not a readable SQLite database, or a corrupt one ({first})"
    if "unable to open database file" in low:
        path = make_url(url).database or ""
        folder = os.path.dirname(os.path.abspath(path)) if path else ""
        if folder and not os.path.isdir(folder):
            return f"{shown}: cannot open the database: the folder {folder} does not exist"
        return (
            f"{shown}: cannot open the database file ({first}): check its permissions; a "
            "database in a read-only folder opens with ?mode=ro (sqlite:///path?mode=ro)"
        )
    if "readonly" in low or "read-only" in low:
        return f"{shown}: the database is read-only ({first})"
    if "connection refused" in low or "could not connect" in low or "connection failed" in low:
        return f"{shown}: cannot connect to the database server ({first})"
    return f"{shown}: database error: {first}"


def resolve_db_url(url: str | None = None) -> str:
    """The database URL: the argument, else ``$TEXTREC_DB``, else ``sqlite:///textrec.db``."""
    return url or os.environ.get("TEXTREC_DB") or DEFAULT_DB_URL


class Fingerprint64(TypeDecorator[int]):
    """An unsigned 64-bit fingerprint in a signed BIGINT column: the one conversion.

    Values at or above 2^63 are stored as ``value - 2^64`` (two's complement), so the column
    holds exactly the bits of the fingerprint, and read back as the unsigned value.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        value = int(value)
        if not 0 <= value < _U64:
            raise ValueError(f"a fingerprint is an unsigned 64-bit integer, got {value}")
        return value - _U64 if value > _I64_MAX else value

    def process_result_value(self, value: int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        value = int(value)
        return value + _U64 if value < 0 else value


def content_hash(text: str) -> str:
    """SHA-256 of a document's text (UTF-8), as 64 hex digits: equal texts, equal hashes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _now() -> datetime:
    return datetime.now(UTC)


# BIGINT ids, but SQLite only auto-increments an `INTEGER PRIMARY KEY`.
_BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    pass


class DocumentRow(Base):
    __tablename__ = "documents"
    # AUTOINCREMENT: SQLite must never reuse the id of a deleted document.
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    external_id: Mapped[str] = mapped_column(String(512), unique=True, nullable=False)
    title: Mapped[str | None] = mapped_column(Text, nullable=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    meta: Mapped[str] = mapped_column(Text, nullable=False, default="{}")
    terms: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    # Added by migration 0002, hence last.
    content_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)


class SnapshotRow(Base):
    __tablename__ = "df_snapshots"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    n_docs: Mapped[int] = mapped_column(BigInteger, nullable=False)
    n_terms: Mapped[int] = mapped_column(BigInteger, nullable=False)
    scheme: Mapped[str] = mapped_column(String(64), nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


class FingerprintRow(Base):
    __tablename__ = "fingerprints"

    snapshot_id: Mapped[str] = mapped_column(
        String(64), ForeignKey("df_snapshots.id", ondelete="CASCADE"), primary_key=True
    )
    document_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("documents.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    scheme: Mapped[str] = mapped_column(String(64), nullable=False)
    fp: Mapped[int] = mapped_column(Fingerprint64, nullable=False)


class MetaRow(Base):
    __tablename__ = "textrec_meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text, nullable=False)


class EventRow(Base):
    __tablename__ = "events"
    __table_args__ = {"sqlite_autoincrement": True}  # noqa: RUF012

    id: Mapped[int] = mapped_column(_BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(256), nullable=False, index=True)
    document_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("documents.id", ondelete="CASCADE"), nullable=False, index=True
    )
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    source: Mapped[str | None] = mapped_column(String(32), nullable=True)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)


_EVENTS = cast(Table, EventRow.__table__)


_EVENT_COLUMNS = ("user_id", "document_id", "kind", "time", "source")  # NewEvent's order

# The page cache of a connection importing events (at most; SQLite allocates it as pages are
# read): inserts into the events table's two secondary indexes (reader, document) land on
# random pages, and with SQLite's default cache (2 MB) each batch rereads most of them once
# the indexes outgrow it. 5 million events take about 460 MB of database.
_BULK_CACHE_PRAGMA = "PRAGMA cache_size=-1048576"  # KiB: 1 GiB


def _insert_events(conn: Connection, events: Sequence[EventFields]) -> None:
    """Insert events without reading their ids back. On SQLite the rows go straight to the
    driver's ``executemany``, each value converted by its column type's own bind processor (so
    what is stored is what SQLAlchemy would store; a time is converted once for all the
    events that share it): SQLAlchemy's per-row parameter handling cost as much as SQLite's
    insert itself (``bench/events_scale.py``)."""
    if conn.dialect.name != "sqlite":
        conn.execute(insert(_EVENTS), [_event_row(e) for e in events])
        return
    dialect = conn.dialect
    process = [
        _EVENTS.c[n].type.dialect_impl(dialect).bind_processor(dialect) for n in _EVENT_COLUMNS
    ]
    rows: Iterable[tuple[Any, ...]] = events
    if any(p is not None for i, p in enumerate(process) if i != 3):  # not SQLite's types today
        rows = [
            tuple(v if p is None else p(v) for v, p in zip(e, process, strict=True)) for e in events
        ]
    elif process[3] is not None:
        as_text = process[3]
        seen: dict[datetime, Any] = {}
        rows = [
            (u, d, k, seen[t] if t in seen else seen.setdefault(t, as_text(t)), src)
            for u, d, k, t, src in events
        ]
    sql = (
        f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
        f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
    )
    conn.connection.driver_connection.executemany(sql, rows)  # type: ignore[union-attr]


EventFields = tuple[str, int, str, datetime, str | None]
"""A :class:`NewEvent` as a plain tuple (what an import makes millions of)."""


class NewEvent(NamedTuple):
    """A validated event about to be stored: ``document_id`` is the internal id. (A tuple:
    an import makes millions of them.)"""

    user: str
    document_id: int
    kind: str
    time: datetime
    source: str | None = None


def _event_row(e: EventFields) -> dict[str, Any]:
    return dict(zip(_EVENT_COLUMNS, e, strict=True))


@dataclass(frozen=True)
class Erasure:
    """Events deleted: how many, the (reader, document id) pairs that lost events, and the
    store's count of erasures after this one (:meth:`Store.erasures`)."""

    count: int
    pairs: frozenset[tuple[str, int]]
    serial: int


@dataclass(frozen=True)
class StoredEvent:
    """An event as stored, with its id (ascending in the order events were stored)."""

    id: int
    user: str
    document_id: int
    kind: str
    time: datetime


class StateRow(Base):
    __tablename__ = "textrec_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    identity: Mapped[str] = mapped_column(String(32), nullable=False)
    generation: Mapped[int] = mapped_column(BigInteger, nullable=False)
    write_tag: Mapped[str] = mapped_column(String(16), nullable=False)


@dataclass(frozen=True)
class StoreStamp:
    """Which store, and which of its states: ``identity`` is made once with the store,
    ``generation`` counts its writes and ``write_tag`` is a random tag of the last one, so a
    copy of a database that then diverged never has the same stamp as the original."""

    identity: str
    generation: int
    write_tag: str

    @property
    def label(self) -> str:
        """``identity:generation:tag``, as derived files record it."""
        return f"{self.identity}:{self.generation}:{self.write_tag}"

    @classmethod
    def from_label(cls, label: str) -> StoreStamp | None:
        """The stamp a derived file recorded, or None when it recorded none (or garbage)."""
        parts = label.split(":")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])


def new_identity() -> str:
    """A new store identity: 32 random hex digits."""
    return secrets.token_hex(16)


@dataclass(frozen=True)
class NewDocument:
    """A validated document about to be stored."""

    external_id: str
    text: str
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    terms: dict[str, int] | None = None


@dataclass(frozen=True)
class StoredDocument:
    """A document as stored, with its internal id."""

    id: int
    external_id: str
    title: str | None
    text: str
    meta: dict[str, Any]
    terms: dict[str, int] | None
    created_at: datetime


@dataclass(frozen=True)
class DocumentFacts:
    """The fields of a stored document that filters read (:mod:`textrec.filters`)."""

    id: int
    external_id: str
    meta: dict[str, Any]
    created_at: datetime


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _to_stored(row: DocumentRow) -> StoredDocument:
    return StoredDocument(
        id=row.id,
        external_id=row.external_id,
        title=row.title,
        text=row.text,
        meta=json.loads(row.meta),
        terms=json.loads(row.terms) if row.terms is not None else None,
        created_at=row.created_at,
    )


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_read_only_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


@dataclass(frozen=True)
class _SQLiteTarget:
    """The file of a SQLite URL, in its plain form (``sqlite:///blog.db``) or its URI form
    (``sqlite:///file:blog.db?mode=ro&uri=true``), and whether it is to be read only
    (``mode=ro`` or ``immutable=1``, in either form)."""

    path: str | None
    read_only: bool
    immutable: bool

    @classmethod
    def of(cls, url: str) -> _SQLiteTarget:
        u = make_url(url)
        db = u.database or ""
        if db.startswith("file:"):
            db = db[len("file:") :]
        query = {k: (v[-1] if isinstance(v, tuple) else v) for k, v in u.query.items()}
        immutable = query.get("immutable") == "1"
        read_only = immutable or query.get("mode") == "ro"
        return cls(db if db and db != ":memory:" else None, read_only, immutable)

    def connector(self) -> Callable[[], Any]:
        """Opens the file read-only. A WAL database needs its ``-shm`` file, which cannot be
        made in a read-only folder: when the plain read-only open fails so and no WAL holds
        writes, the file is opened as immutable (nothing can change it there)."""
        import sqlite3

        assert self.path is not None
        path = os.path.abspath(self.path)
        uri = "file:" + urllib.parse.quote(path) + "?mode=ro"

        def connect() -> Any:
            if self.immutable:
                return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)
            conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
            try:
                conn.execute("PRAGMA schema_version").fetchone()
                return conn
            except sqlite3.OperationalError as exc:
                conn.close()
                wal = path + "-wal"
                if "unable to open" not in str(exc) or (
                    os.path.exists(wal) and os.path.getsize(wal) > 0
                ):
                    raise
            return sqlite3.connect(uri + "&immutable=1", uri=True, check_same_thread=False)

        return connect


def _unique_ids(docs: Sequence[NewDocument]) -> list[str]:
    """The external ids of a batch; :class:`DuplicateIdError` when one repeats."""
    ext = [d.external_id for d in docs]
    seen: set[str] = set()
    repeated = [e for e in ext if e in seen or seen.add(e)]  # type: ignore[func-returns-value]
    if repeated:
        raise DuplicateIdError(repeated)
    return ext


def _document_row(d: NewDocument, created_at: datetime, updated_at: datetime) -> DocumentRow:
    return DocumentRow(
        external_id=d.external_id,
        title=d.title,
        text=d.text,
        meta=_dumps(d.meta),
        terms=_dumps(d.terms) if d.terms is not None else None,
        content_hash=content_hash(d.text),
        created_at=created_at,
        updated_at=updated_at,
    )


class Store:
    """Documents, DF snapshots and fingerprints in a SQL database.

    ``Store(url)`` connects and creates the tables when they are missing. Safe to share
    between threads: each method opens its own session.
    """

    def __init__(self, url: str | None = None, *, create: bool = True) -> None:
        """Connect; with ``create``, make the tables of an empty database, and refuse a
        database whose schema revision differs (:class:`SchemaOutOfDateError`)."""
        self.url = resolve_db_url(url)
        self._sqlite: _SQLiteTarget | None = None
        try:
            if self.url.startswith("sqlite"):
                self._sqlite = _SQLiteTarget.of(self.url)
            if self._sqlite is not None and self._sqlite.read_only and self._sqlite.path:
                self.engine: Engine = create_engine(
                    "sqlite://", creator=self._sqlite.connector(), future=True
                )
            else:
                self.engine = create_engine(self.url, future=True)
        except (ArgumentError, NoSuchModuleError, ImportError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise StoreUnavailableError(
                f"{_shown_url(self.url)}: not a database URL textrec can open ({first}); "
                "for example sqlite:///blog.db or postgresql+psycopg://user@host/db"
            ) from None
        if self._sqlite is not None and self._sqlite.read_only:
            event.listen(self.engine, "connect", _sqlite_read_only_pragmas)
        elif self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._session = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = threading.local()
        event.listen(self._session, "after_commit", self._committed)
        self._file_id: tuple[int, int] | None = None
        self._file_path = ""
        self._opened_stamp: StoreStamp | None = None
        self._seen_generation = -1
        if create:
            try:
                self._create_or_check()
                self._remember_opened()
            except (OperationalError, DatabaseError) as exc:
                self.engine.dispose()
                raise StoreUnavailableError(describe_database_error(exc, self.url)) from exc

    def _remember_opened(self) -> None:
        """The file and the store this Store opened, to notice when either is replaced."""
        path = self.sqlite_path
        if path is not None and os.path.exists(path):
            self._file_path = os.path.abspath(path)  # a later chdir must not matter
            st = os.stat(self._file_path)
            self._file_id = (st.st_dev, st.st_ino)
        try:
            self._opened_stamp = self.stamp()
        except SchemaOutOfDateError:  # no state row (a schema applied by hand): nothing
            return  # to compare with; `textrec migrate` adds it
        self._seen_generation = self._opened_stamp.generation

    def _committed(self, session: Session) -> None:
        stamp = session.info.pop("stamp", None)
        if stamp is not None:
            self._writes.last = stamp
            self._seen_generation = max(self._seen_generation, stamp.generation)

    # schema -----------------------------------------------------------------------------------

    def _alembic_config(self, connection: Any) -> Any:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", "textrec.store:migrations")
        config.attributes["connection"] = connection
        return config

    def schema_revision(self) -> str | None:
        """The database's schema revision (None for an empty database)."""
        from alembic.runtime.migration import MigrationContext

        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def _create_or_check(self) -> None:
        from alembic import command

        with self.engine.begin() as conn:
            if not inspect(conn).has_table("documents"):
                Base.metadata.create_all(conn)
                conn.execute(
                    insert(StateRow).values(
                        id=1, identity=new_identity(), generation=0, write_tag="0" * 16
                    )
                )
                command.stamp(self._alembic_config(conn), SCHEMA_VERSION)
                return
        found = self.schema_revision()
        if found != SCHEMA_VERSION:
            raise SchemaOutOfDateError(
                f"{self!r} has schema revision {found or 'unknown'}; this textrec needs "
                f"{SCHEMA_VERSION}. Back up the database, then run `textrec migrate`."
            )
        # A database made from sql/schema*.sql has no state row: its identity is made now
        # (a read-only one stays without, see _remember_opened).
        with contextlib.suppress(OperationalError), self._session.begin() as s:
            if s.get(StateRow, 1) is None:
                s.add(StateRow(id=1, identity=new_identity(), generation=0, write_tag="0" * 16))

    def upgrade(self) -> tuple[str | None, str]:
        """Upgrade the schema to the current revision, in one transaction where the database
        allows it. Returns ``(revision before, revision after)``."""
        from alembic import command

        before = self.schema_revision()
        with self.engine.begin() as conn:
            command.upgrade(self._alembic_config(conn), "head")
        return before, str(self.schema_revision())

    def __repr__(self) -> str:
        return f"Store<{self.engine.url.render_as_string(hide_password=True)}>"

    def close(self) -> None:
        self.engine.dispose()

    @property
    def sqlite_path(self) -> str | None:
        """The database file of a file-backed SQLite store, else None."""
        if self.engine.dialect.name != "sqlite" or self._sqlite is None:
            return None
        return self._sqlite.path

    @property
    def read_only(self) -> bool:
        """Whether the URL asks for the store to be read only (SQLite ``mode=ro`` or
        ``immutable=1``)."""
        return self._sqlite is not None and self._sqlite.read_only

    # documents --------------------------------------------------------------------------------

    def add_documents(
        self,
        docs: Sequence[NewDocument],
        *,
        fingerprints: tuple[str, str, Sequence[int]] | None = None,
        require_no_snapshot: bool = False,
        scheme: str | None = None,
    ) -> list[int]:
        """Store a batch in one transaction and return the new internal ids, in order.

        ``fingerprints=(snapshot_id, scheme, fps)`` stores each document's fingerprint under
        that snapshot in the same transaction. Raises :class:`DuplicateIdError` (and stores
        nothing) when any external id is already stored or repeated in the batch, and
        :class:`SnapshotChangedError` (storing nothing) when that snapshot is not the current
        one once the batch holds the write lock, so that a build activating another snapshot
        meanwhile can never drop the batch's fingerprints. ``require_no_snapshot``: documents
        stored without fingerprints are refused the same way if a snapshot has become current
        (ingest uses it; storing documents to fingerprint later, e.g. on a cluster, does not).
        ``scheme``: the scheme whose terms the documents carry; recorded as the store's
        scheme by the first write, and refused (:class:`SchemeMismatchError`) when it differs.
        """
        if not docs:
            return []
        ext = _unique_ids(docs)
        now = _now()
        rows = [_document_row(d, now, now) for d in docs]
        try:
            with self._session.begin() as s:
                existing = self._existing(s, ext)
                if existing:
                    raise DuplicateIdError(sorted(existing))
                self._insert_documents(s, rows, fingerprints, require_no_snapshot, scheme)
                self._bump(s)
                self._insert_fingerprints(s, rows, fingerprints)
                return [r.id for r in rows]
        except IntegrityError as exc:  # a concurrent writer stored the same id first
            raise DuplicateIdError(sorted(self.existing_external_ids(ext))) from exc

    def replace_documents(
        self,
        docs: Sequence[NewDocument],
        *,
        fingerprints: tuple[str, str, Sequence[int]] | None = None,
        require_no_snapshot: bool = False,
        scheme: str | None = None,
    ) -> list[tuple[int | None, int]]:
        """Store a batch of edited documents in one transaction: each replaces the stored
        document of its external id (title, text, metadata, terms and fingerprint), or is
        added when none is stored. Returns ``(old internal id or None, new internal id)`` a
        document, in order.

        An edited document gets a new internal id (the indexes only append; ids are never
        reused), keeps its external id and its creation time, and takes its readers' events
        with it; its old fingerprints go. ``fingerprints``, ``require_no_snapshot`` and
        ``scheme`` are as in :meth:`add_documents`.
        """
        if not docs:
            return []
        ext = _unique_ids(docs)
        now = _now()
        try:
            with self._session.begin() as s:
                old = {
                    r.external_id: r
                    for i in range(0, len(ext), 500)
                    for r in s.scalars(
                        select(DocumentRow).where(DocumentRow.external_id.in_(ext[i : i + 500]))
                    )
                }
                for row in old.values():  # free the external ids for the new rows
                    row.external_id = f"\x01replaced {row.id}"
                s.flush()
                rows = [
                    _document_row(
                        d, old[d.external_id].created_at if d.external_id in old else now, now
                    )
                    for d in docs
                ]
                self._insert_documents(s, rows, fingerprints, require_no_snapshot, scheme)
                pairs: list[tuple[int | None, int]] = []
                for d, row in zip(docs, rows, strict=True):
                    before = old.get(d.external_id)
                    pairs.append((before.id if before is not None else None, row.id))
                    if before is None:
                        continue
                    s.execute(
                        update(EventRow)
                        .where(EventRow.document_id == before.id)
                        .values(document_id=row.id)
                    )
                    s.execute(delete(FingerprintRow).where(FingerprintRow.document_id == before.id))
                    s.execute(delete(DocumentRow).where(DocumentRow.id == before.id))
                self._insert_fingerprints(s, rows, fingerprints)
                self._bump(s)
                return pairs
        except IntegrityError as exc:  # a concurrent writer added one of the ids first
            raise DuplicateIdError(sorted(self.existing_external_ids(ext))) from exc

    def _insert_documents(
        self,
        s: Session,
        rows: list[DocumentRow],
        fingerprints: tuple[str, str, Sequence[int]] | None,
        require_no_snapshot: bool,
        scheme: str | None,
    ) -> None:
        """Add ``rows``, then check the snapshot they are fingerprinted under (see
        :meth:`add_documents`) and claim the store's scheme, in the caller's transaction."""
        s.add_all(rows)
        s.flush()  # takes the write lock (SQLite) before the snapshot is read
        current = s.execute(
            select(MetaRow.value)
            .where(MetaRow.key == "current_snapshot")
            .with_for_update()  # PostgreSQL: waits for an activation in progress
        ).scalar_one_or_none()
        expected = fingerprints[0] if fingerprints is not None else None
        if current != expected and (fingerprints is not None or require_no_snapshot):
            raise SnapshotChangedError(expected, current)
        if scheme is not None:
            self._claim_scheme(s, scheme)

    @staticmethod
    def _insert_fingerprints(
        s: Session,
        rows: list[DocumentRow],
        fingerprints: tuple[str, str, Sequence[int]] | None,
    ) -> None:
        """Store each row's fingerprint under ``(snapshot_id, scheme, fps)``, if given."""
        if fingerprints is None:
            return
        snapshot_id, scheme, fps = fingerprints
        if len(fps) != len(rows):
            raise ValueError(f"{len(fps)} fingerprints for {len(rows)} documents")
        s.execute(
            insert(FingerprintRow),
            [
                {"snapshot_id": snapshot_id, "document_id": r.id, "scheme": scheme, "fp": fp}
                for r, fp in zip(rows, fps, strict=True)
            ],
        )

    @staticmethod
    def _internal_ids(s: Session, ext: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        # No stored id holds a NUL (ingest refuses it), and PostgreSQL refuses one in a query.
        ext = [e for e in ext if "\x00" not in e]
        for i in range(0, len(ext), 500):
            chunk = ext[i : i + 500]
            q = select(DocumentRow.external_id, DocumentRow.id).where(
                DocumentRow.external_id.in_(chunk)
            )
            found.update((e, int(doc_id)) for e, doc_id in s.execute(q))
        return found

    @classmethod
    def _existing(cls, s: Session, ext: Sequence[str]) -> set[str]:
        return set(cls._internal_ids(s, ext))

    def internal_ids(self, external_ids: Sequence[str]) -> dict[str, int]:
        """``{external id: internal id}`` of the stored ones among ``external_ids``."""
        with self._session() as s:
            return self._internal_ids(s, external_ids)

    def existing_external_ids(self, external_ids: Sequence[str]) -> set[str]:
        with self._session() as s:
            return self._existing(s, external_ids)

    def count_documents(self) -> int:
        with self._session() as s:
            return int(s.scalar(select(func.count()).select_from(DocumentRow)) or 0)

    def get_document(self, doc_id: int) -> StoredDocument | None:
        with self._session() as s:
            row = s.get(DocumentRow, doc_id)
            return _to_stored(row) if row is not None else None

    def document_facts(self, doc_ids: Sequence[int]) -> dict[int, DocumentFacts]:
        """What filters look at (external id, metadata, creation time) of the stored ones among
        ``doc_ids``, without their texts and terms: a filtered query reads many candidates."""
        out: dict[int, DocumentFacts] = {}
        with self._session() as s:
            for i in range(0, len(doc_ids), 500):
                row = DocumentRow
                q = select(row.id, row.external_id, row.meta, row.created_at).where(
                    row.id.in_(list(doc_ids[i : i + 500]))
                )
                for d, e, m, c in s.execute(q):
                    out[int(d)] = DocumentFacts(int(d), e, json.loads(m), c)
        return out

    def get_documents(self, doc_ids: Sequence[int]) -> dict[int, StoredDocument]:
        out: dict[int, StoredDocument] = {}
        with self._session() as s:
            for i in range(0, len(doc_ids), 500):
                q = select(DocumentRow).where(DocumentRow.id.in_(list(doc_ids[i : i + 500])))
                out.update((r.id, _to_stored(r)) for r in s.scalars(q))
        return out

    def find_document(self, external_id: str) -> StoredDocument | None:
        if "\x00" in external_id:  # never stored (ingest refuses it); PostgreSQL refuses it
            return None
        with self._session() as s:
            q = select(DocumentRow).where(DocumentRow.external_id == external_id)
            row = s.scalars(q).first()
            return _to_stored(row) if row is not None else None

    def iter_documents(self, *, batch_size: int = 1000) -> Iterator[StoredDocument]:
        """Every document in id order, read in batches (keyset pagination)."""
        return self._iter_where((), batch_size)

    def _iter_where(
        self, conditions: Sequence[ColumnElement[bool]], batch_size: int
    ) -> Iterator[StoredDocument]:
        last = -(1 << 62)
        while True:
            with self._session() as s:
                q = (
                    select(DocumentRow)
                    .where(DocumentRow.id > last, *conditions)
                    .order_by(DocumentRow.id)
                    .limit(batch_size)
                )
                rows = [_to_stored(r) for r in s.scalars(q)]
            if not rows:
                return
            yield from rows
            last = rows[-1].id

    # events -----------------------------------------------------------------------------------

    def add_events(
        self,
        events: Sequence[NewEvent] | Sequence[EventFields],
        *,
        ids: bool = True,
        _bind: Connection | None = None,
    ) -> list[int | None]:
        """Store events in one transaction; returns the id of each, in order, or None for an
        event whose document was removed meanwhile (it is not stored). ``ids=False``: the
        stored ones get 0 instead of their id, which saves reading the ids back."""
        if not events:
            return []
        session = self._session(bind=_bind) if _bind is not None else self._session()
        with session as s, s.begin():
            wanted = sorted({e[1] for e in events})
            present: set[int] = set()
            for i in range(0, len(wanted), 500):
                q = select(DocumentRow.id).where(DocumentRow.id.in_(wanted[i : i + 500]))
                present.update(s.scalars(q))
            kept = [e for e in events if e[1] in present]
            if not kept:
                return [None] * len(events)
            if ids:
                returning = insert(EventRow).returning(EventRow.id, sort_by_parameter_order=True)
                new_ids = iter(s.scalars(returning, [_event_row(e) for e in kept]).all())
            else:
                _insert_events(s.connection(), kept)
                if len(kept) == len(events):
                    self._bump(s)
                    return [0] * len(events)
                new_ids = iter([0] * len(kept))
            self._bump(s)
        return [next(new_ids) if e[1] in present else None for e in events]

    @contextlib.contextmanager
    def bulk_events(self) -> Iterator[Callable[[Sequence[EventFields], bool], list[int | None]]]:
        """For an import of many events: :meth:`add_events` on one connection held for the
        whole import, whose SQLite page cache is made large enough for the events table's
        indexes (the connection is closed afterwards rather than returned to the pool with
        it), so that batches after the first find their pages cached. Each batch is still one
        transaction, committed (and durable) on its own."""
        with self.engine.connect() as conn:
            sqlite = conn.dialect.name == "sqlite"
            if sqlite:
                raw: Any = conn.connection.driver_connection
                raw.execute(_BULK_CACHE_PRAGMA)
            try:
                yield lambda events, ids: self.add_events(events, ids=ids, _bind=conn)
            finally:
                if sqlite:
                    conn.invalidate()  # its cache goes with it

    def iter_events(
        self, *, after: int = 0, batch_size: int = 50_000
    ) -> Iterator[list[StoredEvent]]:
        """Every event with an id above ``after``, in id order, in batches."""
        last = after
        while True:
            with self._session() as s:
                q = (
                    select(
                        EventRow.id, EventRow.user_id, EventRow.document_id, EventRow.kind,
                        EventRow.time,
                    )
                    .where(EventRow.id > last)
                    .order_by(EventRow.id)
                    .limit(batch_size)
                )  # fmt: skip
                batch = [StoredEvent(*row) for row in s.execute(q)]
            if not batch:
                return
            yield batch
            last = batch[-1].id

    def user_history(self, user: str, *, limit: int = 1000) -> list[StoredEvent]:
        """A reader's latest events (at most ``limit``), newest first."""
        with self._session() as s:
            q = (
                select(
                    EventRow.id, EventRow.user_id, EventRow.document_id, EventRow.kind,
                    EventRow.time,
                )
                .where(EventRow.user_id == user)
                .order_by(EventRow.id.desc())
                .limit(limit)
            )  # fmt: skip
            return [StoredEvent(*row) for row in s.execute(q)]

    def count_events(self, *, after: int = 0) -> int:
        """How many events are stored, or only those with an id above ``after`` (what a model
        trained up to that event has not seen; read through the primary key)."""
        q = select(func.count()).select_from(EventRow)
        if after:
            q = q.where(EventRow.id > after)
        with self._session() as s:
            return int(s.scalar(q) or 0)

    def last_event_id(self) -> int:
        """The highest stored event id (0 without events)."""
        with self._session() as s:
            return int(s.scalar(select(func.max(EventRow.id))) or 0)

    def event_stats(self) -> dict[str, Any]:
        """Events in all and by kind, distinct users and documents, first and last time."""
        with self._session() as s:
            total, users, items, first, last = s.execute(
                select(
                    func.count(),
                    func.count(func.distinct(EventRow.user_id)),
                    func.count(func.distinct(EventRow.document_id)),
                    func.min(EventRow.time),
                    func.max(EventRow.time),
                )
            ).one()
            kinds = dict(
                s.execute(select(EventRow.kind, func.count()).group_by(EventRow.kind)).all()
            )
        return {
            "events": int(total),
            "users": int(users),
            "documents": int(items),
            "kinds": {k: int(v) for k, v in sorted(kinds.items())},
            "first": first.isoformat() if first is not None else None,
            "last": last.isoformat() if last is not None else None,
        }

    # readers' privacy: erasing events ------------------------------------------------------

    def forget_user(self, user: str) -> int:
        """Delete every event of reader ``user``, in one transaction; returns how many."""
        return self.erase_events(user=user).count

    def expire_events(self, before: datetime) -> int:
        """Delete every event whose time is before ``before``, in one transaction; returns
        how many."""
        return self.erase_events(before=before).count

    def erase_events(self, *, user: str | None = None, before: datetime | None = None) -> Erasure:
        """Delete the events of ``user``, or those before ``before`` (or those of ``user``
        before ``before``), in one transaction, and say which (reader, document) pairs lost
        events, so that what was derived from them can follow (:class:`Erasure`). A deletion
        advances the generation as other writes do, and the count of erasures
        (:meth:`erasures`), by which other processes notice it."""
        if user is None and before is None:
            raise ValueError("erase_events needs a user or a time")
        conditions: list[ColumnElement[bool]] = []
        if user is not None:
            if "\x00" in user:  # never stored (events refuse it); PostgreSQL refuses it
                return Erasure(0, frozenset(), self.erasures())
            conditions.append(EventRow.user_id == user)
        if before is not None:
            conditions.append(EventRow.time < before)
        with self._session.begin() as s:
            pairs = frozenset(
                (str(u), int(d))
                for u, d in s.execute(
                    select(EventRow.user_id, EventRow.document_id).where(*conditions).distinct()
                )
            )
            if not pairs:
                return Erasure(0, pairs, int(self._meta(s, "events_erased") or 0))
            result = s.execute(delete(EventRow).where(*conditions))
            serial = int(self._meta(s, "events_erased") or 0) + 1
            self._set_meta(s, "events_erased", str(serial))
            self._bump(s)
            return Erasure(int(getattr(result, "rowcount", 0) or 0), pairs, serial)

    def erasures(self) -> int:
        """How many deletions of events (:meth:`erase_events`) the store has seen: a holder of
        state derived from the events compares it with the count it last followed."""
        with self._session() as s:
            return int(self._meta(s, "events_erased") or 0)

    def document_readings(self, doc_ids: Sequence[int]) -> dict[int, dict[str, list[str]]]:
        """For each document asked about, its readers and the kinds of their events."""
        out: dict[int, dict[str, list[str]]] = {}
        with self._session() as s:
            for i in range(0, len(doc_ids), 500):
                q = select(EventRow.document_id, EventRow.user_id, EventRow.kind).where(
                    EventRow.document_id.in_(list(doc_ids[i : i + 500]))
                )
                for d, u, kind in s.execute(q):
                    out.setdefault(int(d), {}).setdefault(str(u), []).append(str(kind))
        return out

    def document_span(self) -> tuple[int, int]:
        """``(how many documents, the highest id)``: ids are never reused, so the pair is the
        same only while no document was added, removed or edited (a new id)."""
        with self._session() as s:
            count, top = s.execute(select(func.count(), func.max(DocumentRow.id))).one()
            return int(count), int(top or 0)

    def document_ids(self) -> npt.NDArray[np.int64]:
        """The ids of every stored document, ascending."""
        with self._session() as s:
            q = select(DocumentRow.id).order_by(DocumentRow.id)
            rows = s.execute(q.execution_options(yield_per=100_000)).scalars()
            return np.fromiter(rows, np.int64)

    def documents_read_before(self, *, above: int, through_event: int) -> list[int]:
        """The documents with an id above ``above`` that hold events with an id up to
        ``through_event``: documents edited since a holder of derived state last looked (an
        edited document gets a new id and takes its older events along)."""
        with self._session() as s:
            q = (
                select(EventRow.document_id)
                .where(EventRow.document_id > above, EventRow.id <= through_event)
                .distinct()
                .order_by(EventRow.document_id)
            )
            return [int(d) for d in s.scalars(q)]

    def readings(self, pairs: Iterable[tuple[str, int]]) -> dict[tuple[str, int], list[str]]:
        """The kinds of the stored events of each (reader, document) pair asked about; pairs
        without events are left out."""
        wanted = set(pairs)
        users = sorted({u for u, _ in wanted})
        out: dict[tuple[str, int], list[str]] = {}
        with self._session() as s:
            for i in range(0, len(users), 500):
                q = select(EventRow.user_id, EventRow.document_id, EventRow.kind).where(
                    EventRow.user_id.in_(users[i : i + 500])
                )
                for u, d, kind in s.execute(q):
                    key = (str(u), int(d))
                    if key in wanted:
                        out.setdefault(key, []).append(str(kind))
        return out

    def reader_secret(self) -> str:
        """The secret that signs reader ids (``POST /readers``): made at random by the first
        server that asks, then kept in the store so that every server of it agrees."""
        with self._session() as s:
            found = self._meta(s, "reader_secret")
        if found is not None:
            return found
        try:
            with self._session.begin() as s:
                if self._meta(s, "reader_secret") is None:
                    self._set_meta(s, "reader_secret", secrets.token_hex(32))
        except IntegrityError:  # another server made it first: theirs is kept
            pass
        with self._session() as s:
            return str(self._meta(s, "reader_secret"))

    def list_documents(
        self, *, offset: int = 0, limit: int = 50, title_contains: str | None = None
    ) -> tuple[int, list[StoredDocument]]:
        """A page of documents in id order, optionally filtered by a title substring."""
        if title_contains and "\x00" in title_contains:
            # No stored title holds a NUL (ingest refuses it); SQLite's LIKE would end the
            # pattern there and match every title, PostgreSQL refuses it.
            return 0, []
        with self._session() as s:
            q = select(DocumentRow)
            c = select(func.count()).select_from(DocumentRow)
            if title_contains:
                cond = DocumentRow.title.contains(title_contains, autoescape=True)
                q, c = q.where(cond), c.where(cond)
            total = int(s.scalar(c) or 0)
            rows = s.scalars(q.order_by(DocumentRow.id).offset(offset).limit(limit))
            return total, [_to_stored(r) for r in rows]

    def same_text(self, doc_ids: Sequence[int]) -> dict[int, list[int]]:
        """For each given document, the other documents with exactly the same text
        (by ``content_hash``), in id order; documents without a twin are left out."""
        out: dict[int, list[int]] = {}
        with self._session() as s:
            for i in range(0, len(doc_ids), 500):
                chunk = list(doc_ids[i : i + 500])
                mine = dict(
                    s.execute(
                        select(DocumentRow.id, DocumentRow.content_hash).where(
                            DocumentRow.id.in_(chunk), DocumentRow.content_hash.is_not(None)
                        )
                    ).all()
                )
                if not mine:
                    continue
                twins: dict[str, list[int]] = {}
                q = (
                    select(DocumentRow.content_hash, DocumentRow.id)
                    .where(DocumentRow.content_hash.in_(set(mine.values())))
                    .order_by(DocumentRow.id)
                )
                for h, other in s.execute(q):
                    twins.setdefault(str(h), []).append(other)
                for doc_id, h in mine.items():
                    others = [o for o in twins.get(str(h), []) if o != doc_id]
                    if others:
                        out[doc_id] = others
        return out

    def remove_document(self, doc_id: int) -> bool:
        """Delete a document, its fingerprints and its events. Returns whether it existed."""
        with self._session.begin() as s:
            s.execute(delete(FingerprintRow).where(FingerprintRow.document_id == doc_id))
            s.execute(delete(EventRow).where(EventRow.document_id == doc_id))
            result = s.execute(delete(DocumentRow).where(DocumentRow.id == doc_id))
            self._bump(s)
            return bool(getattr(result, "rowcount", 0))

    # DF snapshots -----------------------------------------------------------------------------

    def _meta(self, s: Session, key: str) -> str | None:
        row = s.get(MetaRow, key)
        return row.value if row is not None else None

    def _set_meta(self, s: Session, key: str, value: str) -> None:
        row = s.get(MetaRow, key)
        if row is None:
            s.add(MetaRow(key=key, value=value))
        else:
            row.value = value

    def _bump(self, s: Session) -> None:
        """Advance the generation, inside the transaction of a write; refuse the write
        (:class:`StoreReplacedError`, the transaction rolls back) when the store is no longer
        the one opened."""
        self._check_same_file()
        identity, generation, tag = s.execute(
            update(StateRow)
            .where(StateRow.id == 1)
            .values(generation=StateRow.generation + 1, write_tag=secrets.token_hex(8))
            .returning(StateRow.identity, StateRow.generation, StateRow.write_tag)
        ).one()
        opened = self._opened_stamp
        if opened is not None and identity != opened.identity:
            raise StoreReplacedError(
                f"{self!r} is another store than the one opened (identity {identity}, not "
                f"{opened.identity}): its file was replaced; restart to use the new one"
            )
        if int(generation) <= self._seen_generation:
            raise StoreReplacedError(
                f"{self!r} went back to generation {int(generation) - 1} from "
                f"{self._seen_generation}: it was restored from an older copy while open; "
                "restart to use it"
            )
        s.info["stamp"] = StoreStamp(identity, int(generation), tag)

    def check_unchanged(self) -> StoreStamp:
        """The store's stamp now; raises :class:`StoreReplacedError` when the store is no
        longer the one this Store opened (its file moved or replaced, another identity)."""
        self._check_same_file()
        stamp = self.stamp()
        opened = self._opened_stamp
        if opened is not None and stamp.identity != opened.identity:
            raise StoreReplacedError(
                f"{self!r} is another store than the one opened (identity {stamp.identity}, "
                f"not {opened.identity}): it was replaced; restart to use the new one"
            )
        return stamp

    def _check_same_file(self) -> None:
        """Raise :class:`StoreReplacedError` when the SQLite file's path no longer leads to
        the file that was opened (moved away, or another file moved there)."""
        if self._file_id is None:
            return
        try:
            st = os.stat(self._file_path)
            now: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            now = None
        if now != self._file_id:
            what = "is gone" if now is None else "is another file now"
            raise StoreReplacedError(
                f"{self._file_path} {what}: the database was moved or replaced while this "
                "process had it open, so its writes would be lost; restart to open the new one"
            )

    def last_write(self) -> StoreStamp | None:
        """The stamp that this thread's last committed write (through this Store) gave the
        store: a holder of derived state that was at the generation just before it knows it
        is now at this stamp."""
        return getattr(self._writes, "last", None)

    def _claim_scheme(self, s: Session, scheme: str) -> None:
        stored = self._meta(s, "scheme")
        if stored is None:
            self._set_meta(s, "scheme", scheme)
        elif stored != scheme:
            raise SchemeMismatchError(
                f"{self!r} holds terms and fingerprints of scheme {stored!r}; refusing to add "
                f"some of scheme {scheme!r} (open the store without an analyzer, or use a new "
                f"store for the other scheme)"
            )

    def scheme(self) -> str | None:
        """The store's scheme: recorded by its first write, or (for a store made before
        schemes were recorded) its current snapshot's; None for a new store."""
        with self._session() as s:
            stored = self._meta(s, "scheme")
            if stored is not None:
                return stored
            sid = self._meta(s, "current_snapshot")
            row = s.get(SnapshotRow, sid) if sid is not None else None
            return row.scheme if row is not None else None

    def stamp(self) -> StoreStamp:
        """The store's identity and generation now (see :class:`StoreStamp`)."""
        with self._session() as s:
            row = s.get(StateRow, 1)
            if row is None:
                raise SchemaOutOfDateError(
                    f"{self!r} has no textrec_state row: run `textrec migrate`"
                )
            return StoreStamp(row.identity, int(row.generation), row.write_tag)

    def current_snapshot_id(self) -> str | None:
        with self._session() as s:
            return self._meta(s, "current_snapshot")

    def current_snapshot(self) -> tuple[DFSnapshot, str] | None:
        """The current DF snapshot and its fingerprint scheme, or None before any build."""
        with self._session() as s:
            sid = self._meta(s, "current_snapshot")
            if sid is None:
                return None
            row = s.get(SnapshotRow, sid)
            if row is None:
                return None
            snap = DFSnapshot.from_bytes(gzip.decompress(row.data), source=f"snapshot {sid}")
            return snap, row.scheme

    def snapshot_status(self, snapshot_id: str) -> tuple[str, str] | None:
        """``(status, scheme)`` of a stored snapshot, or None."""
        with self._session() as s:
            row = s.get(SnapshotRow, snapshot_id)
            return (row.status, row.scheme) if row is not None else None

    def snapshot_record(self, snapshot_id: str) -> dict[str, Any] | None:
        """The stored row of a snapshot, its payload decompressed (for consistency checks)."""
        with self._session() as s:
            row = s.get(SnapshotRow, snapshot_id)
            if row is None:
                return None
            return {
                "id": row.id,
                "n_docs": row.n_docs,
                "n_terms": row.n_terms,
                "scheme": row.scheme,
                "status": row.status,
                "data": gzip.decompress(row.data),
            }

    def fingerprint_schemes(self, snapshot_id: str) -> dict[str, int]:
        """How many fingerprints of a snapshot carry each scheme."""
        with self._session() as s:
            q = (
                select(FingerprintRow.scheme, func.count())
                .where(FingerprintRow.snapshot_id == snapshot_id)
                .group_by(FingerprintRow.scheme)
            )
            return {scheme: int(n) for scheme, n in s.execute(q)}

    def begin_snapshot(self, snapshot: DFSnapshot, scheme: str, *, upgrade: bool = False) -> None:
        """Record a snapshot as ``building``; fingerprints are then added with
        :meth:`put_fingerprints` and the snapshot made current by :meth:`activate_snapshot`.

        Rebuilding a snapshot that exists under another scheme drops its old fingerprints.
        ``upgrade``: the snapshot is of another scheme than the store's (a rebuild under a
        newer term scheme); the store keeps its scheme until :meth:`activate_snapshot`
        switches both at once.
        """
        data = gzip.compress(snapshot.to_bytes(), compresslevel=6, mtime=0)
        with self._session.begin() as s:
            if not upgrade:
                self._claim_scheme(s, scheme)
            self._bump(s)
            row = s.get(SnapshotRow, snapshot.id)
            if row is not None and row.scheme != scheme:
                s.execute(delete(FingerprintRow).where(FingerprintRow.snapshot_id == snapshot.id))
                row.scheme = scheme
                row.status = "building"
            elif row is None:
                s.add(
                    SnapshotRow(
                        id=snapshot.id,
                        n_docs=snapshot.n_docs,
                        n_terms=len(snapshot),
                        scheme=scheme,
                        status="building",
                        data=data,
                        created_at=_now(),
                    )
                )

    def put_fingerprints(
        self, snapshot_id: str, scheme: str, items: Iterable[tuple[int, int]]
    ) -> int:
        """Store ``(document_id, fp)`` pairs for a snapshot, replacing existing ones, in one
        transaction. Returns how many were written."""
        rows = [
            {"snapshot_id": snapshot_id, "document_id": d, "scheme": scheme, "fp": fp}
            for d, fp in items
        ]
        if not rows:
            return 0
        ids = [r["document_id"] for r in rows]
        with self._session.begin() as s:
            for i in range(0, len(ids), 500):
                s.execute(
                    delete(FingerprintRow).where(
                        FingerprintRow.snapshot_id == snapshot_id,
                        FingerprintRow.document_id.in_(ids[i : i + 500]),
                    )
                )
            s.execute(insert(FingerprintRow), rows)
            self._bump(s)
        return len(rows)

    def activate_snapshot(
        self, snapshot_id: str, *, scheme: str | None = None, related_terms: int | None = None
    ) -> None:
        """Mark a snapshot ready and current, and drop the fingerprints of older snapshots,
        in one transaction: readers see either the old snapshot or the new one.

        ``related_terms``: how many terms of each document the related-posts index keeps from
        now on (:meth:`related_terms`), when it changes.

        ``scheme``: the store's scheme from now on, when it changes (an upgrade): in the same
        transaction the stored term counts, which are the old scheme's, are cleared (a
        document whose terms are not stored has them derived from its text under the
        store's scheme, see :meth:`put_terms`), so no reader ever mixes the two schemes."""
        with self._session.begin() as s:
            if scheme is not None and self._meta(s, "scheme") != scheme:
                self._set_meta(s, "scheme", scheme)
                s.execute(update(DocumentRow).values(terms=None))
            s.execute(
                update(SnapshotRow).where(SnapshotRow.id == snapshot_id).values(status="ready")
            )
            self._set_meta(s, "current_snapshot", snapshot_id)
            if related_terms is not None:
                self._set_meta(s, "related_terms", str(int(related_terms)))
            s.execute(delete(FingerprintRow).where(FingerprintRow.snapshot_id != snapshot_id))
            self._bump(s)

    def related_terms(self) -> int | None:
        """How many terms of each document the related-posts index keeps, as the last build
        that said so set it (``textrec build --related-terms N``); None: the index's
        default."""
        with self._session() as s:
            value = self._meta(s, "related_terms")
        return int(value) if value is not None else None

    def fingerprints(
        self,
        snapshot_id: str,
        *,
        after: int | None = None,
        only: Sequence[int] | None = None,
        indexed: bool = False,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.uint64], str | None]:
        """``(document ids, fingerprints, scheme)`` of a snapshot, in document id order: all of
        them, those of documents with an id greater than ``after``, or those of ``only``;
        with ``indexed``, only the non-zero ones (a document whose fingerprint is 0 has no
        weighted terms: it is left out of the indexes)."""
        ids: list[int] = []
        fps: list[int] = []
        scheme: str | None = None
        chunks: list[list[int] | None] = [None]
        if only is not None:
            wanted = sorted(set(only))
            chunks = [wanted[i : i + 500] for i in range(0, len(wanted), 500)]
        with self._session() as s:
            for chunk in chunks:
                q = select(FingerprintRow.document_id, FingerprintRow.fp, FingerprintRow.scheme)
                q = q.where(FingerprintRow.snapshot_id == snapshot_id)
                if indexed:
                    q = q.where(FingerprintRow.fp != 0)
                if after is not None:
                    q = q.where(FingerprintRow.document_id > after)
                if chunk is not None:
                    q = q.where(FingerprintRow.document_id.in_(chunk))
                q = q.order_by(FingerprintRow.document_id).execution_options(yield_per=100_000)
                for doc_id, fp, sch in s.execute(q):
                    ids.append(doc_id)
                    fps.append(fp)
                    scheme = sch
        return np.array(ids, dtype=np.int64), np.array(fps, dtype=np.uint64), scheme

    def fingerprinted_ids(
        self, snapshot_id: str, *, indexed: bool = False
    ) -> npt.NDArray[np.int64]:
        """The ids of the documents that have a fingerprint under a snapshot (with
        ``indexed``, a non-zero one), ascending."""
        with self._session() as s:
            q = select(FingerprintRow.document_id).where(FingerprintRow.snapshot_id == snapshot_id)
            if indexed:
                q = q.where(FingerprintRow.fp != 0)
            q = q.order_by(FingerprintRow.document_id).execution_options(yield_per=100_000)
            return np.fromiter(s.execute(q).scalars(), dtype=np.int64)

    def fingerprint_of(self, snapshot_id: str, doc_id: int) -> int | None:
        with self._session() as s:
            row = s.get(FingerprintRow, (snapshot_id, doc_id))
            return row.fp if row is not None else None

    def search_in_database(self, snapshot_id: str, code: int, k: int) -> list[tuple[int, int]]:
        """Exact Hamming top-k computed by PostgreSQL itself: ``[(document_id, distance)]``
        ordered by (distance, id), for users who keep everything in the database.

        Uses ``bit_count((fp # q)::bit(64))`` (PostgreSQL 14 or later) over the snapshot's
        fingerprints: a full scan, so the in-memory index is far faster (see bench/README.md).
        """
        if self.engine.dialect.name != "postgresql":
            raise ValueError(
                f"in-database Hamming search needs PostgreSQL 14 or later; {self!r} is "
                f"{self.engine.dialect.name}. Use the in-memory index instead."
            )
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        q = sql_text(
            "SELECT document_id, bit_count((fp # :q)::bit(64)) AS distance "
            "FROM fingerprints WHERE snapshot_id = :s "
            "ORDER BY distance, document_id LIMIT :k"
        ).bindparams(bindparam("q", type_=Fingerprint64()))
        with self.engine.connect() as conn:
            rows = conn.execute(q, {"q": code, "s": snapshot_id, "k": k}).all()
        return [(int(d), int(dist)) for d, dist in rows]

    def count_fingerprints(self, snapshot_id: str) -> int:
        return self.fingerprint_summary(snapshot_id)[0]

    def fingerprint_summary(self, snapshot_id: str) -> tuple[int, int]:
        """``(count, sum of document ids)`` of a snapshot's fingerprints: enough to tell
        whether an index file still matches the store (ids are never reused)."""
        with self._session() as s:
            q = select(func.count(), func.coalesce(func.sum(FingerprintRow.document_id), 0))
            count, total = s.execute(q.where(FingerprintRow.snapshot_id == snapshot_id)).one()
            return int(count), int(total)

    def iter_terms(
        self, *, batch_size: int = 2000, texts: bool = False
    ) -> Iterator[tuple[int, dict[str, int] | None, str | None, str | None]]:
        """``(id, terms, title, text)`` of every document in id order; title and text are
        only read (not None) for documents whose terms were never computed, or for all of
        them with ``texts`` (then terms is None: a rebuild that derives them anew)."""
        last = -(1 << 62)
        while True:
            with self._session() as s:
                q = (
                    select(DocumentRow.id, DocumentRow.terms)
                    .where(DocumentRow.id > last)
                    .order_by(DocumentRow.id)
                    .limit(batch_size)
                )
                rows: list[tuple[int, str | None]] = [
                    (int(i), None if texts else t) for i, t in s.execute(q)
                ]
                missing = [r[0] for r in rows if r[1] is None]
                read: dict[int, tuple[str | None, str]] = {}
                if missing:
                    tq = select(DocumentRow.id, DocumentRow.title, DocumentRow.text).where(
                        DocumentRow.id.in_(missing)
                    )
                    read = {i: (t, x) for i, t, x in s.execute(tq)}
            if not rows:
                return
            for doc_id, terms in rows:
                if terms is None:
                    title, text = read[doc_id]
                    yield doc_id, None, title, text
                else:
                    yield doc_id, json.loads(terms), None, None
            last = rows[-1][0]

    def put_terms(self, scheme: str, items: Iterable[tuple[int, dict[str, int]]]) -> int:
        """Store the term counts of documents whose terms are not stored (after an upgrade),
        in one transaction, if the store's scheme is still ``scheme``; a document whose terms
        were stored meanwhile (an edit) keeps them. Returns how many were offered (0 when
        the scheme changed)."""
        rows = [{"doc_id": doc_id, "new_terms": _dumps(terms)} for doc_id, terms in items]
        if not rows:
            return 0
        table = cast(Table, DocumentRow.__table__)
        statement = (
            update(table)
            .where(table.c.id == bindparam("doc_id"), table.c.terms.is_(None))
            .values(terms=bindparam("new_terms"))
        )
        with self._session.begin() as s:
            if self._meta(s, "scheme") != scheme:
                return 0
            s.connection().execute(statement, rows)  # one statement, many parameter sets
            self._bump(s)
        return len(rows)

    def ids_without_terms(self) -> list[int]:
        """Ids of the documents whose term counts are not stored, ascending."""
        with self._session() as s:
            q = select(DocumentRow.id).where(DocumentRow.terms.is_(None)).order_by(DocumentRow.id)
            return list(s.scalars(q))

    def ids_without_fingerprint(self, snapshot_id: str) -> set[int]:
        """Ids of the documents that have no fingerprint under a snapshot."""
        has_fp = select(FingerprintRow.document_id).where(
            FingerprintRow.snapshot_id == snapshot_id,
            FingerprintRow.document_id == DocumentRow.id,
        )
        with self._session() as s:
            return set(s.scalars(select(DocumentRow.id).where(~has_fp.exists())))

    def documents_without_fingerprint(
        self, snapshot_id: str, *, batch_size: int = 1000
    ) -> Iterator[StoredDocument]:
        """Documents that have no fingerprint under a snapshot, in id order."""
        has_fp = select(FingerprintRow.document_id).where(
            FingerprintRow.snapshot_id == snapshot_id,
            FingerprintRow.document_id == DocumentRow.id,
        )
        return self._iter_where((~has_fp.exists(),), batch_size)


_REGEN = "python -m textrec.store.schema sqlite|postgresql"


def schema_ddl(dialect_name: str) -> str:
    """The ``CREATE TABLE`` statements of the models for ``sqlite`` or ``postgresql``."""
    from sqlalchemy.dialects import postgresql, sqlite
    from sqlalchemy.schema import CreateIndex, CreateTable

    dialects: dict[str, Dialect] = {
        "sqlite": sqlite.dialect(),
        "postgresql": postgresql.dialect(),  # type: ignore[no-untyped-call]
    }
    dialect = dialects[dialect_name]
    parts = [f"-- textrec schema version {SCHEMA_VERSION} for {dialect_name}.\n"]
    parts.append(f"-- Generated from the models in textrec/store.py: `{_REGEN}`.\n")
    for table in Base.metadata.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=dialect)).strip()
        parts.append(f"\n{ddl};\n")
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            parts.append(f"{str(CreateIndex(index).compile(dialect=dialect)).strip()};\n")
    parts.append(
        "\n-- The schema revision, so that textrec and `textrec migrate` recognise it.\n"
        "CREATE TABLE alembic_version (\n\tversion_num VARCHAR(32) NOT NULL,\n"
        "\tCONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)\n);\n"
        f"INSERT INTO alembic_version (version_num) VALUES ('{SCHEMA_VERSION}');\n"
    )
    return "".join(parts)

"""The HTTP API and the web page: a thin ASGI layer (FastAPI) over :class:`Recommender`.

``create_app(db)`` returns the app; ``textrec serve`` runs it with uvicorn on 127.0.0.1. The
index is loaded once, in the app's lifespan, and reaches the handlers through ``app.state``;
handlers only parse, call the library and serialise.

Endpoints (the OpenAPI schema is at ``/openapi.json``, interactive docs at ``/docs``):

- ``GET /health``: ``{"status": "ok", "documents": n}``
- ``GET /documents?offset=&limit=&q=``: a page of ``{id, title}``, ``q`` searches titles
- ``GET /documents/{id}``: ``{id, title, text, meta}``
- ``GET /documents/{id}/similar?k=&mode=&exclude=&where=&since=&recency_days=``: its related
  documents, filtered inside the top k (:mod:`textrec.filters`)
- ``POST /similar``: ``{"text", "title"?, "k"?, "exclude"?, "where"?, "since"?,
  "recency_days"?}``: the documents related to a free text
- ``POST /events``: readers' events; ``POST /readers``: a new reader id and its key
- ``DELETE /users/{id}``: erase a reader's events (the token when set, or the reader's key)
- ``POST /documents``: ``{"documents": [{id, text, title?, ...}]}``: append; returns the ids
- ``DELETE /documents/{id}``: remove
- ``GET /users/{id}/recommendations?k=&mode=&context_id=&context_text=``: posts for a
  reader, from their events
- ``GET /metrics``: counters and gauges in the Prometheus text format (behind the token)

Errors are JSON ``{"detail": ...}``: 400 malformed JSON, 401 missing or wrong token on a write
endpoint, 404 unknown id, 413 body over the limit, 422 invalid input (``k`` outside 1..100,
a missing field), 500 ``{"detail": "internal server error"}`` with the traceback only in the
server's log.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Mapping,
    MutableMapping,
    Sequence,
)
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from textrec import __version__
from textrec.filters import FilterError, Filters
from textrec.pipeline.records import DuplicateKeyError, RecordError, no_duplicate_keys
from textrec.recommend import (
    DEFAULT,
    DEFAULT_COLLAPSE,
    Match,
    Recommender,
    UnknownDocumentError,
    _Default,
)
from textrec.serve.guard import EventGuard
from textrec.serve.limits import DEFAULT_REQUEST_TIMEOUT, RequestTimeout, TokenizerSlots
from textrec.serve.metrics import Metrics, MetricsMiddleware
from textrec.sources import describe_modes
from textrec.store.sql import SnapshotChangedError, StoreReplacedError, is_disk_full


class _AnyId(Convertor[str]):
    """A document id as the rest of the path: Starlette's ``path`` convertor (``.*``) stops at
    a newline, so an id holding one ("%0A" in the URL) matched no route and got 404 before
    authentication or validation could answer."""

    regex = "[\\s\\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anyid", _AnyId())

__all__ = [
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_QUERY_CHARS",
    "LOOPBACK_HOSTS",
    "MAX_K",
    "STATIC_DIR",
    "allowed_hosts_from",
    "create_app",
    "reader_key",
    "retention_days_from",
]

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB
DEFAULT_MAX_QUERY_CHARS = 50_000  # the longest of 3,668 petitions: 25,710
MAX_K = 100
MAX_EVENTS = 100
MAX_PAGE = 200
MAX_OFFSET = 2**63 - 1

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


# schemas -------------------------------------------------------------------------------------


class MatchOut(BaseModel):
    id: str
    title: str | None
    distance: int | None = Field(
        description="Hamming distance between the 64-bit fingerprints of the query and the "
        "result, 0..64, whatever the mode ranked by; null when the result has no fingerprint "
        "in the index (removed meanwhile)"
    )
    score: float = Field(description="the score the mode ranked by. " + describe_modes())
    shared_terms: list[str] = Field(description="the shared terms that weigh most in the match")
    sources: list[str] | None = Field(
        default=None,
        description="hybrid mode: the sources that put the result in the list (related, "
        "readers, als); null in the other modes",
    )
    readers: int | None = Field(
        default=None, description="hybrid and readers modes: how many readers the result has"
    )


class SimilarOut(BaseModel):
    id: str | None = Field(None, description="the query document, or null for a free text")
    results: list[MatchOut]
    note: str | None = Field(
        default=None,
        description="why the list is empty, when it can be said (no readers yet, or no related "
        "document passes the filters), or why another mode answered (a factor model not "
        "trained or not readable: hybrid answers)",
    )


class RecommendationOut(BaseModel):
    id: str
    title: str | None
    score: float = Field(description="the score the mode ranked by (hybrid: 0 to 1)")
    sources: list[str] = Field(
        description="the sources that put it in the list: related (content), readers, als, "
        "bpr, popular"
    )
    shared_terms: list[str] = Field(
        description="the terms it shares with the posts the reader read (or the context)"
    )
    readers: int = Field(description="how many readers it has")
    because: list[str] = Field(
        description="ALS: the ids of the posts in the reader's history that contributed most"
    )


class RecommendationsOut(BaseModel):
    user: str
    mode: str = Field(description="the mode that answered")
    basis: Literal["history", "context", "popular"] = Field(
        description="history: the reader's events; context: no events, the context_id or "
        "context_text given; popular: no events and no context, the most read posts"
    )
    note: str | None = Field(default=None, description="why the answer is not what was asked")
    results: list[RecommendationOut]


class EventsIn(BaseModel):
    events: list[Any] = Field(
        min_length=1,
        max_length=MAX_EVENTS,
        description="objects with 'user' and 'item' (a stored document's id), optional "
        "'kind' (view, click, like, share), 'source' (the mode that recommended it), 'time' "
        f"(ISO 8601); at most {MAX_EVENTS} a request",
    )


class EventRejected(BaseModel):
    index: int = Field(description="position in the request's list, starting at 0")
    reason: str


class EventsOut(BaseModel):
    accepted: int = Field(description="events stored")
    rejected: list[EventRejected] = Field(description="events refused, with the reason")


class DocumentSummary(BaseModel):
    id: str
    title: str | None


class DocumentPage(BaseModel):
    total: int = Field(description="documents matching the search, over all pages")
    offset: int
    limit: int
    items: list[DocumentSummary]


class DocumentOut(BaseModel):
    id: str
    title: str | None
    text: str
    meta: dict[str, Any]


class SimilarTextIn(BaseModel):
    text: str = Field(min_length=1, description="the free text to find related documents for")
    title: str | None = None
    k: int = Field(10, ge=1, le=MAX_K)
    collapse: int | None = Field(
        None,
        ge=-1,
        le=64,
        description="as the query parameter of GET /documents/{id}/similar: copies within "
        "this many bits are left out; -1 keeps them; default: the server's setting",
    )
    exclude: list[str] = Field(default_factory=list, description="ids never returned")
    where: list[str] | dict[str, str | int | float | bool] = Field(
        default_factory=list,
        description='metadata that must match: ["section=정치"] or {"section": "정치"}; all '
        "must hold; values are compared as text",
    )
    since: str | None = Field(
        None,
        description="only documents published at or after this ISO 8601 date or time: their "
        "metadata 'time', else when they were stored",
    )
    recency_days: float | None = Field(
        None, description="recency boost: a score is multiplied by 0.5 ** (age in days / this)"
    )


class ReaderOut(BaseModel):
    id: str = Field(description="a new anonymous reader id, made by this server")
    key: str = Field(
        description="HMAC-SHA256 of the id under the server's secret (hex): the proof, sent "
        "as X-Reader-Key, that the id was made here for this browser"
    )


class ForgetOut(BaseModel):
    user: str
    forgotten: int = Field(description="events deleted (0 for a reader never seen)")


class AddIn(BaseModel):
    documents: list[Any] = Field(
        min_length=1,
        description="objects with a string 'id' and 'text', an optional 'title'; other "
        "fields are kept as metadata",
    )


class Rejected(BaseModel):
    index: int = Field(description="position in the request's list, starting at 0")
    id: str | None
    reason: str


class AddOut(BaseModel):
    ids: list[str] = Field(description="the ids stored, in order")
    rejected: list[Rejected]
    warnings: list[Rejected] = Field(
        default_factory=list,
        description="documents stored that are worth a look: those without any term, which "
        "are listed and fetchable but have no related posts",
    )


class UpdateOut(BaseModel):
    id: str
    warnings: list[Rejected] = Field(
        default_factory=list, description="set when the new text and title have no term"
    )


class Health(BaseModel):
    status: str
    documents: int = Field(
        description="documents in the indexes: every stored one but those without any term"
    )
    version: str


# plumbing ------------------------------------------------------------------------------------


class RequestBody:
    """Read each request body once, whole, and refuse it before any handler sees it when it
    is over ``max_bytes`` (413) or is JSON in which an object repeats a key (422 naming the
    key, as ingest refuses such a line; a JSON parser would keep one value silently).

    Checks ``Content-Length`` up front and counts the bytes of chunked bodies as they arrive
    (bodies are at most ``max_bytes``, so holding one in memory is bounded). A body that is
    not JSON at all passes on, for FastAPI's 400.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse(
            {"detail": f"request body is larger than the limit of {self.max_bytes} bytes"},
            status_code=413,
        )
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared < 0:
                    await JSONResponse({"detail": "invalid Content-Length"}, 400)(
                        scope, receive, send
                    )
                    return
                if declared > self.max_bytes:
                    await too_large(scope, receive, send)
                    return
        # Read the body here, counting, and hand it on whole: a chunked body over the limit is
        # refused before any handler sees a byte of it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        whole = b"".join(chunks)
        headers = dict(scope.get("headers", []))
        if b"json" in headers.get(b"content-type", b""):
            repeated = _repeated_key(whole)
            if repeated is not None:
                detail = f"invalid JSON body: {repeated}"
                await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": whole, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _repeated_key(body: bytes) -> str | None:
    """What a repeated key in ``body`` is ("field 'id' appears more than once"), or None
    (also when ``body`` is not JSON at all: that is FastAPI's to report)."""
    try:
        json.loads(body, object_pairs_hook=no_duplicate_keys)
    except DuplicateKeyError as exc:
        return str(exc)
    except (ValueError, RecursionError):
        return None
    return None


LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")
"""The names a server bound to loopback answers to (the browser's Host header)."""


def allowed_hosts_from(given: Sequence[str] | str | None) -> list[str]:
    """The allowed Host names: ``given`` (a list, or comma-separated), else
    ``$TEXTREC_ALLOWED_HOSTS``; an empty list means any name."""
    if given is None:
        given = os.environ.get("TEXTREC_ALLOWED_HOSTS", "")
    names = given.split(",") if isinstance(given, str) else list(given)
    return [n.strip().lower() for n in names if n.strip()]


DEFAULT_REFRESH_INTERVAL = 2.0


async def _follow_store(rec: Recommender, interval: float, metrics: Metrics) -> None:
    """Every ``interval`` seconds, catch up with the writes of other processes."""
    while True:
        await asyncio.sleep(interval)
        try:
            changed = await run_in_threadpool(rec.refresh)
            metrics.last_catch_up = time.monotonic()
            if changed:
                log.info("caught up with the store: %r", rec)
        except Exception as exc:  # logged; the next round tries again
            log.warning("could not catch up with the store: %s", exc)


DEFAULT_SAVE_INTERVAL = 600.0


def _save_files(rec: Recommender) -> str | None:
    """Catch up with the store, then write the index files (and the model files holding
    edited posts) if anything changed since they were read or saved; returns the path
    written, or None."""
    rec.refresh()  # up to date first: never write index files older than another process's
    return rec.save() if rec.changed else None


async def _save_periodically(rec: Recommender, interval: float) -> None:
    """Every ``interval`` seconds, save what changed: a crash then loses at most that much,
    and a start-up after it has that much to catch up with."""
    while True:
        await asyncio.sleep(interval)
        try:
            path = await run_in_threadpool(_save_files, rec)
            if path is not None:
                log.info("index files saved to %s", path)
        except Exception as exc:  # logged; the next round tries again
            log.warning("index files not saved: %s", exc)


DEFAULT_RETENTION_INTERVAL = 3600.0


def retention_days_from(given: float | None) -> float | None:
    """The events' retention in days: ``given``, else ``$TEXTREC_EVENTS_RETENTION_DAYS``,
    else None (events are kept)."""
    if given is not None:
        if not 0 < given < float("inf"):
            raise ValueError(f"the events' retention must be a number of days > 0, got {given}")
        return float(given)
    raw = os.environ.get("TEXTREC_EVENTS_RETENTION_DAYS", "").strip()
    if not raw:
        return None
    try:
        days = float(raw)
    except ValueError:
        days = -1.0
    if not 0 < days < float("inf"):
        raise ValueError(f"TEXTREC_EVENTS_RETENTION_DAYS must be a number of days > 0, got {raw!r}")
    return days


def _expire_once(rec: Recommender, days: float) -> int:
    before = datetime.now(UTC) - timedelta(days=days)
    n = rec.expire_events(before)
    if n:
        log.info("deleted %d event(s) older than %s (retention %g days)", n, before, days)
    return n


async def _expire_events(rec: Recommender, days: float, interval: float) -> None:
    """Every ``interval`` seconds, delete the events older than the retention."""
    while True:
        await asyncio.sleep(interval)
        try:
            await run_in_threadpool(_expire_once, rec, days)
        except Exception as exc:  # logged; the next round tries again
            log.warning("could not expire old events: %s", exc)


def reader_key(secret: str, user: str) -> str:
    """The key of a reader id: HMAC-SHA256 of the id (UTF-8) under the server's secret, hex."""
    return hmac.new(secret.encode(), user.encode("utf-8"), hashlib.sha256).hexdigest()


def _recommender(request: Request) -> Recommender:
    rec: Recommender = request.app.state.recommender
    return rec


# Module level: with postponed annotations, FastAPI resolves these names in module globals.
Rec = Annotated[Recommender, Depends(_recommender)]
K = Annotated[int, Query(ge=1, le=MAX_K, description=f"how many, 1..{MAX_K}")]
Collapse = Annotated[
    int | None,
    Query(
        ge=-1,
        le=64,
        description="leave out copies: results whose 64-bit fingerprint is within this many "
        "bits of the query's or of a higher-ranked result's (the next results take their "
        "place); -1 keeps them; default: the server's setting "
        f"({DEFAULT_COLLAPSE} unless configured)",
    ),
]
# The modes of textrec.sources.MODES (a test checks that they agree).
Mode = Annotated[
    Literal["related", "hamming", "readers", "hybrid", "als", "bpr"],
    Query(description="the retrieval mode; " + describe_modes()),
]

# The modes of textrec.personal.RECOMMEND_MODES (a test checks that they agree).
RecommendMode = Annotated[
    Literal["hybrid", "related", "readers", "als", "bpr", "popular"],
    Query(description="hybrid (default): content, readers and ALS fused; or one source"),
]


Exclude = Annotated[list[str] | None, Query(description="an id never returned (repeatable)")]
Where = Annotated[
    list[str] | None,
    Query(
        description="FIELD=VALUE: only documents whose metadata FIELD equals VALUE, compared "
        "as text (repeatable: all must hold), e.g. where=section%3D정치"
    ),
]
Since = Annotated[
    str | None,
    Query(
        description="only documents published at or after this ISO 8601 date or time "
        "(2026-11-01, 2026-11-01T09:00:00+09:00): their metadata 'time', else when stored"
    ),
]
RecencyDays = Annotated[
    str | None,
    Query(description="recency boost: a score is multiplied by 0.5 ** (age in days / this)"),
]


def _filters(
    where_from: str,
    exclude: Sequence[str] | None,
    where: Sequence[str] | Mapping[str, object] | None,
    since: str | None,
    recency_days: str | float | None,
) -> Filters:
    """The request's filters; a bad one is a 422 naming the parameter (``where_from``:
    ``query`` or ``body``)."""
    try:
        return Filters.parse(
            exclude=exclude or (),
            where=where or (),
            since=since,
            recency_days=recency_days,
        )
    except FilterError as exc:
        msg = str(exc).split(": ", 1)[1]
        detail = [{"loc": [where_from, exc.argument], "msg": msg, "type": "value_error"}]
        raise RequestValidationError(detail) from None


def _collapse(value: int | None) -> int | _Default | None:
    """The request's ``collapse``: None (not given) is the server's setting, -1 is off."""
    if value is None:
        return DEFAULT
    return None if value < 0 else value


def _filtered_out(matches: Sequence[Match], filters: Filters) -> str | None:
    """The note of an empty related list that the filters emptied."""
    if not matches and filters.filters():
        return f"no related document passes the filters ({filters.describe()})"
    return None


def _match(m: Match) -> MatchOut:
    return MatchOut(
        id=m.id,
        title=m.title,
        distance=m.distance,
        score=round(m.score, 6),
        shared_terms=list(m.shared_terms),
        sources=m.sources,
        readers=m.readers,
    )


def _not_found(exc: UnknownDocumentError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=404)


def _validation_detail(exc: RequestValidationError) -> tuple[int, Any]:
    errors = exc.errors()
    for e in errors:
        if e.get("type") == "json_invalid":
            where = e.get("ctx", {}).get("error", "")
            return 400, f"malformed JSON in the request body: {where}".rstrip(": ")
    detail = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": str(e.get("msg", "")),
            "type": str(e.get("type", "")),
        }
        for e in errors
    ]
    return 422, detail


# the app -------------------------------------------------------------------------------------


def create_app(
    db: str | None = None,
    *,
    index_path: str | None = None,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    recommender: Callable[[], Recommender] | None = None,
    events_need_token: bool | None = None,
    guard: EventGuard | None = None,
    allowed_hosts: Sequence[str] | None = None,
    max_query_chars: int = DEFAULT_MAX_QUERY_CHARS,
    request_timeout: float | None = DEFAULT_REQUEST_TIMEOUT,
    refresh_interval: float | None = DEFAULT_REFRESH_INTERVAL,
    events_retention_days: float | None = None,
    retention_interval: float = DEFAULT_RETENTION_INTERVAL,
    reader_secret: str | None = None,
    save_interval: float | None = DEFAULT_SAVE_INTERVAL,
) -> FastAPI:
    """The ASGI app over the store ``db`` (a SQLAlchemy URL, default ``$TEXTREC_DB``).

    ``token`` (default ``$TEXTREC_TOKEN``): when set, ``POST /documents``,
    ``PUT /documents/{id}`` and ``DELETE /documents/{id}`` require
    ``Authorization: Bearer <token>``. ``recommender`` is a factory called once at start-up
    instead of ``Recommender(db, index_path=...)``.
    ``POST /events`` is anonymous unless ``events_need_token`` (default
    ``$TEXTREC_EVENTS_NEED_TOKEN=1``), bounded by ``guard`` (:class:`EventGuard`; by default
    its own, whose cap on the new readers one client brings an hour is
    ``$TEXTREC_EVENTS_NEW_READERS``, 30 unless set, 0 for no cap).
    ``allowed_hosts`` (default ``$TEXTREC_ALLOWED_HOSTS``, comma-separated): the names a
    request's ``Host`` header may give, others get 400, so that a web page whose name an
    attacker points at this server (DNS rebinding) cannot use it; none given: any name.
    ``textrec serve`` passes the loopback names when it binds loopback.
    ``max_query_chars``: the longest text (with its title) ``POST /similar`` reads, 422
    beyond; ``request_timeout``: seconds before a request still unanswered gets 503
    (:class:`~textrec.serve.limits.RequestTimeout`; None: no deadline).
    ``refresh_interval``: seconds between looks at the store for writes by other processes
    (:meth:`Recommender.refresh`; None: never).
    ``events_retention_days`` (default ``$TEXTREC_EVENTS_RETENTION_DAYS``; None: keep them):
    readers' events older than that many days are deleted at start-up and every
    ``retention_interval`` seconds (:meth:`Recommender.expire_events`).
    ``save_interval``: seconds between saves of the index files while serving, when
    anything changed (:meth:`Recommender.save`; None: only at shutdown). A crash loses the
    edited posts' renames in the model files made since the last save (those posts answer
    without their reader vectors until ``textrec train``), and the next start-up catches up
    with every write since.
    ``reader_secret`` (default ``$TEXTREC_READER_SECRET``, else a random one made once and
    kept in the store): signs the reader ids ``POST /readers`` makes, so that
    ``GET /users/{id}/...`` can tell a reader's own browser (``X-Reader-Key``) from anyone
    else (:func:`reader_key`).
    """
    if events_need_token is None:
        events_need_token = os.environ.get("TEXTREC_EVENTS_NEED_TOKEN") == "1"
    if guard is None:
        cap = os.environ.get("TEXTREC_EVENTS_NEW_READERS", "30").strip()
        if not cap.isdigit():
            raise ValueError(
                f"TEXTREC_EVENTS_NEW_READERS must be a whole number (0: no cap), got {cap!r}"
            )
        guard = EventGuard(new_readers=int(cap) or None)
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {max_body_bytes}")
    if save_interval is not None and not 0 < save_interval < float("inf"):
        raise ValueError(f"save_interval must be a number of seconds > 0, got {save_interval}")
    token = token if token is not None else os.environ.get("TEXTREC_TOKEN") or None
    retention = retention_days_from(events_retention_days)
    secret_given = reader_secret or os.environ.get("TEXTREC_READER_SECRET") or None
    secrets_made: list[str] = []
    slots = TokenizerSlots()
    metrics = Metrics()

    def open_recommender() -> Recommender:
        if recommender is not None:
            return recommender()
        return Recommender(db, index_path=index_path)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        rec = open_recommender()
        log.info("textrec serving %r", rec)
        app.state.recommender = rec
        follower = None
        if refresh_interval is not None:
            follower = asyncio.create_task(_follow_store(rec, refresh_interval, metrics))
        expirer = None
        if retention is not None:  # once now, before the first request, then periodically
            await run_in_threadpool(_expire_once, rec, retention)
            expirer = asyncio.create_task(_expire_events(rec, retention, retention_interval))
        saver = None
        if save_interval is not None:
            saver = asyncio.create_task(_save_periodically(rec, save_interval))
        yield
        if saver is not None:
            saver.cancel()
        if expirer is not None:
            expirer.cancel()
        if follower is not None:
            follower.cancel()
        try:  # up to date first: never write index files older than another process's
            await run_in_threadpool(rec.refresh)
        except Exception as exc:  # the store is gone or replaced: keep the files
            log.warning("index files not saved: the store cannot be read (%s)", exc)
            return
        if rec.changed:  # so that the next start reads the index files instead of rebuilding
            try:
                path = rec.save()
                log.info("index files saved to %s", path)
            except OSError as exc:  # a read-only folder: the next start rebuilds them
                log.warning("index files not saved: %s", exc)

    app = FastAPI(
        title="textrec",
        version=__version__,
        description="Related posts for Korean text: Mecab nouns, TF-IDF, 64-bit SimHash.",
        lifespan=lifespan,
    )

    def require_token(request: Request) -> None:
        if token is None:
            return
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            value.strip().encode(), token.encode()
        ):
            raise StarletteHTTPException(
                401,
                "this endpoint needs the server's token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )

    def secret() -> str:
        """The secret that signs reader ids: given, else the store's (made once)."""
        if secret_given is not None:
            return secret_given
        if not secrets_made:
            rec: Recommender = app.state.recommender
            try:
                made = rec.store.reader_secret()
            except DBAPIError as exc:  # a read-only store: this process's own, until restart
                log.warning(
                    "no reader secret can be kept in the store (%s): the reader keys this "
                    "server gives stop working when it restarts; set TEXTREC_READER_SECRET",
                    exc.orig,
                )
                made = secrets.token_hex(32)
            secrets_made.append(made)
        return secrets_made[0]

    def has_token(request: Request) -> bool:
        if token is None:
            return False
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), token.encode()
        )

    def require_reader(request: Request) -> None:
        """The access rule of a reader's own data (``/users/{id}/...``): the server's token
        when one is set, or the reader's key (``X-Reader-Key``), which only the browser that
        ``POST /readers`` made the id for holds. The route's path parameter is ``id``."""
        user = str(request.path_params.get("id", request.path_params.get("user_id", "")))
        if has_token(request):
            return
        given = request.headers.get("x-reader-key")
        if given is not None:
            expected = reader_key(secret(), user).encode()
            if hmac.compare_digest(given.strip().lower().encode(), expected):
                return
            raise StarletteHTTPException(
                403, "X-Reader-Key is not this reader's key: it was made for another reader id"
            )
        if token is not None:
            raise StarletteHTTPException(
                401,
                "a reader's data needs the server's token (Authorization: Bearer <token>) or "
                "the reader's own key (X-Reader-Key, as POST /readers gave it)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise StarletteHTTPException(
            403,
            "a reader's data needs the reader's own key: X-Reader-Key, as POST /readers gave "
            "it to the browser that reader uses",
        )

    app.state.require_reader = require_reader

    def may_forget(request: Request) -> None:
        """``DELETE /users/{id}``: open when the server has no token, as other writes are;
        else the token, or the reader's own key (a reader may erase themselves)."""
        if token is not None:
            require_reader(request)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail = _validation_detail(exc)
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(UnknownDocumentError)
    async def on_unknown(request: Request, exc: UnknownDocumentError) -> JSONResponse:
        return _not_found(exc)

    @app.exception_handler(StoreReplacedError)
    async def on_store_replaced(request: Request, exc: StoreReplacedError) -> JSONResponse:
        log.error("%s %s refused: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": f"writes refused: {exc}"}, status_code=503)

    @app.exception_handler(SnapshotChangedError)
    async def on_snapshot_changed(request: Request, exc: SnapshotChangedError) -> JSONResponse:
        # A `textrec build` activated a new DF snapshot while this server holds the old one.
        detail = "the store's DF snapshot changed (a build ran): restart the server to load it"
        return JSONResponse({"detail": detail}, status_code=503)

    @app.exception_handler(DBAPIError)
    async def on_database_error(request: Request, exc: DBAPIError) -> JSONResponse:
        if is_disk_full(exc):  # 507 Insufficient Storage: the write was rolled back
            log.error("%s %s: %s", request.method, request.url.path, exc.orig)
            detail = "the server's disk is full: nothing of this request was stored"
            return JSONResponse({"detail": detail}, status_code=507)
        if "malformed" in str(exc.orig).lower():  # copied over while open, most often
            log.error("%s %s: %s", request.method, request.url.path, exc.orig)
            detail = (
                "the server's database file is damaged: was it copied over while the server "
                "ran? Restore it, then restart the server"
            )
            return JSONResponse({"detail": detail}, status_code=503)
        if "readonly" in str(exc.orig).lower():  # a store opened with ?mode=ro
            detail = "this server's store is read-only: it answers queries, not writes"
            return JSONResponse({"detail": detail}, status_code=503)
        return await on_error(request, exc)

    @app.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    @app.get("/health", response_model=Health, tags=["service"])
    def health(rec: Rec) -> Health:
        return Health(status="ok", documents=len(rec), version=__version__)

    @app.get("/documents", response_model=DocumentPage, tags=["documents"])
    def list_documents(
        rec: Rec,
        # Bounded by the databases' 64-bit integers: a larger offset was a 500 (OverflowError).
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        q: Annotated[
            str | None, Query(max_length=200, description="only titles containing this")
        ] = None,
    ) -> DocumentPage:
        total, docs = rec.documents(offset=offset, limit=limit, title_contains=q or None)
        return DocumentPage(
            total=total,
            offset=offset,
            limit=limit,
            items=[DocumentSummary(id=d.external_id, title=d.title) for d in docs],
        )

    # Ids may contain "/" (paths, URLs): the routes take the rest of the path as the id
    # (`{id:anyid}`, any characters), and the page sends ids percent-encoded. The server
    # decodes "%2F" before routing, so "/documents/a%2Fsimilar" would reach the similar route
    # with id "a"; the raw path tells the two apart (a literal "/similar" suffix is the
    # route's own).
    @app.get(
        "/documents/{id:anyid}/similar",
        response_model=SimilarOut,
        tags=["similar"],
        responses={404: {"description": "no such document"}},
    )
    def similar(
        id: str,
        rec: Rec,
        request: Request,
        k: K = 10,
        mode: Mode = "related",
        collapse: Collapse = None,
        exclude: Exclude = None,
        where: Where = None,
        since: Since = None,
        recency_days: RecencyDays = None,
    ) -> SimilarOut | JSONResponse:
        raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
        if not raw.endswith(b"/similar"):  # the id itself ends in "/similar"
            return JSONResponse(get_document(f"{id}/similar", rec).model_dump(mode="json"))
        filters = _filters("query", exclude, where, since, recency_days)
        matches = rec.similar(id, k=k, mode=mode, collapse=_collapse(collapse), filters=filters)
        note: str | None
        if not matches and mode == "readers" and rec.readers_of(id) == 0:
            note = "this document has no readers yet: no events name it"
        else:
            note = _filtered_out(matches, filters)
            if note is None and mode in ("als", "bpr") and mode not in rec.models:
                note = rec.model_problem(mode)
        return SimilarOut(id=id, results=[_match(m) for m in matches], note=note)

    @app.get(
        "/documents/{id:anyid}",
        response_model=DocumentOut,
        tags=["documents"],
        responses={404: {"description": "no such document"}},
    )
    def get_document(id: str, rec: Rec) -> DocumentOut:
        doc = rec.document(id)
        return DocumentOut(id=doc.external_id, title=doc.title, text=doc.text, meta=doc.meta)

    @app.post("/similar", response_model=SimilarOut, tags=["similar"])
    def similar_text(body: SimilarTextIn, rec: Rec) -> SimilarOut:
        size = len(body.text) + len(body.title or "")
        if size > max_query_chars:  # the work of one query grows with its length
            raise StarletteHTTPException(
                422,
                f"the query is {size:,} characters long (text and title); the limit is "
                f"{max_query_chars:,}",
            )
        filters = _filters("body", body.exclude, body.where, body.since, body.recency_days)
        with slots.slot(rec.analyzer.tokenizer):
            matches = rec.similar_text(
                body.text,
                k=body.k,
                title=body.title,
                collapse=_collapse(body.collapse),
                filters=filters,
            )
        note = _filtered_out(matches, filters)
        return SimilarOut(id=None, results=[_match(m) for m in matches], note=note)

    @app.post(
        "/documents",
        response_model=AddOut,
        tags=["documents"],
        dependencies=[Depends(require_token)],
        responses={
            201: {"description": "at least one document was stored"},
            422: {"description": "no document was stored; 'rejected' says why"},
        },
    )
    def add_documents(body: AddIn, rec: Rec, response: Response) -> AddOut:
        warnings: list[RecordError] = []
        with slots.slot(rec.analyzer.tokenizer):
            stored, rejected = rec.add(body.documents, warnings=warnings)
        out = AddOut(
            ids=stored,
            rejected=[Rejected(index=e.line - 1, id=e.id, reason=e.reason) for e in rejected],
            warnings=[Rejected(index=e.line - 1, id=e.id, reason=e.reason) for e in warnings],
        )
        response.status_code = 201 if stored else 422
        return out

    def events_token(request: Request) -> None:
        if events_need_token:
            require_token(request)

    @app.post(
        "/events",
        response_model=EventsOut,
        tags=["events"],
        dependencies=[Depends(events_token)],
        responses={
            202: {"description": "the events were taken; 'rejected' lists those refused"},
            429: {"description": "this client sent more events than its rate allows"},
        },
    )
    def add_events(body: EventsIn, rec: Rec, request: Request, response: Response) -> EventsOut:
        client = request.client.host if request.client else "?"
        allowed = guard.allow(client, len(body.events))
        if allowed == 0:
            raise StarletteHTTPException(429, "too many events from this client; slow down")
        rejected = [
            EventRejected(index=i, reason="over this client's rate of events")
            for i in range(allowed, len(body.events))
        ]
        batch: list[tuple[int, object]] = []
        for i, event in enumerate(body.events[:allowed]):
            user = event.get("user") if isinstance(event, dict) else None
            if isinstance(user, str) and not guard.admit_reader(client, user):
                rejected.append(
                    EventRejected(index=i, reason="too many new readers from this client")
                )
                continue
            if (
                isinstance(event, dict)
                and event.get("kind", "view") in ("view", None)
                and isinstance(event.get("user"), str)
                and isinstance(event.get("item"), str)
                and not guard.first_view(event["user"], event["item"])
            ):
                rejected.append(EventRejected(index=i, reason="a repeated view within the window"))
                continue
            batch.append((i, event))
        stored, refused = rec.add_events([e for _, e in batch])
        rejected += [EventRejected(index=batch[e.line - 1][0], reason=e.reason) for e in refused]
        metrics.events(stored, len(rejected))
        response.status_code = 202
        return EventsOut(accepted=stored, rejected=sorted(rejected, key=lambda r: r.index))

    @app.put(
        "/documents/{id:anyid}",
        response_model=UpdateOut,
        tags=["documents"],
        dependencies=[Depends(require_token)],
        responses={
            404: {"description": "no such document"},
            422: {"description": "the document is invalid; 'detail' names the field"},
        },
    )
    def update_document(id: str, body: dict[str, Any], rec: Rec) -> UpdateOut | JSONResponse:
        """Replace a stored document's title, text and metadata (all of them: fields left out
        are gone): ``{"text", "title"?, ...}``. Its terms, fingerprint and index entries are
        derived anew at once, in one transaction; it keeps its id and its readers' events."""
        try:
            with slots.slot(rec.analyzer.tokenizer):
                warnings = rec.update(id, body)
        except ValueError as exc:
            return JSONResponse({"detail": str(exc)}, status_code=422)
        return UpdateOut(
            id=id, warnings=[Rejected(index=0, id=e.id, reason=e.reason) for e in warnings]
        )

    @app.delete(
        "/documents/{id:anyid}",
        status_code=204,
        tags=["documents"],
        dependencies=[Depends(require_token)],
        responses={404: {"description": "no such document"}},
    )
    def remove_document(id: str, rec: Rec) -> Response:
        rec.remove(id)
        return Response(status_code=204)

    @app.post("/readers", response_model=ReaderOut, status_code=201, tags=["readers"])
    def new_reader() -> ReaderOut:
        """A new anonymous reader id and its key: the page keeps both in the browser, logs
        events under the id and shows the key (``X-Reader-Key``) to read that reader's own
        recommendations. Nothing is stored."""
        user = "anon-" + secrets.token_hex(16)
        return ReaderOut(id=user, key=reader_key(secret(), user))

    @app.delete(
        "/users/{id:anyid}",
        response_model=ForgetOut,
        tags=["readers"],
        dependencies=[Depends(may_forget)],
        responses={
            200: {
                "description": "the reader's events are deleted; 'forgotten' says how many "
                "(0 for a reader never seen: the answer does not tell who has events)"
            },
        },
    )
    def forget_reader(id: str, rec: Rec) -> ForgetOut:
        """Erase a reader: every event of theirs is deleted, and the readers' signatures (and
        the models) no longer reflect them."""
        guard.forget(id)
        return ForgetOut(user=id, forgotten=rec.forget(id))

    @app.get(
        "/metrics",
        tags=["service"],
        dependencies=[Depends(require_token)],
        response_class=PlainTextResponse,
        responses={200: {"description": "the Prometheus text format, version 0.0.4"}},
    )
    def metrics_page(rec: Rec) -> PlainTextResponse:
        return PlainTextResponse(
            metrics.render(rec), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    @app.get(
        "/users/{id:anyid}/recommendations",
        response_model=RecommendationsOut,
        tags=["recommendations"],
        dependencies=[Depends(require_reader)],
        responses={
            401: {"description": "the server has a token, and neither it nor the key was sent"},
            403: {"description": "not this reader's key (X-Reader-Key), or no key"},
            404: {"description": "no such context document"},
        },
    )
    def recommendations(
        id: str,
        rec: Rec,
        k: K = 10,
        mode: RecommendMode = "hybrid",
        exclude_read: bool = True,
        context_id: str | None = None,
        context_text: Annotated[str | None, Query(max_length=5_000)] = None,
        collapse: Collapse = None,
        exclude: Exclude = None,
        where: Where = None,
        since: Since = None,
        recency_days: RecencyDays = None,
    ) -> RecommendationsOut:
        """Posts for reader ``id``, from their events as they are now (a reader's list reveals
        what they read: it needs the reader's key, or the server's token)."""
        if context_id is not None and context_text is not None:
            detail = [
                {
                    "loc": ["query", "context_text"],
                    "msg": "give context_id or context_text, not both",
                    "type": "value_error",
                }
            ]
            raise RequestValidationError(detail)
        filters = _filters("query", exclude, where, since, recency_days)
        options: dict[str, Any] = dict(
            mode=mode, exclude_read=exclude_read, collapse=_collapse(collapse), filters=filters
        )
        if context_text is not None:
            with slots.slot(rec.analyzer.tokenizer):
                answer = rec.recommend(id, k, context_text=context_text, **options)
        else:
            answer = rec.recommend(id, k, context_id=context_id, **options)
        return RecommendationsOut.model_validate(answer.to_dict())

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    # StaticFiles serves only files under STATIC_DIR: it resolves every path and refuses
    # anything outside it, so `..` and symlinks cannot reach the rest of the file system.
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    if request_timeout is not None:
        app.add_middleware(RequestTimeout, seconds=request_timeout)
    app.add_middleware(RequestBody, max_bytes=max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    hosts = allowed_hosts_from(allowed_hosts)
    if hosts:  # outermost: a request for another name is refused before anything runs
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    return app

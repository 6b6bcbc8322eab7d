"""Readers' events: what they are, how they are checked, and how files of them are read.

An event says that a reader (``user``, an opaque string) did something (``kind``) with a
stored document (``item``, its external id) at a ``time``:

- ``user``: 1 to 256 characters, no control characters;
- ``item``: the id of a stored document;
- ``kind``: one of :data:`KIND_WEIGHTS` (``view`` by default);
- ``source``: optional, the mode that recommended a clicked item (``related``, ``hamming``,
  ``readers``, ...), at most 32 characters;
- ``time``: ISO 8601 (``2026-12-04T09:30:00+09:00``; without an offset it is UTC), the time
  of arrival by default; not before 1970 nor more than a day in the future.

Files of events are JSON Lines (``{"user", "item", "kind"?, "source"?, "time"?}``) or CSV with
a header naming those columns; ``.gz`` too. A bad event is refused with its file and line and
the reason; the rest of a batch is kept.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from textrec.pipeline.records import RecordError, open_input
from textrec.store.sql import EventFields, Store

log = logging.getLogger(__name__)

__all__ = [
    "KIND_WEIGHTS",
    "MAX_USER_CHARS",
    "Event",
    "EventReport",
    "parse_event",
    "read_events",
    "store_events",
]

KIND_WEIGHTS: Mapping[str, float] = {"view": 1.0, "click": 2.0, "like": 4.0, "share": 4.0}
"""The kinds of event and the weight of each in the readers' signal: a click on a recommended
post says more than a view, a like or share more than a click."""

MAX_USER_CHARS = 256
MAX_SOURCE_CHARS = 32
_FIELDS = ("user", "item", "kind", "source", "time")
_FIELD_SET = frozenset(_FIELDS)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Event(NamedTuple):
    """A valid event, its item still an external id; ``line`` says where it came from. (A
    tuple: an import reads millions of them.)"""

    user: str
    item: str
    kind: str
    time: datetime
    source: str | None = None
    where: str = ""
    line: int = 0


_CONTROL = re.compile("[\x00-\x1f\x7f]")
_UNIX_HINT = (
    " (a Unix time? write it as ISO 8601 in UTC, e.g. in Python "
    "datetime.fromtimestamp(t, UTC).isoformat(): 2024-12-01T00:00:00+00:00)"
)


def _bad_string(value: str) -> bool:
    return _CONTROL.search(value) is not None


# Times already parsed (an import's events often share their time strings): the string's
# time in UTC, or None when it is not ISO 8601. Cleared when it grows large.
_TIMES: dict[str, datetime | None] = {}


def _parse_time(raw: str) -> datetime | None:
    parsed = _TIMES.get(raw, _EPOCH)
    if parsed is not _EPOCH:
        return parsed
    try:
        time: datetime | None = datetime.fromisoformat(raw)
    except ValueError:
        time = None
    if time is not None:
        if time.tzinfo is None:
            time = time.replace(tzinfo=UTC)
        time = time.astimezone(UTC)  # stored in UTC: SQLite keeps no offset
    if len(_TIMES) >= 100_000:
        _TIMES.clear()
    _TIMES[raw] = time
    return time


def parse_event(
    obj: object, *, now: datetime | None = None, where: str = "<event>", line: int = 0
) -> Event | RecordError:
    """Check one event (a mapping of the fields above); the reason when it is refused."""

    def error(reason: str) -> RecordError:
        return RecordError(where, line, reason)

    if type(obj) is not dict and not isinstance(obj, Mapping):
        return error(f"an event is an object, got {type(obj).__name__}")
    if not obj.keys() <= _FIELD_SET:
        unknown = [k for k in obj if k not in _FIELD_SET]
        return error(f"unknown field {unknown[0]!r}; the fields are {', '.join(_FIELDS)}")
    user, item = obj.get("user"), obj.get("item")
    if not isinstance(user, str) or not user:
        return error("field 'user' must be a non-empty string")
    if len(user) > MAX_USER_CHARS:
        return error(f"field 'user' is {len(user):,} characters; the limit is {MAX_USER_CHARS}")
    if _bad_string(user):
        return error("field 'user' holds a control character")
    if not isinstance(item, str) or not item:
        return error("field 'item' must be a non-empty string (a stored document's id)")
    kind = obj.get("kind") or "view"
    if not isinstance(kind, str) or kind not in KIND_WEIGHTS:
        shown = repr(kind) if isinstance(kind, str) else f"a {type(kind).__name__}"
        return error(f"field 'kind' is {shown[:40]}; the kinds are {', '.join(KIND_WEIGHTS)}")
    source = obj.get("source") or None
    if source is not None and (
        not isinstance(source, str) or len(source) > MAX_SOURCE_CHARS or _bad_string(source)
    ):
        return error(f"field 'source' must be a string of at most {MAX_SOURCE_CHARS} characters")
    now = now or datetime.now(UTC)
    raw_time = obj.get("time")
    if raw_time in (None, ""):
        time = now
    elif not isinstance(raw_time, str):
        hint = _UNIX_HINT if isinstance(raw_time, int | float) else ""
        return error(f"field 'time' must be an ISO 8601 string{hint}")
    else:
        parsed = _parse_time(raw_time)
        if parsed is None:
            hint = _UNIX_HINT if raw_time.strip().replace(".", "", 1).isdigit() else ""
            return error(f"field 'time' is not an ISO 8601 time: {raw_time[:40]!r}{hint}")
        if not _EPOCH <= parsed <= now + timedelta(days=1):
            return error(f"field 'time' {raw_time[:40]!r} is before 1970 or in the future")
        time = parsed
    return Event(user, item, str(kind), time, source, where, line)


def read_events(path: str, *, now: datetime | None = None) -> Iterator[Event | RecordError]:
    """Every event of a JSON Lines or CSV file (``.gz`` and ``-`` too), valid or not. Without
    ``now``, the time of arrival (of an event without a time, and the limit of the future)
    is read once every thousand lines."""
    source = "<stdin>" if path == "-" else path
    clock = now
    is_csv = path.removesuffix(".gz").endswith(".csv")
    with contextlib.ExitStack() as stack:
        f = open_input(path, stack)
        text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="strict", newline="")
        try:
            if is_csv:
                reader = csv.DictReader(text)
                missing = {"user", "item"} - set(reader.fieldnames or ())
                if missing:
                    raise OSError(f"{source}:1: the CSV header has no {' or '.join(missing)}")
                for n, row in enumerate(reader):
                    if now is None and n % 1000 == 0:
                        clock = datetime.now(UTC)
                    cleaned = {k: v for k, v in row.items() if k is not None and v != ""}
                    yield parse_event(cleaned, now=clock, where=source, line=reader.line_num)
                return
            scan = _scanner()
            for number, raw in enumerate(text, start=1):
                if now is None and number % 1000 == 1:
                    clock = datetime.now(UTC)
                stripped = raw.strip()
                if not stripped:
                    continue
                obj: Any
                try:  # the C scanner, without json.loads' wrapping: a fifth of the reading
                    obj, end = scan(stripped, 0)
                    if end != len(stripped):
                        raise ValueError("extra data")
                except (StopIteration, ValueError):
                    try:  # json.loads again, for its exact error
                        obj = json.loads(stripped)
                    except json.JSONDecodeError as exc:
                        yield RecordError(source, number, f"invalid JSON: {exc.msg}")
                        continue
                yield parse_event(obj, now=clock, where=source, line=number)
        except UnicodeDecodeError as exc:
            raise OSError(f"{source}: not UTF-8 text ({exc.reason})") from exc
        except csv.Error as exc:
            raise OSError(f"{source}: not readable as CSV: {exc}") from exc


def _scanner() -> Any:
    """JSON's own scanner of one value at an index (what ``json.loads`` calls)."""
    return json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[attr-defined]


@dataclass
class EventReport:
    """What was stored, and what was refused with its reason."""

    stored: int = 0
    rejected: list[RecordError] = field(default_factory=list)
    stored_events: list[tuple[int, str, int, str]] = field(default_factory=list)
    """``(event id, user, document id, kind)`` of each stored event, for the caller's
    indexes (kept only when asked for)."""


def store_events(
    store: Store,
    events: Iterable[Event | RecordError],
    *,
    batch_size: int = 100_000,
    keep: bool = False,
) -> EventReport:
    """Store the valid events, in transactions of ``batch_size``; an event of an unknown item
    is refused. ``keep``: also return what was stored (``EventReport.stored_events``)."""
    with store.bulk_events() as add_events:
        return _store_events(store, events, add_events, batch_size=batch_size, keep=keep)


def _store_events(
    store: Store,
    events: Iterable[Event | RecordError],
    add_events: Callable[[Sequence[EventFields], bool], list[int | None]],
    *,
    batch_size: int,
    keep: bool,
) -> EventReport:
    report = EventReport()
    batch: list[Event] = []

    def flush() -> None:
        ids = store.internal_ids(sorted({e.item for e in batch}))
        new: list[EventFields] = []
        kept_from: list[Event] = []
        for e in batch:
            doc_id = ids.get(e.item)
            if doc_id is None:
                report.rejected.append(RecordError(e.where, e.line, f"unknown item {e.item!r}"))
            else:
                new.append((e.user, doc_id, e.kind, e.time, e.source))
                kept_from.append(e)
        added = add_events(new, keep)
        if batch:  # the acknowledgement: these events are committed (see RELIABILITY.md)
            last = batch[-1]
            log.info("committed %d event(s) through %s:%d", len(batch), last.where, last.line)
        for event_id, stored, origin in zip(added, new, kept_from, strict=True):
            if event_id is None:
                report.rejected.append(
                    RecordError(origin.where, origin.line, f"item {origin.item!r} was removed")
                )
                continue
            report.stored += 1
            if keep:
                report.stored_events.append((event_id, stored[0], stored[1], stored[2]))
        batch.clear()

    for item in events:
        if isinstance(item, RecordError):
            report.rejected.append(item)
            continue
        batch.append(item)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    report.rejected.sort(key=lambda e: (e.source, e.line))
    return report

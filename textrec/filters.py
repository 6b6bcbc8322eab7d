"""Filters and freshness for related and recommended lists, as a related-posts widget needs them.

A :class:`Filters` says which documents may appear in a list and, optionally, how much a
newer one is favoured:

- ``exclude``: external ids never returned (the posts already on the page);
- ``where``: metadata fields that must equal a value (``section=정치``); every pair must hold.
  A field's stored value is compared as text, so ``year=2020`` matches ``2020`` and ``"2020"``;
  a list matches when one of its items does; a document without the field fails;
- ``since``: published at or after this time: the document's metadata ``time`` when it has one
  that reads as ISO 8601 (``2026-11-01`` or ``2026-11-01T09:00:00+09:00``; without an offset it
  is UTC), else the time it was first stored (an edit keeps it);
- ``recency_days``: a recency boost: a result's score is multiplied by
  ``0.5 ** (age_days / recency_days)``, so a post that many days old counts half.

Filters are applied inside the top k, not after it (:func:`select`): the source is asked for
more candidates until ``k`` pass, or until it has no more, so a filter that only 2 % of the
documents pass still fills the list.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

__all__ = [
    "NO_FILTERS",
    "RECENCY_POOL",
    "FilterError",
    "Filterable",
    "Filters",
    "parse_time",
    "select",
]

RECENCY_POOL = 10
"""With a recency boost, the candidates re-ordered are those that prove the boosted top ``k``
exact (nothing further down the mode's ranking could overtake them), but at most this many times
``k`` (and at least 100) candidates that pass the filters: an old corpus and a short half-life
would otherwise rank every document for every query."""


class FilterError(ValueError):
    """A filter argument that cannot be read; ``argument`` names it (``where``, ``since``...)."""

    def __init__(self, argument: str, message: str) -> None:
        self.argument = argument
        super().__init__(f"{argument}: {message}")


class Filterable(Protocol):
    """What a filter looks at: a stored document, or the few fields of it a query reads."""

    @property
    def external_id(self) -> str: ...

    @property
    def meta(self) -> Mapping[str, Any]: ...

    @property
    def created_at(self) -> datetime: ...


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 date or time as an aware datetime (UTC when no offset is given), else None."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _as_text(value: object) -> str:
    """A metadata value as ``where`` compares it: strings as they are, anything else as JSON
    (``2020`` -> ``"2020"``, ``True`` -> ``"true"``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):  # the common case, without json's cost
        return str(value)
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Filters:
    """Which documents a list may hold, and an optional recency boost (module docstring)."""

    exclude: frozenset[str] = frozenset()
    where: tuple[tuple[str, str], ...] = ()
    since: datetime | None = None
    recency_days: float | None = None

    @classmethod
    def parse(
        cls,
        *,
        exclude: Iterable[str] = (),
        where: Iterable[str | tuple[str, object]] | Mapping[str, object] = (),
        since: str | datetime | date | None = None,
        recency_days: str | float | None = None,
    ) -> Filters:
        """Filters from the strings of the command line or a request: ``where`` as
        ``FIELD=VALUE`` (or pairs, or a mapping), ``since`` as an ISO 8601 date or time,
        ``recency_days`` a number of days > 0. Raises :class:`FilterError` (a ValueError)
        naming the argument and the value that is wrong."""
        if isinstance(exclude, str):
            exclude = [exclude]
        ids: set[str] = set()
        for e in exclude:
            if not isinstance(e, str) or not e:
                raise FilterError("exclude", f"expected a document id, got {e!r}")
            ids.add(e)
        pairs: list[tuple[str, str]] = []
        items: Iterable[Any] = where.items() if isinstance(where, Mapping) else where
        if isinstance(items, str):
            items = [items]
        for item in items:
            if isinstance(item, str):
                field, eq, value = item.partition("=")
                if not eq or not field.strip():
                    raise FilterError("where", f"expected FIELD=VALUE, got {item!r}")
                pairs.append((field.strip(), value))
            elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
                if not item[0].strip():
                    raise FilterError("where", f"expected a field name, got {item[0]!r}")
                pairs.append((item[0].strip(), _as_text(item[1])))
            else:
                raise FilterError("where", f"expected FIELD=VALUE, got {item!r}")
        when: datetime | None = None
        if since is not None and since != "":
            when = parse_time(since)
            if when is None:
                raise FilterError(
                    "since",
                    f"expected an ISO 8601 date or time (2026-11-01, 2026-11-01T09:00:00+09:00), "
                    f"got {since!r}",
                )
        days: float | None = None
        if recency_days is not None and recency_days != "":
            try:
                days = float(recency_days)
            except (TypeError, ValueError):
                days = math.nan
            if not (0 < days < math.inf) or isinstance(recency_days, bool):
                raise FilterError(
                    "recency_days", f"expected a number of days > 0, got {recency_days!r}"
                )
        return cls(frozenset(ids), tuple(pairs), when, days)

    def active(self) -> bool:
        """Whether any filter or the boost is set (else every document passes, weight 1)."""
        return bool(self.exclude or self.where or self.since is not None or self.recency_days)

    def filters(self) -> bool:
        """Whether some document may fail (the boost alone fails none)."""
        return bool(self.exclude or self.where or self.since is not None)

    @staticmethod
    def published(doc: Filterable) -> datetime:
        """When a document was published: its metadata ``time`` when that reads as ISO 8601,
        else when it was first stored."""
        meta_time = parse_time(doc.meta.get("time")) if isinstance(doc.meta, Mapping) else None
        return meta_time if meta_time is not None else _aware(doc.created_at)

    def passes(self, doc: Filterable) -> bool:
        """Whether ``doc`` may appear in the list."""
        if doc.external_id in self.exclude:
            return False
        for field, value in self.where:
            if field not in doc.meta:
                return False
            stored = doc.meta[field]
            if isinstance(stored, list):
                if not any(_as_text(v) == value for v in stored):
                    return False
            elif _as_text(stored) != value:
                return False
        return self.since is None or self.published(doc) >= self.since

    def weight(self, doc: Filterable, now: datetime) -> float:
        """The recency boost's factor for ``doc`` at ``now``: 1.0 without a boost, else
        ``0.5 ** (age_days / recency_days)`` (a post from the future counts as new)."""
        if not self.recency_days:
            return 1.0
        age = (_aware(now) - self.published(doc)).total_seconds() / 86400.0
        return float(0.5 ** (max(age, 0.0) / self.recency_days))

    def describe(self) -> str:
        """The filters in one line, for logs and answers."""
        parts = [f"exclude {len(self.exclude)} id(s)"] if self.exclude else []
        parts += [f"{f}={v}" for f, v in self.where]
        if self.since is not None:
            parts.append(f"since {self.since.isoformat()}")
        if self.recency_days:
            parts.append(f"recency half-life {self.recency_days:g} days")
        return ", ".join(parts) or "none"


NO_FILTERS = Filters()


Candidate = tuple[int, float]


def select(
    rank: Callable[[int], Sequence[Candidate]],
    k: int,
    filters: Filters,
    documents: Callable[[Sequence[int]], Mapping[int, Filterable]],
    *,
    first: int | None = None,
    keep: Callable[[list[Candidate], int], list[Candidate]] | None = None,
    now: datetime | None = None,
    limit: int | None = None,
) -> list[tuple[int, float, Filterable]]:
    """The top ``k`` ``(id, score, document)`` of a ranking that pass ``filters``, re-ordered by
    the recency boost when it is set (``score`` is then the boosted score).

    ``rank(n)`` gives the mode's best ``n`` ``(id, score)``, best first, and fewer only when it
    has no more; ``documents(ids)`` reads what the filters look at (a document it leaves out was
    removed meanwhile and is skipped); ``keep(candidates, k)`` takes the first ``k`` of the
    candidates that it keeps (the related lists' collapse of copies), the first ``k`` without it.
    ``first``: how many to ask for at first (``k`` by default); ``limit``: the most the
    ranking can give (the documents indexed): it is never asked for more.

    The ranking is asked again for more until ``k`` candidates are kept or it has no more: each
    round asks for enough to expect ``k`` at the share of candidates kept so far (at least
    twice as many as before), so a filter that few documents pass costs a few rounds, and every
    document is read once over all rounds.
    """
    most = limit if limit is not None and limit >= 1 else 1 << 62
    want = min(max(first or k, k), most)
    known: dict[int, Filterable | None] = {}
    weights: dict[int, float] = {}
    now = now if now is not None else datetime.now(UTC)
    boost = bool(filters.recency_days)
    pool = max(100, RECENCY_POOL * k)
    chosen: list[tuple[int, float, Filterable]] = []
    while True:
        ranked = list(rank(want))
        new = [i for i, _ in ranked if i not in known]
        if new:
            found = documents(new)
            for i in new:
                doc = found.get(i)
                # Each candidate is judged once, over all rounds: None when it fails.
                known[i] = doc if doc is not None and filters.passes(doc) else None
                if boost and doc is not None:
                    weights[i] = filters.weight(doc, now)
        passing: list[tuple[int, float, Filterable]] = []
        for i, score in ranked:
            doc = known[i]
            if doc is not None:
                passing.append((i, score, doc))
        if boost:
            passing = [(i, s * weights[i] if s > 0 else s, d) for i, s, d in passing]
            passing.sort(key=lambda c: (-c[1], c[0]))
        by_id = {i: (i, s, d) for i, s, d in passing}
        pairs = [(i, s) for i, s, _ in passing]
        kept = keep(pairs, k) if keep is not None else pairs[:k]
        chosen = [by_id[i] for i, _ in kept]
        if len(ranked) < want or want >= most:  # the ranking has nothing more
            break
        if len(chosen) >= k:
            if not boost:
                break
            # Nothing further down scores above the last score fetched, nor after the boost
            # (a weight is at most 1): the boosted top k is exact once its last is above that.
            floor = ranked[-1][1]
            if chosen[-1][1] >= floor or len(passing) >= pool:
                break
        share = (len(chosen) + 1) / (len(ranked) + 1)
        want = min(max(2 * want + k, math.ceil(1.5 * k / share)), most)
    return chosen

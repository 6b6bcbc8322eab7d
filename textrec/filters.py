"""Filters on related lists and recommendations (exclude ids, metadata, freshness)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from textrec.store.sql import StoredDocument

__all__ = ["NO_FILTERS", "Filters"]


@dataclass(frozen=True)
class Filters:
    """Which documents may be returned."""

    exclude: frozenset[str] = frozenset()
    where: tuple[tuple[str, str], ...] = ()
    since: datetime | None = None
    recency_days: float | None = None

    def active(self) -> bool:
        return bool(self.exclude or self.where or self.since or self.recency_days)

    def passes(self, doc: StoredDocument) -> bool:
        if doc.external_id in self.exclude:
            return False
        return all(str(doc.meta.get(f)) == v for f, v in self.where)

    def weight(self, doc: StoredDocument, now: datetime) -> float:
        return 1.0


NO_FILTERS = Filters()

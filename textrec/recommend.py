"""The Python API: related documents from a store and its in-memory index.

>>> rec = Recommender("sqlite:///textrec.db")            # doctest: +SKIP
>>> for m in rec.similar("doc-42", k=5):                  # doctest: +SKIP
...     print(m.id, m.distance, round(m.score, 3), m.shared_terms)
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .build import default_index_path, ingest, load_index
from .corpus import DEFAULT_MAX_CHARS, Record, RecordError, parse_record
from .pipeline import Analyzer
from .simhash import estimated_cosine, simhash
from .store import NotBuiltError, Store, StoredDocument
from .tfidf import DFSnapshot

__all__ = ["Match", "Recommender", "UnknownDocumentError"]


class UnknownDocumentError(KeyError):
    """No document with that id is stored."""

    def __str__(self) -> str:
        return f"no document with id {self.args[0]!r} is stored"


@dataclass(frozen=True)
class Match:
    """One related document."""

    id: str
    title: str | None
    distance: int
    score: float
    shared_terms: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "distance": self.distance,
            "score": round(self.score, 6),
            "shared_terms": self.shared_terms,
        }


def _shared_terms(a: Mapping[str, float], b: Mapping[str, float], limit: int = 5) -> list[str]:
    """The terms that contribute most to the dot product of two weight vectors."""
    common = [(a[t] * b[t], t) for t in a.keys() & b.keys() if a[t] * b[t] > 0]
    common.sort(key=lambda x: (-x[0], x[1]))
    return [t for _, t in common[:limit]]


class Recommender:
    """Related documents for a store: ``Recommender(url)``.

    The index comes from the snapshot file beside the database when that file matches the
    store, otherwise from the store. Raises :class:`~textrec.store.NotBuiltError` before the
    first ``textrec build``.
    """

    def __init__(
        self,
        db: str | Store | None = None,
        *,
        index_path: str | None = None,
        analyzer: Analyzer | None = None,
    ) -> None:
        self.store = db if isinstance(db, Store) else Store(db)
        self.analyzer = analyzer or Analyzer()
        current = self.store.current_snapshot()
        if current is None:
            raise NotBuiltError(self.store.url)
        self.snapshot: DFSnapshot = current[0]
        self.scheme: str = current[1]
        self.index_path = index_path if index_path is not None else default_index_path(self.store)
        self.index = load_index(self.store, self.index_path)
        self._write_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Recommender<{len(self.index):,} documents, {self.store!r}>"

    def __len__(self) -> int:
        return len(self.index)

    # queries ---------------------------------------------------------------------------------

    def _document(self, external_id: str) -> StoredDocument:
        doc = self.store.find_document(external_id)
        if doc is None:
            raise UnknownDocumentError(external_id)
        return doc

    def _terms(self, doc: StoredDocument) -> dict[str, int]:
        return (
            doc.terms if doc.terms is not None else self.analyzer.term_counts(doc.text, doc.title)
        )

    def _matches(
        self, code: int, k: int, exclude: int | None, query_terms: Mapping[str, int]
    ) -> list[Match]:
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        ids, dists = self.index.search(code, k + (1 if exclude is not None else 0))
        pairs = [(int(i), int(d)) for i, d in zip(ids, dists, strict=True) if int(i) != exclude]
        pairs = pairs[:k]
        docs = self.store.get_documents([i for i, _ in pairs])
        qw = self.analyzer.weights(query_terms, self.snapshot)
        out: list[Match] = []
        for doc_id, dist in pairs:
            doc = docs.get(doc_id)
            if doc is None:  # removed meanwhile
                continue
            dw = self.analyzer.weights(self._terms(doc), self.snapshot)
            out.append(
                Match(
                    doc.external_id, doc.title, dist, estimated_cosine(dist), _shared_terms(qw, dw)
                )
            )
        return out

    def similar(self, id: str, k: int = 10) -> list[Match]:
        """The ``k`` documents most like stored document ``id`` (itself excluded)."""
        doc = self._document(id)
        code = self.store.fingerprint_of(self.snapshot.id, doc.id)
        terms = self._terms(doc)
        if code is None:
            code = self.analyzer.fingerprint(terms, self.snapshot)
        return self._matches(code, k, doc.id, terms)

    def similar_text(self, text: str, k: int = 10, *, title: str | None = None) -> list[Match]:
        """The ``k`` stored documents most like a free text."""
        terms = self.analyzer.term_counts(text, title)
        return self._matches(self.fingerprint_counts(terms), k, None, terms)

    def fingerprint_counts(self, terms: Mapping[str, int]) -> int:
        return simhash(self.analyzer.weights(terms, self.snapshot))

    def fingerprint(self, text: str) -> int:
        """The fingerprint of a text under the current DF snapshot."""
        return self.analyzer.fingerprint_text(text, self.snapshot)

    # writes ----------------------------------------------------------------------------------

    def add(
        self, documents: Iterable[object], *, max_chars: int = DEFAULT_MAX_CHARS
    ) -> tuple[list[str], list[RecordError]]:
        """Validate, store and index documents (``{"id", "text", "title"?, ...}``).

        They are visible to the next query, with no rebuild. Returns the stored ids and the
        rejected records (line = position in ``documents``, starting at 1).
        """
        records: list[Record | RecordError] = []
        for n, d in enumerate(documents, start=1):
            if not isinstance(d, Mapping):
                records.append(RecordError("<add>", n, "expected a JSON object"))
                continue
            records.append(parse_record_obj(d, line=n, max_chars=max_chars))

        def index_batch(ids: list[int], fps: list[int]) -> None:
            self.index.add(np.array(ids, dtype=np.int64), np.array(fps, dtype=np.uint64))

        with self._write_lock:
            report = ingest(self.store, records, analyzer=self.analyzer, on_stored=index_batch)
        return report.stored, report.rejected

    def remove(self, id: str) -> None:
        """Delete a stored document from the store and the index."""
        with self._write_lock:
            doc = self._document(id)
            self.store.remove_document(doc.id)
            self.index.remove(np.array([doc.id], dtype=np.int64))


def parse_record_obj(
    obj: Mapping[str, Any], *, line: int, max_chars: int = DEFAULT_MAX_CHARS
) -> Record | RecordError:
    """Validate a document given as a mapping, with the rules of JSONL input."""
    import json

    try:
        raw = json.dumps(dict(obj), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        return RecordError("<add>", line, f"not JSON-serialisable: {exc}")
    return parse_record(raw, source="<add>", line=line, max_chars=max_chars)

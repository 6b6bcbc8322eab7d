"""The Python API: related documents from a store and its in-memory index.

>>> rec = Recommender("sqlite:///textrec.db")            # doctest: +SKIP
>>> for m in rec.similar("doc-42", k=5):                  # doctest: +SKIP
...     print(m.id, m.distance, round(m.score, 3), m.shared_terms)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from textrec.artifacts.indexes import StoreIndexes, default_index_path
from textrec.collab.buckets import open_buckets
from textrec.collab.events import parse_event, store_events
from textrec.collab.factors import (
    FACTOR_MODELS,
    FactorModel,
    ModelFileError,
    forget_reader,
    model_path,
    model_staleness,
)
from textrec.collab.readers import NUM_PERM, open_readers, readers_path
from textrec.content.analyzer import Analyzer
from textrec.content.scheme import analyzer_for
from textrec.content.simhash import estimated_cosine, hamming, simhash
from textrec.content.tfidf import DFSnapshot
from textrec.filters import NO_FILTERS, Filterable, Filters, select
from textrec.personal import RECOMMEND_MODES, Recommendations, recommend
from textrec.pipeline.ingest import ingest
from textrec.pipeline.records import DEFAULT_MAX_CHARS, Record, RecordError, parse_record
from textrec.sources import (
    MODES,
    FactorSource,
    HammingSource,
    HybridSource,
    Query,
    ReadersSource,
    RelatedSource,
    Source,
)
from textrec.store.sql import DocumentFacts, Erasure, Store, StoredDocument

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT",
    "DEFAULT_COLLAPSE",
    "MAX_K",
    "MODES",
    "NO_FILTERS",
    "RECOMMEND_MODES",
    "Filters",
    "Match",
    "Recommendations",
    "Recommender",
    "UnknownDocumentError",
    "check_k",
]


class UnknownDocumentError(KeyError):
    """No document with that id is stored."""

    def __str__(self) -> str:
        return f"no document with id {self.args[0]!r} is stored"


@dataclass(frozen=True)
class Match:
    """One related document.

    ``score`` is the mode's score (:mod:`textrec.sources`); ``distance`` is the Hamming
    distance between the query's fingerprint and the result's, or None when either is not
    in the index (a document removed meanwhile)."""

    id: str
    title: str | None
    distance: int | None
    score: float
    shared_terms: list[str] = field(default_factory=list)
    sources: list[str] | None = None
    """``hybrid``: the sources that put it in the list (``related``, ``readers``, ``als``)."""
    readers: int | None = None
    """``hybrid`` and ``readers``: how many readers it has."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "title": self.title,
            "distance": self.distance,
            "score": round(self.score, 6),
            "shared_terms": self.shared_terms,
        }
        if self.sources is not None:
            out["sources"] = self.sources
        if self.readers is not None:
            out["readers"] = self.readers
        return out


def _shared_terms(
    a: Mapping[str, float],
    b: Mapping[str, float],
    limit: int = 5,
    shown: set[str] | None = None,
) -> list[str]:
    """The terms that contribute most to the dot product of two weight vectors; only those
    in ``shown`` (when given): the query's content words, never 것, 년 or 우리."""
    both = a.keys() & b.keys()
    if shown is not None:
        both &= shown
    common = [(a[t] * b[t], t) for t in both if a[t] * b[t] > 0]
    common.sort(key=lambda x: (-x[0], x[1]))
    return [t for _, t in common[:limit]]


MAX_K = 100
"""The most results one query may ask for (as the HTTP API): a larger ``k`` costs memory and
time in proportion, and no page shows more."""


def check_k(k: object) -> int:
    """``k`` when it is a whole number 1..MAX_K (``True`` is not one), else ValueError."""
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise ValueError(f"k must be a whole number 1..{MAX_K}, got {k!r}")
    return k


DEFAULT_COLLAPSE = 4
"""Results within this many bits of the query's fingerprint, or of a higher-ranked result's,
are copies and are left out of related lists. Chosen on the petitions' natural duplicates
(``bench/collapse.py``): 4 bits catches 83 % of the copies in the lists, and every result it
drops shares at least half its text (character 5-grams) with what it collides with."""


_SHOWN_CACHE = 4096
"""Stored documents whose showable terms a Recommender keeps (the most recently tagged)."""

_FACTS_CACHE = 100_000
"""Stored documents whose metadata and time a Recommender keeps for filters (the most
recently read): a selective filter reads many candidates, and a widget asks the same again."""


class _Default:
    """The type of :data:`DEFAULT`: "the Recommender's own setting"."""

    def __repr__(self) -> str:
        return "DEFAULT"


DEFAULT = _Default()


def _check_collapse(radius: int) -> None:
    if not isinstance(radius, int) or isinstance(radius, bool) or not 0 <= radius <= 64:
        raise ValueError(f"collapse must be None or a whole number of bits 0..64, got {radius!r}")


def _check_radius(max_distance: int) -> None:
    if not isinstance(max_distance, int) or not 0 <= max_distance <= 64:
        raise ValueError(f"max_distance must be a whole number 0..64, got {max_distance!r}")


class Recommender:
    """Related documents for a store: ``Recommender(url)``.

    The Hamming index comes from the snapshot file beside the database when that file matches
    the store, otherwise from the store; likewise the related-posts index, from the file
    ``<index file>.related`` or from the term counts stored with the documents
    (:mod:`textrec.artifacts.indexes`). The analyzer is the one the store's scheme names;
    pass ``analyzer`` only for a scheme of your own tokenizer (a conflicting one is refused,
    :class:`~textrec.content.simhash.SchemeMismatchError`). ``readers_store``: a ``redis://``
    URL to keep the readers' signature index in Redis (:mod:`textrec.collab.buckets`) instead
    of in memory. ``collapse``: copies are left out of related lists (see :meth:`similar`);
    None keeps them. Raises
    :class:`~textrec.store.sql.NotBuiltError` before the first ``textrec build``.
    """

    def __init__(
        self,
        db: str | Store | None = None,
        *,
        index_path: str | None = None,
        analyzer: Analyzer | None = None,
        readers_store: str | None = None,
        collapse: int | None = DEFAULT_COLLAPSE,
    ) -> None:
        if collapse is not None:
            _check_collapse(collapse)
        self.collapse = collapse
        """How many bits apart a result's fingerprint may be from the query's (or a
        higher-ranked result's) and still count as a copy, left out; None: keep copies."""
        self.store = db if isinstance(db, Store) else Store(db)
        self.analyzer = analyzer_for(self.store.scheme(), analyzer, where=self.store.url)
        self.index_path = index_path if index_path is not None else default_index_path(self.store)
        self._use(StoreIndexes.open(self.store, self.analyzer, self.index_path))
        buckets = open_buckets(
            readers_store, num_perm=NUM_PERM, namespace=self._indexes.stamp.identity
        )
        self.readers = open_readers(
            self.store,
            readers_path(self.index_path) if self.index_path is not None else None,
            buckets=buckets,
        )
        self.models: dict[str, FactorModel] = {}
        """The factor models in use (``als``, ``bpr``; :mod:`textrec.collab.factors`)."""
        self.model_errors: dict[str, str] = {}
        """Why a factor model is not in use, by model."""
        self.sources: dict[str, Source] = {
            **self._content_sources(),
            "readers": ReadersSource(self.readers),
            "hybrid": HybridSource(lambda: self.sources, self._knows),
        }
        self._model_files: dict[str, tuple[int, int]] = {}
        self._renamed_in_models: set[str] = set()  # models with edited posts not yet saved
        self._renames: list[tuple[int, int]] = []  # (old id, new id) of edits since the save
        self.load_models()
        self._write_lock = threading.Lock()
        self._save_lock = threading.Lock()
        self._shown: dict[int, set[str] | None] = {}
        self._shown_lock = threading.Lock()
        self._facts: dict[int, DocumentFacts] = {}

    def _knows(self, mode: str) -> Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]]:
        """Which posts a mode could rank (for the hybrid): ``readers`` the posts with readers,
        a factor model the posts it was trained on, content every post."""
        if mode == "readers":
            return self.readers.have_readers
        model = self.models.get(mode)
        if model is not None:
            return model.holds
        return lambda ids: np.ones(len(ids), bool)

    def load_models(self) -> bool:
        """Open the factor models ``textrec train`` wrote beside the index files
        (:func:`~textrec.collab.factors.model_path`), or open them again when a file changed
        since (a new training). A model is never trained here; one trained before newer events
        serves them folded in (:mod:`textrec.collab.factors`). A file that cannot be read, or
        was trained from another store, is reported (:attr:`model_errors`, the log) and its
        mode answers as ``hybrid`` without it. Returns whether a model changed."""
        if self.index_path is None:
            return False
        changed = False
        for name in FACTOR_MODELS:
            path = model_path(self.index_path, name)
            try:
                st = os.stat(path)
            except OSError:
                if name in self.models or name in self.model_errors:
                    self.models.pop(name, None)
                    self.sources.pop(name, None)
                    self.model_errors.pop(name, None)
                    self._model_files.pop(name, None)
                    changed = True
                continue
            seen = (st.st_mtime_ns, st.st_size)
            if self._model_files.get(name) == seen:
                continue
            self._model_files[name] = seen
            changed = True
            self._renamed_in_models.discard(name)
            self.models.pop(name, None)
            self.sources.pop(name, None)
            self.model_errors.pop(name, None)
            try:
                model = FactorModel.load(path)
            except ModelFileError as exc:
                self.model_errors[name] = f"the {name} model cannot be used: {exc}"
                log.warning("%s; its mode answers as hybrid", self.model_errors[name])
                continue
            if not model_staleness(model, self.store)["same_store"]:
                self.model_errors[name] = (
                    f"the {name} model {path} was trained from another store: run "
                    f"`textrec train --model {name}`"
                )
                log.warning("%s; its mode answers as hybrid", self.model_errors[name])
                continue
            if model.rename_items(self._renames):  # edits made here since the file was written
                self._renamed_in_models.add(name)
            self.models[name] = model
            self.sources[name] = FactorSource(name, model)
        return changed

    def model_problem(self, mode: str) -> str:
        """Why mode ``mode``'s model is not in use, and what answered instead."""
        why = self.model_errors.get(
            mode, f"no {mode} model has been trained: run `textrec train --model {mode}`"
        )
        return f"{why}; hybrid answered without it"

    def _use(self, indexes: StoreIndexes) -> None:
        self._indexes = indexes
        self.snapshot: DFSnapshot = indexes.snapshot
        self.scheme: str = indexes.scheme
        self.index = indexes.hamming
        self.related = indexes.related

    def _content_sources(self) -> dict[str, Source]:
        """The sources over the indexes in use (:meth:`_use`)."""
        return {
            "related": RelatedSource(self.related, self.snapshot, self.analyzer.weighting),
            "hamming": HammingSource(self.index),
        }

    def refresh(self) -> bool:
        """Catch up with the writes other processes made to the store (``textrec ingest``
        from cron, another server, a build): their documents become visible to queries, and
        their removals leave them. The indexes are updated in place, or opened again when a
        build activated another DF snapshot. Returns whether anything changed. ``textrec
        serve`` calls it every few seconds."""
        with self._write_lock:
            self.store.check_unchanged()  # never follow a replaced store: restart for that
            done = self._indexes.catch_up(self.store, self.analyzer)
            if done is None:  # another snapshot: open the indexes again (its files, if current)
                self._use(StoreIndexes.open(self.store, self.analyzer, self.index_path))
                self.sources = {**self.sources, **self._content_sources()}
                done = True
            erased = self.readers.erasures
            events = self.readers.catch_up(self.store)
            if self.readers.erasures != erased:  # another process deleted events
                events = events or 1
            # A model trained before: `textrec events forget` wrote its file again without the
            # reader, and a new `textrec train` wrote a new one; either is read again here.
            models = self.load_models()
            return bool(done or events or models)

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

    def document(self, id: str) -> StoredDocument:
        """The stored document ``id`` (title, text, metadata); raises
        :class:`UnknownDocumentError` when no such document is stored."""
        return self._document(id)

    def documents(
        self, *, offset: int = 0, limit: int = 50, title_contains: str | None = None
    ) -> tuple[int, list[StoredDocument]]:
        """``(total, page)``: a page of stored documents in the order they were stored,
        optionally only those whose title contains ``title_contains``."""
        if offset < 0 or limit < 0:
            raise ValueError(f"offset and limit must be >= 0, got {offset} and {limit}")
        return self.store.list_documents(offset=offset, limit=limit, title_contains=title_contains)

    def _terms(self, doc: StoredDocument) -> dict[str, int]:
        return (
            doc.terms if doc.terms is not None else self.analyzer.term_counts(doc.text, doc.title)
        )

    def _query_code(self, doc_id: int | None, weights: Mapping[str, float]) -> int:
        if doc_id is not None:
            try:  # not `in` then `get`: another thread may remove it in between
                return self.index.get(doc_id)
            except KeyError:
                pass
        return simhash(weights)

    def _matches(
        self,
        counts: Mapping[str, int],
        k: int,
        exclude: int | None,
        mode: str,
        shown: set[str] | None = None,
        collapse: int | _Default | None = DEFAULT,
        filters: Filters = NO_FILTERS,
        itself: str | None = None,
    ) -> list[Match]:
        check_k(k)
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode not in self.sources:  # a factor model not trained or not readable
            mode = "hybrid"
        radius = self.collapse if isinstance(collapse, _Default) else collapse
        if radius is not None:
            _check_collapse(radius)
        weights = self.analyzer.weights(counts, self.snapshot)
        query = Query(weights, self._query_code(exclude, weights), exclude, counts)
        # Filters apply inside the top k (textrec.filters.select): the mode is asked for more
        # until k candidates pass them, or it has no more. A document removed by another
        # thread can still be in the index a search read (the store is written first); such
        # hits are dropped the same way, so a concurrent removal never shortens the result,
        # and copies collapsed away are replaced likewise.
        source = self.sources[mode]

        fusion: list[Mapping[int, dict[str, float]]] = []

        def rank(n: int) -> list[tuple[int, float]]:
            if isinstance(source, HybridSource):  # which sources put each result there
                fused = source.fuse(query, n, exclude)
                ids, scores = fused.ids, fused.scores
                fusion[:] = [fused.parts]  # the last search's, which holds every result
            else:
                ids, scores = source.rank(query, n, exclude)
            return list(zip(ids.tolist(), scores.tolist(), strict=True))

        keep = None
        if radius is not None:
            r = radius

            def keep(ranked: list[tuple[int, float]], n: int) -> list[tuple[int, float]]:
                return self._collapsed(ranked, [query.code] if query.code else [], r, n)

        # Without filters the candidates are read whole (they are the results); with filters,
        # only what the filters look at (kept in memory), and the few results whole at the end.
        reader = self._document_facts if filters.active() else self.store.get_documents
        gone: set[int] = set()

        def documents(ids: Sequence[int]) -> Mapping[int, Filterable]:
            found: Mapping[int, Filterable] = reader([i for i in ids if i not in gone])
            return found

        while True:
            chosen = select(
                rank,
                k,
                filters,
                documents,
                first=k if radius is None else k + k // 2 + 2,
                keep=keep,
                limit=max(len(self.index), len(self.related), len(self.readers)) + 1,
            )
            docs = {i: d for i, _, d in chosen if isinstance(d, StoredDocument)}
            docs.update(self.store.get_documents([i for i, _, _ in chosen if i not in docs]))
            # removed since the filters read them, or the query post itself edited meanwhile
            # (a new version under a new internal id): ask again without them
            missing = [
                i
                for i, _, _ in chosen
                if i not in docs or (itself is not None and docs[i].external_id == itself)
            ]
            if not missing:
                break
            gone.update(missing)
        out: list[Match] = []
        related = self.sources["related"]
        for doc_id, score, _ in chosen:
            doc = docs[doc_id]
            try:  # not `in` then `get`: another thread may remove it in between
                dist: int | None = hamming(query.code, self.index.get(doc_id))
            except KeyError:
                dist = None
            if mode in ("related", "hybrid") and isinstance(related, RelatedSource):
                shared = related.shared_terms(counts, self._terms(doc), shown=shown)
            else:
                doc_weights = self.analyzer.weights(self._terms(doc), self.snapshot)
                shared = _shared_terms(weights, doc_weights, shown=shown)
            sources = None
            if mode == "hybrid":
                part = fusion[0].get(doc_id, {}) if fusion else {}
                sources = [m for m in MODES if part.get(m, 0.0) > 0]
            readers = self.readers.readers(doc_id) if mode in ("readers", "hybrid") else None
            out.append(Match(doc.external_id, doc.title, dist, score, shared, sources, readers))
        return out

    def _document_facts(self, ids: Sequence[int]) -> dict[int, DocumentFacts]:
        """What the filters read of stored documents, kept for the most recently read
        :data:`_FACTS_CACHE` (an internal id names one version of a document for good: an
        edit makes a new one; a removed document that is still kept is caught when the
        results are read whole)."""
        cache = self._facts
        out: dict[int, DocumentFacts] = {}
        missing: list[int] = []
        for i in ids:
            fact = cache.get(i)
            if fact is None:
                missing.append(i)
            else:
                out[i] = fact
        if missing:
            found = self.store.document_facts(missing)
            out.update(found)
            with self._shown_lock:
                cache.update(found)
                while len(cache) > _FACTS_CACHE:
                    cache.pop(next(iter(cache)))
        return out

    def _collapsed(
        self, ranked: list[tuple[int, float]], seen: Sequence[int], radius: int, k: int
    ) -> list[tuple[int, float]]:
        """``ranked`` without the results whose fingerprint is within ``radius`` bits of one
        in ``seen`` (the query's, or the posts a reader read) or of a higher-ranked result
        kept; stops at ``k`` kept."""
        seen = list(seen)
        kept: list[tuple[int, float]] = []
        for item in ranked:
            if len(kept) == k:
                break
            try:
                other = self.index.get(item[0])
            except KeyError:  # removed meanwhile: nothing to compare, kept
                kept.append(item)
                continue
            if any(hamming(other, s) <= radius for s in seen):
                continue
            seen.append(other)
            kept.append(item)
        return kept

    def similar(
        self,
        id: str,
        k: int = 10,
        *,
        mode: str = "related",
        collapse: int | _Default | None = DEFAULT,
        filters: Filters = NO_FILTERS,
    ) -> list[Match]:
        """The ``k`` documents (1..:data:`MAX_K`) most related to stored document ``id``
        (itself excluded).

        ``mode="related"`` (the default) ranks by the pivoted BM25 score of
        :mod:`textrec.content.ranking` through the
        :class:`~textrec.content.related.RelatedIndex`, and ``score`` is that score (0 or
        more, comparable within one list); ``shared_terms`` are the terms that add most to it;
        ``mode="hamming"`` ranks by the Hamming distance of the 64-bit fingerprints alone,
        and ``score`` is SimHash's estimate ``cos(π·d/64)``; ``mode="readers"`` gives the
        documents most read by this one's readers (:mod:`textrec.collab.readers`), an empty
        list while it has no readers (:meth:`readers_of` says how many it has).

        ``collapse``: copies are left out. A result whose fingerprint is within this many
        bits of the query's, or of a higher-ranked result's, is a re-post or a copy, and the
        next result takes its place (the list still holds ``k`` when there are enough).
        By default the Recommender's :attr:`collapse` (:data:`DEFAULT_COLLAPSE` bits); None
        keeps every result.

        ``filters`` (:class:`~textrec.filters.Filters`): ids left out, metadata that must
        match, a publication date, a recency boost; applied inside the top ``k``: when ``k``
        documents pass them and the mode scores them, ``k`` come back. With a recency boost,
        ``score`` is the mode's score times the boost's weight.
        """
        check_k(k)
        doc = self._document(id)
        return self._matches(
            self._terms(doc), k, doc.id, mode, self._shown_terms(doc), collapse, filters, id
        )

    def _shown_terms(self, doc: StoredDocument) -> set[str] | None:
        """The terms of a stored document that may be shown as shared terms: Mecab tags its
        text again (a few milliseconds for a long post), so the answer is kept per internal
        id, which names one text for good (an edited document gets a new id)."""
        try:
            return self._shown[doc.id]
        except KeyError:
            pass
        shown = self.analyzer.shown_terms(doc.text, doc.title)
        with self._shown_lock:
            if len(self._shown) >= _SHOWN_CACHE:
                self._shown.pop(next(iter(self._shown)))
            self._shown[doc.id] = shown
        return shown

    def similar_text(
        self,
        text: str,
        k: int = 10,
        *,
        title: str | None = None,
        mode: str = "related",
        collapse: int | _Default | None = DEFAULT,
        filters: Filters = NO_FILTERS,
    ) -> list[Match]:
        """The ``k`` stored documents most related to a free text (modes, ``collapse`` and
        ``filters`` as in :meth:`similar`)."""
        check_k(k)
        shown = self.analyzer.shown_terms(text, title)
        counts = self.analyzer.term_counts(text, title)
        return self._matches(counts, k, None, mode, shown, collapse, filters)

    def near_duplicates(self, id: str, max_distance: int = 3) -> list[Match]:
        """Documents whose fingerprint is within ``max_distance`` bits of ``id``'s (itself
        excluded), nearest first, then by id.

        Documents with exactly the same text (SHA-256 of the text, whatever their titles)
        are always included, at distance 0: a re-post under a new title moves the title+text
        fingerprint by a few bits. Measured on petitions: 3 bits gives precision 0.87 and
        recall 0.76 against character 5-gram Jaccard >= 0.8; 6 bits, 0.81 and 0.90. A
        document without weighted terms (fingerprint 0, equal to every other such one) has no
        near-duplicates, and is none.
        """
        _check_radius(max_distance)
        doc = self._document(id)
        found = self._near(doc.id, max_distance)
        docs = self.store.get_documents(list(found))
        return [
            Match(docs[i].external_id, docs[i].title, d, estimated_cosine(d))
            for i, d in sorted(found.items(), key=lambda x: (x[1], x[0]))
            if i in docs
        ]

    def _near(self, doc_id: int, max_distance: int) -> dict[int, int]:
        """``{document id: distance}`` of ``doc_id``'s near-duplicates (identical texts: 0)."""
        try:
            code = self.index.get(doc_id)
        except KeyError:  # removed meanwhile, or without weighted terms (fingerprint 0)
            return {}
        ids, dists = self.index.within(code, max_distance)
        found = {i: d for i, d in zip(ids.tolist(), dists.tolist(), strict=True)}
        for twin in self.store.same_text([doc_id]).get(doc_id, []):
            if twin in self.index:
                found[twin] = 0
        found.pop(doc_id, None)
        return found

    def duplicate_pairs(self, max_distance: int = 3) -> list[tuple[str, str, int]]:
        """Every pair of stored documents that are near-duplicates (as in
        :meth:`near_duplicates`), as ``(id, id, distance)`` sorted by distance then ids.
        One radius query per document."""
        _check_radius(max_distance)
        found: list[tuple[int, int, int]] = []
        ids, codes = self.index.ids, self.index.codes
        twins = self.store.same_text(ids.tolist())
        for doc_id, code in zip(ids.tolist(), codes.tolist(), strict=True):
            near = {t: 0 for t in twins.get(doc_id, []) if t in self.index}
            others, dists = self.index.within(code, max_distance)
            for other, dist in zip(others.tolist(), dists.tolist(), strict=True):
                near.setdefault(other, dist)
            found.extend((dist, doc_id, other) for other, dist in near.items() if other > doc_id)
        docs = self.store.get_documents(sorted({i for _, a, b in found for i in (a, b)}))
        pairs = [
            (docs[a].external_id, docs[b].external_id, dist)
            for dist, a, b in found
            if a in docs and b in docs
        ]
        pairs.sort(key=lambda p: (p[2], p[0], p[1]))
        return pairs

    def recommend(
        self,
        user: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        exclude_read: bool = True,
        context_id: str | None = None,
        context_text: str | None = None,
        filters: Filters = NO_FILTERS,
        collapse: int | _Default | None = DEFAULT,
    ) -> Recommendations:
        """The ``k`` posts (1..:data:`MAX_K`) to recommend to reader ``user``, from their
        events as they are now (the next event counts at once).

        ``mode``: one of :data:`~textrec.personal.RECOMMEND_MODES` (:mod:`textrec.personal`):
        ``hybrid`` (the default) fuses content, readers-also-read and the ALS model, so a post
        nobody has read yet is reachable through content. ``exclude_read``: leave out what
        the reader has read. A reader with no events gets content-based posts when
        ``context_id`` (a stored post) or ``context_text`` (a free text) is given, else the
        popular posts; the answer's ``basis`` says which. ``filters``: only posts that pass
        (:class:`~textrec.filters.Filters`), applied inside the top ``k``. ``collapse``: as
        in :meth:`similar`, also against the posts the reader read.
        """
        check_k(k)
        if not isinstance(user, str) or not user:
            raise ValueError("user must be a non-empty string")
        radius = self.collapse if isinstance(collapse, _Default) else collapse
        if radius is not None:
            _check_collapse(radius)
        return recommend(
            self,
            user,
            k,
            mode=mode,
            exclude_read=exclude_read,
            context_id=context_id,
            context_text=context_text,
            filters=filters,
            collapse=radius,
        )

    def readers_of(self, id: str) -> int:
        """How many readers stored document ``id`` has (in the events)."""
        return self.readers.readers(self._document(id).id)

    # writes ----------------------------------------------------------------------------------

    def add_events(self, events: Iterable[object]) -> tuple[int, list[RecordError]]:
        """Check and store readers' events (``{"user", "item", "kind"?, "source"?, "time"?}``,
        see :mod:`textrec.collab.events`); the ``readers`` mode reflects them at once.
        Returns how many were stored and the refused ones (line = position, from 1)."""
        parsed = [parse_event(e, where="<add_events>", line=n) for n, e in enumerate(events, 1)]
        report = store_events(self.store, parsed, keep=True)
        self.readers.add((user, doc_id, kind) for _, user, doc_id, kind in report.stored_events)
        if report.stored:
            self._wrote()
        return report.stored, report.rejected

    # readers' privacy -------------------------------------------------------------------------

    def forget(self, user: str) -> int:
        """Erase reader ``user``: their events are deleted from the store (one transaction),
        and what was derived from them follows at once: the readers index drops their
        readings and makes the signatures of the documents they read again from the readers
        left. Returns how many events were deleted (0 for a reader never seen)."""
        with self._write_lock:
            erasure = self.store.erase_events(user=user)
            self._follow_erasure(erasure)
            self._forget_in_models(user, erasure)
        return erasure.count

    def expire_events(self, before: datetime) -> int:
        """Delete the events older than ``before`` (the retention setting), and follow as
        :meth:`forget` does: a reading with newer events left keeps their weight. Returns how
        many events were deleted."""
        with self._write_lock:
            erasure = self.store.erase_events(before=before)
            self._follow_erasure(erasure)
            if erasure.count:
                self._expire_in_models(before)
        return erasure.count

    def _follow_erasure(self, erasure: Erasure) -> None:
        if not erasure.count:
            return
        remaining = self.store.readings(erasure.pairs)
        self.readers.forget(erasure, remaining)
        self._wrote()

    def _forget_in_models(self, user: str, erasure: Erasure) -> None:
        """Erase ``user`` from the factor models in use, and write their files again, so that
        no restart brings them back: their row goes; ALS solves the vectors of the documents
        they read again from the readers left, exactly; BPR counts them as forgotten until
        ``textrec train`` (``check`` says so)."""
        if not self.models:
            return
        for name, model in self.models.items():
            if forget_reader(model, self.store, user, erasure):
                self._save_model(name, model)

    def _save_model(self, name: str, model: FactorModel) -> None:
        """Write a model changed here to its file, and remember the file as the one read."""
        if self.index_path is None:
            return
        path = model_path(self.index_path, name)
        model.save(path)
        st = os.stat(path)
        self._model_files[name] = (st.st_mtime_ns, st.st_size)

    def _expire_in_models(self, before: datetime) -> None:
        """Events before ``before`` were deleted (retention): the models trained with them are
        stale until ``textrec train`` (``check`` and ``stats`` say so: the store counts its
        erasures, and a model records the count it was trained at)."""

    def add(
        self,
        documents: Iterable[object],
        *,
        max_chars: int = DEFAULT_MAX_CHARS,
        warnings: list[RecordError] | None = None,
        update: bool = False,
    ) -> tuple[list[str], list[RecordError]]:
        """Validate, store and index documents (``{"id", "text", "title"?, ...}``).

        They are visible to the next query, with no rebuild. Returns the stored ids and the
        rejected records (line = position in ``documents``, starting at 1). A document
        without terms is stored all the same (it has no related posts); pass a list as
        ``warnings`` to have such documents appended to it. ``update``: a document whose id
        is stored replaces it (its terms, fingerprint and index entries too, at once; its
        readers' events stay with it) instead of being rejected.
        """
        records: list[Record | RecordError] = []
        for n, d in enumerate(documents, start=1):
            if not isinstance(d, Mapping):
                records.append(RecordError("<add>", n, "expected a JSON object"))
                continue
            records.append(parse_record_obj(d, line=n, max_chars=max_chars))

        def index_batch(ids: list[int], fps: list[int], terms: list[dict[str, int]]) -> None:
            # A document without weighted terms (fingerprint 0) is stored but in no index.
            kept = [i for i, fp in enumerate(fps) if fp != 0]
            ids, fps = [ids[i] for i in kept], [fps[i] for i in kept]
            if ids:
                for source in self.sources.values():
                    source.add(ids, fps, [terms[i] for i in kept])
            self._wrote()

        def unindex(pairs: list[tuple[int, int]]) -> None:
            old = [o for o, _ in pairs]
            if self.index_path is not None:  # where model files can be read again
                self._renames.extend(pairs)
            for name, source in self.sources.items():
                if isinstance(source, FactorSource):  # so do the models' vectors
                    if source.rename(pairs):
                        self._renamed_in_models.add(name)
                elif not isinstance(source, ReadersSource):  # readers follow the document
                    source.remove(old)
            for o, n in pairs:
                self.readers.rename(o, n)

        with self._write_lock:
            report = ingest(
                self.store,
                records,
                analyzer=self.analyzer,
                on_stored=index_batch,
                under_snapshot=(self.snapshot, self.scheme),
                update=update,
                on_replaced=unindex,
            )
        if warnings is not None:
            warnings.extend(report.warnings)
        return report.stored, report.rejected

    def update(
        self, id: str, document: Mapping[str, Any], *, max_chars: int = DEFAULT_MAX_CHARS
    ) -> list[RecordError]:
        """Replace stored document ``id`` with ``document`` (``{"text", "title"?, ...}``: its
        title, text and metadata, all replaced; an ``"id"`` in it must be ``id``), in one
        transaction: its terms, fingerprint and index entries are derived anew at once, and
        it keeps its id and its readers' events. Raises :class:`UnknownDocumentError` when
        ``id`` is not stored and ValueError (naming the field) for an invalid document.
        Returns the warnings (a document without terms)."""
        if not isinstance(document, Mapping):
            raise ValueError("a document is a JSON object")
        if "id" in document and document["id"] != id:
            raise ValueError(f"field 'id' is {document['id']!r}, but the document edited is {id!r}")
        self._document(id)
        warnings: list[RecordError] = []
        _, rejected = self.add(
            [{**document, "id": id}], max_chars=max_chars, warnings=warnings, update=True
        )
        if rejected:
            raise ValueError(rejected[0].reason)
        return warnings

    def _wrote(self) -> None:
        """After a write of this Recommender's reached its indexes: their stamp moves with
        it when no other writer came in between (else a later start-up catches them up)."""
        self._indexes.changed = True
        after = self.store.last_write()
        stamp = self._indexes.stamp
        if (
            after is not None
            and after.identity == stamp.identity
            and after.generation == stamp.generation + 1
        ):
            self._indexes.stamp = after

    @property
    def generation(self) -> int:
        """The store generation the indexes hold (every write up to it is in them)."""
        return self._indexes.stamp.generation

    @property
    def changed(self) -> bool:
        """Whether documents or events were added or removed since the index files were read
        or saved."""
        return self._indexes.changed or self.readers.changed

    def save(self) -> str | None:
        """Write the index files (beside a SQLite database, or ``index_path``): the two
        content indexes and the readers' (caught up with the store first), so that the next
        start-up reads them instead of rebuilding from the store. Returns the path."""
        if self.index_path is None:
            return None
        with self._save_lock:  # one save at a time: files of one state each
            with self._write_lock:  # what to write; writes wait only for this part
                indexes = self._indexes
                files = indexes.frozen()
                indexes.changed = False
                self.readers.catch_up(self.store)
                for name in sorted(self._renamed_in_models):  # edited posts keep their vectors
                    model = self.models.get(name)
                    if model is not None:
                        self._save_model(name, model)
                self._renamed_in_models.clear()
                self._renames.clear()
            try:
                files.save(self.index_path)
            except BaseException:
                indexes.changed = True  # the next save tries again
                raise
            indexes.related.adopt_compacted(files.related)
            self.readers.save(readers_path(self.index_path))
        return self.index_path

    def remove(self, id: str) -> None:
        """Delete a stored document from the store and the index."""
        with self._write_lock:
            doc = self._document(id)
            self.store.remove_document(doc.id)
            for source in self.sources.values():
                source.remove([doc.id])
            self._wrote()


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

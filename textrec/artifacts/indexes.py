"""The two index files beside a SQLite database, under the lifecycle of :mod:`textrec.artifacts`.

- ``<database>.index``: the :class:`~textrec.content.hamming.HammingIndex` of the current
  snapshot's non-zero fingerprints (a document without weighted terms has fingerprint 0 and
  is in neither index: it has no related posts and no near-duplicates);
- ``<database>.index.related``: the :class:`~textrec.content.related.RelatedIndex` of the
  documents' TF-IDF weights.

:class:`StoreIndexes` opens both (from their files when those match the store or can be
caught up with it, else from the store) and saves both with the stamp they were made at.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from textrec.artifacts import open_derived
from textrec.content.analyzer import Analyzer
from textrec.content.hamming import HammingIndex
from textrec.content.ranking import DEFAULT_RANKING, Ranking
from textrec.content.related import DEFAULT_TOP_TERMS, RelatedIndex
from textrec.content.tfidf import DFSnapshot
from textrec.sources import RelatedSource, related_index_for
from textrec.store.sql import NotBuiltError, Store, StoreStamp

__all__ = [
    "StoreIndexes",
    "build_related_index",
    "default_index_path",
    "index_from_store",
    "load_hamming",
    "related_path",
]

log = logging.getLogger(__name__)


def default_index_path(store: Store) -> str | None:
    """``<database file>.index`` beside a SQLite database file, else None."""
    path = store.sqlite_path
    return f"{path}.index" if path else None


def related_path(index_path: str) -> str:
    """The related-posts index file that goes with an index file."""
    return f"{index_path}.related"


def index_from_store(store: Store, snapshot_id: str, scheme: str) -> HammingIndex:
    """The Hamming index of a snapshot's stored fingerprints."""
    ids, codes, stored_scheme = store.fingerprints(snapshot_id, indexed=True)
    index = HammingIndex(scheme=stored_scheme or scheme, snapshot_id=snapshot_id)
    index.add(ids, codes)
    return index


def _terms_of(
    store: Store, doc_ids: list[int], analyzer: Analyzer
) -> tuple[list[int], list[dict[str, int]]]:
    """The term counts of stored documents (those still stored)."""
    docs = store.get_documents(doc_ids)
    kept = [i for i in doc_ids if i in docs]
    terms = []
    for doc_id in kept:
        doc = docs[doc_id]
        terms.append(
            doc.terms if doc.terms is not None else analyzer.term_counts(doc.text, doc.title)
        )
    return kept, terms


def build_related_index(
    store: Store,
    snapshot: DFSnapshot,
    analyzer: Analyzer,
    *,
    ranking: Ranking | None = None,
    top_terms: int = DEFAULT_TOP_TERMS,
    batch_size: int = 20_000,
) -> RelatedIndex:
    """A :class:`~textrec.content.related.RelatedIndex` of every stored document under
    ``snapshot``, from the term counts stored with each document: one pass to fit the
    ranking's length pivot (unless ``ranking`` is already fitted), one to index, keeping
    ``top_terms`` terms of each document. Documents without weighted terms (fingerprint 0)
    are left out, as from the Hamming index."""

    def each() -> Iterator[tuple[int, dict[str, int]]]:
        for doc_id, terms, title, text in store.iter_terms():
            if terms is None:
                terms = analyzer.term_counts(text or "", title)
            if any(w > 0 for w in analyzer.weights(terms, snapshot).values()):
                yield doc_id, terms

    if ranking is not None and ranking.is_fitted:
        related = RelatedIndex(
            snapshot.df.keys(),
            top_terms=top_terms,
            max_impact=ranking.max_impact(snapshot),
            ranking=ranking.params(),
        )
    else:
        related = related_index_for(
            snapshot,
            (sum(t.values()) for _, t in each()),
            ranking or DEFAULT_RANKING,
            top_terms=top_terms,
        )
    source = RelatedSource(related, snapshot, analyzer.weighting)
    ids: list[int] = []
    batch: list[dict[str, int]] = []
    for doc_id, terms in each():
        ids.append(doc_id)
        batch.append(terms)
        if len(ids) >= batch_size:
            source.add(ids, [], batch)
            ids, batch = [], []
    source.add(ids, [], batch)
    related.compact()
    return related


def _read_hamming(path: str) -> tuple[HammingIndex, str, str, str]:
    index = HammingIndex.load(path)
    return index, index.scheme, index.snapshot_id, index.provenance


def _read_related(path: str) -> tuple[RelatedIndex, str, str, str]:
    related, header = RelatedIndex.load(path)
    if not Ranking.from_params(related.ranking, where=path).same_scoring(DEFAULT_RANKING):
        raise ValueError(f"{path}: made under other ranking parameters ({related.ranking})")
    return (
        related,
        str(header.get("scheme")),
        related_key(str(header.get("snapshot_id")), related.top_terms),
        str(header.get("provenance") or ""),
    )


@dataclass
class _StoreAt:
    """The store's stamp, read first, then its current snapshot; the ids of its fingerprints
    under that snapshot are read when first needed."""

    store: Store
    stamp: StoreStamp
    snapshot: DFSnapshot
    scheme: str
    top_terms: int  # the related-posts index's terms a document (the store's setting)
    stored: npt.NDArray[np.int64] | None = None

    @classmethod
    def read(cls, store: Store) -> _StoreAt:
        stamp = store.stamp()
        current = store.current_snapshot()
        if current is None:
            raise NotBuiltError(store.url)
        return cls(store, stamp, *current, related_terms(store))

    def related_key(self) -> str:
        """What a related-posts index file must have been made under besides the scheme: the
        DF snapshot and the terms a document."""
        return related_key(self.snapshot.id, self.top_terms)

    def stored_ids(self) -> npt.NDArray[np.int64]:
        if self.stored is None:
            self.stored = self.store.fingerprinted_ids(self.snapshot.id, indexed=True)
        return self.stored


def related_terms(store: Store) -> int:
    """The terms of each document the store's related-posts index keeps."""
    return store.related_terms() or DEFAULT_TOP_TERMS


def related_key(snapshot_id: str, top_terms: int) -> str:
    """A related-posts index's DF snapshot, and its terms a document unless the default."""
    return snapshot_id if top_terms == DEFAULT_TOP_TERMS else f"{snapshot_id}, {top_terms} terms"


def _catch_up_hamming(at: _StoreAt, index: HammingIndex, *, always: bool = False) -> bool:
    """Apply the store's appends and removals since ``index`` was made; False when
    rebuilding is cheaper (unless ``always``), or the result does not match the store."""
    target = at.stored_ids()
    added = np.setdiff1d(target, index.ids, assume_unique=True)
    if len(added) > len(target) // 2 and not always:  # rebuilding costs no more then
        return False
    index.remove(np.setdiff1d(index.ids, target, assume_unique=True))
    ids, codes, _ = at.store.fingerprints(at.snapshot.id, only=added.tolist())
    index.add(ids, codes)
    return bool(np.array_equal(index.ids, target))


def _catch_up_related(
    at: _StoreAt, analyzer: Analyzer, related: RelatedIndex, *, always: bool = False
) -> bool:
    """As :func:`_catch_up_hamming`, for the related-posts index (which only appends in id
    order: False when the store's new ids are not all above its last)."""
    target = at.stored_ids()
    ids, dead = related.document_ids()
    added = np.setdiff1d(target, ids, assume_unique=True)
    if len(added) and len(ids) and added[0] <= ids[-1]:
        return False  # fingerprinted out of id order: the index only appends
    if len(added) > len(target) // 2 and not always:
        return False
    related.remove(np.setdiff1d(ids[~dead], target, assume_unique=True).tolist())
    source = RelatedSource(related, at.snapshot, analyzer.weighting)
    for start in range(0, len(added), 5000):
        kept, terms = _terms_of(at.store, added[start : start + 5000].tolist(), analyzer)
        source.add(kept, [], terms)
    live_ids, live_dead = related.document_ids()
    return bool(np.array_equal(live_ids[~live_dead], target))


def _open_hamming(at: _StoreAt, index_path: str | None) -> tuple[HammingIndex, bool]:
    """The Hamming index from its file or the store: ``(index, whether the file matched)``."""
    store, snapshot_id = at.store, at.snapshot.id
    return open_derived(
        index_path,
        what="index file",
        read=_read_hamming,
        expect=(at.scheme, snapshot_id),
        stamp=at.stamp,
        catch_up=lambda index: _catch_up_hamming(at, index),
        build=lambda: index_from_store(store, snapshot_id, at.scheme),
    )


def _open_related(
    at: _StoreAt, analyzer: Analyzer, index_path: str | None
) -> tuple[RelatedIndex, bool]:
    """The related-posts index from its file or the store: ``(index, whether the file
    matched)``."""
    store, snapshot = at.store, at.snapshot

    return open_derived(
        related_path(index_path) if index_path is not None else None,
        what="related-posts index file",
        read=_read_related,
        expect=(at.scheme, at.related_key()),
        stamp=at.stamp,
        catch_up=lambda related: _catch_up_related(at, analyzer, related),
        build=lambda: build_related_index(store, snapshot, analyzer, top_terms=at.top_terms),
    )


def load_hamming(store: Store, index_path: str | None) -> HammingIndex:
    """Only the Hamming index of the current snapshot (from its file when it serves)."""
    return _open_hamming(_StoreAt.read(store), index_path)[0]


@dataclass
class StoreIndexes:
    """Both indexes of a store's current snapshot, and the stamp they match.

    ``stamp`` was read before any of their data, so the indexes hold at least every write up
    to it; ``changed`` says whether they differ from their files (caught up, rebuilt, or
    written to since).
    """

    snapshot: DFSnapshot
    scheme: str
    stamp: StoreStamp
    hamming: HammingIndex
    related: RelatedIndex
    changed: bool

    @classmethod
    def open(cls, store: Store, analyzer: Analyzer, index_path: str | None) -> StoreIndexes:
        """Open both indexes (see the module docstring); raises
        :class:`~textrec.store.sql.NotBuiltError` before the first build."""
        at = _StoreAt.read(store)
        hamming, same = _open_hamming(at, index_path)
        if not same:  # the Hamming index was just made to match the store's ids
            at.stored = hamming.ids
        related, same_related = _open_related(at, analyzer, index_path)
        return cls(at.snapshot, at.scheme, at.stamp, hamming, related, not (same and same_related))

    def catch_up(self, store: Store, analyzer: Analyzer) -> bool | None:
        """Apply the writes other processes made to the store since :attr:`stamp`, in place
        (queries may run meanwhile). Returns True when something was applied, False when
        the indexes were current, None when they cannot be caught up (the store has another
        DF snapshot, or ids out of order): then open them again."""
        stamp = store.stamp()
        if stamp == self.stamp:
            return False
        if store.current_snapshot_id() != self.snapshot.id:
            return None
        at = _StoreAt(store, stamp, self.snapshot, self.scheme, related_terms(store))
        if at.top_terms != self.related.top_terms:  # a build set another number of terms
            return None
        if not (
            _catch_up_hamming(at, self.hamming, always=True)
            and _catch_up_related(at, analyzer, self.related, always=True)
        ):
            return None
        self.stamp = stamp
        self.changed = True
        return True

    def frozen(self) -> StoreIndexes:
        """Both indexes as they are now, sharing their arrays (:meth:`HammingIndex.frozen`,
        :meth:`RelatedIndex.frozen`): a writer takes this under its lock, then saves it
        after letting go, so that writes need not wait for the files."""
        return StoreIndexes(
            self.snapshot,
            self.scheme,
            self.stamp,
            self.hamming.frozen(),
            self.related.frozen(),
            self.changed,
        )

    def save(self, index_path: str) -> None:
        """Write both files (each atomically), recording the stamp they match."""
        self.hamming.provenance = self.stamp.label
        self.hamming.save(index_path)
        self.related.save(
            related_path(index_path),
            scheme=self.scheme,
            snapshot_id=self.snapshot.id,
            provenance=self.stamp.label,
        )
        self.changed = False

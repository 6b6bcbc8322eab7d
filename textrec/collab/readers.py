"""“Readers also read”: item-to-item collaborative filtering with MinHash, in real time.

Each document's set of readers becomes a MinHash signature of :data:`NUM_PERM` values
(datasketch, scheme :data:`READERS_SCHEME`: pinned version, hash function, seed and
permutation scheme, so the same events give the same signatures everywhere). As in the Deview
2015 talk "putting an elephant in a fridge", every signature value goes into a secondary index:
for permutation ``i`` and value ``v``, the set of documents whose signature holds ``v`` at
``i`` (the talk's Redis key ``sig<i>-<v>``). The documents sharing the most signature values
with a document are its candidates: the share of values two signatures agree on estimates the
Jaccard similarity of their readers.

The candidates are then re-ranked by exact co-reading (:data:`RERANKS`): ``minhash`` keeps the
estimated Jaccard (the talk's ranking), ``cosine`` the cosine of the two documents' reader
vectors, ``bm25`` the dot product of BM25-weighted reader vectors (as implicit's
``BM25Recommender`` weighs its item-item matrix: readers of many documents count less, and so
do documents with many readers). The default was chosen by measurement on MovieLens-100K
(``bench/events_ml100k.py``; figures in ``bench/README.md``).

Every event updates the readers, the signature and the secondary index at once: the next query
reflects it, with no rebuild. The index is derived from the store's events table
(:meth:`ReadersIndex.from_store`), and saved beside the other index files as
``<index file>.readers`` (:meth:`ReadersIndex.save`), so that a start-up reads it and applies
only the events stored since (:func:`open_readers`) instead of every event again.

The file follows the rules of :mod:`textrec.artifacts`: a header (format, version, the
signature scheme, the kinds' weights, and the store stamp read before the data), then NumPy
arrays read without pickle: the readers interned to numbers, each document's readers and
weights (CSR), the signatures as 32-bit values, the last event applied and the store's count
of erasures. A file of another store, of other weights, or that cannot be read is rebuilt
from the events (the last with a warning); a file behind the store is caught up: the events
after its last one are applied, documents removed since are dropped and documents edited
since (a new id, their events moved along) read again. Events deleted since (``textrec events
forget``, retention) are not new events: a file that followed another count of erasures is
rebuilt.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import IO, Any

import numpy as np
import numpy.typing as npt
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32

from textrec.artifacts import open_derived
from textrec.artifacts.atomic import atomic_write
from textrec.collab.buckets import Buckets, MemoryBuckets
from textrec.collab.events import KIND_WEIGHTS
from textrec.store.sql import Erasure, Store, StoreStamp

__all__ = [
    "NUM_PERM",
    "READERS_FORMAT",
    "READERS_SCHEME",
    "RERANKS",
    "ReadersIndex",
    "open_readers",
    "readers_path",
]

log = logging.getLogger(__name__)

NUM_PERM = 128
SEED = 1
READERS_SCHEME = f"minhash{NUM_PERM}-affine32-sha1-seed{SEED}/datasketch-2.0"
"""What makes the signatures: datasketch 2.0's ``affine32`` permutations of SHA-1 (32-bit) of
the UTF-8 user id, 128 permutations drawn with seed 1."""

RERANKS = ("bm25", "cosine", "minhash")
"""How candidates are ranked; the first is the default."""

RECENT_SECONDS = 60.0
"""How old a readers-also-read list may be when it serves a reader's own list
(:meth:`ReadersIndex.similar_recent`)."""
_RECENT_DOCS = 50_000  # lists kept at most
_RECENT_LIST = 200  # results kept in each

_BM25_K1 = 1.2  # implicit's BM25Recommender defaults
_BM25_B = 0.75
_CANDIDATES = 300
# A reader of (nearly) every document says little, but not nothing: co-read documents still
# rank above unread ones in a small log.
_IDF_FLOOR = 1e-3
CRAWLER_SHARE = 0.5
CRAWLER_MIN_DOCUMENTS = 100
"""A reader who read at least :data:`CRAWLER_SHARE` of the documents with readers, and at
least :data:`CRAWLER_MIN_DOCUMENTS` of them, is a crawler or an attacker, not a reader: their
readings join no two documents in the re-ranked lists. Measured on the spam benchmark
(``bench/events_spam.py``): one fake reader who reads every article otherwise puts an unread
target into a third of the lists; no real reader of MovieLens-100K (44 % at most) comes near."""

READERS_FORMAT = ("textrec-readers", 1)
"""The readers file's format name and version."""
_ARRAYS = ("users", "doc_ids", "indptr", "indices", "weight_codes", "weight_values", "signatures")


def readers_path(index_path: str) -> str:
    """The readers' file that goes with an index file: ``<index file>.readers``."""
    return f"{index_path}.readers"


def read_readers_file(path: str) -> tuple[dict[str, Any], dict[str, npt.NDArray[Any]]]:
    """The header and arrays of a readers file (never unpickled); raises OSError, or
    ValueError for a file that is not one, truncated or garbled."""
    try:
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            header = json.loads(bytes(npz["header"]).decode("utf-8"))
            if (
                not isinstance(header, dict)
                or (
                    header.get("format"),
                    header.get("version"),
                )
                != READERS_FORMAT
            ):
                raise ValueError(f"not a {READERS_FORMAT[0]} file of version {READERS_FORMAT[1]}")
            return header, {name: npz[name] for name in _ARRAYS}
    except OSError:
        raise
    except Exception as exc:  # a truncated or garbled file: zip, JSON and NumPy errors
        raise ValueError(f"readers file {path} cannot be read ({exc})") from exc


def weights_label(kind_weights: Mapping[str, float]) -> str:
    """The kinds' weights as a file records them (a file of other weights is rebuilt)."""
    return json.dumps(sorted(kind_weights.items()))


class _Unindexed:
    """No secondary index yet: a restored or rebuilt index fills its buckets in bulk once
    its signatures are final (:meth:`ReadersIndex.attach`)."""

    def move(self, doc_id: int, changes: Sequence[tuple[int, int | None, int | None]]) -> None:
        pass

    def shared(self, signature: Sequence[int]) -> Counter[int]:
        return Counter()

    def clear(self) -> None:
        pass

    def load(self, doc_ids: npt.NDArray[np.int64], signatures: npt.NDArray[np.uint32]) -> None:
        pass


class ReadersIndex:
    """Readers, MinHash signatures and their secondary index, for every document with events.

    ``add`` takes ``(user, document id, kind)`` events; ``similar`` answers a document's
    readers-also-read list. Safe to share between threads (writes take a lock).
    """

    def __init__(
        self,
        *,
        rerank: str = RERANKS[0],
        kind_weights: Mapping[str, float] = KIND_WEIGHTS,
        buckets: Buckets | None = None,
    ) -> None:
        if rerank not in RERANKS:
            raise ValueError(f"rerank must be one of {', '.join(RERANKS)}, got {rerank!r}")
        self.rerank = rerank
        self.kind_weights = dict(kind_weights)
        self._template = MinHash(NUM_PERM, seed=SEED, hashfunc=sha1_hash32, scheme="affine32")
        self._readers: dict[int, dict[str, float]] = {}
        self._read_by: dict[str, set[int]] = {}
        self._signatures: dict[int, npt.NDArray[np.uint64]] = {}
        self._buckets: Buckets = buckets if buckets is not None else MemoryBuckets(NUM_PERM)
        self._buckets.clear()  # the index is derived from the events: rebuilt from them
        self._pairs = 0
        self._popular: tuple[int, npt.NDArray[np.int64], npt.NDArray[np.float64]] | None = None
        self._recent: dict[int, tuple[float, int, npt.NDArray[np.int64], npt.NDArray[np.float64]]]
        self._recent = {}
        self._lock = threading.Lock()
        self.last_event = 0
        """The id of the last stored event applied (events arrive in id order)."""
        self.erasures = 0
        """The store's count of erasures of events this index has followed."""
        self.stamp: StoreStamp | None = None
        """The store's stamp read before the last catch-up: every write up to it is here."""
        self._span: tuple[int, int] | None = None  # the store's documents then (count, top id)
        self.changed = False
        """Whether the index differs from its file (written to, caught up or rebuilt)."""

    def __len__(self) -> int:
        return len(self._readers)

    def __repr__(self) -> str:
        return f"ReadersIndex<{len(self):,} documents, {self._pairs:,} readings, {self.rerank}>"

    @classmethod
    def from_store(
        cls,
        store: Store,
        *,
        buckets: Buckets | None = None,
        kind_weights: Mapping[str, float] = KIND_WEIGHTS,
    ) -> ReadersIndex:
        """The index of every event stored (read in id order, applied in bulk; the buckets
        filled once at the end)."""
        index = cls(buckets=_Unindexed(), kind_weights=kind_weights)
        index.erasures = store.erasures()
        index.catch_up(store)
        index.attach(buckets if buckets is not None else MemoryBuckets(NUM_PERM))
        index.changed = True
        return index

    def attach(self, buckets: Buckets) -> None:
        """Use ``buckets`` as the secondary index, filled from the signatures now."""
        with self._lock:
            ids = np.fromiter(self._signatures.keys(), np.int64, len(self._signatures))
            sigs = np.zeros((len(ids), NUM_PERM), np.uint32)
            for row, sig in enumerate(self._signatures.values()):
                sigs[row] = sig
            buckets.load(ids, sigs)
            self._buckets = buckets

    def catch_up(self, store: Store) -> int:
        """Follow the store's writes since :attr:`stamp`; returns how many events and
        documents changed (0 when the store has not changed).

        The events stored after :attr:`last_event` are applied (event ids only grow), the
        documents removed since are dropped and those edited since (a new id: their events
        moved along) read again. A deletion of events is not a new event: when the store's
        count of erasures (:meth:`~textrec.store.sql.Store.erasures`) is not the one this
        index last followed, another process deleted events (``textrec events forget``, an
        expiry), and the index is built again from the events that remain."""
        stamp = store.stamp()  # read before the data: the index holds at least up to it
        if stamp == self.stamp:
            return 0
        erased = store.erasures()
        span = store.document_span()
        with self._lock:
            if erased != self.erasures:
                self._reset()
                self.erasures = erased
            done = self._reconcile(store, span) + self._catch_up(store)
            self.stamp = stamp
            self.changed = self.changed or bool(done)
            return done

    def _reconcile(self, store: Store, span: tuple[int, int]) -> int:
        """Drop the documents no longer stored, and read again those edited since the span
        of documents last seen (their new ids are above its top id)."""
        seen, self._span = self._span, span
        if seen is None or seen == span or not self._readers:
            return 0
        stored = store.document_ids()
        mine = np.fromiter(self._readers.keys(), np.int64, len(self._readers))
        gone = np.setdiff1d(mine, stored).tolist()
        self._remove(gone)
        moved = [
            d
            for d in store.documents_read_before(above=seen[1], through_event=self.last_event)
            if d not in self._readers
        ]
        if moved:
            pending: dict[int, list[str]] = {}
            readings = store.document_readings(moved)
            events = [
                (user, d, kind)
                for d in moved
                for user, kinds in readings.get(d, {}).items()
                for kind in kinds
            ]
            self._add_readers(events, pending)
            for doc_id, users in pending.items():
                self._update_signature(doc_id, users)
        return len(gone) + len(moved)

    def _catch_up(self, store: Store) -> int:
        done = 0
        pending: dict[int, list[str]] = {}
        for batch in store.iter_events(after=self.last_event):
            self._add_readers(((e.user, e.document_id, e.kind) for e in batch), pending)
            self.last_event = batch[-1].id
            done += len(batch)
        for doc_id, users in pending.items():  # each signature once, from all its readers
            self._update_signature(doc_id, users)
        return done

    def _reset(self) -> None:
        self._readers.clear()
        self._read_by.clear()
        self._signatures.clear()
        self._buckets.clear()
        self._pairs = 0
        self.last_event = 0
        self._span = None
        self.changed = True

    def forget(self, erasure: Erasure, remaining: Mapping[tuple[str, int], Iterable[str]]) -> None:
        """Follow a deletion of events (:meth:`~textrec.store.sql.Store.erase_events`): each
        (reader, document) pair that lost events keeps the weight of the events it has left
        in ``remaining`` (its kinds), or is gone; the signature of every document touched is
        made again from the readers it has left (a MinHash cannot take a reader away), and
        the buckets follow. Another process's deletion in between is caught by the count of
        erasures: the next :meth:`catch_up` rebuilds the index."""
        weights = self.kind_weights
        with self._lock:
            self._recent.clear()  # lists that may name what changed
            touched: set[int] = set()
            for user, doc_id in erasure.pairs:
                readers = self._readers.get(doc_id)
                if readers is None or user not in readers:
                    continue
                kinds = list(remaining.get((user, doc_id), ()))
                if kinds:
                    readers[user] = max(weights.get(kind, 1.0) for kind in kinds)
                    continue
                del readers[user]
                self._pairs -= 1
                self._popular = None
                items = self._read_by.get(user)
                if items is not None:
                    items.discard(doc_id)
                    if not items:
                        del self._read_by[user]
                touched.add(doc_id)
            for doc_id in sorted(touched):
                self._resign(doc_id)
            self.changed = True
            if erasure.serial == self.erasures + 1:  # no other process erased in between
                self.erasures = erasure.serial

    def _resign(self, doc_id: int) -> None:
        """Make a document's signature again from its readers (none left: it goes)."""
        old = self._signatures.pop(doc_id, None)
        readers = self._readers.get(doc_id)
        if not readers:
            self._readers.pop(doc_id, None)
            if old is not None:
                self._buckets.move(doc_id, [(i, int(v), None) for i, v in enumerate(old.tolist())])
            return
        mh = MinHash(
            NUM_PERM,
            seed=SEED,
            hashfunc=sha1_hash32,
            scheme="affine32",
            permutations=self._template.permutations,
        )
        mh.update_batch([u.encode("utf-8") for u in readers])
        new = mh.hashvalues.astype(np.uint64)
        changes: list[tuple[int, int | None, int | None]]
        if old is None:
            changes = [(i, None, int(v)) for i, v in enumerate(new.tolist())]
        else:
            changes = [(i, int(old[i]), int(new[i])) for i in np.flatnonzero(new != old).tolist()]
        self._buckets.move(doc_id, changes)
        self._signatures[doc_id] = new

    def read_by(self, user: str) -> set[int]:
        """The documents ``user`` has read (a copy)."""
        with self._lock:
            return set(self._read_by.get(user, ()))

    def readers(self, doc_id: int) -> int:
        """How many readers a document has."""
        return len(self._readers.get(doc_id, ()))

    def have_readers(self, doc_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which of these documents have readers (a mask)."""
        readers = self._readers
        return np.fromiter((d in readers for d in doc_ids.tolist()), bool, len(doc_ids))

    # writes -------------------------------------------------------------------------------

    def add(self, events: Iterable[tuple[str, int, str]]) -> None:
        """Apply events ``(user, document id, kind)``: readers, signatures and buckets."""
        new_readers: dict[int, list[str]] = {}
        with self._lock:
            self._add_readers(events, new_readers)
            for doc_id, users in new_readers.items():
                self._update_signature(doc_id, users)
            self.changed = self.changed or bool(new_readers)

    def _add_readers(
        self, events: Iterable[tuple[str, int, str]], new_readers: dict[int, list[str]]
    ) -> None:
        """Record readers and weights; collect each document's new readers."""
        weights = self.kind_weights
        for user, doc_id, kind in events:
            weight = weights.get(kind, 1.0)
            readers = self._readers.setdefault(doc_id, {})
            if user not in readers:
                self._pairs += 1
                self._popular = None
                new_readers.setdefault(doc_id, []).append(user)
                self._read_by.setdefault(user, set()).add(doc_id)
            if weight > readers.get(user, 0.0):
                readers[user] = weight

    def _update_signature(self, doc_id: int, users: list[str]) -> None:
        old = self._signatures.get(doc_id)
        mh = MinHash(
            NUM_PERM,
            seed=SEED,
            hashfunc=sha1_hash32,
            scheme="affine32",
            hashvalues=old,
            permutations=self._template.permutations,
        )
        mh.update_batch([u.encode("utf-8") for u in users])
        new = mh.hashvalues.astype(np.uint64)
        changed = range(NUM_PERM) if old is None else np.flatnonzero(new != old).tolist()
        self._buckets.move(
            doc_id, [(i, None if old is None else int(old[i]), int(new[i])) for i in changed]
        )
        self._signatures[doc_id] = new

    def remove(self, doc_ids: Iterable[int]) -> None:
        """Forget documents (removed from the store): their readers and signatures."""
        with self._lock:
            self._remove(doc_ids)

    def _remove(self, doc_ids: Iterable[int]) -> None:
        self._recent.clear()  # lists that may name what changed
        for doc_id in doc_ids:
            readers = self._readers.pop(doc_id, None)
            if readers is None:
                continue
            self.changed = True
            self._pairs -= len(readers)
            self._popular = None
            for user in readers:
                items = self._read_by.get(user)
                if items is not None:
                    items.discard(doc_id)
                    if not items:
                        del self._read_by[user]
            sig = self._signatures.pop(doc_id)
            self._buckets.move(doc_id, [(i, int(v), None) for i, v in enumerate(sig.tolist())])

    def rename(self, old: int, new: int) -> None:
        """Move a document's readers and signature to a new id (an edited document, which
        keeps its readers)."""
        with self._lock:
            self._recent.clear()  # lists that may name what changed
            readers = self._readers.pop(old, None)
            if readers is None:
                return
            self._readers[new] = readers
            self._popular = None
            self.changed = True
            for user in readers:
                items = self._read_by.setdefault(user, set())
                items.discard(old)
                items.add(new)
            sig = self._signatures.pop(old)
            values = [int(v) for v in sig.tolist()]
            self._buckets.move(old, [(i, v, None) for i, v in enumerate(values)])
            self._buckets.move(new, [(i, None, v) for i, v in enumerate(values)])
            self._signatures[new] = sig

    # the file -----------------------------------------------------------------------------

    def save(self, path: str) -> None:
        """Write the index to ``path`` atomically (see the module docstring), recording the
        stamp it matches (:meth:`catch_up` first, to save what the store holds now)."""
        if self.stamp is None:
            raise ValueError("a readers index is saved after a catch-up with its store")
        with self._lock:
            header = {
                "format": READERS_FORMAT[0],
                "version": READERS_FORMAT[1],
                "scheme": READERS_SCHEME,
                "weights": weights_label(self.kind_weights),
                "provenance": self.stamp.label,
                "last_event": self.last_event,
                "erasures": self.erasures,
                "span": list(self._span) if self._span is not None else None,
            }
            arrays = self._arrays()
            self.changed = False
        blob = json.dumps(header).encode("utf-8")

        arrays["header"] = np.frombuffer(blob, np.uint8)
        savez: Any = np.savez  # (its allow_pickle keyword defeats the type of **arrays)

        def write(f: IO[bytes]) -> None:
            savez(f, **arrays)

        try:
            atomic_write(path, write)
        except BaseException:
            self.changed = True
            raise

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        users: dict[str, int] = {}
        doc_ids = sorted(self._readers)
        indptr = np.zeros(len(doc_ids) + 1, np.int64)
        names: list[int] = []
        weights: list[float] = []
        for row, doc_id in enumerate(doc_ids):
            readers = self._readers[doc_id]
            names.extend([users.setdefault(u, len(users)) for u in readers])
            weights.extend(readers.values())
            indptr[row + 1] = len(names)
        values, codes = np.unique(np.asarray(weights, np.float64), return_inverse=True)
        sigs = np.zeros((len(doc_ids), NUM_PERM), np.uint32)
        for row, doc_id in enumerate(doc_ids):
            sigs[row] = self._signatures[doc_id]
        return {
            "users": np.frombuffer("\x00".join(users).encode("utf-8"), np.uint8),
            "doc_ids": np.asarray(doc_ids, np.int64),
            "indptr": indptr,
            "indices": np.asarray(names, np.int32),
            "weight_codes": codes.astype(np.uint16),
            "weight_values": values,
            "signatures": sigs,
        }

    @classmethod
    def load(
        cls, path: str, *, kind_weights: Mapping[str, float] = KIND_WEIGHTS
    ) -> tuple[ReadersIndex, dict[str, Any]]:
        """The index saved at ``path`` (its buckets not filled: :meth:`attach`) and the
        file's header. Raises ValueError for a file that cannot be read, or holds other
        signatures or weights."""
        header, arrays = read_readers_file(path)
        index = cls(buckets=_Unindexed(), kind_weights=kind_weights)
        try:
            index._restore(header, arrays)
        except (KeyError, TypeError, IndexError, ValueError) as exc:
            raise ValueError(f"{path}: inconsistent readers file ({exc})") from exc
        return index, header

    def _restore(self, header: Mapping[str, Any], arrays: Mapping[str, npt.NDArray[Any]]) -> None:
        doc_ids = arrays["doc_ids"].astype(np.int64)
        indptr = arrays["indptr"].astype(np.int64)
        indices = arrays["indices"].astype(np.int64)
        sigs = arrays["signatures"]
        n, nnz = len(doc_ids), len(indices)
        raw = bytes(arrays["users"]).decode("utf-8")
        users = np.array(raw.split("\x00") if raw or nnz else [], dtype=object)
        if (
            len(indptr) != n + 1
            or (n and (indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) <= 0)))
            or sigs.shape != (n, NUM_PERM)
            or sigs.dtype != np.uint32
            or len(arrays["weight_codes"]) != nnz
            or (nnz and (indices.min() < 0 or indices.max() >= len(users)))
        ):
            raise ValueError("its arrays do not agree in shape")
        names = users[indices].tolist()
        weights = arrays["weight_values"].astype(np.float64)[arrays["weight_codes"]].tolist()
        bounds = indptr.tolist()
        ids = doc_ids.tolist()
        self._readers = {
            d: dict(
                zip(
                    names[bounds[r] : bounds[r + 1]],
                    weights[bounds[r] : bounds[r + 1]],
                    strict=True,
                )
            )
            for r, d in enumerate(ids)
        }
        order = np.argsort(indices, kind="stable")
        read_docs = np.repeat(doc_ids, np.diff(indptr))[order].tolist()
        per_user = np.cumsum(np.bincount(indices, minlength=len(users))).tolist()
        start = 0
        read_by: dict[str, set[int]] = {}
        for user, end in zip(users.tolist(), per_user, strict=True):
            read_by[user] = set(read_docs[start:end])
            start = end
        self._read_by = read_by
        wide = sigs.astype(np.uint64)
        self._signatures = dict(zip(ids, wide, strict=True))
        self._pairs = nnz
        self._popular = None
        self.last_event = int(header["last_event"])
        self.erasures = int(header["erasures"])
        span = header.get("span")
        self._span = (int(span[0]), int(span[1])) if span else None
        self.changed = False

    # queries ------------------------------------------------------------------------------

    def popular(
        self, n: int, *, exclude: Sequence[int] = ()
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The ``n`` documents with the most readers, most first (ties by id), with their
        number of readers (the list is kept until the next event)."""
        with self._lock:
            if self._popular is None or self._popular[0] != self._pairs:
                ids = np.fromiter(self._readers.keys(), np.int64, len(self._readers))
                counts = np.fromiter(
                    (len(r) for r in self._readers.values()), np.float64, len(self._readers)
                )
                order = np.lexsort((ids, -counts))
                self._popular = (self._pairs, ids[order], counts[order])
            _, ids, counts = self._popular
        if exclude:
            keep = ~np.isin(ids[: n + len(exclude)], np.asarray(list(exclude), np.int64))
            return ids[: n + len(exclude)][keep][:n], counts[: n + len(exclude)][keep][:n]
        return ids[:n], counts[:n]

    def candidates(self, doc_id: int, limit: int = _CANDIDATES) -> list[tuple[int, int]]:
        """``(document id, signature values shared)`` of the documents sharing the most
        signature values with ``doc_id`` (itself excluded), most first, then by id."""
        sig = self._signatures.get(doc_id)
        if sig is None:
            return []
        shared = self._buckets.shared(sig.tolist())
        shared.pop(doc_id, None)
        ranked = sorted(shared.items(), key=lambda kv: (-kv[1], kv[0]))
        return ranked[:limit]

    def _tf(self, doc_id: int) -> dict[str, float]:
        """BM25's saturated weight of each reading of a document, normalised by how many
        readers it has against the mean."""
        readers = self._readers[doc_id]
        length = len(readers) * len(self._readers) / max(self._pairs, 1)
        norm = _BM25_K1 * ((1 - _BM25_B) + _BM25_B * length)
        return {u: w * (_BM25_K1 + 1) / (norm + w) for u, w in readers.items()}

    def similar_recent(
        self, doc_id: int, n: int, *, max_age: float = RECENT_SECONDS
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """:meth:`similar`, from a list made at most ``max_age`` seconds ago when there is
        one. For readers' own lists (:mod:`textrec.personal`): they sum the lists of the posts
        each reader read, the popular posts are in many readers' histories, and a popular
        post's list costs most (its candidates have many readers each) while moving least
        with one more event. A reader's own new event still counts at once: it changes which
        lists are summed. Removals, edits and erasures drop every list kept."""
        now = time.monotonic()
        hit = self._recent.get(doc_id)
        if hit is not None and now - hit[0] <= max_age and hit[1] >= n:
            return hit[2][:n], hit[3][:n]
        want = max(n, _RECENT_LIST)
        ids, scores = self.similar(doc_id, want)
        with self._lock:
            if len(self._recent) >= _RECENT_DOCS:
                for old in list(self._recent)[: _RECENT_DOCS // 10]:  # the oldest tenth
                    del self._recent[old]
            self._recent[doc_id] = (now, want, ids, scores)
        return ids[:n], scores[:n]

    def similar(
        self, doc_id: int, n: int, *, exclude: Sequence[int] = ()
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The ``n`` documents most read by ``doc_id``'s readers, best first (ties by id),
        with their scores (see the module docstring); empty when it has no readers."""
        with self._lock:
            if doc_id not in self._readers:
                return np.zeros(0, np.int64), np.zeros(0, np.float64)
            skip = set(exclude)
            found = [(c, k) for c, k in self.candidates(doc_id) if c not in skip]
            mine = self._readers[doc_id]
            limit = max(CRAWLER_MIN_DOCUMENTS, CRAWLER_SHARE * len(self._readers))
            crawlers = {u for u in mine if len(self._read_by[u]) >= limit}
            scored: list[tuple[int, float]]
            if self.rerank == "minhash":
                scored = [(c, k / NUM_PERM) for c, k in found]
            elif self.rerank == "cosine":
                norm = math.sqrt(sum(w * w for w in mine.values()))
                scored = []
                for c, _ in found:
                    theirs = self._readers[c]
                    both = (mine.keys() & theirs.keys()) - crawlers
                    dot = sum(mine[u] * theirs[u] for u in both)
                    size = norm * math.sqrt(sum(w * w for w in theirs.values()))
                    scored.append((c, dot / size if size else 0.0))
            else:
                log_docs = math.log(max(len(self._readers), 1))
                tf_q = self._tf(doc_id)
                scored = []
                for c, _ in found:
                    tf_c = self._tf(c)
                    total = 0.0
                    for u in (tf_q.keys() & tf_c.keys()) - crawlers:
                        idf = max(log_docs - math.log1p(len(self._read_by[u])), _IDF_FLOOR)
                        total += tf_q[u] * tf_c[u] * idf * idf
                    scored.append((c, total))
        scored = [x for x in scored if x[1] > 0]
        scored.sort(key=lambda cs: (-cs[1], cs[0]))
        top = scored[:n]
        return (
            np.array([c for c, _ in top], dtype=np.int64),
            np.array([s for _, s in top], dtype=np.float64),
        )


def open_readers(
    store: Store,
    path: str | None,
    *,
    buckets: Buckets | None = None,
    kind_weights: Mapping[str, float] = KIND_WEIGHTS,
    queries: bool = True,
) -> ReadersIndex:
    """The readers index of ``store``: from its file at ``path`` when that file serves (the
    rules of :mod:`textrec.artifacts`, caught up with the store's writes since), else from
    the events; its buckets filled in ``buckets`` (default: in memory), unless ``queries`` is
    False (an index only to be saved: ``textrec build``).
    :attr:`ReadersIndex.changed` says whether it differs from the file."""
    stamp = store.stamp()
    erased = store.erasures()

    def read(p: str) -> tuple[ReadersIndex, str, str, str]:
        index, header = ReadersIndex.load(p, kind_weights=kind_weights)
        return (
            index,
            str(header.get("scheme")),
            str(header.get("weights")),
            str(header.get("provenance") or ""),
        )

    def catch_up(index: ReadersIndex) -> bool:
        if index.erasures != erased:  # events were deleted since: rebuild from those left
            return False
        index.catch_up(store)
        index.changed = True
        return True

    def build() -> ReadersIndex:
        return ReadersIndex.from_store(store, buckets=_Unindexed(), kind_weights=kind_weights)

    index, same = open_derived(
        path,
        what="readers file",
        read=read,
        expect=(READERS_SCHEME, weights_label(kind_weights)),
        stamp=stamp,
        catch_up=catch_up,
        build=build,
    )
    if same:
        index.stamp = stamp
    if queries:
        index.attach(buckets if buckets is not None else MemoryBuckets(NUM_PERM))
    index.changed = not same
    return index

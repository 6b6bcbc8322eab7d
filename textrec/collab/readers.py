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
(:meth:`ReadersIndex.from_store`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt
from datasketch import MinHash
from datasketch.hashfunc import sha1_hash32

from textrec.collab.buckets import Buckets, MemoryBuckets
from textrec.collab.events import KIND_WEIGHTS
from textrec.store.sql import Erasure, Store

__all__ = ["NUM_PERM", "READERS_SCHEME", "RERANKS", "ReadersIndex"]

NUM_PERM = 128
SEED = 1
READERS_SCHEME = f"minhash{NUM_PERM}-affine32-sha1-seed{SEED}/datasketch-2.0"
"""What makes the signatures: datasketch 2.0's ``affine32`` permutations of SHA-1 (32-bit) of
the UTF-8 user id, 128 permutations drawn with seed 1."""

RERANKS = ("bm25", "cosine", "minhash")
RECENT_SECONDS = 60.0
"""How old a readers-also-read list may be when it serves a reader's own list
(:meth:`ReadersIndex.similar_recent`)."""
_RECENT_DOCS = 50_000
_RECENT_LIST = 200
"""How candidates are ranked; the first is the default."""

_BM25_K1 = 1.2  # implicit's BM25Recommender defaults
_BM25_B = 0.75
_CANDIDATES = 300
# A reader of (nearly) every document says little, but not nothing: co-read documents still
# rank above unread ones in a small log.
_IDF_FLOOR = 1e-3


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

    def __len__(self) -> int:
        return len(self._readers)

    def __repr__(self) -> str:
        return f"ReadersIndex<{len(self):,} documents, {self._pairs:,} readings, {self.rerank}>"

    @classmethod
    def from_store(cls, store: Store, *, buckets: Buckets | None = None) -> ReadersIndex:
        """The index of every event stored (read in id order, applied in bulk)."""
        index = cls(buckets=buckets)
        index.erasures = store.erasures()
        index.catch_up(store)
        return index

    def catch_up(self, store: Store) -> int:
        """Apply the events stored after :attr:`last_event`; returns how many.

        Event ids only grow, and a deletion is not a new event: when the store's count of
        erasures (:meth:`~textrec.store.sql.Store.erasures`) is not the one this index last
        followed, another process deleted events (``textrec events forget``, an expiry), and
        the index is built again from the events that remain: aside while queries go on, or,
        with Redis buckets, in place."""
        erased = store.erasures()
        if erased != self.erasures and isinstance(self._buckets, MemoryBuckets):
            # Built aside, then swapped in: queries go on meanwhile (a rebuild reads every
            # event: seconds for millions of them).
            fresh = ReadersIndex(rerank=self.rerank, kind_weights=self.kind_weights)
            fresh.erasures = erased
            done = fresh._catch_up(store)
            with self._lock:
                self._readers, self._read_by = fresh._readers, fresh._read_by
                self._signatures, self._buckets = fresh._signatures, fresh._buckets
                self._pairs, self.last_event = fresh._pairs, fresh.last_event
                self.erasures = erased
                return done + self._catch_up(store)  # what came while it was built
        with self._lock:
            if erased != self.erasures:  # Redis: the shared keys are rebuilt in place
                self._reset()
                self.erasures = erased
            return self._catch_up(store)

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

    # writes -------------------------------------------------------------------------------

    def add(self, events: Iterable[tuple[str, int, str]]) -> None:
        """Apply events ``(user, document id, kind)``: readers, signatures and buckets."""
        new_readers: dict[int, list[str]] = {}
        with self._lock:
            self._add_readers(events, new_readers)
            for doc_id, users in new_readers.items():
                self._update_signature(doc_id, users)

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
            self._recent.clear()  # lists that may name what changed
            for doc_id in doc_ids:
                readers = self._readers.pop(doc_id, None)
                if readers is None:
                    continue
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
            for user in readers:
                items = self._read_by.setdefault(user, set())
                items.discard(old)
                items.add(new)
            sig = self._signatures.pop(old)
            values = [int(v) for v in sig.tolist()]
            self._buckets.move(old, [(i, v, None) for i, v in enumerate(values)])
            self._buckets.move(new, [(i, None, v) for i, v in enumerate(values)])
            self._signatures[new] = sig

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
            scored: list[tuple[int, float]]
            if self.rerank == "minhash":
                scored = [(c, k / NUM_PERM) for c, k in found]
            elif self.rerank == "cosine":
                norm = math.sqrt(sum(w * w for w in mine.values()))
                scored = []
                for c, _ in found:
                    theirs = self._readers[c]
                    dot = sum(mine[u] * theirs[u] for u in mine.keys() & theirs.keys())
                    size = norm * math.sqrt(sum(w * w for w in theirs.values()))
                    scored.append((c, dot / size if size else 0.0))
            else:
                log_docs = math.log(max(len(self._readers), 1))
                tf_q = self._tf(doc_id)
                scored = []
                for c, _ in found:
                    tf_c = self._tf(c)
                    total = 0.0
                    for u in tf_q.keys() & tf_c.keys():
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

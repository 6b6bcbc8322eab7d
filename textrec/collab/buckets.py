"""Where the readers' secondary index lives: in memory (the default) or in Redis.

The index maps each (permutation ``i``, signature value ``v``) to the documents whose MinHash
signature holds ``v`` at ``i``. :class:`MemoryBuckets` keeps it in this process;
:class:`RedisBuckets` keeps it in a Redis server with the layout of the Deview 2015 talk, one
set a key ``<prefix>sig<i>-<v>`` holding document ids, so that several processes can share it
and it survives a restart of theirs. Both answer the same questions the same way.

Both can be loaded in bulk from a matrix of signatures (:meth:`Buckets.load`), as a start-up
from the readers' file does: :class:`MemoryBuckets` then keeps the loaded entries as two sorted
NumPy arrays (a hundred thousand documents' 12.8 million entries take 200 MB and a second or
two to sort, where as many Python sets took minutes and gigabytes) and only the changes since
in dicts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

__all__ = ["Buckets", "MemoryBuckets", "RedisBuckets", "open_buckets"]


class Buckets(Protocol):
    """Changes of one document's signature values, and the count of shared values."""

    def move(self, doc_id: int, changes: Sequence[tuple[int, int | None, int | None]]) -> None:
        """Apply ``(i, old value or None, new value or None)`` for one document."""
        ...

    def shared(self, signature: Sequence[int]) -> Counter[int]:
        """How many values each document shares with ``signature``."""
        ...

    def clear(self) -> None: ...

    def load(self, doc_ids: npt.NDArray[np.int64], signatures: npt.NDArray[np.uint32]) -> None:
        """Replace the whole index with the documents ``doc_ids`` and their signatures (one
        row each, 32-bit values)."""
        ...


class MemoryBuckets:
    """The index in this process: the entries of the last :meth:`load` as sorted arrays of
    keys ``i << 32 | value`` and their documents (one binary search per permutation finds a
    bucket), and the changes since as one dict a permutation, value → set of documents, with
    the loaded entries moved away since."""

    def __init__(self, num_perm: int) -> None:
        self._num_perm = num_perm
        self._buckets: list[dict[int, set[int]]] = [{} for _ in range(num_perm)]
        self._keys = np.zeros(0, np.uint64)
        self._docs = np.zeros(0, np.int64)
        self._loaded: dict[int, npt.NDArray[np.uint32]] = {}
        """Each loaded document's loaded signature."""
        self._gone: dict[int, set[int]] = {}
        """For a loaded document, the permutations whose loaded entry was moved away."""
        self._gone_ids: npt.NDArray[np.int64] | None = None  # their ids, sorted (a cache)
        self._perm_keys = np.arange(num_perm, dtype=np.uint64) << np.uint64(32)

    def _is_loaded(self, doc_id: int, i: int, value: int) -> bool:
        row = self._loaded.get(doc_id)
        return row is not None and int(row[i]) == value

    def move(self, doc_id: int, changes: Sequence[tuple[int, int | None, int | None]]) -> None:
        for i, old, new in changes:
            if old is not None:
                bucket = self._buckets[i].get(old)
                if bucket is not None and doc_id in bucket:
                    bucket.discard(doc_id)
                    if not bucket:
                        del self._buckets[i][old]
                elif self._is_loaded(doc_id, i, old):
                    self._gone.setdefault(doc_id, set()).add(i)
                    self._gone_ids = None
            if new is not None:
                gone = self._gone.get(doc_id)
                if gone is not None and i in gone and self._is_loaded(doc_id, i, new):
                    gone.discard(i)
                    if not gone:
                        del self._gone[doc_id]
                    self._gone_ids = None
                else:
                    self._buckets[i].setdefault(new, set()).add(doc_id)

    def shared(self, signature: Sequence[int]) -> Counter[int]:
        found: list[int] = []
        if self._keys.size:
            wanted = self._perm_keys | np.asarray(signature, np.uint64)
            lo = np.searchsorted(self._keys, wanted, "left")
            hi = np.searchsorted(self._keys, wanted, "right")
            hit = np.flatnonzero(hi > lo)
            if hit.size:  # every entry of every bucket hit, gathered at once
                sizes = (hi - lo)[hit]
                ends = np.cumsum(sizes)
                at = np.arange(int(ends[-1])) + np.repeat(lo[hit] - (ends - sizes), sizes)
                docs = self._docs[at]
                if self._gone:  # leave out the loaded entries moved away since
                    if self._gone_ids is None:
                        self._gone_ids = np.array(sorted(self._gone), np.int64)
                    gone_ids = self._gone_ids
                    at_gone = np.minimum(np.searchsorted(gone_ids, docs), len(gone_ids) - 1)
                    moved = np.flatnonzero(gone_ids[at_gone] == docs)
                    if moved.size:
                        perms = np.repeat(hit, sizes)[moved].tolist()
                        drop = [
                            k
                            for k, d, i in zip(
                                moved.tolist(), docs[moved].tolist(), perms, strict=True
                            )
                            if i in self._gone[d]
                        ]
                        docs = np.delete(docs, drop)
                found = docs.tolist()
        for i, value in enumerate(signature):
            bucket = self._buckets[i].get(value)
            if bucket:
                found.extend(bucket)
        return Counter(found)

    def clear(self) -> None:
        for bucket in self._buckets:
            bucket.clear()
        self._gone = {}
        self._gone_ids = None
        self._keys = np.zeros(0, np.uint64)
        self._docs = np.zeros(0, np.int64)
        self._loaded = {}

    def load(self, doc_ids: npt.NDArray[np.int64], signatures: npt.NDArray[np.uint32]) -> None:
        self.clear()
        sigs = np.asarray(signatures, np.uint32).reshape(len(doc_ids), self._num_perm)
        keys = (self._perm_keys[None, :] | sigs.astype(np.uint64)).ravel()
        order = np.argsort(keys, kind="stable")
        self._keys = keys[order]
        self._docs = np.repeat(np.asarray(doc_ids, np.int64), self._num_perm)[order]
        self._loaded = dict(zip(np.asarray(doc_ids).tolist(), sigs, strict=True))


class RedisBuckets:
    """The index in Redis: a set a key ``<prefix>sig<i>-<value>`` (the talk's layout)."""

    def __init__(self, client: Any, prefix: str) -> None:
        self._redis = client
        self._prefix = prefix

    def _key(self, i: int, value: int) -> str:
        return f"{self._prefix}sig{i}-{value}"

    def move(self, doc_id: int, changes: Sequence[tuple[int, int | None, int | None]]) -> None:
        pipe = self._redis.pipeline(transaction=False)
        for i, old, new in changes:
            if old is not None:
                pipe.srem(self._key(i, old), doc_id)
            if new is not None:
                pipe.sadd(self._key(i, new), doc_id)
        pipe.execute()

    def shared(self, signature: Sequence[int]) -> Counter[int]:
        pipe = self._redis.pipeline(transaction=False)
        for i, value in enumerate(signature):
            pipe.smembers(self._key(i, value))
        counts: Counter[int] = Counter()
        for members in pipe.execute():
            counts.update(int(m) for m in members)
        return counts

    def clear(self) -> None:
        batch: list[bytes] = []
        for key in self._redis.scan_iter(match=f"{self._prefix}sig*", count=10_000):
            batch.append(key)
            if len(batch) >= 10_000:
                self._redis.delete(*batch)
                batch.clear()
        if batch:
            self._redis.delete(*batch)

    def load(self, doc_ids: npt.NDArray[np.int64], signatures: npt.NDArray[np.uint32]) -> None:
        """Clear the keys, then add every bucket with one SADD of all its documents,
        pipelined in batches."""
        self.clear()
        num_perm = signatures.shape[1] if signatures.ndim == 2 else 0
        if not len(doc_ids) or not num_perm:
            return
        keys = (
            (np.arange(num_perm, dtype=np.uint64) << np.uint64(32))[None, :]
            | np.asarray(signatures, np.uint64)
        ).ravel()
        order = np.argsort(keys, kind="stable")
        keys = keys[order]
        docs = np.repeat(np.asarray(doc_ids, np.int64), num_perm)[order].tolist()
        starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]).tolist()
        ends = [*starts[1:], len(docs)]
        heads = keys[starts].tolist()
        pipe = self._redis.pipeline(transaction=False)
        for n, (key, a, b) in enumerate(zip(heads, starts, ends, strict=True), 1):
            pipe.sadd(self._key(key >> 32, key & 0xFFFFFFFF), *docs[a:b])
            if n % 20_000 == 0:
                pipe.execute()
        pipe.execute()


def open_buckets(url: str | None, *, num_perm: int, namespace: str) -> Buckets:
    """The index's home: in memory for None, else a ``redis://`` URL (the ``redis`` package
    needed); ``namespace`` keeps the keys of different stores apart."""
    if url is None:
        return MemoryBuckets(num_perm)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"--readers-store must be a redis:// URL, got {url!r}")
    try:
        import redis
    except ImportError as exc:
        raise ValueError(
            "a Redis readers store needs the redis package: pip install redis"
        ) from exc
    client = redis.Redis.from_url(url)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise ValueError(f"cannot reach the readers store {url}: {exc}") from exc
    return RedisBuckets(client, f"textrec:{namespace}:")

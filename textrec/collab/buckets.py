"""Where the readers' secondary index lives: in memory (the default) or in Redis.

The index maps each (permutation ``i``, signature value ``v``) to the documents whose MinHash
signature holds ``v`` at ``i``. :class:`MemoryBuckets` keeps it in this process;
:class:`RedisBuckets` keeps it in a Redis server with the layout of the Deview 2015 talk, one
set a key ``<prefix>sig<i>-<v>`` holding document ids, so that several processes can share it
and it survives a restart of theirs. Both answer the same questions the same way.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Protocol

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


class MemoryBuckets:
    """The index as one dict a permutation, value → set of documents."""

    def __init__(self, num_perm: int) -> None:
        self._buckets: list[dict[int, set[int]]] = [{} for _ in range(num_perm)]

    def move(self, doc_id: int, changes: Sequence[tuple[int, int | None, int | None]]) -> None:
        for i, old, new in changes:
            if old is not None:
                bucket = self._buckets[i].get(old)
                if bucket is not None:
                    bucket.discard(doc_id)
                    if not bucket:
                        del self._buckets[i][old]
            if new is not None:
                self._buckets[i].setdefault(new, set()).add(doc_id)

    def shared(self, signature: Sequence[int]) -> Counter[int]:
        counts: Counter[int] = Counter()
        for i, value in enumerate(signature):
            bucket = self._buckets[i].get(value)
            if bucket:
                counts.update(bucket)
        return counts

    def clear(self) -> None:
        for bucket in self._buckets:
            bucket.clear()


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

"""Similarity sources: each retrieval mode behind one small protocol.

A :class:`Source` ranks stored documents for a :class:`Query` (a document's TF-IDF weights and
its 64-bit fingerprint) and takes the writes of the store as they happen. The
:class:`~textrec.recommend.Recommender` and the evaluation (:mod:`textrec.evaluation`) hold
one source a mode and never branch on the mode:

- ``related`` (:class:`RelatedSource`, the default): TF-IDF cosine over the related-posts
  impact index; ``score`` is that cosine;
- ``hamming`` (:class:`HammingSource`): Hamming distance of the fingerprints alone; ``score``
  is SimHash's estimate of the cosine, ``cos(π·d/64)``;
- ``readers`` (:class:`ReadersSource`): readers also read, from the events
  (:mod:`textrec.collab.readers`); ``score`` is the BM25 co-reading score.

The factor-model sources of later versions implement the same protocol.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from textrec.collab.readers import ReadersIndex
from textrec.content.hamming import HammingIndex
from textrec.content.related import RelatedIndex
from textrec.content.simhash import estimated_cosine

__all__ = [
    "CONTENT_MODES",
    "MODES",
    "HammingSource",
    "Query",
    "ReadersSource",
    "RelatedSource",
    "Source",
    "describe_modes",
    "sources_in_memory",
]


@dataclass(frozen=True)
class Query:
    """What a source ranks against: the query's weights and fingerprint."""

    weights: Mapping[str, float]
    code: int
    doc_id: int | None = None
    """The stored document asked about, or None for a free text."""


class Source(Protocol):
    """One retrieval mode."""

    name: str
    score: str
    """What ``score`` means in this mode, for the documentation and the OpenAPI schema."""

    @property
    def bytes_per_document(self) -> float: ...

    def rank(
        self, query: Query, n: int, exclude: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The top ``n`` ``(document ids, scores)``, best first, without ``exclude``."""
        ...

    def add(
        self, doc_ids: Sequence[int], codes: Sequence[int], weights: Sequence[Mapping[str, float]]
    ) -> None:
        """Take documents just stored (ids ascending, past every id held)."""
        ...

    def remove(self, doc_ids: Sequence[int]) -> None:
        """Drop documents just removed from the store."""
        ...


IndexT = TypeVar("IndexT", RelatedIndex, HammingIndex)


class _OverIndex(Generic[IndexT]):
    """A source over one in-memory index, ``self.index``."""

    def __init__(self, index: IndexT) -> None:
        self.index: IndexT = index


class RelatedSource(_OverIndex[RelatedIndex]):
    """``related``: TF-IDF cosine through :class:`~textrec.content.related.RelatedIndex`."""

    name = "related"
    score = "the TF-IDF cosine between the query and the result (0..1)"

    @property
    def bytes_per_document(self) -> float:
        return self.index.nbytes / max(len(self.index), 1)

    def rank(
        self, query: Query, n: int, exclude: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        ids, scores = self.index.search(query.weights, n, exclude=exclude)
        return ids, scores.astype(np.float64)

    def add(
        self, doc_ids: Sequence[int], codes: Sequence[int], weights: Sequence[Mapping[str, float]]
    ) -> None:
        self.index.add(list(doc_ids), list(weights))

    def remove(self, doc_ids: Sequence[int]) -> None:
        self.index.remove(list(doc_ids))


class HammingSource(_OverIndex[HammingIndex]):
    """``hamming``: Hamming distance of the 64-bit fingerprints, through
    :class:`~textrec.content.hamming.HammingIndex`."""

    name = "hamming"
    score = "SimHash's estimate of the cosine from the Hamming distance d, cos(π·d/64)"

    @property
    def bytes_per_document(self) -> float:
        return 16.0

    def rank(
        self, query: Query, n: int, exclude: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        if query.code == 0:  # no weighted terms: every such document would be "identical"
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        ids, dists = self.index.search(query.code, n + (1 if exclude is not None else 0))
        keep = ids != exclude if exclude is not None else np.ones(len(ids), bool)
        ids, dists = ids[keep][:n], dists[keep][:n]
        return ids, np.array([estimated_cosine(int(d)) for d in dists], np.float64)

    def add(
        self, doc_ids: Sequence[int], codes: Sequence[int], weights: Sequence[Mapping[str, float]]
    ) -> None:
        self.index.add(np.array(doc_ids, dtype=np.int64), np.array(codes, dtype=np.uint64))

    def remove(self, doc_ids: Sequence[int]) -> None:
        self.index.remove(np.array(doc_ids, dtype=np.int64))


class ReadersSource:
    """``readers``: the documents most read by a document's readers
    (:class:`~textrec.collab.readers.ReadersIndex`); nothing for a free text."""

    name = "readers"
    score = (
        "the BM25 co-reading score of the two documents' readers (0 or more; comparable "
        "within one list)"
    )

    def __init__(self, index: ReadersIndex) -> None:
        self.index = index

    @property
    def bytes_per_document(self) -> float:
        return 0.0

    def rank(
        self, query: Query, n: int, exclude: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        if query.doc_id is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return self.index.similar(query.doc_id, n, exclude=() if exclude is None else [exclude])

    def add(
        self, doc_ids: Sequence[int], codes: Sequence[int], weights: Sequence[Mapping[str, float]]
    ) -> None:
        """A new document has no readers yet."""

    def remove(self, doc_ids: Sequence[int]) -> None:
        self.index.remove(doc_ids)


MODES = ("related", "hamming", "readers")
"""The retrieval modes, the default first."""

CONTENT_MODES = ("related", "hamming")
"""The modes that rank by content alone (``textrec eval``; ``readers`` is evaluated on events,
``textrec eval-events``)."""


def sources_in_memory(
    doc_ids: Sequence[int],
    codes: Sequence[int],
    weights: Sequence[Mapping[str, float]],
    *,
    vocabulary: Iterable[str],
    scheme: str,
    snapshot_id: str,
    batch_size: int = 50_000,
) -> dict[str, Source]:
    """A source of every mode over documents held in memory (the evaluation's corpus)."""
    hamming = HammingSource(HammingIndex(scheme=scheme, snapshot_id=snapshot_id))
    related = RelatedSource(RelatedIndex(vocabulary))
    for start in range(0, len(doc_ids), batch_size):
        part = slice(start, start + batch_size)
        for source in (hamming, related):
            source.add(doc_ids[part], codes[part], weights[part])
    related.index.compact()
    return {source.name: source for source in (related, hamming)}


def describe_modes() -> str:
    """What ``score`` means in each mode (one sentence a mode), for documentation."""
    return " ".join(
        f"`{cls.name}`: {cls.score}." for cls in (RelatedSource, HammingSource, ReadersSource)
    )

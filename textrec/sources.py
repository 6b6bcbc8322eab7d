"""Similarity sources: each retrieval mode behind one small protocol.

A :class:`Source` ranks stored documents for a :class:`Query` (a document's term counts, TF-IDF
weights and 64-bit fingerprint) and takes the writes of the store as they happen. The
:class:`~textrec.recommend.Recommender` and the evaluation (:mod:`textrec.evaluation`) hold
one source a mode and never branch on the mode:

- ``related`` (:class:`RelatedSource`, the default): the pivoted BM25 score of
  :mod:`textrec.content.ranking` over the related-posts impact index; ``score`` is that score;
- ``hamming`` (:class:`HammingSource`): Hamming distance of the fingerprints alone; ``score``
  is SimHash's estimate of the cosine, ``cos(π·d/64)``;
- ``readers`` (:class:`ReadersSource`): readers also read, from the events
  (:mod:`textrec.collab.readers`); ``score`` is the BM25 co-reading score;
- ``als``, ``bpr`` (:class:`FactorSource`): nearest item factors of a trained model;
- ``hybrid`` (:class:`HybridSource`): the fusion of the others (:mod:`textrec.hybrid`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from textrec.collab.readers import ReadersIndex
from textrec.content.hamming import HammingIndex
from textrec.content.ranking import DEFAULT_RANKING, Ranking
from textrec.content.related import DEFAULT_TOP_TERMS, RelatedIndex
from textrec.content.simhash import estimated_cosine
from textrec.content.tfidf import DFSnapshot, Weighting
from textrec.hybrid import CANDIDATES, DEFAULT_WEIGHTS, Fused, Knows, fuse

__all__ = [
    "CONTENT_MODES",
    "MODES",
    "FactorSource",
    "HammingSource",
    "HybridSource",
    "Query",
    "ReadersSource",
    "RelatedSource",
    "Source",
    "describe_modes",
    "related_index_for",
    "sources_in_memory",
]


@dataclass(frozen=True)
class Query:
    """What a source ranks against: the query's TF-IDF weights, fingerprint and term
    counts."""

    weights: Mapping[str, float]
    code: int
    doc_id: int | None = None
    """The stored document asked about, or None for a free text."""
    counts: Mapping[str, int] = field(default_factory=dict)
    """The query's term counts (what the ``related`` score weighs)."""


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
        self, doc_ids: Sequence[int], codes: Sequence[int], terms: Sequence[Mapping[str, int]]
    ) -> None:
        """Take documents just stored (ids ascending, past every id held), with their
        fingerprints and term counts."""
        ...

    def remove(self, doc_ids: Sequence[int]) -> None:
        """Drop documents just removed from the store."""
        ...


IndexT = TypeVar("IndexT", RelatedIndex, HammingIndex)


class _OverIndex(Generic[IndexT]):
    """A source over one in-memory index, ``self.index``."""

    def __init__(self, index: IndexT) -> None:
        self.index: IndexT = index


def related_index_for(
    snapshot: DFSnapshot,
    lengths: Iterable[int],
    ranking: Ranking = DEFAULT_RANKING,
    *,
    top_terms: int = DEFAULT_TOP_TERMS,
) -> RelatedIndex:
    """An empty related-posts index for documents of a DF snapshot, under ``ranking`` with
    its pivot fitted to documents of these total term counts, keeping ``top_terms`` terms
    of each document."""
    fitted = ranking.fitted(lengths)
    return RelatedIndex(
        snapshot.df.keys(),
        top_terms=top_terms,
        max_impact=fitted.max_impact(snapshot),
        ranking=fitted.params(),
    )


class RelatedSource(_OverIndex[RelatedIndex]):
    """``related``: the pivoted BM25 score (:mod:`textrec.content.ranking`) through
    :class:`~textrec.content.related.RelatedIndex`; the ranking's parameters are the ones
    recorded with the index."""

    name = "related"
    score = (
        "the pivoted BM25 relatedness of the result to the query: the sum, over the terms "
        "they share, of the query term's weight (1 + ln tf)·idf^0.1 times the term's BM25 "
        "weight in the result, whose length is measured against a pivot set by the long "
        "documents, so that short posts are not rewarded for being short (0 or more; "
        "comparable within one list, not across queries)"
    )

    def __init__(
        self, index: RelatedIndex, snapshot: DFSnapshot, weighting: Weighting | None = None
    ) -> None:
        super().__init__(index)
        self.snapshot = snapshot
        self.weighting = weighting
        self.ranking = Ranking.from_params(index.ranking)

    @property
    def bytes_per_document(self) -> float:
        return self.index.nbytes / max(len(self.index), 1)

    def query_weights(self, counts: Mapping[str, int]) -> dict[str, float]:
        return self.ranking.query_weights(counts, self.snapshot, self.weighting)

    def document_weights(self, counts: Mapping[str, int]) -> dict[str, float]:
        return self.ranking.document_weights(counts, self.snapshot, self.weighting)

    def rank(
        self, query: Query, n: int, exclude: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        ids, scores = self.index.search(self.query_weights(query.counts), n, exclude=exclude)
        return ids, scores.astype(np.float64)

    def shared_terms(
        self,
        query: Mapping[str, int],
        document: Mapping[str, int],
        limit: int = 5,
        shown: set[str] | None = None,
    ) -> list[str]:
        """The shared terms that add most to the score, largest first (ties by term); only
        those in ``shown`` when it is given (the query's content words, never 것 or 년)."""
        return self.terms_shared(self.query_weights(query), document, limit, shown)

    def terms_shared(
        self,
        q: Mapping[str, float],
        document: Mapping[str, int],
        limit: int = 5,
        shown: set[str] | None = None,
    ) -> list[str]:
        """:meth:`shared_terms` for query weights ``q`` already made (a reader's profile)."""
        d = self.document_weights(document)
        both = q.keys() & d.keys()
        if shown is not None:
            both &= shown
        common = [(q[t] * d[t], t) for t in both]
        common.sort(key=lambda x: (-x[0], x[1]))
        return [t for _, t in common[:limit]]

    def add(
        self, doc_ids: Sequence[int], codes: Sequence[int], terms: Sequence[Mapping[str, int]]
    ) -> None:
        top = self.index.top_terms
        weigh = self.ranking.index_weights
        self.index.add(
            list(doc_ids), [weigh(t, self.snapshot, self.weighting, top_terms=top) for t in terms]
        )

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
        self, doc_ids: Sequence[int], codes: Sequence[int], terms: Sequence[Mapping[str, int]]
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
        self, doc_ids: Sequence[int], codes: Sequence[int], terms: Sequence[Mapping[str, int]]
    ) -> None:
        """A new document has no readers yet."""

    def remove(self, doc_ids: Sequence[int]) -> None:
        self.index.remove(doc_ids)


class FactorModelLike(Protocol):
    """What a factor source needs of a model (:class:`textrec.collab.factors.FactorModel`)."""

    def similar(
        self, doc_id: int, n: int, exclude: Collection[int] = ()
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]: ...

    def __contains__(self, doc_id: int) -> bool: ...

    def rename_items(self, pairs: Iterable[tuple[int, int]]) -> int: ...


class FactorSource:
    """``als``, ``bpr``: the posts whose item factors are nearest the query post's (cosine),
    from a model trained by ``textrec train``; nothing for a free text or a post the model
    was not trained on."""

    score = "the cosine of the two posts' item factors in the model (-1 to 1)"

    def __init__(self, name: str, model: FactorModelLike) -> None:
        self.name = name
        self.model = model

    @property
    def bytes_per_document(self) -> float:
        return 0.0

    def rank(
        self, query: Query, n: int, exclude: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        if query.doc_id is None:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        return self.model.similar(query.doc_id, n, () if exclude is None else (exclude,))

    def add(
        self, doc_ids: Sequence[int], codes: Sequence[int], terms: Sequence[Mapping[str, int]]
    ) -> None:
        """A new post is not in the model until the next ``textrec train``."""

    def rename(self, pairs: Sequence[tuple[int, int]]) -> int:
        """Edited posts keep their trained vectors under their new ids."""
        return int(self.model.rename_items(pairs))

    def remove(self, doc_ids: Sequence[int]) -> None:
        remove = getattr(self.model, "remove_items", None)
        if remove is not None:
            remove(doc_ids)


class HybridSource:
    """``hybrid``: the fusion (:mod:`textrec.hybrid`) of ``related``, ``readers`` and ``als``
    for a post; a post without readers is ranked by what knows it."""

    name = "hybrid"
    score = (
        "the blend of the sources' scores, each scaled to its best in the list, divided by "
        "the weights of the sources that know the result (0 to 1)"
    )

    def __init__(
        self, parts: Callable[[], Mapping[str, Source]], knows: Callable[[str], Knows]
    ) -> None:
        self.parts = parts
        self.knows = knows

    @property
    def bytes_per_document(self) -> float:
        return 0.0

    def rank(
        self, query: Query, n: int, exclude: int | None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        fused = self.fuse(query, n, exclude)
        return fused.ids, fused.scores

    def fuse(self, query: Query, n: int, exclude: int | None) -> Fused:
        """The top ``n`` of the fusion, with each result's part from each source."""
        parts = {m: s for m, s in self.parts().items() if DEFAULT_WEIGHTS.get(m, 0.0) > 0}
        lists = {m: s.rank(query, max(n, CANDIDATES), exclude) for m, s in parts.items()}
        fused = fuse(lists, {m: self.knows(m) for m in parts})
        return Fused(fused.ids[:n], fused.scores[:n], fused.parts)

    def add(
        self, doc_ids: Sequence[int], codes: Sequence[int], terms: Sequence[Mapping[str, int]]
    ) -> None:
        """The sources it fuses take the writes."""

    def remove(self, doc_ids: Sequence[int]) -> None:
        """The sources it fuses take the writes."""


MODES = ("related", "hamming", "readers", "hybrid", "als", "bpr")
"""The retrieval modes, the default first (``als`` and ``bpr`` once ``textrec train`` made
their model; without it they answer as ``hybrid``)."""

CONTENT_MODES = ("related", "hamming")
"""The modes that rank by content alone (``textrec eval``; ``readers`` is evaluated on events,
``textrec eval-events``)."""


def sources_in_memory(
    doc_ids: Sequence[int],
    codes: Sequence[int],
    terms: Sequence[Mapping[str, int]],
    *,
    snapshot: DFSnapshot,
    scheme: str,
    weighting: Weighting | None = None,
    ranking: Ranking = DEFAULT_RANKING,
    top_terms: int | None = None,
    batch_size: int = 50_000,
) -> dict[str, Source]:
    """A source of every mode over documents held in memory (the evaluation's corpus)."""
    hamming = HammingSource(HammingIndex(scheme=scheme, snapshot_id=snapshot.id))
    index = related_index_for(snapshot, (sum(t.values()) for t in terms), ranking)
    if top_terms is not None:
        index.top_terms = top_terms
    related = RelatedSource(index, snapshot, weighting)
    for start in range(0, len(doc_ids), batch_size):
        part = slice(start, start + batch_size)
        for source in (hamming, related):
            source.add(doc_ids[part], codes[part], terms[part])
    related.index.compact()
    return {source.name: source for source in (related, hamming)}


def describe_modes() -> str:
    """What ``score`` means in each mode (one sentence a mode), for documentation."""
    return " ".join(
        f"`{name}`: {cls.score}."
        for name, cls in (
            ("related", RelatedSource),
            ("hamming", HammingSource),
            ("readers", ReadersSource),
            ("hybrid", HybridSource),
            ("als, bpr", FactorSource),
        )
    )

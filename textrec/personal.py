"""Recommendations for each reader (:meth:`textrec.recommend.Recommender.recommend`).

A reader's *history* is their latest events (:data:`HISTORY`), each post weighted by the kinds
of its events (:data:`~textrec.collab.events.KIND_WEIGHTS`). The modes:

- ``related`` (content): the posts most related to the reader's :data:`PROFILE` latest posts,
  one related-posts query whose weights are the sum of those posts' query weights (each
  scaled to length 1, so a long post counts as much as a short one). As the related score is
  linear in the query's weights, this is the sum of the posts' related scores;
- ``readers``: the sum of the readers-also-read lists of the reader's :data:`READERS_SEEDS`
  latest posts, each list scaled to its best score;
- ``als``, ``bpr``: the factor models trained by ``textrec train`` (:mod:`textrec.collab.factors`),
  with the reader's vector folded in from their history as it is now, so the next event
  counts at once;
- ``popular``: the posts with the most readers;
- ``hybrid`` (the default): the fusion of ``related``, ``readers`` and ``als``
  (:mod:`textrec.hybrid`). A post nobody has read yet is reachable through content.

A reader with no events gets content-based posts when a context is given (a stored post or a
free text: what they are reading now), else the popular posts; :attr:`Recommendations.basis`
says which. Results pass the filters (:mod:`textrec.filters`) inside the top k, and copies of
a higher-ranked result or of a post in the reader's history are left out, as in related lists.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from textrec.collab.events import KIND_WEIGHTS
from textrec.filters import NO_FILTERS, Filters
from textrec.hybrid import CANDIDATES, DEFAULT_WEIGHTS, Parts, fuse
from textrec.sources import RelatedSource

if TYPE_CHECKING:
    from textrec.recommend import Recommender
    from textrec.store.sql import StoredDocument

__all__ = [
    "HISTORY",
    "PROFILE",
    "READERS_SEEDS",
    "RECOMMEND_MODES",
    "Recommendation",
    "Recommendations",
    "recommend",
]

RECOMMEND_MODES = ("hybrid", "related", "readers", "als", "bpr", "popular")
"""The modes of :meth:`~textrec.recommend.Recommender.recommend`, the default first."""
HISTORY = 500
"""The latest events of a reader that make their history."""
PROFILE = 10
"""The latest posts of a reader that make their content profile."""
READERS_SEEDS = 5
"""The latest posts of a reader whose readers-also-read lists are summed."""
BECAUSE = 3
"""History posts named as the reason of an ALS recommendation."""

Ranked = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]
_EMPTY: Ranked = (np.zeros(0, np.int64), np.zeros(0, np.float64))


@dataclass(frozen=True)
class Recommendation:
    """One recommended post and why: the ``sources`` that put it in the list (``related``,
    ``readers``, ``als``, ``bpr``, ``popular``), the terms it shares with the reader's
    profile (or the context), how many readers it has, and (ALS) the posts of the reader's
    history that contributed most (``because``)."""

    id: str
    title: str | None
    score: float
    sources: list[str]
    shared_terms: list[str] = field(default_factory=list)
    readers: int = 0
    because: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "score": round(self.score, 6),
            "sources": self.sources,
            "shared_terms": self.shared_terms,
            "readers": self.readers,
            "because": self.because,
        }


@dataclass(frozen=True)
class Recommendations:
    """A reader's list. ``basis``: ``history`` (their events), ``context`` (no events; the
    post or text given), or ``popular`` (no events and no context). ``mode`` is the mode that
    answered (a mode whose model is missing falls back to ``hybrid``; ``note`` says so)."""

    user: str
    mode: str
    basis: str
    results: list[Recommendation]
    note: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "user": self.user,
            "mode": self.mode,
            "basis": self.basis,
            "note": self.note,
            "results": [r.to_dict() for r in self.results],
        }


def _history(rec: Recommender, user: str) -> tuple[dict[int, float], list[int]]:
    """``({post: weight}, posts newest first)`` of a reader's latest events."""
    weights: dict[int, float] = {}
    order: list[int] = []
    for event in rec.store.user_history(user, limit=HISTORY):
        if event.document_id not in weights:
            order.append(event.document_id)
            weights[event.document_id] = 0.0
        weights[event.document_id] += KIND_WEIGHTS.get(event.kind, 1.0)
    return weights, order


def _unit(weights: Mapping[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {t: w / norm for t, w in weights.items()} if norm > 0 else {}


def profile(weights: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """A reader's content profile: their posts' query weights (each scaled to length 1),
    summed. As the related score is linear in the query's weights, one query with it scores a
    post by the sum of its related scores to each of those posts."""
    out: dict[str, float] = {}
    for w in weights:
        for t, x in w.items():
            out[t] = out.get(t, 0.0) + x
    return out


def _summed(lists: list[Ranked]) -> Ranked:
    """Lists summed item by item, each scaled to its best score first."""
    total: dict[int, float] = {}
    for ids, scores in lists:
        if len(ids) == 0 or scores[0] <= 0:
            continue
        for i, s in zip(ids.tolist(), (scores / scores[0]).tolist(), strict=True):
            total[i] = total.get(i, 0.0) + s
    ranked = sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))
    return (
        np.array([i for i, _ in ranked], np.int64),
        np.array([s for _, s in ranked], np.float64),
    )


class _Reader:
    """What one ``recommend`` call knows of the reader and gathers from the sources."""

    def __init__(
        self,
        rec: Recommender,
        user: str,
        history: dict[int, float],
        order: list[int],
        text_counts: Mapping[str, int] | None,
    ) -> None:
        self.rec = rec
        self.user = user
        self.history = history
        self.order = order
        related = rec.sources["related"]
        assert isinstance(related, RelatedSource)
        self.related = related
        self.profile_docs = rec.store.get_documents(order[:PROFILE])
        self.shown: set[str] | None = set()
        parts: list[Mapping[str, int]] = []
        if text_counts is not None:
            parts.append(text_counts)
            self.shown = None
        for doc_id in order[:PROFILE]:
            doc = self.profile_docs.get(doc_id)
            if doc is None:
                continue
            parts.append(rec._terms(doc))
            shown = rec._shown_terms(doc)
            if shown is None or self.shown is None:
                self.shown = None
            else:
                self.shown |= shown
        self.profile = profile([_unit(related.query_weights(c)) for c in parts])

    def gather(self, mode: str, n: int) -> Ranked:
        rec = self.rec
        if mode == "related":
            if not self.profile:
                return _EMPTY
            found, impacts = self.related.index.search(self.profile, n)
            return found, impacts.astype(np.float64)
        if mode == "readers":
            seeds = self.order[:READERS_SEEDS]
            ids, scores = _summed([rec.readers.similar_recent(h, n) for h in seeds])
            return ids[:n], scores[:n]
        if mode == "popular":
            return rec.readers.popular(n)
        model = rec.models.get(mode)
        if model is None or not self.history:
            return _EMPTY
        return model.recommend(self.user, self.history, n)

    def knows(self, mode: str) -> Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]]:
        return self.rec._knows(mode)

    def shared_terms(self, doc: StoredDocument) -> list[str]:
        return self.related.terms_shared(self.profile, self.rec._terms(doc), shown=self.shown)


def recommend(
    rec: Recommender,
    user: str,
    k: int,
    *,
    mode: str,
    exclude_read: bool,
    context_id: str | None,
    context_text: str | None,
    filters: Filters = NO_FILTERS,
    collapse: int | None,
) -> Recommendations:
    """See :meth:`textrec.recommend.Recommender.recommend`."""
    if mode not in RECOMMEND_MODES:
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(RECOMMEND_MODES)}")
    if context_id is not None and context_text is not None:
        raise ValueError("give context_id or context_text, not both")
    history, order = _history(rec, user)
    basis, note = "history", None
    text_counts: dict[str, int] | None = None
    skip = set(order) if exclude_read else set()
    if not history:
        if context_id is not None:
            doc = rec._document(context_id)
            history, order, basis = {doc.id: 1.0}, [doc.id], "context"
            skip.add(doc.id)
        elif context_text is not None:
            text_counts = rec.analyzer.term_counts(context_text)
            basis = "context"
        else:
            basis = "popular"
    answered = mode
    if basis == "popular":
        answered = "popular"
        if mode != "popular":
            note = "this reader has no events yet and no context was given: the most read posts"
    elif mode in ("als", "bpr") and mode not in rec.models:
        answered = "hybrid"
        note = rec.model_problem(mode)
    elif mode in ("readers", "als", "bpr") and basis == "context" and text_counts is not None:
        answered = "related"
        note = f"a free text has no readers: {mode} cannot rank for it; content ranked instead"
    reader = _Reader(rec, user, history, order, text_counts)
    if answered == "hybrid":
        parts_of = [m for m in ("related", "readers", "als", "bpr") if DEFAULT_WEIGHTS.get(m, 0)]
        parts_of = [m for m in parts_of if m in ("related", "readers") or m in rec.models]
    else:
        parts_of = [answered]
    now = datetime.now(UTC)
    radius = collapse
    # Copies of what the reader read are left out with it (kept when it is kept).
    seen_codes = [c for c in (_code(rec, h) for h in order[:PROFILE]) if c] if skip else []
    n = max(CANDIDATES, 4 * k)
    gone: set[int] = set()
    while True:
        lists = {m: reader.gather(m, n + len(skip)) for m in parts_of}
        if answered == "hybrid":
            fused = fuse(lists, {m: reader.knows(m) for m in parts_of})
            ids, scores, parts = fused.ids, fused.scores, fused.parts
        else:
            ids, scores = lists[answered]
            keep = scores > 0
            ids, scores = ids[keep], scores[keep]
            parts = Parts({answered: (ids, np.ones(len(ids)))})
        ranked = zip(ids.tolist(), scores.tolist(), strict=True)
        passed = [(i, s) for i, s in ranked if i not in skip and i not in gone]
        if filters.active():  # what filters look at, not whole documents: many candidates
            facts = rec.store.document_facts([i for i, _ in passed])
            passed = [
                (i, s * filters.weight(facts[i], now))
                for i, s in passed
                if i in facts and filters.passes(facts[i])
            ]
            if filters.recency_days:
                passed.sort(key=lambda p: (-p[1], p[0]))
        kept = passed[:k] if radius is None else rec._collapsed(passed, seen_codes, radius, k)
        exhausted = all(len(lst[0]) < n + len(skip) for lst in lists.values())
        if len(kept) >= k or exhausted:
            docs = rec.store.get_documents([i for i, _ in kept])
            missing = {i for i, _ in kept if i not in docs}
            if not missing:
                break
            gone |= missing  # removed by another thread since the sources ranked them
            continue
        n *= 4
    model = rec.models.get("als")
    sources_of: dict[int, list[str]] = {}
    because_of: dict[int, list[int]] = {}
    for doc_id, _ in kept:
        sources = [s for s, v in parts.get(doc_id, {}).items() if v > 0]
        sources_of[doc_id] = sorted(sources, key=_SOURCE_ORDER)
        if model is not None and "als" in sources and basis == "history":
            because_of[doc_id] = [h for h, _ in model.explain(user, history, doc_id, BECAUSE)]
    names = rec.store.document_facts(sorted({h for hs in because_of.values() for h in hs}))
    results = []
    for doc_id, score in kept:
        doc = docs[doc_id]
        results.append(
            Recommendation(
                doc.external_id,
                doc.title,
                score,
                sources_of[doc_id],
                reader.shared_terms(doc) if basis != "popular" else [],
                rec.readers.readers(doc_id),
                [names[h].external_id for h in because_of.get(doc_id, []) if h in names],
            )
        )
    return Recommendations(user, answered, basis, results, note)


def _SOURCE_ORDER(name: str) -> int:
    return RECOMMEND_MODES.index(name) if name in RECOMMEND_MODES else len(RECOMMEND_MODES)


def _code(rec: Recommender, doc_id: int) -> int:
    try:
        return rec.index.get(doc_id)
    except KeyError:
        return 0

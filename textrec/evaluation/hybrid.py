"""The content and hybrid models of ``textrec eval-events``.

- ``content`` scores an item by its ``related``-mode similarity to the user's training items:
  one related-posts query whose weights are the sum of those items' query weights, each
  scaled to length 1 (as :mod:`textrec.personal` does for a reader). It needs the items'
  texts (``--corpus``); an item without text has no content score.
- ``hybrid`` fuses the top :data:`~textrec.hybrid.CANDIDATES` of ``content``, ``readers`` and
  ``als`` for each user with :func:`textrec.hybrid.fuse`, as the Recommender does; a source
  knows the items it could rank (the factor model and ``readers``: items with training
  interactions; content: items with terms).

Both register themselves in :data:`textrec.evaluation.events.MODELS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from textrec.content.analyzer import Analyzer
from textrec.content.tfidf import DFSnapshot
from textrec.evaluation import events as ev
from textrec.hybrid import CANDIDATES, DEFAULT_RULE, DEFAULT_WEIGHTS, fuse
from textrec.personal import _unit, profile
from textrec.sources import RelatedSource, sources_in_memory

__all__ = ["HYBRID_PARTS", "fit_content", "fit_hybrid"]

HYBRID_PARTS = {"content": "related", "readers": "readers", "als": "als", "bpr": "bpr"}
"""The evaluation models the hybrid fuses, and the name each has in the fusion."""


def fit_content(
    train: sp.csr_matrix,
    *,
    item_terms: Sequence[Mapping[str, int]] | None = None,
    analyzer: Analyzer | None = None,
    **_: object,
) -> ev.Scorer:
    if item_terms is None:
        raise ValueError("the content model needs the items' texts: give --corpus")
    n_items = train.shape[1]
    if len(item_terms) != n_items:
        raise ValueError(f"{len(item_terms)} items' terms for {n_items} items")
    analyzer = analyzer or Analyzer()
    terms = [dict(t) for t in item_terms]
    has_terms = [i for i, t in enumerate(terms) if t]
    snapshot = DFSnapshot.from_documents([terms[i] for i in has_terms])
    codes = analyzer.fingerprints([terms[i] for i in has_terms], snapshot)
    sources = sources_in_memory(
        has_terms,
        codes,
        [terms[i] for i in has_terms],
        snapshot=snapshot,
        scheme=analyzer.scheme,
        weighting=analyzer.weighting,
    )
    related = sources["related"]
    assert isinstance(related, RelatedSource)
    unit = [_unit(related.query_weights(t)) if t else {} for t in terms]

    def score(users: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        out = np.zeros((len(users), n_items))
        for row, user in enumerate(users.tolist()):
            items = train.indices[train.indptr[user] : train.indptr[user + 1]].tolist()
            weights = profile([unit[i] for i in items])
            if weights:
                ids, scores = related.index.search(weights, CANDIDATES + len(items))
                out[row, ids] = scores
        return out

    return score


def fit_hybrid(
    train: sp.csr_matrix,
    *,
    parts: Sequence[str] | None = None,
    weights: Mapping[str, float] = DEFAULT_WEIGHTS,
    rule: str = DEFAULT_RULE,
    options: Mapping[str, Mapping[str, object]] | None = None,
    **shared: object,
) -> ev.Scorer:
    """``parts``: the models fused, by default those of :data:`HYBRID_PARTS` that have a
    weight; ``options[part]``: the options of each part's model; ``shared`` (the corpus's
    terms) go to the content part."""
    if parts is None:
        parts = [
            p for p, name in HYBRID_PARTS.items() if weights.get(name, 0.0) > 0 and p in ev.MODELS
        ]
        if shared.get("item_terms") is None:  # without texts, the hybrid of the others
            parts = [p for p in parts if p != "content"]
    scorers = {}
    for part in parts:
        if part not in ev.MODELS:
            raise ValueError(f"the hybrid's part {part!r} is not a model here")
        given = shared if part == "content" else {}
        scorers[part] = ev.MODELS[part](train, **{**given, **(options or {}).get(part, {})})
    seen_items = np.diff(train.tocsc().indptr) > 0
    item_terms = cast(Sequence[Mapping[str, int]] | None, shared.get("item_terms"))
    has_terms = (
        np.fromiter((bool(t) for t in item_terms), bool, len(item_terms))
        if item_terms is not None
        else np.ones(train.shape[1], bool)
    )
    knows = {
        HYBRID_PARTS[p]: (lambda ids, m=(has_terms if p == "content" else seen_items): m[ids])
        for p in parts
    }

    def score(users: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        dense = {p: s(users) for p, s in scorers.items()}
        out = np.zeros((len(users), train.shape[1]))
        for row, user in enumerate(users.tolist()):
            read = train.indices[train.indptr[user] : train.indptr[user + 1]]
            lists = {}
            for p, d in dense.items():
                values = d[row].astype(np.float64)
                values[read] = -np.inf  # as the Recommender leaves out what was read
                n = min(CANDIDATES, len(values))
                top = np.argpartition(-values, n - 1)[:n]
                top = top[np.lexsort((top, -values[top]))]
                top = top[np.isfinite(values[top]) & (values[top] > 0)]
                lists[HYBRID_PARTS[p]] = (top.astype(np.int64), values[top])
            fused = fuse(lists, knows, weights=weights, rule=rule)
            out[row, fused.ids] = fused.scores
        return out

    return score


ev.MODELS.setdefault("content", fit_content)
ev.MODELS.setdefault("hybrid", fit_hybrid)

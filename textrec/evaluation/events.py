"""Offline evaluation of recommendations from events (``textrec eval-events``).

Protocols:

- ``random-80-20``: each interaction (user, item) goes to the test set with probability 0.2,
  drawn with ``numpy.random.default_rng(seed)``;
- ``leave-last-out``: each user's last interaction (by time, then by input order) is the test
  set, for users with at least two;
- cold start (``new_items``): a share of the items is held out of training entirely, and
  the test set is every interaction with them: recall@10 then says how well a model finds
  posts that nobody had read when it was trained.

Every model ranks *all* items for each test user, the user's training items excluded, and is
scored on the top 10: precision@10, recall@10 (hits over the user's test items, at most 10),
NDCG@10 (binary gains, ideal over min(10, test items)) and catalogue coverage (the share of
items that appear in some user's top 10). Repeated interactions count once.

Models (:data:`MODELS`; the list is open):

- ``popular``: items by their number of training users;
- ``readers``: item-to-item, :class:`~textrec.collab.readers.ReadersIndex`; a user's score for
  an item is the sum of its similarities to the items the user read (each item's top
  :data:`NEIGHBOURS` neighbours).
- ``als`` and ``bpr``: :class:`~textrec.collab.factors.FactorModel` trained on the training
  interactions with its defaults (options override them: ``factors``, ``regularization``, ...);
  a user's score for an item is the dot product of their vectors, the user's folded in from
  their training items as :meth:`~textrec.collab.factors.FactorModel.scores` does when serving
  (for ALS that is the trained vector again).

It needs events only: items are opaque strings.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from textrec.collab.readers import RERANKS, ReadersIndex

__all__ = ["MODELS", "NEIGHBOURS", "PROTOCOLS", "Interactions", "ModelScore", "evaluate_events"]

PROTOCOLS = ("random-80-20", "leave-last-out")
NEIGHBOURS = 200
K = 10


@dataclass
class Interactions:
    """Interactions as parallel arrays of user and item indexes, in input order, with the
    time of each (seconds; input order breaks ties) and the names behind the indexes."""

    users: npt.NDArray[np.int64]
    items: npt.NDArray[np.int64]
    times: npt.NDArray[np.float64]
    user_names: list[str]
    item_names: list[str]

    @classmethod
    def from_triples(cls, triples: Sequence[tuple[str, str, float]]) -> Interactions:
        """From ``(user, item, time)`` triples."""
        user_ids: dict[str, int] = {}
        item_ids: dict[str, int] = {}
        users = np.fromiter(
            (user_ids.setdefault(u, len(user_ids)) for u, _, _ in triples), np.int64
        )
        items = np.fromiter(
            (item_ids.setdefault(i, len(item_ids)) for _, i, _ in triples), np.int64
        )
        times = np.fromiter((t for _, _, t in triples), np.float64)
        return cls(users, items, times, list(user_ids), list(item_ids))

    def split(
        self, protocol: str, seed: int
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """``(train, test)`` masks over the interactions."""
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
        n = len(self.users)
        if protocol == "random-80-20":
            test = np.random.default_rng(seed).random(n) < 0.2
            return ~test, test
        order = np.lexsort((np.arange(n), self.times, self.users))
        last = np.zeros(n, bool)
        ends = np.flatnonzero(np.diff(self.users[order], append=-1) != 0)
        counts = np.bincount(self.users, minlength=len(self.user_names))
        chosen = order[ends]
        last[chosen[counts[self.users[chosen]] >= 2]] = True
        return ~last, last

    def split_new_items(
        self, share: float, seed: int
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """The cold-start split: ``share`` of the items, drawn with
        ``numpy.random.default_rng(seed)``, are new: every interaction with them is a test
        interaction, and none is in training."""
        if not 0 < share < 1:
            raise ValueError(f"the share of new items must be between 0 and 1, got {share!r}")
        new = np.random.default_rng(seed).random(len(self.item_names)) < share
        test = new[self.items]
        return ~test, test


@dataclass
class ModelScore:
    model: str
    precision: float
    recall: float
    ndcg: float
    coverage: float
    users: int
    fit_s: float

    def as_dict(self) -> dict[str, object]:
        return {
            "model": self.model,
            "precision@10": round(self.precision, 4),
            "recall@10": round(self.recall, 4),
            "ndcg@10": round(self.ndcg, 4),
            "coverage": round(self.coverage, 4),
            "users": self.users,
            "fit_s": round(self.fit_s, 3),
        }


Scorer = Callable[[npt.NDArray[np.int64]], npt.NDArray[np.float64]]
"""Scores of every item for a batch of users (rows), as a dense ``(users, items)`` array."""


def _fit_popular(train: sp.csr_matrix, **_: object) -> Scorer:
    counts = np.asarray((train > 0).sum(axis=0)).ravel().astype(np.float64)
    return lambda users: np.tile(counts, (len(users), 1))


def _fit_readers(train: sp.csr_matrix, *, rerank: str = RERANKS[0], **_: object) -> Scorer:
    index = ReadersIndex(rerank=rerank)
    coo = train.tocoo()
    index.add(
        (f"u{u}", int(i), "view") for u, i in zip(coo.row.tolist(), coo.col.tolist(), strict=True)
    )
    n_items = train.shape[1]
    rows, cols, vals = [], [], []
    for item in range(n_items):
        ids, scores = index.similar(item, NEIGHBOURS)
        rows.extend([item] * len(ids))
        cols.extend(ids.tolist())
        vals.extend(scores.tolist())
    similarity = sp.csr_matrix((vals, (rows, cols)), shape=(n_items, n_items))
    binary = (train > 0).astype(np.float64).tocsr()
    return lambda users: np.asarray((binary[users] @ similarity).todense())


def _fit_factors(model: str) -> Callable[..., Scorer]:
    def fit(train: sp.csr_matrix, **options: Any) -> Scorer:
        from textrec.collab.factors import FactorModel

        fitted = FactorModel.fit(train, model=model, **options)
        if model == "als":  # the trained vectors: what folding the history in gives again
            users, items = fitted.user_factors, fitted.item_factors.T
            return lambda rows: (users[rows] @ items).astype(np.float64)
        history = train.tocsr()

        def scores(rows: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
            out = np.zeros((len(rows), history.shape[1]))
            for n, row in enumerate(rows.tolist()):
                lo, hi = history.indptr[row], history.indptr[row + 1]
                read = dict(
                    zip(history.indices[lo:hi].tolist(), history.data[lo:hi].tolist(), strict=True)
                )
                ids, values = fitted.scores(str(row), read)
                out[n, ids] = values
            return out

        return scores

    return fit


MODELS: dict[str, Callable[..., Scorer]] = {
    "popular": _fit_popular,
    "readers": _fit_readers,
    "als": _fit_factors("als"),
    "bpr": _fit_factors("bpr"),
}


def evaluate_events(
    data: Interactions,
    *,
    protocol: str = "random-80-20",
    seed: int = 0,
    models: Sequence[str] = ("popular", "readers"),
    options: dict[str, dict[str, object]] | None = None,
    new_items: float | None = None,
) -> list[ModelScore]:
    """Score each model on one split (see the module docstring). ``new_items``: the
    cold-start protocol instead, a share of the items held out of training entirely."""
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model {unknown[0]!r}; choose from {', '.join(MODELS)}")
    if new_items is not None:
        train_mask, test_mask = data.split_new_items(new_items, seed)
    else:
        train_mask, test_mask = data.split(protocol, seed)
    shape = (len(data.user_names), len(data.item_names))

    def matrix(mask: npt.NDArray[np.bool_]) -> sp.csr_matrix:
        m = sp.csr_matrix(
            (np.ones(int(mask.sum())), (data.users[mask], data.items[mask])), shape=shape
        )
        m.data[:] = 1.0  # repeated interactions count once
        return m

    train, test = matrix(train_mask), matrix(test_mask)
    test_users = np.flatnonzero(np.diff(test.indptr) > 0)
    results = []
    discounts = 1.0 / np.log2(np.arange(2, K + 2))
    for name in models:
        started = time.perf_counter()
        scorer = MODELS[name](train, **(options or {}).get(name, {}))
        fit_s = time.perf_counter() - started
        precision = recall = ndcg = 0.0
        shown: set[int] = set()
        for start in range(0, len(test_users), 256):
            users = test_users[start : start + 256]
            scores = scorer(users)
            seen = train[users]
            scores[seen.nonzero()] = -np.inf
            top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
            for row, user in enumerate(users.tolist()):
                truth = set(test.indices[test.indptr[user] : test.indptr[user + 1]].tolist())
                ranked = [i for i in top[row].tolist() if np.isfinite(scores[row, i])]
                hits = np.array([i in truth for i in ranked] + [False] * (K - len(ranked)))
                shown.update(ranked)
                precision += hits.sum() / K
                recall += hits.sum() / min(len(truth), K)
                ideal = discounts[: min(len(truth), K)].sum()
                ndcg += float((hits * discounts).sum() / ideal)
        n = max(len(test_users), 1)
        coverage = len(shown) / max(shape[1], 1)
        results.append(
            ModelScore(name, precision / n, recall / n, ndcg / n, coverage, len(test_users), fit_s)
        )
    return results


def ndcg_at_k(ranked: Sequence[int], truth: set[int], k: int = K) -> float:
    """NDCG@k of one ranking with binary gains (for tests)."""
    dcg = sum(1 / math.log2(r + 2) for r, i in enumerate(ranked[:k]) if i in truth)
    ideal = sum(1 / math.log2(r + 2) for r in range(min(len(truth), k)))
    return dcg / ideal if ideal else 0.0


# The content and hybrid models register themselves (they build on this module).
from textrec.evaluation import hybrid as _hybrid  # noqa: E402, F401

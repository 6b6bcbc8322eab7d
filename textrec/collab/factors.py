"""Recommendations for each reader: matrix factorisation of the readers' events (ALS and BPR).

A :class:`FactorModel` learns a vector for every reader and every document from the user ×
document matrix of the store's events, with the ``implicit`` library (pinned, see
``pyproject.toml``):

- ``als``: implicit-feedback alternating least squares (Hu, Koren and Volinsky 2008). The
  weight of a (reader, document) pair is the sum of :data:`~textrec.collab.events.KIND_WEIGHTS`
  of its events; its confidence is ``alpha`` × that weight.
- ``bpr``: Bayesian personalised ranking (Rendle et al. 2009), which learns from which
  documents a reader read, not how often.

The defaults (:data:`DEFAULTS`) were chosen by measurement on MovieLens-100K
(``bench/events_ml100k.py``; figures in ``bench/README.md``).

**Fresh answers from a trained model.** A model trained before newer events is stale, not
wrong: :meth:`FactorModel.recommend` and :meth:`FactorModel.scores` take the reader's history
*now* and fold it in, so a new event changes that reader's answer at once, and a reader the
model never saw gets answers from their history too.

- ALS: the reader's vector is solved exactly from their history against the trained document
  vectors (what implicit's ``recalculate_user`` does), with ``YᵀY`` cached.
- BPR: the reader's vector is learned from their history alone, with BPR's loss and the
  document vectors held fixed (:data:`BPR_FOLD_IN`): the minimum, found by Newton's method, of
  the loss over pairs of a read and an unread document (drawn with a seed made from the
  reader's name and history, so the same history always gives the same answer), more strongly
  regularised than training. On MovieLens-100K this beats the vectors training leaves (NDCG@10
  0.43 against 0.29 with the same document vectors), and it treats known and new readers alike.

**Determinism.** Training uses a fixed seed and one BLAS thread (as implicit advises): the same
events give the same arrays on the same machine. ALS gives the same arrays at any ``threads``;
BPR only at ``threads=1`` (its default), since its threads update shared vectors without locks.

**The file.** A model is a derived file beside the index (:func:`model_path`), written
atomically (:func:`~textrec.artifacts.atomic.atomic_write`): a header line (JSON: format and
version, model, parameters, the store stamp read before the events were, the last event id,
the training time, implicit's version) and the arrays as an uncompressed NumPy ``.npz``, read
back without pickle. A model trained from other events than the store's now is *stale*
(:func:`model_staleness`): it keeps serving, and ``textrec train`` refreshes it.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zipfile
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from textrec.artifacts.atomic import atomic_write
from textrec.collab.events import KIND_WEIGHTS

if TYPE_CHECKING:
    from textrec.store.sql import Erasure, Store

__all__ = [
    "BPR_FOLD_IN",
    "BPR_FOLD_IN_PAIRS",
    "DEFAULTS",
    "FACTOR_MODELS",
    "FORMAT",
    "FORMAT_VERSION",
    "FactorModel",
    "ModelFileError",
    "forget_reader",
    "model_files",
    "model_path",
    "model_staleness",
]

FACTOR_MODELS = ("als", "bpr")

FORMAT = "textrec-factors"
FORMAT_VERSION = 1
_MAGIC = b"TEXTREC-FACTORS\n"

DEFAULTS: Mapping[str, Mapping[str, float | int]] = {
    "als": {"factors": 32, "iterations": 15, "regularization": 10.0, "alpha": 1.0},
    "bpr": {"factors": 64, "iterations": 100, "regularization": 0.01, "learning_rate": 0.01},
}
"""Each model's defaults, chosen on MovieLens-100K (seed 0 of the random 80/20 split)."""

BPR_FOLD_IN: Mapping[str, float | int] = {"regularization": 0.1, "negatives": 20}
"""How a BPR reader's vector is learned from their history: unread documents drawn for each
read one, and the weight of ‖x‖²/2 for each read document. Chosen on MovieLens-100K with the
document vectors of :data:`DEFAULTS` (regularisation 0.03: 0.393, 0.1: 0.431, 0.3: 0.416;
50 negatives: 0.432)."""

BPR_FOLD_IN_PAIRS = 5_000
"""At most this many pairs for one reader (fewer unread documents for each read one in a long
history): a bound on the time of a fold-in."""
BPR_FOLD_IN_NEWTON_STEPS = 20
"""At most this many Newton steps when a BPR reader's vector is folded in (it stops sooner once
the loss no longer falls): with :data:`BPR_FOLD_IN_PAIRS`, a bound on the time of a fold-in."""

_EMPTY_IDS = np.zeros(0, np.int64)


class ModelFileError(ValueError):
    """A model file that cannot be used; the message names the file and what is wrong."""


def model_files(index_path: str) -> Iterator[tuple[str, str, FactorModel | ModelFileError]]:
    """Each factor model file beside an index: ``(model, path, the model or why it cannot
    be read)``, for the files that exist."""
    for name in FACTOR_MODELS:
        path = model_path(index_path, name)
        if not os.path.exists(path):
            continue
        try:
            yield name, path, FactorModel.load(path)
        except ModelFileError as exc:
            yield name, path, exc


def rename_in_model_files(index_path: str, pairs: Sequence[tuple[int, int]]) -> list[str]:
    """After documents were edited outside a :class:`~textrec.recommend.Recommender` (``textrec
    ingest --update``): rename them in the model files beside the index (see
    :meth:`FactorModel.rename_items`), written again atomically. Returns the models changed;
    a file that cannot be read is left alone (``check`` reports it)."""
    changed: list[str] = []
    if not pairs:
        return changed
    for name, path, model in model_files(index_path):
        if isinstance(model, FactorModel) and model.rename_items(pairs):
            model.save(path)
            changed.append(name)
    return changed


def model_path(index_path: str, model: str) -> str:
    """The file of a factor model: beside the index files, ``<index path>.<model>``."""
    return f"{index_path}.{model}"


def _implicit_version() -> str:
    try:
        import implicit

        return str(implicit.__version__)
    except ImportError:  # pragma: no cover - a main dependency
        return "missing"


_controller: Any = None


def _one_blas_thread() -> Any:
    """A context that keeps BLAS on one thread (threadpoolctl; its controller made once)."""
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")


def _seed_of(user: str, history: Mapping[int, float]) -> int:
    """A seed for a reader's fold-in: the same name and history give the same seed."""
    digest = zlib.crc32(user.encode("utf-8"))
    for doc_id in sorted(history):
        digest = zlib.crc32(struct.pack("<qd", doc_id, float(history[doc_id])), digest)
    return digest


@dataclass(eq=False)
class FactorModel:
    """A trained ALS or BPR model: reader and document vectors, and how they were made.

    ``items`` maps columns to store document ids; ``users`` reader names to rows (answers fold
    the reader in from their history, see the module docstring; the trained rows say who was
    seen). BPR vectors hold one more column than ``params["factors"]``: the document's bias
    (the reader's column is fixed at 1), as implicit makes them.
    """

    model: str
    users: dict[str, int]
    items: npt.NDArray[np.int64]
    user_factors: npt.NDArray[np.float32]
    item_factors: npt.NDArray[np.float32]
    params: dict[str, object]
    last_event: int = 0
    provenance: str = ""
    trained_at: str = ""
    _columns: dict[int, int] = field(default_factory=dict, init=False, repr=False)
    _yty: npt.NDArray[np.float64] | None = field(default=None, init=False, repr=False)
    _unit: npt.NDArray[np.float32] | None = field(default=None, init=False, repr=False)
    _sorted: npt.NDArray[np.int64] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.model not in FACTOR_MODELS:
            raise ValueError(f"model must be one of {', '.join(FACTOR_MODELS)}, got {self.model!r}")
        self._columns = {int(d): c for c, d in enumerate(self.items.tolist())}
        self._sorted = None

    def __repr__(self) -> str:
        return (
            f"FactorModel<{self.model}, {len(self.users):,} users, {len(self.items):,} items, "
            f"{self.params.get('factors')} factors>"
        )

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._columns

    def holds(self, doc_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which of these documents the model has vectors for (a mask)."""
        held = self._sorted
        if held is None:
            held = self._sorted = np.sort(self.items)
        if not len(held):
            return np.zeros(len(doc_ids), bool)
        pos = np.minimum(np.searchsorted(held, doc_ids), len(held) - 1)
        return np.asarray(held[pos] == doc_ids, bool)

    # training -----------------------------------------------------------------------------

    @classmethod
    def train(
        cls,
        store: Store,
        *,
        model: str = "als",
        factors: int | None = None,
        iterations: int | None = None,
        regularization: float | None = None,
        learning_rate: float | None = None,
        alpha: float | None = None,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ) -> FactorModel:
        """Train on every event of the store (see the module docstring for the weights).

        Raises ValueError when the store holds no events."""
        provenance = store.stamp().label  # before the events: a write after it makes it stale
        erasures = store.erasures()  # likewise: a deletion of events after it makes it stale
        users: dict[str, int] = {}
        rows: list[npt.NDArray[np.int64]] = []
        docs: list[npt.NDArray[np.int64]] = []
        weights: list[npt.NDArray[np.float64]] = []
        last_event = 0
        kind_weights = dict(KIND_WEIGHTS)
        for batch in store.iter_events():
            rows.append(
                np.fromiter((users.setdefault(e.user, len(users)) for e in batch), np.int64)
            )
            docs.append(np.fromiter((e.document_id for e in batch), np.int64))
            weights.append(np.fromiter((kind_weights.get(e.kind, 1.0) for e in batch), np.float64))
            last_event = batch[-1].id
        if not users:
            raise ValueError(f"{store!r} holds no events to train on")
        row = np.concatenate(rows)
        doc = np.concatenate(docs)
        items, col = np.unique(doc, return_inverse=True)
        matrix = sp.csr_matrix(
            (np.concatenate(weights), (row, col.ravel())), shape=(len(users), len(items))
        )
        matrix.sum_duplicates()
        fitted = cls.fit(
            matrix,
            model=model,
            factors=factors,
            iterations=iterations,
            regularization=regularization,
            learning_rate=learning_rate,
            alpha=alpha,
            seed=seed,
            threads=threads,
            progress=progress,
        )
        fitted.users = users
        fitted.items = items.astype(np.int64)
        fitted.__post_init__()
        fitted.params["events"] = len(row)
        fitted.last_event = int(last_event)
        fitted.params["erasures"] = erasures
        fitted.provenance = provenance
        return fitted

    @classmethod
    def fit(
        cls,
        user_items: sp.csr_matrix,
        *,
        model: str = "als",
        factors: int | None = None,
        iterations: int | None = None,
        regularization: float | None = None,
        learning_rate: float | None = None,
        alpha: float | None = None,
        seed: int = 0,
        threads: int = 1,
        progress: bool = False,
    ) -> FactorModel:
        """Train on a user × item matrix of weights (rows and columns are indexes: users are
        named ``"0"`` … ``"n-1"``, items are ``0`` … ``m-1``)."""
        from threadpoolctl import threadpool_limits

        if model not in FACTOR_MODELS:
            raise ValueError(f"model must be one of {', '.join(FACTOR_MODELS)}, got {model!r}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        given: dict[str, float | int | None] = {
            "factors": factors,
            "iterations": iterations,
            "regularization": regularization,
            "learning_rate": learning_rate,
            "alpha": alpha,
        }
        params: dict[str, object] = dict(DEFAULTS[model])
        for key, value in given.items():
            if value is None:
                continue
            if key not in params:
                raise ValueError(f"{model} has no parameter {key.replace('_', '-')}")
            if (key in ("factors", "iterations") and int(value) < 1) or not value > 0:
                raise ValueError(f"{key.replace('_', '-')} must be positive, got {value}")
            params[key] = int(value) if key in ("factors", "iterations") else float(value)
        params.update(seed=int(seed), threads=int(threads), weighting="sum of kind weights")
        if model == "bpr":
            params.update({f"fold_in_{key}": value for key, value in BPR_FOLD_IN.items()})
        matrix = sp.csr_matrix(user_items, dtype=np.float32)
        matrix.sum_duplicates()
        matrix.sort_indices()
        n_users, n_items = matrix.shape
        k = int(cast(int, params["factors"]))
        with threadpool_limits(1, "blas"):
            if model == "als":
                from implicit.cpu.als import AlternatingLeastSquares

                als = AlternatingLeastSquares(
                    factors=k,
                    regularization=float(cast(float, params["regularization"])),
                    alpha=float(cast(float, params["alpha"])),
                    iterations=int(cast(int, params["iterations"])),
                    num_threads=threads,
                    random_state=seed,
                )
                als.fit(matrix, show_progress=progress)
                user_f, item_f = als.user_factors, als.item_factors
            else:
                from implicit.cpu.bpr import BayesianPersonalizedRanking

                bpr = BayesianPersonalizedRanking(
                    factors=k,
                    learning_rate=float(cast(float, params["learning_rate"])),
                    regularization=float(cast(float, params["regularization"])),
                    iterations=int(cast(int, params["iterations"])),
                    num_threads=threads,
                    random_state=seed,
                )
                bpr.fit(matrix, show_progress=progress)
                user_f, item_f = bpr.user_factors, bpr.item_factors
        return cls(
            model=model,
            users={str(u): u for u in range(n_users)},
            items=np.arange(n_items, dtype=np.int64),
            user_factors=np.ascontiguousarray(user_f, dtype=np.float32),
            item_factors=np.ascontiguousarray(item_f, dtype=np.float32),
            params=params,
            last_event=0,
            provenance="",
            trained_at=datetime.now(UTC).isoformat(timespec="seconds"),
        )

    # the reader's vector ------------------------------------------------------------------

    @property
    def _regularization(self) -> float:
        return float(cast(float, self.params["regularization"]))

    def _gram(self) -> npt.NDArray[np.float64]:
        """``YᵀY`` of the document vectors (ALS), cached."""
        yty = self._yty
        if yty is None:
            y = self.item_factors.astype(np.float64)
            yty = y.T @ y
            self._yty = yty
        return yty

    def _history(
        self, history: Mapping[int, float]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """Columns and weights of the history's documents in the model, in column order."""
        pairs = sorted(
            (self._columns[d], float(w)) for d, w in history.items() if d in self._columns and w > 0
        )
        cols = np.array([c for c, _ in pairs], dtype=np.int64)
        return cols, np.array([w for _, w in pairs], dtype=np.float64)

    def _als_system(
        self, cols: npt.NDArray[np.int64], weights: npt.NDArray[np.float64]
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """ALS's normal equations for one reader: ``(YᵀCY + λI) x = YᵀCp``."""
        y = self.item_factors[cols].astype(np.float64)
        confidence = float(cast(float, self.params["alpha"])) * weights
        a = self._gram() + self._regularization * np.eye(y.shape[1])
        a += (y.T * (confidence - 1.0)) @ y
        return a, y.T @ confidence

    def user_vector(
        self, user: str, history: Mapping[int, float]
    ) -> npt.NDArray[np.float64] | None:
        """The reader's vector folded in from ``history`` (document id → weight); None when
        no document of the history is in the model."""
        cols, weights = self._history(history)
        if not len(cols):
            return None
        if self.model == "als":
            a, b = self._als_system(cols, weights)
            return cast(npt.NDArray[np.float64], np.linalg.solve(a, b))
        return self._bpr_fold_in(user, history, cols)

    def _bpr_fold_in(
        self, user: str, history: Mapping[int, float], cols: npt.NDArray[np.int64]
    ) -> npt.NDArray[np.float64]:
        """The reader's BPR vector learned from their history alone, the document vectors
        fixed: the minimum of BPR's loss over (read, unread) pairs, ``fold_in_negatives``
        unread documents drawn for each read one (at most :data:`BPR_FOLD_IN_PAIRS` pairs),
        plus ``fold_in_regularization`` × the history's size × ‖x‖²/2. The loss is convex
        in the reader's vector, so Newton's method finds that minimum in a few steps."""
        y = self.item_factors
        k = y.shape[1] - 1
        rng = np.random.default_rng(_seed_of(user, history))
        setting = {key: self.params.get(f"fold_in_{key}", v) for key, v in BPR_FOLD_IN.items()}
        reg = float(cast(float, setting["regularization"])) * len(cols)
        negatives = max(
            1, min(int(cast(int, setting["negatives"])), BPR_FOLD_IN_PAIRS // len(cols))
        )
        read = np.zeros(len(y), bool)
        read[cols] = True
        drawn = rng.integers(len(y), size=len(cols) * negatives)
        fine = ~read[drawn]
        pairs = np.repeat(cols, negatives)[fine]
        diff = y[pairs].astype(np.float64) - y[drawn[fine]]
        d, offset = diff[:, :k], diff[:, k]  # the reader's bias column is fixed at 1
        x = np.zeros(k)

        def loss(v: npt.NDArray[np.float64]) -> float:
            return float(np.logaddexp(0.0, -(d @ v + offset)).sum() / negatives + reg / 2 * v @ v)

        current = loss(x)
        for _ in range(BPR_FOLD_IN_NEWTON_STEPS):
            margin = d @ x + offset
            p = 1.0 / (1.0 + np.exp(np.clip(margin, -50.0, 50.0)))  # σ(-margin)
            grad = -(d.T @ p) / negatives + reg * x
            hess = (d.T * (p * (1.0 - p))) @ d / negatives + reg * np.eye(k)
            step = np.linalg.solve(hess, grad)
            for _ in range(8):  # halve the step until the loss falls
                trial = x - step
                value = loss(trial)
                if value <= current:
                    break
                step = step / 2
            else:
                break
            done = current - value < 1e-7 * max(1.0, abs(current))
            x, current = trial, value
            if done:
                break
        return np.append(x, 1.0)

    # queries ------------------------------------------------------------------------------

    def scores(
        self, user: str, history: Mapping[int, float]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """Every document's score for the reader (ids are :attr:`items`, in that order), from
        their history folded in; both arrays are empty when no document of the history is in
        the model (nothing to go on).

        BLAS runs on one thread here: these products are small, and on a busy machine the
        threads of one waiting for each other cost more than the product itself."""
        with _one_blas_thread():
            x = self.user_vector(user, history)
            if x is None:
                return _EMPTY_IDS, np.zeros(0, np.float32)
            return self.items, self.item_factors @ x.astype(np.float32)

    def recommend(
        self, user: str, history: Mapping[int, float], n: int, exclude: Collection[int] = ()
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The ``n`` best documents for the reader, best first (ties by id), with their scores.

        ``history`` is the reader's documents now (id → weight, all their events, newer ones
        too). Documents in ``exclude`` are left out (the caller passes the history to leave
        out what was read). Empty when no document of the history is in the model."""
        ids, scores = self.scores(user, history)
        if not len(ids) or n <= 0:
            return _EMPTY_IDS, np.zeros(0, np.float64)
        return _top(ids, scores, n, self._drop(exclude))

    def similar(
        self, doc_id: int, n: int, exclude: Collection[int] = ()
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """The ``n`` documents whose vectors are closest to ``doc_id``'s by cosine (BPR: the
        bias left out), best first; empty when the document is not in the model."""
        col = self._columns.get(doc_id)
        if col is None or n <= 0:
            return _EMPTY_IDS, np.zeros(0, np.float64)
        unit = self._unit
        if unit is None:
            y = self.item_factors if self.model == "als" else self.item_factors[:, :-1]
            norms = np.linalg.norm(y, axis=1, keepdims=True)
            unit = np.divide(y, norms, out=np.zeros_like(y), where=norms > 0)
            self._unit = unit
        scores = unit @ unit[col]
        drop = self._drop(exclude)
        drop.append(col)
        return _top(self.items, scores, n, drop)

    def explain(
        self, user: str, history: Mapping[int, float], doc_id: int, n: int = 3
    ) -> list[tuple[int, float]]:
        """Which documents of the reader's history put ``doc_id`` in their recommendations:
        ``(document id, contribution)``, largest first, at most ``n``. The contributions sum
        to the document's ALS score (implicit's ``explain``, after Hu, Koren and Volinsky,
        section 5). BPR scores do not decompose over the history: always ``[]`` for BPR."""
        col = self._columns.get(doc_id)
        cols, weights = self._history(history)
        if self.model != "als" or col is None or not len(cols) or n <= 0:
            return []
        a, _ = self._als_system(cols, weights)
        weighted = np.linalg.solve(a, self.item_factors[col].astype(np.float64))
        confidence = float(cast(float, self.params["alpha"])) * weights
        parts = (self.item_factors[cols].astype(np.float64) @ weighted) * confidence
        order = np.lexsort((self.items[cols], -parts))[:n]
        return [(int(self.items[cols[i]]), float(parts[i])) for i in order]

    def _drop(self, exclude: Collection[int]) -> list[int]:
        return [self._columns[d] for d in exclude if d in self._columns]

    # changes ------------------------------------------------------------------------------

    def forget(
        self, user: str, history_left: Mapping[int, Mapping[str, float]] | None = None
    ) -> None:
        """Erase a reader from the model: their row goes.

        ALS, with ``history_left`` (for each document the reader had read: its other readers
        now, name → weight): the vectors of those documents are solved again without the
        reader, exactly (one half-step of ALS, as implicit's ``partial_fit_items``), so their
        trace leaves the model at once. Without it, and always for BPR (whose document vectors
        have no exact update), ``params["forgotten"]`` counts the reader, so that ``check``
        can say a retrain is due."""
        row = self.users.pop(user, None)
        if row is None:
            return
        keep = np.ones(len(self.user_factors), bool)
        keep[row] = False
        self.user_factors = np.ascontiguousarray(self.user_factors[keep])
        for name, r in self.users.items():
            if r > row:
                self.users[name] = r - 1
        if self.model != "als" or history_left is None:
            self.params["forgotten"] = int(cast(int, self.params.get("forgotten", 0))) + 1
            return
        x = self.user_factors.astype(np.float64)
        xtx = x.T @ x + self._regularization * np.eye(x.shape[1])
        alpha = float(cast(float, self.params["alpha"]))
        for doc_id in sorted(history_left):
            col = self._columns.get(doc_id)
            if col is None:
                continue
            readers = [
                (self.users[u], float(w))
                for u, w in history_left[doc_id].items()
                if w > 0 and u in self.users
            ]
            readers.sort()
            a = xtx.copy()
            b = np.zeros(x.shape[1])
            if readers:
                rows = np.array([r for r, _ in readers], dtype=np.int64)
                c = alpha * np.array([w for _, w in readers])
                xs = x[rows]
                a += (xs.T * (c - 1.0)) @ xs
                b = xs.T @ c
            self.item_factors[col] = np.linalg.solve(a, b).astype(np.float32)
        self._yty = None
        self._unit = None

    def rename_items(self, pairs: Iterable[tuple[int, int]]) -> int:
        """Edited documents: each ``(old id, new id)`` the store gave a document it replaced
        keeps the document's trained vector under its new id (its readers' events went with
        it). Returns how many of them the model holds."""
        renamed = 0
        for old, new in pairs:
            col = self._columns.pop(int(old), None)
            if col is None:
                continue
            if not renamed:  # a copy: a reader of the old array keeps a consistent one
                self.items = self.items.copy()
            self.items[col] = int(new)
            self._columns[int(new)] = col
            renamed += 1
        if renamed:
            self._sorted = None
        return renamed

    def remove_items(self, doc_ids: Collection[int]) -> None:
        """Drop documents (removed from the store): they never appear in an answer again."""
        drop = [self._columns[d] for d in doc_ids if d in self._columns]
        if not drop:
            return
        keep = np.ones(len(self.items), bool)
        keep[drop] = False
        self.items = self.items[keep]
        self.item_factors = np.ascontiguousarray(self.item_factors[keep])
        self._columns = {int(d): c for c, d in enumerate(self.items.tolist())}
        self._yty = None
        self._unit = None
        self._sorted = None

    # the file -----------------------------------------------------------------------------

    def header(self) -> dict[str, object]:
        """What the file's header line records."""
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "model": self.model,
            "params": self.params,
            "provenance": self.provenance,
            "last_event": self.last_event,
            "trained_at": self.trained_at,
            "implicit": _implicit_version(),
            "users": len(self.users),
            "items": len(self.items),
            "dim": int(self.item_factors.shape[1]) if self.item_factors.ndim == 2 else 0,
        }

    def save(self, path: str) -> None:
        """Write the model file atomically (a crash leaves the old file or the new one)."""
        names = sorted(self.users, key=self.users.__getitem__)
        encoded = [n.encode("utf-8") for n in names]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        np.cumsum([len(e) for e in encoded], out=offsets[1:])
        arrays = {
            "items": self.items.astype(np.int64),
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "user_names": np.frombuffer(b"".join(encoded), dtype=np.uint8),
            "user_offsets": offsets,
        }
        payload = io.BytesIO()
        with zipfile.ZipFile(payload, "w", zipfile.ZIP_STORED) as z:
            for name, array in arrays.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                with z.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)
        header = json.dumps(self.header(), sort_keys=True, ensure_ascii=False).encode("utf-8")

        def write(f: io.BufferedIOBase | Any) -> None:
            f.write(_MAGIC)
            f.write(header + b"\n")
            f.write(payload.getbuffer())

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str) -> FactorModel:
        """Read a model file; :class:`ModelFileError` names the file and what is wrong with it."""

        def bad(reason: str) -> ModelFileError:
            return ModelFileError(f"{path}: {reason}")

        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise bad(f"cannot be read ({exc.strerror or exc})") from exc
        if not data.startswith(_MAGIC):
            raise bad(f"not a textrec model file (it does not start with {_MAGIC[:-1].decode()})")
        end = data.find(b"\n", len(_MAGIC))
        if end < 0:
            raise bad("truncated: the header line has no end")
        try:
            header = json.loads(data[len(_MAGIC) : end].decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise bad(f"its header is not JSON ({exc})") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise bad(f"its header does not name the format {FORMAT!r}")
        if header.get("version") != FORMAT_VERSION:
            raise bad(
                f"format version {header.get('version')!r}; this textrec reads version "
                f"{FORMAT_VERSION} (run `textrec train` to write it anew)"
            )
        model = header.get("model")
        if model not in FACTOR_MODELS:
            raise bad(f"unknown model {model!r}")
        params = header.get("params")
        if not isinstance(params, dict):
            raise bad("its header has no parameters")
        arrays: dict[str, npt.NDArray[Any]] = {}
        try:
            with np.load(io.BytesIO(data[end + 1 :]), allow_pickle=False) as npz:
                for name in ("items", "user_factors", "item_factors", "user_names", "user_offsets"):
                    arrays[name] = npz[name]
        except KeyError as exc:
            raise bad(f"the array {exc} is missing") from exc
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
            raise bad(f"its arrays cannot be read (truncated or damaged: {exc})") from exc
        items, uf, itf = arrays["items"], arrays["user_factors"], arrays["item_factors"]
        names, offsets = arrays["user_names"], arrays["user_offsets"]
        n_users, n_items, dim = header.get("users"), header.get("items"), header.get("dim")
        if (
            items.dtype != np.int64
            or uf.dtype != np.float32
            or itf.dtype != np.float32
            or names.dtype != np.uint8
            or offsets.dtype != np.int64
            or items.shape != (n_items,)
            or uf.shape != (n_users, dim)
            or itf.shape != (n_items, dim)
            or offsets.shape != (cast(int, n_users) + 1,)
            or (len(offsets) and (offsets[0] != 0 or offsets[-1] != len(names)))
            or np.any(np.diff(offsets) < 0)
        ):
            raise bad("its arrays do not have the shapes and types its header records")
        if not (np.isfinite(uf).all() and np.isfinite(itf).all()):
            raise bad("it holds vectors that are not finite numbers")
        raw = names.tobytes()
        bounds = offsets.tolist()
        try:
            users = {
                raw[bounds[i] : bounds[i + 1]].decode("utf-8"): i for i in range(len(bounds) - 1)
            }
        except UnicodeDecodeError as exc:
            raise bad("its reader names are not UTF-8") from exc
        if len(users) != n_users or len(np.unique(items)) != n_items:
            raise bad("it names a reader or a document twice")
        return cls(
            model=str(model),
            users=users,
            items=items,
            user_factors=uf,
            item_factors=itf,
            params=params,
            last_event=int(header.get("last_event") or 0),
            provenance=str(header.get("provenance") or ""),
            trained_at=str(header.get("trained_at") or ""),
        )


def _top(
    ids: npt.NDArray[np.int64], scores: npt.NDArray[np.floating[Any]], n: int, drop: list[int]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The ``n`` highest scores, best first, ties by id, leaving out the columns ``drop``
    (the array is changed in place when ``drop`` is not empty)."""
    if drop:
        scores[drop] = -np.inf
    available = len(scores) - len(set(drop))
    n = min(n, available)
    if n <= 0:
        return _EMPTY_IDS, np.zeros(0, np.float64)
    if n < len(scores):
        cut = np.partition(scores, len(scores) - n)[len(scores) - n]
        candidates = np.flatnonzero(scores >= cut)
    else:
        candidates = np.arange(len(scores))
    candidates = candidates[np.isfinite(scores[candidates])]
    order = np.lexsort((ids[candidates], -scores[candidates]))[:n]
    chosen = candidates[order]
    return ids[chosen].copy(), scores[chosen].astype(np.float64)


def model_staleness(model: FactorModel, store: Store) -> dict[str, object]:
    """How a model stands against the store now: ``events_since`` counts the events stored
    after the last one it was trained on; ``same_store`` says whether it was trained from this
    store (its recorded identity); ``forgotten`` counts readers erased from it without an
    exact update (a retrain is due)."""
    from textrec.store.sql import StoreStamp

    made = StoreStamp.from_label(model.provenance) if model.provenance else None
    return {
        "model": model.model,
        "trained_at": model.trained_at,
        "last_event": model.last_event,
        "events_since": store.count_events(after=model.last_event),
        "same_store": made is not None and made.identity == store.stamp().identity,
        "forgotten": int(cast(int, model.params.get("forgotten", 0))),
        "erasures_since": max(
            store.erasures() - int(cast(int, model.params.get("erasures", 0))), 0
        ),
    }


def _erasures_since(model: FactorModel, store: Store) -> int:
    """Deletions of events (retention, forgetting) the store saw after the model's training."""
    return max(store.erasures() - int(cast(int, model.params.get("erasures", 0))), 0)


def forget_reader(model: FactorModel, store: Store, user: str, erasure: Erasure) -> bool:
    """Erase reader ``user`` from ``model`` after the store deleted their events
    (``erasure``): their row goes, and ALS solves the vectors of the documents they read again
    from the readers those documents have now (:meth:`FactorModel.forget`). Returns whether
    the reader was in the model (then the caller writes the model file again, so that no
    restart brings them back)."""
    if user not in model.users:
        return False
    docs = sorted({d for u, d in erasure.pairs if u == user})
    left = store.document_readings(docs)
    history_left = {
        d: {u: sum(KIND_WEIGHTS.get(k, 1.0) for k in ks) for u, ks in left.get(d, {}).items()}
        for d in docs
    }
    model.forget(user, history_left)
    model.params["erasures"] = store.erasures()
    return True

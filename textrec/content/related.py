"""Related posts: impact postings of each document's top-scoring terms, exact top k.

Ranking by 64-bit Hamming distance finds near-duplicates, not related posts (see the README).
:class:`RelatedIndex` answers "which documents score highest with this one" under an additive
term score, ``score(q, d) = Σ_t q(t) · w(t, d)`` — the default is the pivoted BM25 of
:mod:`textrec.content.ranking` — in a few milliseconds at a million documents, as Lucene, PISA
and JASS do with quantised impacts:

- **Per document** (a map step, independent of every other document given the DF snapshot
  and the ranking): its term weights ``w(t, d)``; keep the ``top_terms`` largest (ties: the
  smaller term id); quantise each to one byte on a log scale relative to the index's
  ``max_impact`` (``LUT[c] = max_impact · exp(ln(1e-4) · (1 − (c − 1)/254))``, relative
  error within ±1.8 %; weights below ``1e-4 · max_impact`` count as that).
- **Postings**: for every term, the documents that kept it, as (row uint32, impact uint8).
- **Query**: the query's weights ``q(t)`` over *all* its terms; for every query term, add
  ``q(t) · LUT[impact]`` into a per-document accumulator over its postings, then take the top
  k (ties: the smaller document id). This is the exact top k of the quantised score over the
  stored postings: there is no candidate count to tune and no second stage. Cost:
  proportional to the postings of the query's terms.
- **Append** adds a new small segment (rows continue the sequence; segments are merged when
  there are more than ``max_segments``); **remove** sets a tombstone. A new DF snapshot needs
  a rebuild, which :class:`~textrec.recommend.Recommender` does from the store.

Its recall of the same score computed exactly (without quantisation or pruning), its topic
precision against peer rankings, latency and bytes per document are measured by
``textrec eval`` (``bench/quality.py``); the figures are in ``bench/README.md``, "Related-post
quality".
"""

from __future__ import annotations

import json
import math
import threading
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from textrec.artifacts.atomic import atomic_write

__all__ = ["DEFAULT_TOP_TERMS", "IMPACT_LUT", "RelatedIndex", "quantize_impacts"]

DEFAULT_TOP_TERMS = 512
"""Terms kept per document at most: the score sums many small contributions of a long
document's terms, so pruning harder loses recall of the exact score (measured in
``bench/README.md``: 64 terms recalled 0.45 of the exact top 10 on petitions, 384 terms 0.94)."""

_FILE_FORMAT = "textrec-related/2"
_QMIN = 1e-4
_LOGMIN = math.log(_QMIN)
IMPACT_LUT: npt.NDArray[np.float32] = np.zeros(256, np.float32)
IMPACT_LUT[1:] = np.exp(_LOGMIN + (np.arange(1, 256) - 1) / 254.0 * (-_LOGMIN)).astype(np.float32)


def quantize_impacts(values: npt.NDArray[np.float64]) -> npt.NDArray[np.uint8]:
    """Weights in (0, 1] (relative to the index's ``max_impact``) to codes 1…255, so that
    ``IMPACT_LUT[code] ≈ value``."""
    x = (np.log(np.clip(values, _QMIN, 1.0)) - _LOGMIN) / (-_LOGMIN) * 254.0
    return (np.rint(x) + 1).astype(np.uint8)


def _impact_rows(weights: sp.csr_matrix, top_terms: int) -> sp.csr_matrix:
    """Each row's ``top_terms`` largest weights (ties: the smaller term id)."""
    w = weights.tocsr()
    w.sort_indices()
    n = w.shape[0]
    lens = np.diff(w.indptr)
    if lens.max(initial=0) > top_terms:
        row = np.repeat(np.arange(n), lens)
        order = np.lexsort((w.indices, -w.data, row))  # by row, weight desc, term id
        rank = np.arange(len(order)) - np.repeat(w.indptr[:-1], lens)
        keep = np.sort(order[rank < top_terms])
        indptr = np.zeros(n + 1, np.int64)
        indptr[1:] = np.cumsum(np.minimum(lens, top_terms))
        w = sp.csr_matrix((w.data[keep], w.indices[keep], indptr), shape=w.shape)
    w.eliminate_zeros()
    return w


@dataclass(frozen=True)
class _Segment:
    """Term-major postings of a range of rows: ``ptr[t]:ptr[t+1]`` in ``rows``/``impacts``."""

    ptr: npt.NDArray[np.int64]
    rows: npt.NDArray[np.uint32]
    impacts: npt.NDArray[np.uint8]

    @classmethod
    def build(cls, kept: sp.csr_matrix, first_row: int, max_impact: float) -> _Segment:
        csc = kept.tocsc()
        csc.sort_indices()
        rows = (csc.indices.astype(np.int64) + first_row).astype(np.uint32)
        return cls(csc.indptr.astype(np.int64), rows, quantize_impacts(csc.data / max_impact))

    @classmethod
    def merge(cls, segments: Sequence[_Segment]) -> _Segment:
        """One segment from several, older first: rows stay ascending within each term."""
        n_terms = max(len(s.ptr) - 1 for s in segments)
        terms = np.concatenate(
            [np.repeat(np.arange(len(s.ptr) - 1), np.diff(s.ptr)) for s in segments]
        )
        rows = np.concatenate([s.rows for s in segments])
        impacts = np.concatenate([s.impacts for s in segments])
        order = np.lexsort((rows, terms))
        ptr = np.zeros(n_terms + 1, np.int64)
        ptr[1:] = np.cumsum(np.bincount(terms, minlength=n_terms))
        return cls(ptr, rows[order], impacts[order])

    @property
    def nbytes(self) -> int:
        return int(self.ptr.nbytes + self.rows.nbytes + self.impacts.nbytes)


# The query kernels: compiled (textrec/_related.c, built by pip install) or, where that could
# not be built, the NumPy functions below, which do the same float32 arithmetic in the same
# order and so give identical scores.
_compiled: Any
try:
    from textrec import _related as _compiled
except ImportError:  # pragma: no cover - exercised by setting _kernels = None in the tests
    _compiled = None
_kernels: Any = _compiled


def _accumulate(
    q_terms: npt.NDArray[np.int64],
    q_w: npt.NDArray[np.float32],
    ptr: npt.NDArray[np.int64],
    rows: npt.NDArray[np.uint32],
    impacts: npt.NDArray[np.uint8],
    lut: npt.NDArray[np.float32],
    acc: npt.NDArray[np.float32],
    touched: npt.NDArray[np.int64],
    nt: int,
) -> int:
    """acc[row] += q_w · lut[impact] over each query term's postings; returns the new count
    of touched rows (each row's first touch is recorded in ``touched``)."""
    if _kernels is not None:
        return int(_kernels.accumulate(q_terms, q_w, ptr, rows, impacts, lut, acc, touched, nt))
    n_terms = len(ptr) - 1
    for t, w in zip(q_terms.tolist(), q_w, strict=True):
        if not 0 <= t < n_terms:
            continue
        r = rows[ptr[t] : ptr[t + 1]].astype(np.int64)  # distinct within one term
        new = r[acc[r] == 0.0]
        touched[nt : nt + len(new)] = new
        nt += len(new)
        acc[r] = acc[r] + w * lut[impacts[ptr[t] : ptr[t + 1]]]
    return nt


def _top_k(
    acc: npt.NDArray[np.float32],
    touched: npt.NDArray[np.int64],
    nt: int,
    exclude: int,
    dead: npt.NDArray[np.bool_],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The k best touched rows by score descending then row ascending (rows 2**62 and scores
    -1 where fewer); resets the touched accumulators to 0."""
    best_r = np.full(k, 2**62, np.int64)
    best_s = np.full(k, -1.0, np.float32)
    if _kernels is not None:
        _kernels.top_k(acc, touched, nt, exclude, dead.view(np.uint8), best_r, best_s)
        return best_r, best_s
    r = touched[:nt]
    s = acc[r].copy()
    acc[r] = 0.0
    keep = (r != exclude) & ~dead[r]
    r, s = r[keep], s[keep]
    order = np.lexsort((r, -s))[:k]
    best_r[: len(order)] = r[order]
    best_s[: len(order)] = s[order]
    return best_r, best_s


@dataclass(frozen=True)
class _State:
    """What a query reads, swapped whole by writers (copy-on-write)."""

    segments: tuple[_Segment, ...]
    doc_ids: npt.NDArray[np.int64]  # row -> document id, ascending
    dead: npt.NDArray[np.bool_]


class RelatedIndex:
    """Impact postings over each document's top-scoring terms (see the module docstring).

    Documents are identified by the store's document ids, added in increasing order, with
    their term weights ``w(t, d)``; a query gives its weights ``q(t)``. ``vocabulary`` maps
    terms to term ids (the DF snapshot's sorted terms); terms first seen in appended
    documents get new ids. ``max_impact`` bounds the document weights (the top of the
    quantisation scale) and ``ranking`` holds the parameters of the score that made them,
    recorded in the file for whoever reads it back. Queries may run in many threads while one
    writer appends or removes: each query reads one consistent state and has its own scratch
    space.
    """

    def __init__(
        self,
        vocabulary: Iterable[str] = (),
        *,
        top_terms: int = DEFAULT_TOP_TERMS,
        max_segments: int = 8,
        max_impact: float = 1.0,
        ranking: Mapping[str, object] | None = None,
    ) -> None:
        if not isinstance(top_terms, int) or top_terms < 1:
            raise ValueError(f"top_terms must be a whole number >= 1, got {top_terms!r}")
        if max_segments < 1:
            raise ValueError(f"max_segments must be >= 1, got {max_segments}")
        if not (
            isinstance(max_impact, int | float) and math.isfinite(max_impact) and max_impact > 0
        ):
            raise ValueError(f"max_impact must be a finite number > 0, got {max_impact!r}")
        self.top_terms = top_terms
        self.max_segments = max_segments
        self.max_impact = float(max_impact)
        self.ranking: dict[str, object] = dict(ranking or {})
        self._lut = (IMPACT_LUT.astype(np.float64) * self.max_impact).astype(np.float32)
        self._term_ids: dict[str, int] = {t: i for i, t in enumerate(vocabulary)}
        self._state = _State((), np.zeros(0, np.int64), np.zeros(0, np.bool_))
        self._write_lock = threading.Lock()
        self._scratch = threading.local()

    def __len__(self) -> int:
        state = self._state
        return int(len(state.doc_ids) - np.count_nonzero(state.dead))

    def __repr__(self) -> str:
        return (
            f"RelatedIndex<{len(self):,} documents, top {self.top_terms} terms, "
            f"{len(self._state.segments)} segment(s), {self.nbytes:,} bytes>"
        )

    @property
    def nbytes(self) -> int:
        """Bytes held for postings, row ids and tombstones (the vocabulary apart)."""
        state = self._state
        return sum(s.nbytes for s in state.segments) + state.doc_ids.nbytes + state.dead.nbytes

    def impact(self, weight: float) -> float:
        """The value a document weight is stored as (quantised)."""
        code = quantize_impacts(np.array([weight / self.max_impact]))[0]
        return float(self._lut[code])

    def postings_bytes_per_document(self) -> float:
        """Postings bytes (5 per kept term) per indexed document."""
        state = self._state
        postings = sum(s.rows.nbytes + s.impacts.nbytes for s in state.segments)
        return postings / max(len(state.doc_ids), 1)

    # writes ----------------------------------------------------------------------------------

    def _matrix(self, weights: Sequence[Mapping[str, float]]) -> sp.csr_matrix:
        indptr = np.zeros(len(weights) + 1, np.int64)
        indices: list[int] = []
        data: list[float] = []
        ids = self._term_ids
        for i, w in enumerate(weights):
            for term, value in w.items():
                if value > 0:
                    tid = ids.get(term)
                    if tid is None:
                        tid = ids[term] = len(ids)
                    indices.append(tid)
                    data.append(value)
            indptr[i + 1] = len(indices)
        return sp.csr_matrix(
            (np.array(data, np.float64), np.array(indices, np.int64), indptr),
            shape=(len(weights), max(len(ids), 1)),
        )

    def add(self, doc_ids: Sequence[int], weights: Sequence[Mapping[str, float]]) -> None:
        """Index documents by their term weights ``w(t, d)`` (under the index's DF snapshot
        and ranking).

        ``doc_ids`` must be greater than every id already added (the store's ids are).
        """
        if len(doc_ids) != len(weights):
            raise ValueError(f"{len(doc_ids)} ids but {len(weights)} weight vectors")
        if not len(doc_ids):
            return
        new_ids = np.asarray(doc_ids, np.int64)
        with self._write_lock:
            state = self._state
            last = state.doc_ids[-1] if len(state.doc_ids) else np.iinfo(np.int64).min
            if np.any(np.diff(new_ids) <= 0) or new_ids[0] <= last:
                raise ValueError("document ids must be added in strictly increasing order")
            kept = _impact_rows(self._matrix(weights), self.top_terms)
            segment = _Segment.build(kept, len(state.doc_ids), self.max_impact)
            segments = (*state.segments, segment)
            if len(segments) > self.max_segments:
                segments = (segments[0], _Segment.merge(segments[1:]))
            self._state = _State(
                segments,
                np.concatenate([state.doc_ids, new_ids]),
                np.concatenate([state.dead, np.zeros(len(new_ids), np.bool_)]),
            )

    def remove(self, doc_ids: Iterable[int]) -> int:
        """Tombstone documents; returns how many were indexed and live."""
        with self._write_lock:
            state = self._state
            ids = np.asarray(list(doc_ids), np.int64)
            rows = np.searchsorted(state.doc_ids, ids)
            ok = rows < len(state.doc_ids)
            ok[ok] &= state.doc_ids[rows[ok]] == ids[ok]
            rows = rows[ok]
            rows = rows[~state.dead[rows]]
            if len(rows):
                dead = state.dead.copy()
                dead[rows] = True
                self._state = _State(state.segments, state.doc_ids, dead)
            return len(rows)

    def compact(self) -> None:
        """Merge all segments into one (faster queries after many appends)."""
        with self._write_lock:
            state = self._state
            if len(state.segments) > 1:
                merged = (_Segment.merge(state.segments),)
                self._state = _State(merged, state.doc_ids, state.dead)

    # persistence -----------------------------------------------------------------------------

    def save(self, path: str, *, scheme: str, snapshot_id: str, provenance: str = "") -> None:
        """Write the index (compacted) to ``path`` atomically (:func:`atomic_write`: a crash
        leaves the old file or the new one). Format: an uncompressed ``.npz`` (every
        member CRC-checked on load) with the format version, scheme, DF snapshot id, top
        terms, the ranking's parameters and quantisation scale, vocabulary, row ids,
        tombstones and postings."""
        self.compact()
        state = self._state
        seg = (
            state.segments[0]
            if state.segments
            else _Segment(np.zeros(1, np.int64), np.zeros(0, np.uint32), np.zeros(0, np.uint8))
        )
        header = {
            "format": _FILE_FORMAT,
            "scheme": scheme,
            "snapshot_id": snapshot_id,
            "top_terms": self.top_terms,
            "max_impact": self.max_impact,
            "ranking": self.ranking,
            "provenance": provenance,
        }
        vocab = json.dumps(list(self._term_ids), ensure_ascii=False).encode("utf-8")

        def write(f: BinaryIO) -> None:
            np.savez(
                f,
                header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                vocabulary=np.frombuffer(vocab, np.uint8),
                doc_ids=state.doc_ids,
                dead=state.dead,
                ptr=seg.ptr,
                rows=seg.rows,
                impacts=seg.impacts,
            )

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str) -> tuple[RelatedIndex, dict[str, object]]:
        """Read an index written by :meth:`save`: ``(index, header)``; the header holds the
        scheme, DF snapshot id and provenance (what it was made from, as given to
        :meth:`save`), for the caller to check against the store, and the ranking's
        parameters. A file of another format (an earlier version's) raises ValueError: the
        caller rebuilds it from the store."""
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(bytes(z["header"]).decode())
                if header.get("format") != _FILE_FORMAT:
                    raise ValueError(f"format {header.get('format')!r} is not {_FILE_FORMAT!r}")
                vocab = json.loads(bytes(z["vocabulary"]).decode("utf-8"))
                arrays = {k: z[k] for k in ("doc_ids", "dead", "ptr", "rows", "impacts")}
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise ValueError(f"{path}: not a readable textrec related-posts index ({exc})") from exc
        try:
            index = cls(
                vocab,
                top_terms=int(header["top_terms"]),
                max_impact=float(header["max_impact"]),
                ranking=dict(header["ranking"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: malformed related-posts index header ({exc})") from exc
        segments: tuple[_Segment, ...] = ()
        if len(arrays["rows"]):
            segments = (_Segment(arrays["ptr"], arrays["rows"], arrays["impacts"]),)
        index._state = _State(segments, arrays["doc_ids"], arrays["dead"])
        return index, header

    def document_ids(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Every document id ever added, ascending, and which of them are removed."""
        state = self._state
        return state.doc_ids.copy(), state.dead.copy()

    def live_summary(self) -> tuple[int, int]:
        """``(count, sum of ids)`` of the live documents, to compare with the store."""
        state = self._state
        live = state.doc_ids[~state.dead]
        return len(live), int(live.sum())

    # queries ---------------------------------------------------------------------------------

    def _buffers(self, n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        acc = getattr(self._scratch, "acc", None)
        if acc is None or len(acc) < n:
            size = max(n, 1024) + n // 4
            acc = self._scratch.acc = np.zeros(size, np.float32)
            self._scratch.touched = np.zeros(size, np.int64)
        return acc, self._scratch.touched

    def search(
        self, weights: Mapping[str, float], k: int, *, exclude: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ``k`` documents of highest score ``Σ_t q(t) · w(t, d)`` (quantised ``w``) for
        the query's weights ``q``: ``(document ids, scores)``, by score descending then id;
        fewer when fewer documents share a term with the query. ``exclude`` is a document id
        to leave out."""
        if not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be a whole number >= 0, got {k!r}")
        state = self._state
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        if k == 0 or not state.segments:
            return empty
        pairs = [
            (self._term_ids[t], w) for t, w in weights.items() if w > 0 and t in self._term_ids
        ]
        if not pairs:
            return empty
        q_terms = np.array([p[0] for p in pairs], np.int64)
        q_w = np.array([p[1] for p in pairs], np.float32)
        if not q_w.all():  # weights lost to float32 underflow add nothing to any score
            q_terms, q_w = q_terms[q_w > 0], q_w[q_w > 0]
        exclude_row = -1
        if exclude is not None:
            row = int(np.searchsorted(state.doc_ids, exclude))
            if row < len(state.doc_ids) and state.doc_ids[row] == exclude:
                exclude_row = row
        acc, touched = self._buffers(len(state.doc_ids))
        nt = 0
        for seg in state.segments:
            nt = _accumulate(
                q_terms, q_w, seg.ptr, seg.rows, seg.impacts, self._lut, acc, touched, nt
            )
        rows, scores = _top_k(acc, touched, nt, exclude_row, state.dead, k)
        found = scores >= 0
        return state.doc_ids[rows[found]], scores[found]

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
- **Postings**: for every term, the documents that kept it, as rows and impacts (one byte).
  The rows of a term ascend; each is stored as its gap from the previous one (the first as
  its row), bit-packed in blocks of 128 postings at the width of the block's largest gap:
  about 1.2 bytes a row on petitions and 1.6 among short reviews, where a plain uint32 took
  4, for about a tenth more query time (``bench/README.md``, "Packed rows"). A segment
  keeps an offset into its postings for every term id, or, when it holds fewer than half of
  them (an append of a few documents), the ids of the terms it holds and their offsets.
- **Term dictionary**: terms to term ids in a :class:`~textrec.content.lexicon.Lexicon`,
  front-coded and searched by bisection (about 5 bytes a term, where a dict of strings took
  about 120).
- **Query**: the query's weights ``q(t)`` over *all* its terms; for every query term, add
  ``q(t) · LUT[impact]`` into a per-document accumulator over its postings, then take the top
  k (ties: the smaller document id). This is the exact top k of the quantised score over the
  stored postings: there is no candidate count to tune and no second stage. Cost:
  proportional to the postings of the query's terms.
- **Append** adds a new small segment (rows continue the sequence); the newest four are
  merged when they are of one level, as in an LSM tree (:func:`_merge_policy`); **remove**
  sets a tombstone. A new DF snapshot needs
  a rebuild, which :class:`~textrec.recommend.Recommender` does from the store.

Its recall of the same score computed exactly (without quantisation or pruning), its topic
precision against peer rankings, latency and bytes per document are measured by
``textrec eval`` (``bench/quality.py``); the figures are in ``bench/README.md``, "Related-post
quality".
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import zipfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from textrec.artifacts.atomic import atomic_write
from textrec.content.lexicon import Lexicon, narrow

__all__ = [
    "DEFAULT_TOP_TERMS",
    "IMPACT_LUT",
    "EarlierFormatError",
    "RelatedIndex",
    "quantize_impacts",
]

DEFAULT_TOP_TERMS = 512
"""Terms kept per document at most: the score sums many small contributions of a long
document's terms, so pruning harder loses recall of the exact score (measured in
``bench/README.md``: 64 terms recalled 0.45 of the exact top 10 on petitions, 384 terms 0.94)."""

_FILE_FORMAT = "textrec-related/4"


class EarlierFormatError(ValueError):
    """A related-posts index file that an earlier textrec wrote: not corrupt, only of a format
    this version does not read; it is rebuilt from the store (``textrec build`` rewrites it)."""


def _earlier_format(found: object) -> bool:
    prefix, _, version = str(found).rpartition("/")
    current = int(_FILE_FORMAT.rpartition("/")[2])
    return prefix == "textrec-related" and version.isdigit() and int(version) < current


_POSTINGS = ("terms", "ptr", "widths", "packed", "impacts")
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


BLOCK = 128
"""Postings per block of packed row gaps: each block has its own bit width."""


def _bit_length(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Bits needed for each non-negative value (0 for 0); exact below 2**53."""
    return np.frexp(values.astype(np.float64))[1].astype(np.int64)


_PACK_BLOCKS = 8192
"""Blocks packed at a time (a million postings): packing's scratch arrays, about 60 bytes a
posting, stay a few tens of MB however large the segment."""


def _row_gaps(ptr: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """Every posting's gap, of term-major postings (slot s's postings are ``ptr[s]:ptr[s+1]``
    − ``ptr[0]``, their rows ascending): its row − the term's previous row − 1, and a term's
    first posting's row itself."""
    n = len(rows)
    lens = np.diff(ptr)
    starts = ptr[:-1][lens > 0] - ptr[0]
    gaps = np.zeros(n, np.int64)
    if n:
        gaps[1:] = rows[1:] - rows[:-1] - 1
        gaps[starts] = rows[starts]
        if gaps.min() < 0 or gaps.max() >= 2**32:
            raise ValueError("postings rows must ascend within each term and fit in 32 bits")
    return gaps


def _pack_gaps(
    gaps: npt.NDArray[np.integer[Any]],
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8], npt.NDArray[np.int64]]:
    """``(widths, packed, offsets)``: the gaps (each below 2**32) bit-packed in blocks of
    :data:`BLOCK` postings, each at the width of its largest gap, least significant bit
    first, followed by 8 zero bytes (the kernel reads 8 bytes at a time); ``offsets`` are the
    blocks' (:func:`_block_offsets`). A block takes 2·width whole 64-bit words, so blocks
    never share a word and are packed :data:`_PACK_BLOCKS` at a time."""
    n = len(gaps)
    n_blocks = -(-n // BLOCK)

    def blocks(b0: int, b1: int) -> npt.NDArray[np.int64]:
        out = np.zeros((b1 - b0) * BLOCK, np.int64)
        part = gaps[b0 * BLOCK : b1 * BLOCK]
        out[: len(part)] = part
        return out.reshape(-1, BLOCK)

    widths = np.zeros(n_blocks, np.int64)
    for b0 in range(0, n_blocks, _PACK_BLOCKS):
        b1 = min(b0 + _PACK_BLOCKS, n_blocks)
        widths[b0:b1] = _bit_length(blocks(b0, b1).max(axis=1))
    offsets = _block_offsets(widths)
    words = np.zeros(int(offsets[-1]) // 8 + 1, np.uint64)  # + 8 bytes of slack
    for b0 in range(0, n_blocks, _PACK_BLOCKS):
        b1 = min(b0 + _PACK_BLOCKS, n_blocks)
        w = np.repeat(widths[b0:b1], BLOCK)
        bit = np.repeat(offsets[b0:b1] * 8, BLOCK) + np.tile(np.arange(BLOCK), b1 - b0) * w
        keep = w > 0
        vals, bit, w = blocks(b0, b1).ravel()[keep].astype(np.uint64), bit[keep], w[keep]
        if len(vals):
            word, shift = bit >> 6, (bit & 63).astype(np.uint64)
            # Values never share bits, so OR-ing each word's values is writing them; a value
            # spills into the next word at most once a word (widths are at most 32 bits).
            runs = np.flatnonzero(np.diff(word, prepend=-1))  # each word's first value
            words[word[runs]] = np.bitwise_or.reduceat(vals << shift, runs)
            spill = shift + w.astype(np.uint64) > 64
            words[word[spill] + 1] |= vals[spill] >> (np.uint64(64) - shift[spill])
    return widths.astype(np.uint8), words.view(np.uint8), offsets


def _block_offsets(widths: npt.NDArray[np.integer[Any]]) -> npt.NDArray[np.int64]:
    """Byte offset of each block in the packed gaps (a block of width w takes 16·w bytes)."""
    out = np.zeros(len(widths) + 1, np.int64)
    np.cumsum(widths.astype(np.int64) * (BLOCK // 8), out=out[1:])
    return out


def _term_slots(
    present: npt.NDArray[np.int64], counts: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.int64]]:
    """``(terms, ptr)`` of a segment whose terms ``present`` (ascending ids) have ``counts``
    postings: sparse (``terms`` lists them, ``ptr`` has an entry each) when fewer than half
    of the term ids up to the last have postings, else dense (``terms`` empty, ``ptr`` has an
    entry for every term id up to the last)."""
    if not len(present) or 2 * len(present) >= int(present[-1]) + 1:
        ptr = np.zeros(int(present[-1]) + 2 if len(present) else 1, np.int64)
        ptr[present + 1] = counts
        np.cumsum(ptr, out=ptr)
        return np.zeros(0, np.uint32), ptr
    ptr = np.zeros(len(present) + 1, np.int64)
    np.cumsum(counts, out=ptr[1:])
    return present.astype(np.uint32), ptr


_DECODE_CHUNK = 1 << 20
"""Postings decoded at a time when a file's rows are checked at load and when segments are
merged: their scratch arrays, about 100 bytes a posting, stay near 100 MB."""


def _chunks(offsets: npt.NDArray[np.integer[Any]]) -> Iterator[tuple[int, int]]:
    """Ranges ``lo:hi`` of the entries of ``offsets`` (ascending, one more than the entries)
    holding about :data:`_DECODE_CHUNK` postings each, and at least one entry."""
    lo, n = 0, len(offsets) - 1
    while lo < n:
        hi = int(np.searchsorted(offsets, int(offsets[lo]) + _DECODE_CHUNK, side="right")) - 1
        hi = min(max(hi, lo + 1), n)
        yield lo, hi
        lo = hi


@dataclass(frozen=True)
class _Segment:
    """Term-major postings of a range of rows. A term's *slot*: its id when ``terms`` is
    empty (dense: ``ptr`` has an entry for every term id up to the last with postings), else
    its place in ``terms``, the ascending ids of the terms with postings (sparse: a segment of
    a few documents then costs its own terms, not the vocabulary). Slot s's postings are
    ``ptr[s]:ptr[s+1]``; the first at row = its gap, each next one at the previous row + 1 +
    its gap, bit-packed (:func:`_pack_gaps`: block b at width ``widths[b]`` from byte
    ``offsets[b]`` of ``packed``); ``impacts[p]`` is posting p's impact code."""

    terms: npt.NDArray[np.uint32]
    ptr: npt.NDArray[Any]  # uint32 or int64 (narrow)
    widths: npt.NDArray[np.uint8]
    packed: npt.NDArray[np.uint8]
    impacts: npt.NDArray[np.uint8]
    offsets: npt.NDArray[np.int64]  # _block_offsets(widths), one more than the blocks
    level: int = 0  # merges that made it (_merge_policy); _WHOLE for a compacted index

    @classmethod
    def from_sorted(
        cls,
        term_of: npt.NDArray[np.int64],
        rows: npt.NDArray[np.int64],
        impacts: npt.NDArray[np.uint8],
    ) -> _Segment:
        """A segment of postings sorted by term id, then row: sparse when fewer than half
        of the term ids up to the last have postings, else dense."""
        n = len(term_of)
        starts = np.flatnonzero(np.diff(term_of, prepend=-1)) if n else np.zeros(0, np.int64)
        terms, ptr = _term_slots(term_of[starts], np.diff(np.append(starts, n)))
        widths, packed, offsets = _pack_gaps(_row_gaps(ptr, rows))
        return cls(terms, narrow(ptr), widths, packed, impacts, offsets)

    @classmethod
    def from_rows(
        cls,
        ptr: npt.NDArray[np.int64],
        rows: npt.NDArray[np.int64],
        impacts: npt.NDArray[np.uint8],
    ) -> _Segment:
        """A segment of postings given by term id: term t's are ``ptr[t]:ptr[t+1]``."""
        term_of = np.repeat(np.arange(len(ptr) - 1, dtype=np.int64), np.diff(ptr))
        return cls.from_sorted(term_of, rows, impacts)

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, npt.NDArray[Any]]) -> _Segment:
        """A segment from the arrays of a file, checked so that the kernels never read past
        them; ValueError names what is inconsistent."""
        terms = arrays["terms"].astype(np.uint32, copy=False)
        ptr = arrays["ptr"].astype(np.int64)
        widths = arrays["widths"].astype(np.uint8, copy=False)
        packed = arrays["packed"].astype(np.uint8, copy=False)
        impacts = arrays["impacts"].astype(np.uint8, copy=False)
        n = len(impacts)
        offsets = _block_offsets(widths)
        problems = {
            "terms do not ascend": bool(np.any(np.diff(terms.astype(np.int64)) <= 0)),
            "ptr and terms differ in length": len(terms) > 0 and len(ptr) != len(terms) + 1,
            "ptr does not run from 0 to the postings": len(ptr) == 0 or ptr[0] != 0 or ptr[-1] != n,
            "ptr decreases": bool(np.any(np.diff(ptr) < 0)),
            "widths do not match the postings' blocks": len(widths) != -(-n // BLOCK),
            "a block is wider than 32 bits": bool(np.any(widths > 32)),
            "packed does not match the widths": len(packed) != offsets[-1] + 8,
        }
        wrong = [what for what, bad in problems.items() if bad]
        if wrong:
            raise ValueError(f"postings arrays: {wrong[0]}")
        return cls(terms, narrow(ptr), widths, packed, impacts, offsets, _WHOLE)

    def slot(self, t: int) -> int:
        """Term id t's slot, or -1 when it has no postings here."""
        if not len(self.terms):
            return t if 0 <= t < len(self.ptr) - 1 else -1
        i = int(np.searchsorted(self.terms, t))
        return i if i < len(self.terms) and int(self.terms[i]) == t else -1

    def term_of(self, first: int = 0, last: int | None = None) -> npt.NDArray[np.int64]:
        """The term id of every posting of slots ``first:last`` (all by default)."""
        last = len(self.ptr) - 1 if last is None else last
        lens = np.diff(self.ptr[first : last + 1]).astype(np.int64)
        ids = self.terms[first:last].astype(np.int64) if len(self.terms) else np.arange(first, last)
        return np.repeat(ids, lens)

    def gaps(self, lo: int, hi: int) -> npt.NDArray[np.int64]:
        """The packed gaps of postings ``lo:hi``."""
        p = np.arange(lo, hi, dtype=np.int64)
        b = p // BLOCK
        w = self.widths[b].astype(np.uint64)
        bit = self.offsets[b] * 8 + (p % BLOCK) * w.astype(np.int64)
        if len(self.packed) % 8 == 0 and self.packed.ctypes.data % 8 == 0:
            words = self.packed.view("<u8")  # the layout _pack_gaps writes: whole words
            word, shift = bit >> 6, (bit & 63).astype(np.uint64)
            high = words[np.minimum(word + 1, len(words) - 1)]
            # (two shifts: a shift by 64 would be undefined; this one gives 0 at shift 0)
            value: npt.NDArray[np.uint64] = (words[word] >> shift) | (
                high << (np.uint64(63) - shift) << np.uint64(1)
            )
        else:  # as a file could give it: read 8 bytes at each value's first byte
            byte, shift = bit >> 3, (bit & 7).astype(np.uint64)
            value = self.packed[byte[:, None] + np.arange(8)].view("<u8").ravel() >> shift
        return (value & ((np.uint64(1) << w) - np.uint64(1))).astype(np.int64)

    def term_rows(self, t: int) -> npt.NDArray[np.int64]:
        """Rows of term id t's postings, ascending."""
        s = self.slot(t)
        return self.rows(s, s + 1) if s >= 0 else np.zeros(0, np.int64)

    def rows(self, first: int = 0, last: int | None = None) -> npt.NDArray[np.int64]:
        """Rows of the postings of slots ``first:last`` (all by default), term-major."""
        ptr = self.ptr[first : None if last is None else last + 1].astype(np.int64)
        lo = int(ptr[0]) if len(ptr) else 0
        steps = self.gaps(lo, int(ptr[-1]) if len(ptr) else 0) + 1
        lens = np.diff(ptr)
        has = lens > 0
        starts = ptr[:-1][has] - lo
        total = np.cumsum(steps)
        before = np.repeat(total[starts] - steps[starts], lens[has])
        rows: npt.NDArray[np.int64] = total - before - 1
        return rows

    def max_row(self) -> int:
        """The largest row of any posting (-1 for none), decoded a few million at a time."""
        best = -1
        for first, last in _chunks(self.ptr):
            rows = self.rows(first, last)
            if len(rows):
                best = max(best, int(rows.max()))
        return best

    @classmethod
    def build(cls, kept: sp.csr_matrix, first_row: int, max_impact: float) -> _Segment:
        """The segment of documents (rows of ``kept``, indices sorted) from ``first_row`` on:
        its cost is that of their postings, whatever the vocabulary's size."""
        lens = np.diff(kept.indptr)
        row_of = np.repeat(np.arange(first_row, first_row + kept.shape[0], dtype=np.int64), lens)
        term_of = kept.indices.astype(np.int64)
        order = np.argsort(term_of, kind="stable")  # rows stay ascending within each term
        return cls.from_sorted(
            term_of[order], row_of[order], quantize_impacts(kept.data[order] / max_impact)
        )

    @property
    def n_ids(self) -> int:
        """One more than the largest term id with postings here (0 for none)."""
        if len(self.terms):
            return int(self.terms[-1]) + 1
        return len(self.ptr) - 1

    def slots(self, lo: int, hi: int) -> tuple[int, int]:
        """The slots of term ids ``lo:hi``."""
        if len(self.terms):
            return int(np.searchsorted(self.terms, lo)), int(np.searchsorted(self.terms, hi))
        n = len(self.ptr) - 1
        return min(lo, n), min(hi, n)

    @classmethod
    def merge(cls, segments: Sequence[_Segment]) -> _Segment:
        """One segment from several, older first: rows stay ascending within each term (the
        older segment's postings of a term first). Decoded a range of term ids at a time
        (about :data:`_DECODE_CHUNK` postings), so that merging holds the merged gaps (4 bytes
        a posting) and impacts, not every posting's row, term and order as int64."""
        n_ids = max(s.n_ids for s in segments)
        counts = np.zeros(n_ids, np.int64)
        for seg in segments:
            lens = np.diff(seg.ptr).astype(np.int64)
            if len(seg.terms):
                counts[seg.terms] += lens
            else:
                counts[: len(lens)] += lens
        cum = np.zeros(n_ids + 1, np.int64)
        np.cumsum(counts, out=cum[1:])
        total = int(cum[-1])
        gaps = np.zeros(total, np.uint32)
        impacts = np.zeros(total, np.uint8)
        for lo, hi in _chunks(cum):
            terms, rows, codes = [], [], []
            for seg in segments:
                a, b = seg.slots(lo, hi)
                if b > a:
                    terms.append(seg.term_of(a, b))
                    rows.append(seg.rows(a, b))
                    codes.append(seg.impacts[int(seg.ptr[a]) : int(seg.ptr[b])])
            if terms:
                order = np.argsort(np.concatenate(terms), kind="stable")
                p0, p1 = int(cum[lo]), int(cum[hi])
                gaps[p0:p1] = _row_gaps(cum[lo : hi + 1], np.concatenate(rows)[order])
                impacts[p0:p1] = np.concatenate(codes)[order]
        present = np.flatnonzero(counts)
        terms_out, ptr = _term_slots(present, counts[present])
        widths, packed, offsets = _pack_gaps(gaps)
        level = max(s.level for s in segments) + 1
        return cls(terms_out, narrow(ptr), widths, packed, impacts, offsets, level)

    @property
    def nbytes(self) -> int:
        return int(
            self.terms.nbytes
            + self.ptr.nbytes
            + self.widths.nbytes
            + self.packed.nbytes
            + self.impacts.nbytes
            + self.offsets.nbytes
        )


_MERGE_FACTOR = 4
_WHOLE = 1 << 20
"""The level of a segment that holds a whole index (compacted, or read from a file): the
merge policy never merges appended segments into it (only :meth:`RelatedIndex.compact`)."""


def _merge_policy(segments: tuple[_Segment, ...], max_segments: int) -> tuple[_Segment, ...]:
    """Segments after an append, as an LSM tree keeps them: a new segment is of level 0, and
    whenever the newest 4 are of one level they are merged into one of the next level, so
    that every posting is merged about log4(n) times over a build or a stream of n appends,
    with at most 3 segments a level. One of them far larger than the other three together
    (over 64k postings and 16 times theirs, as a whole index added at once, then appends)
    is moved up a level instead of being merged for their sake. Past ``max_segments``
    every segment after the first is merged into one. Merging only neighbours keeps the
    rows of the segments in order."""
    out = list(segments)
    f = _MERGE_FACTOR
    while len(out) >= f:
        tail = out[-f:]
        if len({s.level for s in tail}) != 1 or tail[0].level >= _WHOLE:
            break
        sizes = [len(s.impacts) for s in tail]
        big = max(sizes)
        if big > 65536 and big > f * f * (sum(sizes) - big):
            j = len(out) - f + sizes.index(big)
            out[j] = dataclasses.replace(out[j], level=out[j].level + 1)
            continue
        out[-f:] = [_Segment.merge(tail)]
    if len(out) > max_segments:
        out[1:] = [_Segment.merge(out[1:])]
    return tuple(out)


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
    seg: _Segment,
    lut: npt.NDArray[np.float32],
    acc: npt.NDArray[np.float32],
    touched: npt.NDArray[np.int64],
    nt: int,
) -> int:
    """acc[row] += q_w · lut[impact] over each query term's postings in ``seg``; returns the
    new count of touched rows (each row's first touch is recorded in ``touched``)."""
    if _kernels is not None:
        return int(
            _kernels.accumulate(
                q_terms,
                q_w,
                seg.terms,
                seg.ptr,
                seg.widths,
                seg.offsets,
                seg.packed,
                seg.impacts,
                lut,
                acc,
                touched,
                nt,
            )
        )
    for t, w in zip(q_terms.tolist(), q_w, strict=True):
        s = seg.slot(t)
        if s < 0:
            continue
        r = seg.term_rows(t)  # distinct within one term
        new = r[acc[r] == 0.0]
        touched[nt : nt + len(new)] = new
        nt += len(new)
        acc[r] = acc[r] + w * lut[seg.impacts[seg.ptr[s] : seg.ptr[s + 1]]]
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


def _append_ids(ids: npt.NDArray[Any], new: npt.NDArray[np.int64]) -> npt.NDArray[Any]:
    """``ids`` and then ``new`` (both ascending), in ``ids``'s type while ``new`` fits it:
    one copy of the array an append."""
    info = np.iinfo(ids.dtype)
    if len(new) and int(new[0]) >= info.min and int(new[-1]) <= info.max:
        return np.concatenate([ids, new.astype(ids.dtype)])
    return narrow(np.concatenate([ids.astype(np.int64), new]))


def _rows_of(
    doc_ids: npt.NDArray[Any], ids: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """The rows of these ids among ``doc_ids``, and which of them are there. The ids are
    searched in the array's own type (mixing types would copy the array at every call)."""
    info = np.iinfo(doc_ids.dtype)
    ok = (ids >= info.min) & (ids <= info.max)
    rows = np.searchsorted(doc_ids, np.where(ok, ids, 0).astype(doc_ids.dtype))
    ok &= rows < len(doc_ids)
    ok[ok] &= doc_ids[rows[ok]] == ids[ok]
    return rows.astype(np.int64), ok


@dataclass(frozen=True)
class _State:
    """What a query reads, swapped whole by writers (copy-on-write)."""

    segments: tuple[_Segment, ...]
    doc_ids: npt.NDArray[Any]  # row -> document id, ascending (narrow)
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
        max_segments: int = 24,
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
        self._lexicon = Lexicon(vocabulary)
        self._state = _State((), np.zeros(0, np.uint32), np.zeros(0, np.bool_))
        self._origin = self._state  # what a frozen() copy was made from
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
        """Bytes held for postings, row ids, tombstones and the term dictionary."""
        state = self._state
        return (
            sum(s.nbytes for s in state.segments)
            + state.doc_ids.nbytes
            + state.dead.nbytes
            + self._lexicon.nbytes
        )

    def terms(self) -> list[str]:
        """Every term the index knows, in term id order."""
        return self._lexicon.terms()

    def impact(self, weight: float) -> float:
        """The value a document weight is stored as (quantised)."""
        code = quantize_impacts(np.array([weight / self.max_impact]))[0]
        return float(self._lut[code])

    # writes ----------------------------------------------------------------------------------

    def _matrix(self, weights: Sequence[Mapping[str, float]]) -> sp.csr_matrix:
        indptr = np.zeros(len(weights) + 1, np.int64)
        terms: list[str] = []
        data: list[float] = []
        for i, w in enumerate(weights):
            for term, value in w.items():
                if value > 0:
                    terms.append(term)
                    data.append(value)
            indptr[i + 1] = len(terms)
        distinct = list(dict.fromkeys(terms))
        ids = dict(zip(distinct, self._lexicon.add(distinct).tolist(), strict=True))
        indices = np.fromiter((ids[t] for t in terms), np.int64, len(terms))
        return sp.csr_matrix(
            (np.array(data, np.float64), indices, indptr),
            shape=(len(weights), max(len(self._lexicon), 1)),
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
            segments = _merge_policy((*state.segments, segment), self.max_segments)
            self._state = _State(
                segments,
                _append_ids(state.doc_ids, new_ids),
                np.concatenate([state.dead, np.zeros(len(new_ids), np.bool_)]),
            )

    def remove(self, doc_ids: Iterable[int]) -> int:
        """Tombstone documents; returns how many were indexed and live."""
        with self._write_lock:
            state = self._state
            rows, ok = _rows_of(state.doc_ids, np.asarray(list(doc_ids), np.int64))
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
            if state.segments and (len(state.segments) > 1 or state.segments[0].level != _WHOLE):
                whole = (
                    _Segment.merge(state.segments) if len(state.segments) > 1 else state.segments[0]
                )
                merged = (dataclasses.replace(whole, level=_WHOLE),)
                self._state = _State(merged, state.doc_ids, state.dead)

    def frozen(self) -> RelatedIndex:
        """A copy of the index as it is now that later writes to this one do not reach: it
        shares the postings arrays and the term dictionary (no array is copied, only the
        dict of terms added since the index was built), so a
        writer can take it under its lock and :meth:`save` it after letting go."""
        with self._write_lock:
            copy = RelatedIndex(
                top_terms=self.top_terms,
                max_segments=self.max_segments,
                max_impact=self.max_impact,
                ranking=self.ranking,
            )
            copy._lexicon = self._lexicon.copy()
            copy._state = copy._origin = self._state
        return copy

    def adopt_compacted(self, copy: RelatedIndex) -> bool:
        """Take the one segment ``copy`` (a :meth:`frozen` copy of this index) was compacted
        into by :meth:`save`, in place of the segments it was frozen with, if this index
        still starts with them (no merge since); returns whether it did. Saving a frozen
        copy thus compacts this index as saving it would, without holding its lock."""
        merged, before = copy._state.segments, copy._origin.segments
        if len(merged) != 1 or len(before) < 2:
            return False
        with self._write_lock:
            state = self._state
            n = len(before)
            if len(state.segments) < n or any(
                a is not b for a, b in zip(state.segments, before, strict=False)
            ):
                return False  # merged meanwhile: keep what is there
            self._state = _State((*merged, *state.segments[n:]), state.doc_ids, state.dead)
        return True

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
            else _Segment.from_rows(
                np.zeros(1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.uint8)
            )
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
        vocab = json.dumps(self._lexicon.terms(), ensure_ascii=False).encode("utf-8")

        def write(f: BinaryIO) -> None:
            np.savez(
                f,
                header=np.frombuffer(json.dumps(header).encode(), np.uint8),
                vocabulary=np.frombuffer(vocab, np.uint8),
                doc_ids=state.doc_ids,
                dead=state.dead,
                terms=seg.terms,
                ptr=seg.ptr,
                widths=seg.widths,
                packed=seg.packed,
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
                found = header.get("format")
                if found != _FILE_FORMAT:
                    if _earlier_format(found):
                        raise EarlierFormatError(
                            f"{path} is of an earlier textrec's format ({found!r}; this "
                            f"version reads {_FILE_FORMAT!r})"
                        )
                    raise ValueError(f"format {found!r} is not {_FILE_FORMAT!r}")
                vocab = json.loads(bytes(z["vocabulary"]).decode("utf-8"))
                arrays = {k: z[k] for k in ("doc_ids", "dead", *_POSTINGS)}
                segment = _Segment.from_arrays(arrays)
                if segment.max_row() >= len(arrays["doc_ids"]):
                    raise ValueError("a posting's row is beyond the documents")
        except EarlierFormatError:
            raise
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
        if len(segment.impacts):
            segments = (segment,)
        index._state = _State(segments, narrow(arrays["doc_ids"]), arrays["dead"])
        return index, header

    def document_ids(self) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Every document id ever added, ascending, and which of them are removed."""
        state = self._state
        return state.doc_ids.astype(np.int64), state.dead.copy()

    def live_summary(self) -> tuple[int, int]:
        """``(count, sum of ids)`` of the live documents, to compare with the store."""
        state = self._state
        live = state.doc_ids[~state.dead].astype(np.int64)
        return len(live), int(live.sum())

    # queries ---------------------------------------------------------------------------------

    def _take_buffers(self, n: int) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """This thread's accumulators, all 0, taken out of its scratch space: a query gives
        them back only once it has reset them (:meth:`_give_back`), so a query that fails
        at any point (an exception, Ctrl-C, out of memory) leaves no dirty accumulator for the
        next one, which then allocates fresh ones."""
        bufs = getattr(self._scratch, "bufs", None)
        self._scratch.bufs = None
        if bufs is None or len(bufs[0]) < n:
            size = max(n, 1024) + n // 4
            bufs = (np.zeros(size, np.float32), np.zeros(size, np.int64))
        return bufs

    def _give_back(self, acc: npt.NDArray[np.float32], touched: npt.NDArray[np.int64]) -> None:
        self._scratch.bufs = (acc, touched)

    def search(
        self, weights: Mapping[str, float], k: int, *, exclude: int | None = None
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
        """The ``k`` documents of highest score ``Σ_t q(t) · w(t, d)`` (quantised ``w``) for
        the query's weights ``q``: ``(document ids, scores)``, by score descending then id;
        fewer when fewer documents share a term with the query. ``exclude`` is a document id
        to leave out."""
        if not isinstance(k, int) or isinstance(k, bool) or k < 0:
            raise ValueError(f"k must be a whole number >= 0, got {k!r}")
        state = self._state
        empty = (np.zeros(0, np.int64), np.zeros(0, np.float32))
        if k == 0 or not state.segments:
            return empty
        terms = [t for t, w in weights.items() if w > 0]
        ids = self._lexicon.ids(terms)
        known = ids >= 0
        if not known.any():
            return empty
        q_terms = ids[known]
        q_w = np.array([weights[t] for t in terms], np.float32)[known]
        if not q_w.all():  # weights lost to float32 underflow add nothing to any score
            q_terms, q_w = q_terms[q_w > 0], q_w[q_w > 0]
        exclude_row = -1
        if exclude is not None:
            rows, ok = _rows_of(state.doc_ids, np.array([exclude], np.int64))
            if ok[0]:
                exclude_row = int(rows[0])
        n = len(state.doc_ids)
        acc, touched = self._take_buffers(n)
        nt = 0
        for seg in state.segments:  # acc[:n]: a row beyond the documents is a corrupt posting
            nt = _accumulate(q_terms, q_w, seg, self._lut, acc[:n], touched, nt)
        rows, scores = _top_k(acc, touched, nt, exclude_row, state.dead, k)
        self._give_back(acc, touched)  # top_k has reset every touched accumulator
        found = scores >= 0
        return state.doc_ids[rows[found]].astype(np.int64), scores[found]

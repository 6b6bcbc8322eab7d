"""The related-posts index's term dictionary: terms to term ids in about 5 bytes a term.

A Python ``dict`` of the terms takes about 60 bytes a term, and the strings themselves about 60
more: on the petitions (29,548 terms over 3,668 documents) that is more than the whole
postings of the related-posts index. :class:`Lexicon` keeps the terms it is built with, which
ascend (the DF snapshot's sorted terms: code point order is UTF-8 byte order), front-coded
in blocks of :data:`BLOCK` as Lucene's terms dictionary does: each term of a block is stored
as the length of the prefix it shares with the one before, then the rest of its UTF-8 bytes
(lengths as LEB128 varints; a block's first term shares nothing). A term is found by
bisection over the blocks' first terms, then a walk through one block (the compiled
``lookup`` of ``textrec/_related.c``, or the same in Python where that could not be built).
Terms added later (documents appended under the same snapshot bring new words) get the next
ids and are kept in a ``dict`` until the index is built again.
"""

from __future__ import annotations

import bisect
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["BLOCK", "Lexicon"]

BLOCK = 16
"""Terms a front-coded block holds."""

_compiled: Any
try:
    from textrec import _related as _compiled
except ImportError:  # pragma: no cover - exercised by setting _kernel = None in the tests
    _compiled = None
_kernel: Any = _compiled


def _encode(term: str) -> bytes:
    if not isinstance(term, str):
        raise TypeError(f"term dictionary: terms must be str, got {type(term).__name__}")
    return term.encode("utf-8", "surrogatepass")


def narrow(ascending: npt.NDArray[np.integer[Any]]) -> npt.NDArray[Any]:
    """Ascending integers (block offsets here; the related-posts index's per-term offsets
    and document ids) as uint32 when they all fit (4 bytes each instead of 8), else int64."""
    fits = not len(ascending) or (int(ascending[0]) >= 0 and int(ascending[-1]) < 2**32)
    return ascending.astype(np.uint32 if fits else np.int64, copy=False)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _shared(a: bytes, b: bytes) -> int:
    """The length of the prefix ``a`` and ``b`` share."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def _front_code(terms: Sequence[bytes]) -> tuple[bytes, npt.NDArray[Any]]:
    """``(blob, starts)``: the terms front-coded in blocks of :data:`BLOCK`, block b from
    byte ``starts[b]``."""
    blob = bytearray()
    starts = np.zeros(-(-len(terms) // BLOCK) + 1, np.int64)
    for b, i in enumerate(range(0, len(terms), BLOCK)):
        starts[b] = len(blob)
        prev = b""
        for term in terms[i : i + BLOCK]:
            p = _shared(prev, term)
            blob += _varint(p) + _varint(len(term) - p) + term[p:]
            prev = term
    starts[-1] = len(blob)
    return bytes(blob), narrow(starts)


class _Blocks:
    """The Python reading of a front-coded blob (what ``lookup`` does in C), in place: a
    lookup does not copy the dictionary."""

    def __init__(self, blob: npt.NDArray[np.uint8], starts: npt.NDArray[Any], n: int) -> None:
        self._blob, self._starts, self._n = blob.data, starts, n

    def _varint(self, pos: int) -> tuple[int, int]:
        value = shift = 0
        while True:
            byte = self._blob[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value, pos

    def block(self, b: int) -> Iterator[bytes]:
        """The terms of block b, in order."""
        pos, end = int(self._starts[b]), int(self._starts[b + 1])
        term = b""
        for _ in range(min(BLOCK, self._n - b * BLOCK)):
            if pos >= end:
                raise ValueError("term dictionary: a block ends before its terms")
            p, pos = self._varint(pos)
            length, pos = self._varint(pos)
            if p > len(term):
                raise ValueError("term dictionary: a term shares more than the term before")
            term = term[:p] + self._blob[pos : pos + length]
            pos += length
            yield term

    def first(self, b: int) -> bytes:
        return next(self.block(b))

    def find(self, key: bytes) -> int:
        n_blocks = len(self._starts) - 1
        b = bisect.bisect_right(range(n_blocks), key, key=self.first) - 1
        if b < 0:
            return -1
        for j, term in enumerate(self.block(b)):
            if term == key:
                return b * BLOCK + j
            if term > key:
                break
        return -1


class Lexicon:
    """Terms ↔ ids ``0 … len − 1``: the ascending prefix of the terms given, front-coded
    (see the module docstring), then every other term (given out of order, or added later)
    in a dict. ``ValueError`` for a term given twice, ``TypeError`` for one that is not a
    str."""

    def __init__(self, terms: Iterable[str] = ()) -> None:
        terms = list(terms)
        encoded = [_encode(t) for t in terms]
        n = 1 if encoded else 0
        while n < len(encoded) and encoded[n - 1] < encoded[n]:
            n += 1
        blob, self._starts = _front_code(encoded[:n])
        self._blob: npt.NDArray[np.uint8] = np.frombuffer(blob, np.uint8)
        self._n = n
        self._extra: dict[str, int] = {}
        rest = terms[n:]
        if rest:
            known = self.ids(rest)
            for i, (term, found) in enumerate(zip(rest, known.tolist(), strict=True)):
                if found >= 0 or term in self._extra:
                    raise ValueError(f"term dictionary: {term!r} is given twice")
                self._extra[term] = n + i

    def __len__(self) -> int:
        return self._n + len(self._extra)

    def copy(self) -> Lexicon:
        """A copy that shares the blob (never written) and has its own added terms."""
        out = Lexicon.__new__(Lexicon)
        out._starts, out._blob, out._n = self._starts, self._blob, self._n
        out._extra = dict(self._extra)
        return out

    @property
    def nbytes(self) -> int:
        """The blob, its block offsets, and the added terms' dict and strings."""
        extra = sys.getsizeof(self._extra) if self._extra else 0
        extra += sum(sys.getsizeof(t) + 28 for t in self._extra)  # + the id (an int object)
        return int(self._blob.nbytes + self._starts.nbytes + extra)

    def ids(self, terms: Sequence[str]) -> npt.NDArray[np.int64]:
        """Each term's id, or -1 for a term not in the dictionary."""
        out = np.full(len(terms), -1, np.int64)
        if not len(terms):
            return out
        if self._n:
            if _kernel is not None:
                _kernel.lookup(self._blob, self._starts, self._n, BLOCK, list(terms), out)
            else:
                blocks = _Blocks(self._blob, self._starts, self._n)
                for j, key in enumerate(map(_encode, terms)):
                    out[j] = blocks.find(key)
        if self._extra:
            for j in np.flatnonzero(out < 0).tolist():
                out[j] = self._extra.get(terms[j], -1)
        return out

    def add(self, terms: Sequence[str]) -> npt.NDArray[np.int64]:
        """Each term's id, giving the next ids to terms not yet in the dictionary (in order
        of first appearance)."""
        out = self.ids(terms)
        for j in np.flatnonzero(out < 0).tolist():
            out[j] = self._extra.setdefault(terms[j], len(self))
        return out

    def terms(self) -> list[str]:
        """Every term, in id order."""
        blocks = _Blocks(self._blob, self._starts, self._n)
        base = [
            term.decode("utf-8", "surrogatepass")
            for b in range(len(self._starts) - 1)
            for term in blocks.block(b)
        ]
        return base + sorted(self._extra, key=self._extra.__getitem__)

"""The related-posts index's term dictionary: terms to term ids in about 10 bytes a term.

A Python ``dict`` of the terms takes about 60 bytes a term, and the strings themselves about 60
more: on the petitions (29,548 terms over 3,668 documents) that is more than the whole
postings of the related-posts index. :class:`Lexicon` keeps the terms it is built with, which
ascend (the DF snapshot's sorted terms: code point order is UTF-8 byte order), as one UTF-8
blob and their offsets, and finds a term by bisection (the compiled ``lookup`` of
``textrec/_related.c``, or a Python bisection where that could not be built). Terms added
later (documents appended under the same snapshot bring new words) get the next ids and are
kept in a ``dict`` until the index is built again.
"""

from __future__ import annotations

import bisect
import itertools
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["Lexicon"]

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


class _Sorted(Sequence[bytes]):
    """The blob's terms as a sequence of bytes, for :func:`bisect.bisect_left`."""

    def __init__(self, blob: npt.NDArray[np.uint8], starts: npt.NDArray[Any]) -> None:
        self._blob, self._starts = blob, starts

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __getitem__(self, i: Any) -> Any:
        return self._blob[int(self._starts[i]) : int(self._starts[i + 1])].tobytes()


class Lexicon:
    """Terms ↔ ids ``0 … len − 1``: the ascending prefix of the terms given, as one UTF-8
    blob searched by bisection, then every other term (given out of order, or added later)
    in a dict. ``ValueError`` for a term given twice, ``TypeError`` for one that is not a
    str."""

    def __init__(self, terms: Iterable[str] = ()) -> None:
        terms = list(terms)
        encoded = [_encode(t) for t in terms]
        n = 1 if encoded else 0
        while n < len(encoded) and encoded[n - 1] < encoded[n]:
            n += 1
        lengths = np.fromiter((len(e) for e in encoded[:n]), np.int64, n)
        starts = np.zeros(n + 1, np.int64)
        np.cumsum(lengths, out=starts[1:])
        self._starts: npt.NDArray[Any] = starts.astype(
            np.uint32 if starts[-1] < 2**32 else np.int64
        )
        self._blob: npt.NDArray[np.uint8] = np.frombuffer(b"".join(encoded[:n]), np.uint8)
        self._extra: dict[str, int] = {}
        rest = terms[n:]
        if rest:
            known = self.ids(rest)
            for i, (term, found) in enumerate(zip(rest, known.tolist(), strict=True)):
                if found >= 0 or term in self._extra:
                    raise ValueError(f"term dictionary: {term!r} is given twice")
                self._extra[term] = n + i

    def __len__(self) -> int:
        return len(self._starts) - 1 + len(self._extra)

    def copy(self) -> Lexicon:
        """A copy that shares the blob (never written) and has its own added terms."""
        out = Lexicon.__new__(Lexicon)
        out._starts, out._blob, out._extra = self._starts, self._blob, dict(self._extra)
        return out

    @property
    def nbytes(self) -> int:
        """The blob, its offsets, and the added terms' dict and strings."""
        extra = sys.getsizeof(self._extra) if self._extra else 0
        extra += sum(sys.getsizeof(t) + 28 for t in self._extra)  # + the id (an int object)
        return int(self._blob.nbytes + self._starts.nbytes + extra)

    def ids(self, terms: Sequence[str]) -> npt.NDArray[np.int64]:
        """Each term's id, or -1 for a term not in the dictionary."""
        out = np.full(len(terms), -1, np.int64)
        if not len(terms):
            return out
        if len(self._starts) > 1:
            if _kernel is not None:
                _kernel.lookup(self._blob, self._starts, list(terms), out)
            else:
                view = _Sorted(self._blob, self._starts)
                for j, key in enumerate(map(_encode, terms)):
                    i = bisect.bisect_left(view, key)
                    if i < len(view) and view[i] == key:
                        out[j] = i
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
        blob = self._blob.tobytes()
        starts = self._starts.tolist()
        base = [blob[a:b].decode("utf-8", "surrogatepass") for a, b in itertools.pairwise(starts)]
        return base + sorted(self._extra, key=self._extra.__getitem__)

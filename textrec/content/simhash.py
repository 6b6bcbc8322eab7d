"""64-bit SimHash fingerprints from SHA-512 hyperplanes: the one definition.

Schemes ``simhash64-v1`` and ``simhash64-v2``
---------------------------------------------
The derivation below is the same in both; the version names the term scheme, which decides
what the terms are (:mod:`textrec.content.tokenize`: v2 adds Latin-script words and judges
each morpheme by its exact tag). A store records its scheme, and fingerprints of different
schemes are never compared.

Input: a document's terms with non-negative finite weights ``w(t)`` (TF-IDF, see
:mod:`textrec.content.tfidf`). Terms are the normalised strings of
:mod:`textrec.content.tokenize` (NFKC, lower-cased) and are hashed exactly as given.

1. **Hyperplane normal of a term.** ``D = SHA-512(UTF-8 bytes of t)``, 64 bytes. Byte ``j``
   (``j = 0 … 63``, in digest order), read unsigned as ``b_j ∈ [0, 255]``, gives component
   ``v_j(t) = 2·b_j − 255``: an odd integer in ``[−255, 255]``, symmetric around zero. So
   ``v(t) ∈ Z^64`` is the term's row of the random projection, and no matrix is stored.
2. **Quantised weights.** With ``m = max_t w(t)``, each weight becomes the integer
   ``q(t) = floor(w(t) / m · 2^20 + 0.5)`` (IEEE-754 double arithmetic). Only the direction of
   the weight vector matters, and everything after this step is exact integer arithmetic, so
   the result does not depend on summation order, BLAS, CPU or runner.
3. **Projection.** ``S_j = Σ_t q(t) · v_j(t)`` (exact, 64-bit integers).
4. **Bits.** Bit ``j`` is 1 when ``S_j > 0`` and 0 otherwise, so a zero sum gives 0.
   Bit ``j`` has value ``2^j``: hyperplane 0 is the least significant bit.
5. **Text form.** The unsigned integer as 16 lower-case hex digits, zero-padded
   (``format(fp, "016x")``).

A document with no terms, or whose weights are all zero, has fingerprint ``0``.

The Hamming distance between fingerprints estimates the angle between weight vectors:
``P[bit differs] = θ / π``, so ``cos(π · d / 64)`` estimates the cosine similarity.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import numpy.typing as npt

from textrec.content.tfidf import DFSnapshot, tfidf_weights

_compiled: Any
try:
    from textrec import _batch as _compiled
except ImportError:  # pragma: no cover - not built here; the numpy path gives the same values
    _compiled = None

__all__ = [
    "BITS",
    "SCHEME",
    "SCHEMES",
    "SCHEME_V1",
    "SchemeMismatchError",
    "check_scheme",
    "estimated_cosine",
    "fingerprint_hex",
    "hamming",
    "parse_fingerprint",
    "simhash",
    "simhash_batch",
    "simhash_counts",
    "term_vectors",
]

SCHEME_V1 = "simhash64-v1"
"""The scheme of stores made before term scheme v2: Mecab nouns as KoNLPy gives them."""

SCHEME = "simhash64-v2"
"""The scheme of new stores: the fingerprint derivation above, term scheme v2 and the default
term weighting."""

SCHEMES = (SCHEME_V1, SCHEME)
"""The base scheme names textrec reads, oldest first."""

BITS = 64
_QUANT = float(1 << 20)
_MASK = (1 << BITS) - 1


class SchemeMismatchError(ValueError):
    """Fingerprints of different schemes or DF snapshots were about to be combined."""


def check_scheme(expected: str, found: str, *, what: str) -> None:
    """Refuse to combine fingerprints of two schemes (or two DF snapshots)."""
    if expected != found:
        raise SchemeMismatchError(
            f"{what} has {found!r} but {expected!r} was expected; fingerprints of different "
            f"schemes or DF snapshots cannot be compared. Rebuild with `textrec build`."
        )


@lru_cache(maxsize=1 << 20)
def _digest(term: str) -> bytes:
    return hashlib.sha512(term.encode("utf-8")).digest()


def term_vectors(terms: Iterable[str]) -> npt.NDArray[np.int64]:
    """The hyperplane components ``v(t)`` of each term, as an ``(n, 64)`` int64 array.

    Digests are cached (up to about a million terms), so a term is hashed once per process.
    """
    raw = b"".join(_digest(t) for t in terms)
    b = np.frombuffer(raw, dtype=np.uint8).reshape(-1, BITS).astype(np.int64)
    return 2 * b - 255


def simhash(weights: Mapping[str, float]) -> int:
    """The 64-bit fingerprint of a weighted term set, as an unsigned int (scheme above)."""
    if not weights:
        return 0
    terms = list(weights)
    values = [weights[t] for t in terms]
    for term, w in zip(terms, values, strict=True):
        if not 0.0 <= w < math.inf:  # also refuses NaN
            raise ValueError(f"weights must be finite and >= 0; term {term!r} has {w!r}")
    m = max(values)
    if m == 0.0:
        return 0
    # floor(w / m · 2^20 + 0.5) in IEEE doubles, exactly as numpy would compute it.
    q = [math.floor(w / m * _QUANT + 0.5) for w in values]
    kept = [(t, x) for t, x in zip(terms, q, strict=True) if x > 0]
    sums = np.array([x for _, x in kept], np.int64) @ term_vectors(t for t, _ in kept)
    bits = np.packbits(sums > 0, bitorder="little")
    return int.from_bytes(bits.tobytes(), "little")


def simhash_batch(weights_list: Sequence[Mapping[str, float]]) -> list[int]:
    """:func:`simhash` of many documents at once: the same values, in one call of the compiled
    helper ``textrec._batch`` where it is built, else with a few numpy calls per chunk of
    about 16,000 terms instead of several per document (much faster for short texts)."""
    if _compiled is not None and all(type(w) is dict for w in weights_list):
        codes: list[int] | None = _compiled.simhash_many(list(weights_list), None, 0.0, _digest)
        if codes is not None:
            return codes
    return _simhash_batch_numpy(weights_list)


def simhash_counts(counts_list: Sequence[Mapping[str, int]], snapshot: DFSnapshot) -> list[int]:
    """:func:`simhash` of the default TF-IDF weights (:func:`~textrec.content.tfidf.tfidf_weights`)
    of many documents' term counts under ``snapshot``: weights and fingerprints fused in the
    compiled helper where it is built, without building the weight dicts; otherwise
    ``simhash_batch`` of ``tfidf_weights``. The same values either way."""
    idf = snapshot.idf_table()
    if _compiled is not None and type(idf) is dict and all(type(c) is dict for c in counts_list):
        codes: list[int] | None = _compiled.simhash_many(
            list(counts_list), idf, float(snapshot.unseen_idf), _digest
        )
        if codes is not None:
            return codes
    return simhash_batch([tfidf_weights(c, snapshot) for c in counts_list])


def _simhash_batch_numpy(weights_list: Sequence[Mapping[str, float]]) -> list[int]:
    out = [0] * len(weights_list)
    q_all: list[int] = []
    terms_all: list[str] = []
    starts: list[int] = []  # where each document of the chunk starts in q_all
    docs: list[int] = []  # which document each start belongs to
    for i, weights in enumerate(weights_list):
        terms = list(weights)
        values = [weights[t] for t in terms]
        for term, w in zip(terms, values, strict=True):
            if not 0.0 <= w < math.inf:
                raise ValueError(f"weights must be finite and >= 0; term {term!r} has {w!r}")
        m = max(values, default=0.0)
        if m == 0.0:
            continue
        begin = len(q_all)
        for t, w in zip(terms, values, strict=True):
            x = math.floor(w / m * _QUANT + 0.5)
            if x > 0:
                q_all.append(x)
                terms_all.append(t)
        if len(q_all) > begin:
            starts.append(begin)
            docs.append(i)
        if len(q_all) >= _BATCH_TERMS:
            _project(q_all, terms_all, starts, docs, out)
            q_all, terms_all, starts, docs = [], [], [], []
    if q_all:
        _project(q_all, terms_all, starts, docs, out)
    return out


_BATCH_TERMS = 16_384


def _project(
    q: list[int], terms: list[str], starts: list[int], docs: list[int], out: list[int]
) -> None:
    """Steps 3-4 of the scheme for a chunk of documents (none of them empty)."""
    products = term_vectors(terms) * np.array(q, np.int64)[:, None]
    sums = np.add.reduceat(products, np.array(starts, np.int64), axis=0)
    codes = np.packbits(sums > 0, axis=1, bitorder="little").view("<u8").ravel()
    for i, code in zip(docs, codes.tolist(), strict=True):
        out[i] = int(code)


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two 64-bit fingerprints."""
    return ((a ^ b) & _MASK).bit_count()


def estimated_cosine(distance: int | float) -> float:
    """SimHash's estimate of the cosine similarity at a Hamming distance: ``cos(π·d/64)``."""
    return math.cos(math.pi * float(distance) / BITS)


def fingerprint_hex(fp: int) -> str:
    """16 lower-case hex digits."""
    if not 0 <= fp <= _MASK:
        raise ValueError(f"a fingerprint is an unsigned 64-bit integer, got {fp}")
    return format(fp, "016x")


def parse_fingerprint(text: str) -> int:
    """Inverse of :func:`fingerprint_hex`; accepts exactly 16 hex digits."""
    s = text.strip().lower()
    if len(s) != 16 or any(c not in "0123456789abcdef" for c in s):
        raise ValueError(f"a fingerprint is 16 hex digits, got {text!r}")
    return int(s, 16)

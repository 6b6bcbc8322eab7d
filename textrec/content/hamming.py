"""Exact Hamming top-k over 64-bit SimHash fingerprints: :class:`HammingIndex`.

An index is two parallel arrays, the fingerprints (``uint64``) and the document ids
(``int64``), 16 bytes a document, kept sorted by id. A query XORs its fingerprint with every
stored one, counts bits (``np.bitwise_count``), and selects the ``k`` smallest distances with
a 65-bin histogram, so search is exact and one pass over memory. Results are ordered by
``(distance, id)``: ties at equal distance go to the smaller id, which makes results
deterministic across runs, machines and storage order.

The fingerprints of one index must come from one scheme (``textrec.content.simhash.SCHEME``) and one
document-frequency (DF) snapshot; both are recorded in the index and in its file, and
:meth:`HammingIndex.extend` and :meth:`HammingIndex.load` refuse to mix them
(:class:`~textrec.content.simhash.SchemeMismatchError`).

File format, version 1
----------------------
All integers little-endian. A fixed 4096-byte header, then the body::

    offset  size  field
    0       8     magic b"TXRCHIDX"
    8       4     format version, uint32 = 1
    12      4     flags, uint32 = 0 (no flags are defined; other values are rejected)
    16      8     N, the number of documents, uint64
    24      4     body CRC-32 (zlib.crc32) of the N*16 body bytes, uint32
    28      4     header CRC-32: zlib.crc32 of the 4096 header bytes with this field zeroed
    32      4     length of the scheme in bytes, uint32 (1 .. 64)
    36      64    scheme, UTF-8, zero-padded
    100     4     length of the DF snapshot id in bytes, uint32 (0 .. 64)
    104     64    DF snapshot id, UTF-8, zero-padded
    168     4     length of the provenance in bytes, uint32 (0 .. 128)
    172     128   provenance, UTF-8, zero-padded: what the index was made from (textrec
                  records the store's stamp there, see :mod:`textrec.artifacts`); empty in
                  files of older versions, which left these bytes zero
    300     3796  zero
    4096    N*8   fingerprints, uint64, in id order
    4096+8N N*8   ids, int64, non-negative and strictly increasing

The file is exactly ``4096 + 16*N`` bytes. Both arrays start at multiples of 8 (4096 and
``4096 + 8N``), so :meth:`HammingIndex.load` with ``mmap=True`` maps them read-only without
copying. :meth:`HammingIndex.save` is atomic: it writes a temporary file in the same directory,
flushes and fsyncs it, renames it over the target with :func:`os.replace` and fsyncs the
directory, so a crash leaves either the old file or the new one, never a mixture.
"""

from __future__ import annotations

import itertools
import mmap as _mmap
import operator
import os
import struct
import sys
import threading
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, BinaryIO, Final, TypeAlias

import numpy as np
import numpy.typing as npt

from textrec.artifacts.atomic import atomic_write
from textrec.content.simhash import BITS, SCHEME, check_scheme

__all__ = ["MAX_TABLE_RADIUS", "HammingIndex", "IndexFileError", "kernel_name"]

Codes: TypeAlias = npt.NDArray[np.uint64]
Ids: TypeAlias = npt.NDArray[np.int64]
Distances: TypeAlias = npt.NDArray[np.int32]
StrPath: TypeAlias = str | os.PathLike[str]

MAGIC: Final = b"TXRCHIDX"
FORMAT_VERSION: Final = 1
SUPPORTED_VERSIONS: Final = (1,)
HEADER_SIZE: Final = 4096
MAX_LABEL_BYTES: Final = 64

_FIXED = struct.Struct("<8sIIQII")  # magic, version, flags, count, body crc, header crc
_LABEL_LEN = struct.Struct("<I")
_HEADER_CRC_OFFSET: Final = 28
_SCHEME_OFFSET: Final = 32
_SNAPSHOT_OFFSET: Final = _SCHEME_OFFSET + _LABEL_LEN.size + MAX_LABEL_BYTES  # 100
_PROVENANCE_OFFSET: Final = 168
MAX_PROVENANCE_BYTES: Final = 128

_U64_MAX: Final = (1 << 64) - 1
_I64_MAX: Final = (1 << 63) - 1
_LE_U64: Final = np.dtype("<u8")
_LE_I64: Final = np.dtype("<i8")
_NATIVE_LE: Final = sys.byteorder == "little"


class IndexFileError(ValueError):
    """An index file is not a textrec index, or is truncated, corrupt or inconsistent."""


# --------------------------------------------------------------------------------------------
# Validation helpers


def _frozen(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    a.flags.writeable = False
    return a


_EMPTY_CODES: Final[Codes] = _frozen(np.empty(0, dtype=np.uint64))
_EMPTY_IDS: Final[Ids] = _frozen(np.empty(0, dtype=np.int64))


def _int_scalar(value: object, what: str) -> int:
    """``value`` as a Python int; bools, floats and other non-integers raise TypeError."""
    if isinstance(value, bool | np.bool_):
        raise TypeError(f"{what} must be an integer, got a bool ({value!r})")
    try:
        return operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(value).__name__}") from None


def _as_code(value: object, what: str = "code") -> np.uint64:
    v = _int_scalar(value, what)
    if not 0 <= v <= _U64_MAX:
        raise ValueError(f"{what} must be an unsigned 64-bit integer (0 .. 2**64-1), got {v}")
    return np.uint64(v)


def _as_k(k: object, name: str = "k") -> int:
    v = _int_scalar(k, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0, got {v}")
    return v


def _int_array(
    values: object, what: str, lo: int, hi: int, range_text: str, dtype: type[np.generic]
) -> npt.NDArray[Any]:
    """A 1-D array-like of integers in ``lo .. hi`` as a 1-D array of ``dtype``.

    NumPy integer arrays are range-checked and cast without going through Python objects.
    Anything else (lists, tuples, iterables, object arrays) is checked element by element:
    ``np.asarray`` would silently turn ``[2**64 - 1, 5]`` into float64.
    """
    if isinstance(values, np.ndarray) and values.dtype.kind in "iu":
        arr = values
        if arr.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got shape {arr.shape}")
        if arr.size == 0:
            return np.empty(0, dtype=dtype)
        bad = np.flatnonzero((arr < lo) | (arr > hi))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"{what}[{i}] = {arr[i]} is out of range; {what} must be {range_text}")
        return arr.astype(dtype, copy=False)
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise ValueError(f"{what} must be 1-D, got shape {values.shape}")
        if values.size and values.dtype.kind != "O":
            raise TypeError(f"{what} must hold integers, got an array of {values.dtype}")
        items: list[object] = values.tolist()
    elif isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(f"{what} must be a 1-D array-like of integers, got {type(values).__name__}")
    else:
        items = list(values)
    out: list[int] = []
    for i, item in enumerate(items):
        if isinstance(item, list | tuple | np.ndarray):
            raise ValueError(f"{what} must be 1-D; {what}[{i}] is a sequence")
        v = _int_scalar(item, f"{what}[{i}]")
        if not lo <= v <= hi:
            raise ValueError(f"{what}[{i}] = {v} is out of range; {what} must be {range_text}")
        out.append(v)
    return np.array(out, dtype=dtype)


def _as_codes(values: object, what: str = "codes") -> Codes:
    codes: Codes = _int_array(
        values, what, 0, _U64_MAX, "unsigned 64-bit integers (0 .. 2**64-1)", np.uint64
    )
    return codes


def _as_ids(values: object, what: str = "ids") -> Ids:
    ids: Ids = _int_array(values, what, 0, _I64_MAX, "integers in 0 .. 2**63-1", np.int64)
    return ids


def _check_label(value: object, name: str, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    if not value and not allow_empty:
        raise ValueError(f"{name} must not be empty")
    if len(value.encode("utf-8")) > MAX_LABEL_BYTES:
        raise ValueError(f"{name} must be at most {MAX_LABEL_BYTES} UTF-8 bytes, got {value!r}")
    return value


def _format_ids(ids: npt.NDArray[np.int64], limit: int = 5) -> str:
    shown = ", ".join(str(int(i)) for i in ids[:limit])
    more = f" and {ids.size - limit} more" if ids.size > limit else ""
    return shown + more


# --------------------------------------------------------------------------------------------
# Selection. The compiled kernel (textrec/_hamming.c) fuses XOR, popcount and selection in one
# pass; where it could not be built, the NumPy functions below give identical results.

_compiled: Any
try:
    from textrec import _hamming as _compiled
except ImportError:  # pragma: no cover - exercised by forcing _kernel = None in the tests
    _compiled = None

# The kernel module in use, or None for the NumPy path (the tests set it to None to check that
# both paths agree).
_kernel: Any = _compiled

_POS_BITS: Final = 56
_POS_MASK: Final = (1 << _POS_BITS) - 1
# Below this many codes a thread is not worth starting.
_MIN_CODES_PER_THREAD: Final = 1 << 18
# Radius queries use the multi-index tables up to this radius; beyond it they scan.
MAX_TABLE_RADIUS: Final = 8

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def kernel_name() -> str:
    """The scan implementation in use: ``"avx512-vpopcntdq"``, ``"avx2"``, ``"popcnt"``,
    ``"generic"`` (the compiled kernel, by the CPU's instruction set) or ``"numpy"`` (no
    compiled kernel)."""
    return "numpy" if _kernel is None else str(_kernel.kernel())


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _as_threads(threads: object) -> int:
    if threads is None:
        return _available_cores()
    v = _int_scalar(threads, "threads")
    if v < 1:
        raise ValueError(f"threads must be >= 1 (or None for every available core), got {v}")
    return v


def _thread_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(
                max_workers=max(2, _available_cores()), thread_name_prefix="textrec-scan"
            )
        return _pool


def _topk_kernel(codes: Codes, queries: Codes, k: int, threads: int) -> npt.NDArray[np.uint64]:
    """Packed keys ``distance << 56 | position`` of the ``min(k, n)`` nearest codes per query,
    shape ``(m, min(k, n))``, each row sorted (so by distance, then position).

    With several threads the array is split into contiguous parts, one per thread (the kernel
    releases the GIL); each part yields its own top k and the parts are merged exactly by
    sorting their keys, since keys order by (distance, position) and positions are global.
    """
    n = codes.shape[0]
    m = queries.shape[0]
    parts = max(1, min(threads, n // _MIN_CODES_PER_THREAD))
    bounds = [n * i // parts for i in range(parts + 1)]

    def run(lo: int, hi: int) -> npt.NDArray[np.uint64]:
        out = np.empty((m, k), dtype=np.uint64)
        filled = int(_kernel.topk(codes[lo:hi], queries, k, out))
        keys = out[:, :filled]
        if lo:
            keys += np.uint64(lo)
        return keys

    if parts == 1:
        return run(0, n)
    futures = [_thread_pool().submit(run, lo, hi) for lo, hi in itertools.pairwise(bounds)]
    merged = np.sort(np.concatenate([f.result() for f in futures], axis=1), axis=1)
    return merged[:, : min(k, n)]


def _unpack(keys: npt.NDArray[np.uint64], ids: Ids) -> tuple[Ids, Distances]:
    dist = (keys >> np.uint64(_POS_BITS)).astype(np.int32)
    pos = (keys & np.uint64(_POS_MASK)).astype(np.intp)
    return ids[pos], dist


def _search(codes: Codes, ids: Ids, queries: Codes, k: int, threads: int) -> tuple[Ids, Distances]:
    """``(ids, distances)`` of shape ``(m, min(k, n))``: each query's nearest documents."""
    n = codes.shape[0]
    m = queries.shape[0]
    kk = min(k, n)
    if kk == 0 or m == 0:
        return np.empty((m, kk), dtype=np.int64), np.empty((m, kk), dtype=np.int32)
    if _kernel is not None:
        return _unpack(_topk_kernel(codes, np.ascontiguousarray(queries), k, threads), ids)
    out_ids = np.empty((m, kk), dtype=np.int64)
    out_dist = np.empty((m, kk), dtype=np.int32)
    for row, q in enumerate(queries):
        out_ids[row], out_dist[row] = _topk_numpy(codes, ids, q, kk)
    return out_ids, out_dist


def _within_numpy(codes: Codes, ids: Ids, q: np.uint64, r: int) -> tuple[Ids, Distances]:
    d = np.bitwise_count(codes ^ q)
    sel = np.flatnonzero(d <= r)
    ds = d[sel]
    order = np.argsort(ds, kind="stable")
    return ids[sel[order]], ds[order].astype(np.int32)


class _RadiusTables:
    """Multi-index hashing tables (Norouzi et al.) for one state of an index.

    The 64 bits are cut into 3 substrings (21, 21 and 22 bits). Each table lists the positions
    of all codes (uint32) counting-sorted by that substring, with an offsets array per bucket.
    A code within ``r = 3s + a`` bits of the query is within ``s`` bits of it on one of the
    first ``a + 1`` substrings or within ``s - 1`` on one of the others (pigeonhole), so probing
    those buckets finds every match; each candidate is checked on all 64 bits. Extra memory:
    12 bytes a document plus 32 MiB of offsets.
    """

    __slots__ = ("offsets", "positions", "state")

    def __init__(self, state: tuple[Codes, Ids]) -> None:
        codes = state[0]
        tables, _, _, offsets_len = _kernel.mih_layout()
        self.state = state
        self.positions = np.empty(tables * codes.shape[0], dtype=np.uint32)
        self.offsets = np.empty(offsets_len, dtype=np.uint32)
        _kernel.mih_build(codes, self.positions, self.offsets)

    @property
    def nbytes(self) -> int:
        return int(self.positions.nbytes + self.offsets.nbytes)

    def within(self, q: np.uint64, r: int) -> npt.NDArray[np.uint64]:
        raw = _kernel.mih_within(self.state[0], self.positions, self.offsets, int(q), r)
        return np.frombuffer(raw, dtype=np.uint64)


def _topk_numpy(codes: Codes, ids: Ids, q: np.uint64, k: int) -> tuple[Ids, Distances]:
    """The ``min(k, n)`` documents nearest to ``q``, ordered by ``(distance, id)``.

    ``codes`` and ``ids`` are parallel and sorted by id, so positions are in id order. The
    distances (uint8) are histogrammed; ``t`` is the smallest distance whose cumulative count
    reaches ``k``. Every position with distance ``< t`` is taken, plus the first
    ``k - count_below`` positions at distance ``t`` (the smallest ids among the ties), and the
    selection is stable-sorted by distance. This is the NumPy path, used where the compiled
    kernel is missing, and the reference the kernel is tested against.
    """
    n = codes.shape[0]
    k = min(k, n)
    if k == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int32)
    d = np.bitwise_count(codes ^ q)
    if k == n:
        order = np.argsort(d, kind="stable")
        return ids[order], d[order].astype(np.int32)
    cum = np.cumsum(np.bincount(d, minlength=BITS + 1))
    t = int(np.searchsorted(cum, k))  # first distance whose cumulative count is >= k
    sel = np.flatnonzero(d <= t)
    ds = d[sel]
    if sel.size > k:  # too many ties at distance t: keep only the first ones (smallest ids)
        below = int(cum[t - 1]) if t > 0 else 0
        at_t = np.flatnonzero(ds == t)
        keep = np.ones(sel.size, dtype=bool)
        keep[at_t[k - below :]] = False
        sel = sel[keep]
        ds = ds[keep]
    order = np.argsort(ds, kind="stable")
    return ids[sel[order]], ds[order].astype(np.int32)


# --------------------------------------------------------------------------------------------


class HammingIndex:
    """Exact Hamming-distance index of 64-bit fingerprints keyed by non-negative int64 ids.

    Storage is one ``uint64`` array of fingerprints and one ``int64`` array of ids, sorted by
    id (16 bytes a document). Search is exact: results are the nearest documents by Hamming
    distance, ties broken by the smaller id.

    Thread safety: the two arrays are never modified in place. Every mutator (:meth:`add`,
    :meth:`remove`, :meth:`extend`) builds new arrays and publishes them by replacing a single
    attribute, a ``(codes, ids)`` tuple, while holding a :class:`threading.Lock`; mutators are
    therefore serialised. Readers (:meth:`search`, :meth:`search_batch`, :meth:`within`,
    :meth:`get`, :meth:`save`, ...) read that tuple once at the start and never take the lock,
    so a query that runs during an add or remove sees the index entirely before or entirely
    after it, never a mixture. Arrays returned by :attr:`ids` and :attr:`codes` are read-only
    views of one such state (read each once, or they may come from different states).

    An index loaded with ``mmap=True`` is backed by the read-only file mapping; it is still
    mutable, because the first add or remove builds new in-memory arrays.
    """

    __slots__ = (
        "_lock",
        "_radius",
        "_radius_enabled",
        "_scheme",
        "_snapshot_id",
        "_state",
        "provenance",
    )

    def __init__(self, scheme: str = SCHEME, snapshot_id: str = "") -> None:
        """An empty index for fingerprints of ``scheme`` built with DF snapshot ``snapshot_id``.

        Both are stored in saved files (at most 64 UTF-8 bytes each); ``scheme`` must not be
        empty.
        """
        self._scheme = _check_label(scheme, "scheme", allow_empty=False)
        self._snapshot_id = _check_label(snapshot_id, "snapshot_id", allow_empty=True)
        self._lock = threading.Lock()
        self._state: tuple[Codes, Ids] = (_EMPTY_CODES, _EMPTY_IDS)
        self._radius_enabled = False
        self._radius: _RadiusTables | None = None
        self.provenance = ""
        """What the index was made from, saved in its file (at most 128 UTF-8 bytes)."""

    @classmethod
    def _from_arrays(cls, scheme: str, snapshot_id: str, codes: Codes, ids: Ids) -> HammingIndex:
        """Adopt already validated, sorted, read-only arrays (no copy)."""
        index = cls(scheme, snapshot_id)
        index._state = (codes, ids)
        return index

    def frozen(self) -> HammingIndex:
        """A copy of the index as it is now, with its provenance, sharing its read-only
        arrays (nothing is copied): later writes to this index do not reach it, so a writer
        can take it under its lock and save it after letting go."""
        copy = HammingIndex._from_arrays(self._scheme, self._snapshot_id, *self._state)
        copy.provenance = self.provenance
        return copy

    # ---- read-only accessors ----------------------------------------------------------

    @property
    def scheme(self) -> str:
        """The fingerprint scheme of the stored codes (e.g. ``simhash64-v1``)."""
        return self._scheme

    @property
    def snapshot_id(self) -> str:
        """The DF snapshot the codes were computed with (``""`` if not recorded)."""
        return self._snapshot_id

    @property
    def ids(self) -> Ids:
        """The document ids, ascending, as a read-only int64 view."""
        return self._state[1].view()

    @property
    def codes(self) -> Codes:
        """The fingerprints in id order (parallel to :attr:`ids`), as a read-only uint64 view."""
        return self._state[0].view()

    @property
    def nbytes(self) -> int:
        """Bytes held by the two arrays (16 per document)."""
        codes, ids = self._state
        return int(codes.nbytes + ids.nbytes)

    def __len__(self) -> int:
        return int(self._state[1].shape[0])

    def __contains__(self, doc_id: object) -> bool:
        if isinstance(doc_id, bool | np.bool_):
            return False
        try:
            i = operator.index(doc_id)  # type: ignore[arg-type]
        except TypeError:
            return False
        return self._position(self._state[1], i) is not None

    @staticmethod
    def _position(ids: Ids, doc_id: int) -> int | None:
        if not 0 <= doc_id <= _I64_MAX:
            return None
        pos = int(np.searchsorted(ids, doc_id))
        if pos < ids.shape[0] and int(ids[pos]) == doc_id:
            return pos
        return None

    def get(self, doc_id: int) -> int:
        """The fingerprint of document ``doc_id``, as a Python int; KeyError if absent."""
        codes, ids = self._state
        pos = self._position(ids, _int_scalar(doc_id, "doc_id"))
        if pos is None:
            raise KeyError(doc_id)
        return int(codes[pos])

    def __repr__(self) -> str:
        n = len(self)
        docs = f"{n:,} document" + ("" if n == 1 else "s")
        snap = self._snapshot_id
        if not snap:
            snap_text = "no DF snapshot"
        else:
            snap_text = "DF snapshot " + (snap if len(snap) <= 8 else snap[:8] + "…")
        return f"HammingIndex<{docs}, scheme {self._scheme}, {snap_text}>"

    def __getstate__(self) -> tuple[str, str, Codes, Ids]:
        codes, ids = self._state
        return (self._scheme, self._snapshot_id, codes, ids)

    def __setstate__(self, state: tuple[str, str, Codes, Ids]) -> None:
        scheme, snapshot_id, codes, ids = state
        self._scheme = _check_label(scheme, "scheme", allow_empty=False)
        self._snapshot_id = _check_label(snapshot_id, "snapshot_id", allow_empty=True)
        self._lock = threading.Lock()
        self._radius_enabled = False
        self._radius = None
        self._state = (
            _frozen(np.array(codes, dtype=np.uint64)),
            _frozen(np.array(ids, dtype=np.int64)),
        )

    # ---- mutation ---------------------------------------------------------------------

    def add(self, ids: object, codes: object) -> None:
        """Add documents: ``ids`` (non-negative int64) with their fingerprints ``codes``.

        ``codes`` may be a NumPy integer array or Python ints in ``0 .. 2**64-1``. Both must be
        1-D of the same length; ids must be unique within the call and not already in the index
        (remove them first to replace). On any error nothing is added. An empty add is a no-op.
        """
        new_ids = _as_ids(ids)
        new_codes = _as_codes(codes)
        if new_ids.shape[0] != new_codes.shape[0]:
            raise ValueError(
                f"ids and codes must have the same length, got {new_ids.shape[0]} ids "
                f"and {new_codes.shape[0]} codes"
            )
        if new_ids.shape[0] == 0:
            return
        order = np.argsort(new_ids, kind="stable")
        sids = new_ids[order]
        scodes = new_codes[order]
        dup = sids[1:][sids[1:] == sids[:-1]]
        if dup.size:
            raise ValueError(f"duplicate ids within one add: {_format_ids(np.unique(dup))}")
        with self._lock:
            old_codes, old_ids = self._state
            n = old_ids.shape[0]
            if n == 0 or sids[0] > old_ids[-1]:
                merged_codes = np.concatenate([old_codes, scodes])
                merged_ids = np.concatenate([old_ids, sids])
            else:
                pos = np.searchsorted(old_ids, sids)
                hit = old_ids[np.minimum(pos, n - 1)] == sids
                if hit.any():
                    raise ValueError(
                        f"ids already in the index: {_format_ids(sids[hit])}; "
                        "remove them first to replace their fingerprints"
                    )
                merged_codes = np.insert(old_codes, pos, scodes)
                merged_ids = np.insert(old_ids, pos, sids)
            self._state = (_frozen(merged_codes), _frozen(merged_ids))
            self._radius = None

    def remove(self, ids: object) -> int:
        """Remove the documents with these ids; returns how many were present (and removed).

        Unknown ids are ignored.
        """
        rid = np.unique(_as_ids(ids))
        if rid.size == 0:
            return 0
        with self._lock:
            old_codes, old_ids = self._state
            n = old_ids.shape[0]
            if n == 0:
                return 0
            pos = np.searchsorted(old_ids, rid)
            pos = pos[old_ids[np.minimum(pos, n - 1)] == rid]
            if pos.size == 0:
                return 0
            keep = np.ones(n, dtype=bool)
            keep[pos] = False
            self._state = (_frozen(old_codes[keep]), _frozen(old_ids[keep]))
            self._radius = None
            return int(pos.size)

    def extend(self, other: HammingIndex) -> None:
        """Add every document of ``other``, which must have the same scheme and DF snapshot.

        Raises :class:`~textrec.content.simhash.SchemeMismatchError` if they differ and
        ValueError if the two indexes share ids.
        """
        if not isinstance(other, HammingIndex):
            raise TypeError(f"can only extend with a HammingIndex, got {type(other).__name__}")
        check_scheme(self._scheme, other.scheme, what="the index to merge")
        check_scheme(
            self._snapshot_id, other.snapshot_id, what="the DF snapshot id of the index to merge"
        )
        codes, ids = other._state
        self.add(ids, codes)

    # ---- queries ----------------------------------------------------------------------

    def search(self, code: int, k: int, *, threads: int | None = 1) -> tuple[Ids, Distances]:
        """The ``k`` documents nearest to fingerprint ``code``: ``(ids, distances)``.

        Exact; ordered by ``(distance, id)``. Returns ``min(k, len(self))`` results (no
        padding); ``k = 0`` gives empty arrays. ``ids`` is int64, ``distances`` int32.
        ``threads`` splits the scan of a large index over that many cores (``None``: every
        available core); the result does not depend on it.
        """
        q = _as_code(code)
        k = _as_k(k)
        n_threads = _as_threads(threads)
        codes, ids = self._state
        found, dist = _search(codes, ids, np.array([q], dtype=np.uint64), k, n_threads)
        return found[0], dist[0]

    def search_batch(
        self, codes: object, k: int, *, threads: int | None = 1
    ) -> tuple[Ids, Distances]:
        """:meth:`search` for each of ``m`` query fingerprints: arrays of shape ``(m, k)``.

        Row ``i`` holds the results for ``codes[i]``, ordered by ``(distance, id)``. When the
        index holds fewer than ``k`` documents, each row is padded at the end with id ``-1``
        and distance ``-1`` (as faiss does). All queries see the same state of the index,
        and the stored fingerprints are read once for the whole batch, so a batch costs far
        less than its queries one by one. ``threads`` as in :meth:`search`.
        """
        queries = _as_codes(codes)
        k = _as_k(k)
        n_threads = _as_threads(threads)
        stored_codes, stored_ids = self._state
        m = queries.shape[0]
        found, dist = _search(stored_codes, stored_ids, queries, k, n_threads)
        if found.shape[1] == k:
            return found, dist
        out_ids = np.full((m, k), -1, dtype=np.int64)
        out_dist = np.full((m, k), -1, dtype=np.int32)
        out_ids[:, : found.shape[1]] = found
        out_dist[:, : dist.shape[1]] = dist
        return out_ids, out_dist

    def within(self, code: int, radius: int) -> tuple[Ids, Distances]:
        """Every document at Hamming distance ``<= radius`` (inclusive) of ``code``.

        ``radius`` is in ``0 .. 64``. Ordered by ``(distance, id)``. Scans every fingerprint,
        unless :meth:`enable_radius_index` was called and ``radius <= MAX_TABLE_RADIUS`` (8):
        then the multi-index tables answer in time that grows with the number of matches and
        probed buckets, not with the size of the index. Both give the same result.
        """
        q = _as_code(code)
        r = _int_scalar(radius, "radius")
        if not 0 <= r <= BITS:
            raise ValueError(f"radius must be in 0 .. {BITS}, got {r}")
        state = self._state
        codes, ids = state
        if _kernel is None or codes.shape[0] == 0:
            return _within_numpy(codes, ids, q, r)
        if self._radius_enabled and r <= MAX_TABLE_RADIUS:
            keys = self._radius_tables(state).within(q, r)
        else:
            keys = np.frombuffer(_kernel.within(codes, int(q), r), dtype=np.uint64)
        return _unpack(keys, ids)

    def enable_radius_index(self) -> None:
        """Build multi-index hashing tables so that :meth:`within` with a radius up to 8 does
        not scan the whole index (see ``bench/README.md`` for timings).

        They cost about 12.6 bytes a document on top of the 16 of the index (three uint32
        position tables plus 32 MiB of bucket offsets). After an :meth:`add` or
        :meth:`remove` they are rebuilt at the next :meth:`within` call (about 1 s per 10
        million documents). Without the compiled kernel (see :func:`kernel_name`) this is a
        no-op and :meth:`within` scans. Indexes of 2**32 - 1 documents or more always scan.
        """
        self._radius_enabled = _kernel is not None
        if self._radius_enabled:
            self._radius_tables(self._state)

    def disable_radius_index(self) -> None:
        """Drop the multi-index tables built by :meth:`enable_radius_index`."""
        self._radius_enabled = False
        self._radius = None

    @property
    def radius_index_nbytes(self) -> int:
        """Bytes held by the multi-index tables (0 if they are not enabled or not yet built)."""
        tables = self._radius
        return 0 if tables is None else tables.nbytes

    def _radius_tables(self, state: tuple[Codes, Ids]) -> _RadiusTables:
        tables = self._radius
        if tables is not None and tables.state is state:
            return tables
        if state[0].shape[0] >= 0xFFFFFFFF:  # pragma: no cover - 64 GiB of fingerprints
            raise ValueError("radius tables hold uint32 positions: the index is too large")
        tables = _RadiusTables(state)
        with self._lock:  # publish only if no mutation happened meanwhile
            if self._state is state and self._radius_enabled:
                self._radius = tables
        return tables

    # ---- persistence ------------------------------------------------------------------

    def _header(self, n: int, body_crc: int) -> bytes:
        header = bytearray(HEADER_SIZE)
        _FIXED.pack_into(header, 0, MAGIC, FORMAT_VERSION, 0, n, body_crc, 0)
        if len(self.provenance.encode("utf-8")) > MAX_PROVENANCE_BYTES:
            raise ValueError(f"provenance is over {MAX_PROVENANCE_BYTES} bytes")
        for offset, label in (
            (_SCHEME_OFFSET, self._scheme),
            (_SNAPSHOT_OFFSET, self._snapshot_id),
            (_PROVENANCE_OFFSET, self.provenance),
        ):
            raw = label.encode("utf-8")
            _LABEL_LEN.pack_into(header, offset, len(raw))
            start = offset + _LABEL_LEN.size
            header[start : start + len(raw)] = raw
        struct.pack_into("<I", header, _HEADER_CRC_OFFSET, zlib.crc32(header))
        return bytes(header)

    def save(self, path: StrPath) -> None:
        """Write the index to ``path`` atomically (format in the module docstring).

        A temporary file in the same directory is written, flushed and fsynced, then renamed
        over ``path``, and the directory is fsynced: after a crash ``path`` holds either the
        old file or the new one.
        """
        codes, ids = self._state
        le_codes = np.ascontiguousarray(codes, dtype=_LE_U64).data.cast("B")
        le_ids = np.ascontiguousarray(ids, dtype=_LE_I64).data.cast("B")
        body_crc = zlib.crc32(le_ids, zlib.crc32(le_codes))
        header = self._header(int(ids.shape[0]), body_crc)

        def write(f: BinaryIO) -> None:
            f.write(header)
            f.write(le_codes)
            f.write(le_ids)

        atomic_write(path, write)

    @classmethod
    def load(
        cls,
        path: StrPath,
        *,
        mmap: bool = False,
        verify: bool = True,
        expected_scheme: str | None = None,
        expected_snapshot_id: str | None = None,
    ) -> HammingIndex:
        """Read an index written by :meth:`save`.

        ``mmap=True`` maps the file read-only instead of reading it (no copy; the index stays
        mutable by copy-on-write). ``verify=False`` skips the body CRC-32 and the check that
        the ids are strictly increasing, which otherwise read the whole file (so a mapped 60
        million document index opens in milliseconds); the header checksum and the size are
        always checked. Only skip verification for files this process or a trusted build
        wrote: a corrupt body then gives wrong results instead of an error. If
        ``expected_scheme`` or ``expected_snapshot_id`` is given and differs from the file's,
        :class:`~textrec.content.simhash.SchemeMismatchError` is raised.

        Raises :class:`IndexFileError` (a ValueError) naming the path if the file is not a
        textrec index, has an unsupported format version, is truncated or has trailing
        bytes, fails a checksum, or (when verifying) its ids are not strictly increasing.
        """
        p = os.fspath(path)
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            header = f.read(HEADER_SIZE)
            n, body_crc, scheme, snapshot_id, provenance = _parse_header(p, header, size)
            if expected_scheme is not None:
                check_scheme(expected_scheme, scheme, what=f"index file {p}")
            if expected_snapshot_id is not None:
                check_scheme(
                    expected_snapshot_id, snapshot_id, what=f"DF snapshot of index file {p}"
                )
            codes: Codes = _EMPTY_CODES
            ids: Ids = _EMPTY_IDS
            raw_codes: memoryview | bytes = b""
            raw_ids: memoryview | bytes = b""
            if n:
                buf: _mmap.mmap | bytes
                if mmap:
                    buf = _mmap.mmap(f.fileno(), 0, access=_mmap.ACCESS_READ)
                else:
                    buf = f.read(16 * n)
                    if len(buf) != 16 * n:  # the file shrank while we read it
                        raise IndexFileError(
                            f"{p}: truncated index file: expected {HEADER_SIZE + 16 * n} bytes, "
                            f"read {HEADER_SIZE + len(buf)}"
                        )
                base = HEADER_SIZE if mmap else 0
                view = memoryview(buf)
                raw_codes = view[base : base + 8 * n]
                raw_ids = view[base + 8 * n : base + 16 * n]
                codes = np.frombuffer(buf, dtype=_LE_U64, count=n, offset=base)
                ids = np.frombuffer(buf, dtype=_LE_I64, count=n, offset=base + 8 * n)
        if verify:
            crc = zlib.crc32(raw_ids, zlib.crc32(raw_codes))
            if crc != body_crc:
                raise IndexFileError(
                    f"{p}: checksum mismatch (CRC-32 of the body is {crc:08x}, the header says "
                    f"{body_crc:08x}): the file is corrupt; rebuild it with `textrec build`"
                )
        del raw_codes, raw_ids
        if not _NATIVE_LE:  # pragma: no cover - big-endian hosts convert (and copy)
            codes = _frozen(codes.astype(np.uint64))
            ids = _frozen(ids.astype(np.int64))
        if verify and n > 1:
            bad = np.flatnonzero(ids[1:] <= ids[:-1])
            if bad.size:
                i = int(bad[0])
                raise IndexFileError(
                    f"{p}: ids are not strictly increasing (ids[{i}] = {ids[i]}, "
                    f"ids[{i + 1}] = {ids[i + 1]}): the file is corrupt; rebuild it with "
                    "`textrec build`"
                )
        if n and int(ids[0]) < 0:
            raise IndexFileError(f"{p}: negative id {ids[0]}: the file is corrupt")
        index = cls._from_arrays(scheme, snapshot_id, codes, ids)
        index.provenance = provenance
        return index


def _parse_header(path: str, header: bytes, size: int) -> tuple[int, int, str, str, str]:
    """Validate a file header; returns ``(count, body_crc, scheme, snapshot_id,
    provenance)``."""
    if len(header) < len(MAGIC) or header[: len(MAGIC)] != MAGIC:
        raise IndexFileError(
            f"{path}: not a textrec index (the file does not start with {MAGIC!r})"
        )
    if len(header) < HEADER_SIZE:
        raise IndexFileError(
            f"{path}: truncated index file: the header needs {HEADER_SIZE} bytes, "
            f"the file has {size}"
        )
    _, version, flags, n, body_crc, header_crc = _FIXED.unpack_from(header, 0)
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_VERSIONS)
        raise IndexFileError(
            f"{path}: unsupported index format version {version}; this textrec reads "
            f"version {supported}. Rebuild the index with this version of `textrec build`"
        )
    zeroed = bytearray(header)
    struct.pack_into("<I", zeroed, _HEADER_CRC_OFFSET, 0)
    if zlib.crc32(zeroed) != header_crc:
        raise IndexFileError(
            f"{path}: header checksum mismatch: the file is corrupt; rebuild it with "
            "`textrec build`"
        )
    if flags != 0:
        raise IndexFileError(f"{path}: unsupported header flags {flags:#x}")
    expected = HEADER_SIZE + 16 * n
    if size < expected:
        raise IndexFileError(
            f"{path}: truncated index file: expected {expected} bytes for {n} documents, "
            f"the file has {size}"
        )
    if size > expected:
        raise IndexFileError(
            f"{path}: {size - expected} unexpected trailing bytes: expected {expected} bytes "
            f"for {n} documents, the file has {size}"
        )
    labels = []
    for offset, name, limit in (
        (_SCHEME_OFFSET, "scheme", MAX_LABEL_BYTES),
        (_SNAPSHOT_OFFSET, "DF snapshot id", MAX_LABEL_BYTES),
        (_PROVENANCE_OFFSET, "provenance", MAX_PROVENANCE_BYTES),
    ):
        (length,) = _LABEL_LEN.unpack_from(header, offset)
        if length > limit:
            raise IndexFileError(f"{path}: {name} length {length} exceeds {limit}")
        start = offset + _LABEL_LEN.size
        try:
            labels.append(header[start : start + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise IndexFileError(f"{path}: {name} is not valid UTF-8") from None
    if not labels[0]:
        raise IndexFileError(f"{path}: empty scheme")
    return n, body_crc, labels[0], labels[1], labels[2]

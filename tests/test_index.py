"""HammingIndex against a brute-force reference, persistence, validation and concurrency."""

from __future__ import annotations

import itertools
import os
import pickle
import random
import struct
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textrec.content.hamming import HammingIndex, IndexFileError
from textrec.content.simhash import SCHEME, SchemeMismatchError

U64_MAX = 2**64 - 1
EXTREMES = [0, 2**63 - 1, 2**63, U64_MAX]


def popcount(x: int) -> int:
    return x.bit_count()


def brute(codes: list[int], ids: list[int], q: int, k: int) -> tuple[list[int], list[int]]:
    """The reference: sort everything by (distance, id) and take the first k."""
    order = sorted(range(len(ids)), key=lambda i: (popcount(codes[i] ^ q), ids[i]))[:k]
    return [ids[i] for i in order], [popcount(codes[i] ^ q) for i in order]


def brute_within(
    codes: list[int], ids: list[int], q: int, radius: int
) -> tuple[list[int], list[int]]:
    found, dist = brute(codes, ids, q, len(ids))
    keep = [i for i, d in enumerate(dist) if d <= radius]
    return [found[i] for i in keep], [dist[i] for i in keep]


def as_lists(result: tuple[np.ndarray, np.ndarray]) -> tuple[list[int], list[int]]:
    ids, dist = result
    assert ids.dtype == np.int64
    assert dist.dtype == np.int32
    return ids.tolist(), dist.tolist()


def random_codes(rng: random.Random, n: int) -> list[int]:
    return [rng.getrandbits(64) for _ in range(n)]


def build(ids: list[int], codes: list[int], **kwargs: str) -> HammingIndex:
    index = HammingIndex(**kwargs)
    index.add(ids, codes)
    return index


@pytest.fixture
def rng() -> random.Random:
    return random.Random(20240601)


# --------------------------------------------------------------------------------------------
# search against brute force


def test_random_codes_match_brute_force(rng: random.Random) -> None:
    n = 400
    codes = random_codes(rng, n)
    ids = rng.sample(range(10**6), n)
    index = build(ids, codes)
    for _ in range(20):
        q = rng.choice([rng.getrandbits(64), rng.choice(codes)])
        for k in (1, 5, 17, n - 1, n):
            assert as_lists(index.search(q, k)) == brute(codes, ids, q, k)


def test_heavy_ties_pick_smallest_ids(rng: random.Random) -> None:
    values = [0x0123456789ABCDEF, 0x0123456789ABCDEE, 0xFFFF0000FFFF0000, 0]
    n = 500
    codes = [rng.choice(values) for _ in range(n)]
    ids = rng.sample(range(5000), n)
    index = build(ids, codes)
    for q in [*values, rng.getrandbits(64), 0x0123456789ABCDEC]:
        for k in (1, 2, 3, 50, 120, 333, 499, 500):
            assert as_lists(index.search(q, k)) == brute(codes, ids, q, k)


def test_k_larger_than_n_returns_everything_without_padding(rng: random.Random) -> None:
    codes = random_codes(rng, 7)
    ids = list(range(100, 107))
    index = build(ids, codes)
    q = rng.getrandbits(64)
    got = as_lists(index.search(q, 50))
    assert got == brute(codes, ids, q, 7)
    assert len(got[0]) == 7


def test_k_zero_returns_empty_arrays(rng: random.Random) -> None:
    index = build([1, 2, 3], random_codes(rng, 3))
    assert as_lists(index.search(5, 0)) == ([], [])
    ids, dist = index.search_batch([1, 2], 0)
    assert ids.shape == (2, 0)
    assert dist.shape == (2, 0)


def test_empty_index() -> None:
    index = HammingIndex()
    assert len(index) == 0
    assert as_lists(index.search(123, 5)) == ([], [])
    ids, dist = index.search_batch([1, 2, 3], 4)
    assert ids.shape == (3, 4)
    assert dist.shape == (3, 4)
    assert (ids == -1).all()
    assert (dist == -1).all()
    assert ids.dtype == np.int64
    assert dist.dtype == np.int32
    assert as_lists(index.within(0, 64)) == ([], [])
    assert index.remove([1, 2]) == 0
    assert 1 not in index
    with pytest.raises(KeyError):
        index.get(1)


def test_out_of_order_batches(rng: random.Random) -> None:
    all_ids = rng.sample(range(10_000), 300)
    all_codes = random_codes(rng, 300)
    index = HammingIndex()
    # descending, then random, then a batch entirely above the maximum, then below the minimum
    batches = [(0, 80), (80, 200), (200, 300)]
    pairs = sorted(zip(all_ids, all_codes, strict=True), key=lambda p: -p[0])
    for lo, hi in batches:
        chunk = pairs[lo:hi]
        rng.shuffle(chunk)
        index.add([p[0] for p in chunk], np.array([p[1] for p in chunk], dtype=np.uint64))
    index.add([20_000, 20_001], [1, 2])
    index.add(np.array([-0 + 10_500, 10_400], dtype=np.int32), [3, 4])
    ids = [*all_ids, 20_000, 20_001, 10_500, 10_400]
    codes = [*all_codes, 1, 2, 3, 4]
    assert index.ids.tolist() == sorted(ids)
    assert len(index) == len(ids)
    by_id = dict(zip(ids, codes, strict=True))
    assert index.codes.tolist() == [by_id[i] for i in sorted(ids)]
    for i in ids:
        assert i in index
        assert index.get(i) == by_id[i]
    for _ in range(10):
        q = rng.getrandbits(64)
        assert as_lists(index.search(q, 25)) == brute(codes, ids, q, 25)


def test_remove_then_search_and_readd(rng: random.Random) -> None:
    n = 200
    ids = list(range(0, 2 * n, 2))
    codes = random_codes(rng, n)
    index = build(ids, codes)
    gone = rng.sample(ids, 60)
    assert index.remove([*gone, 1, 3, 10**9]) == 60  # unknown ids are ignored
    assert index.remove(gone) == 0
    assert index.remove([]) == 0
    kept = [(i, c) for i, c in zip(ids, codes, strict=True) if i not in set(gone)]
    k_ids, k_codes = [p[0] for p in kept], [p[1] for p in kept]
    assert len(index) == n - 60
    for g in gone:
        assert g not in index
    for _ in range(10):
        q = rng.getrandbits(64)
        assert as_lists(index.search(q, 15)) == brute(k_codes, k_ids, q, 15)
    # re-add some of the removed ids with new codes
    readd = gone[:30]
    new_codes = random_codes(rng, 30)
    index.add(readd, new_codes)
    all_ids, all_codes = k_ids + readd, k_codes + new_codes
    assert index.ids.tolist() == sorted(all_ids)
    for i, c in zip(readd, new_codes, strict=True):
        assert index.get(i) == c
    for _ in range(10):
        q = rng.getrandbits(64)
        assert as_lists(index.search(q, 15)) == brute(all_codes, all_ids, q, 15)


def test_remove_duplicates_in_call_counted_once() -> None:
    index = build([1, 2, 3], [1, 2, 3])
    assert index.remove(np.array([2, 2, 2])) == 1
    assert index.ids.tolist() == [1, 3]
    assert index.codes.tolist() == [1, 3]


def test_extreme_codes() -> None:
    ids = [10, 11, 12, 13]
    index = build(ids, EXTREMES)
    assert index.codes.dtype == np.uint64
    assert index.codes.tolist() == EXTREMES
    for i, c in zip(ids, EXTREMES, strict=True):
        assert index.get(i) == c
    for q in [*EXTREMES, 1, 2**62]:
        assert as_lists(index.search(q, 4)) == brute(EXTREMES, ids, q, 4)
        assert as_lists(index.search(np.uint64(q), 2)) == brute(EXTREMES, ids, q, 2)
    assert as_lists(index.search(0, 4)) == ([10, 12, 11, 13], [0, 1, 63, 64])
    # also through a NumPy array
    index2 = build(ids, np.array(EXTREMES, dtype=np.uint64))
    assert index2.codes.tolist() == EXTREMES


@pytest.mark.parametrize("radius", [0, 1, 5, 20, 31, 32, 40, 63, 64])
def test_within_matches_brute_force(rng: random.Random, radius: int) -> None:
    n = 300
    base = rng.getrandbits(64)
    # codes clustered around `base` so that small radii find something
    codes = [
        base ^ (rng.getrandbits(64) & rng.getrandbits(64) & rng.getrandbits(64)) for _ in range(n)
    ]
    codes[:5] = [base] * 5
    ids = rng.sample(range(10**5), n)
    index = build(ids, codes)
    for q in (base, rng.choice(codes), rng.getrandbits(64)):
        assert as_lists(index.within(q, radius)) == brute_within(codes, ids, q, radius)
    assert len(index.within(base, 64)[0]) == n


def test_search_batch_equals_per_query_search(rng: random.Random) -> None:
    n = 250
    codes = [rng.choice([0, 1, 3, U64_MAX]) if i % 3 else rng.getrandbits(64) for i in range(n)]
    ids = rng.sample(range(10**4), n)
    index = build(ids, codes)
    queries = [rng.getrandbits(64) for _ in range(12)] + EXTREMES
    for k in (1, 10, n):
        b_ids, b_dist = index.search_batch(np.array(queries, dtype=np.uint64), k)
        assert b_ids.shape == (len(queries), k)
        for row, q in enumerate(queries):
            s_ids, s_dist = index.search(q, k)
            assert b_ids[row].tolist() == s_ids.tolist()
            assert b_dist[row].tolist() == s_dist.tolist()


def test_search_batch_pads_when_index_is_small() -> None:
    index = build([5, 6, 7], [0, 1, 3])
    ids, dist = index.search_batch([0, U64_MAX], 5)
    assert ids.tolist() == [[5, 6, 7, -1, -1], [7, 6, 5, -1, -1]]
    assert dist.tolist() == [[0, 1, 2, -1, -1], [62, 63, 64, -1, -1]]
    ids, dist = index.search_batch([], 3)
    assert ids.shape == (0, 3)
    assert dist.shape == (0, 3)


# --------------------------------------------------------------------------------------------
# accessors, validation


def test_accessors_and_repr() -> None:
    index = HammingIndex(snapshot_id="0123abcd9999ffff")
    assert index.scheme == SCHEME
    assert index.snapshot_id == "0123abcd9999ffff"
    index.add(range(1000), range(1000))
    assert repr(index) == (
        "HammingIndex<1,000 documents, scheme simhash64-v2, DF snapshot 0123abcd…>"
    )
    assert index.nbytes == 16 * 1000
    assert repr(HammingIndex()) == "HammingIndex<0 documents, scheme simhash64-v2, no DF snapshot>"
    one = build([1], [1], scheme="x", snapshot_id="abc")
    assert repr(one) == "HammingIndex<1 document, scheme x, DF snapshot abc>"
    assert 5 in index
    assert np.int64(5) in index
    assert 1000 not in index
    assert -1 not in index
    assert 2**70 not in index
    assert "5" not in index
    assert 5.0 not in index


def test_views_are_read_only() -> None:
    index = build([3, 1, 2], [30, 10, 20])
    ids, codes = index.ids, index.codes
    assert ids.tolist() == [1, 2, 3]
    with pytest.raises(ValueError):
        ids[0] = 7
    with pytest.raises(ValueError):
        codes[0] = 7
    with pytest.raises(ValueError):
        ids.flags.writeable = True
    # arrays handed to add are copied, not adopted
    src_ids = np.array([10, 11], dtype=np.int64)
    src_codes = np.array([1, 2], dtype=np.uint64)
    index.add(src_ids, src_codes)
    src_ids[0] = 99
    src_codes[0] = 99
    assert index.get(10) == 1
    # earlier views keep showing the state they were taken from
    assert ids.tolist() == [1, 2, 3]


def test_constructor_validation() -> None:
    with pytest.raises(ValueError, match="scheme"):
        HammingIndex("")
    with pytest.raises(TypeError, match="scheme"):
        HammingIndex(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="snapshot_id"):
        HammingIndex(SCHEME, 5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="64"):
        HammingIndex(SCHEME, "x" * 65)
    HammingIndex(SCHEME, "x" * 64)


def test_duplicate_ids_within_call() -> None:
    index = HammingIndex()
    with pytest.raises(ValueError, match=r"duplicate ids.*: 3, 7"):
        index.add([3, 7, 3, 1, 7], [1, 2, 3, 4, 5])
    assert len(index) == 0


def test_ids_already_present() -> None:
    index = build(list(range(0, 100, 10)), list(range(10)))
    with pytest.raises(
        ValueError, match=r"already in the index: 0, 10, 20, 30, 40 and 2 more.*remove"
    ):
        index.add([0, 10, 20, 30, 40, 50, 60, 5], [0] * 8)
    assert len(index) == 10
    assert 5 not in index


@pytest.mark.parametrize(
    ("codes", "message"),
    [
        ([1, -1, 2], r"codes\[1\] = -1"),
        ([1, 2, 2**64], r"codes\[2\] = 18446744073709551616"),
        (np.array([5, -3, 1], dtype=np.int64), r"codes\[1\] = -3"),
    ],
)
def test_bad_codes_name_position(codes: object, message: str) -> None:
    index = HammingIndex()
    with pytest.raises(ValueError, match=message):
        index.add([1, 2, 3], codes)


def test_add_validation() -> None:
    index = HammingIndex()
    with pytest.raises(ValueError, match="same length"):
        index.add([1, 2], [1])
    with pytest.raises(ValueError, match="1-D"):
        index.add(np.zeros((2, 2), dtype=np.int64), np.zeros((2, 2), dtype=np.uint64))
    with pytest.raises(TypeError, match="integer"):
        index.add([1, 2], [1.5, 2.0])
    with pytest.raises(TypeError, match="integer"):
        index.add([1, 2], np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match=r"ids\[0\] = -4"):
        index.add([-4], [1])
    with pytest.raises(ValueError, match=r"ids\[0\]"):
        index.add(np.array([2**63], dtype=np.uint64), [1])
    index.add([], [])
    index.add(np.empty(0, dtype=np.int64), np.empty(0, dtype=np.uint64))
    assert len(index) == 0


def test_query_validation() -> None:
    index = build([1, 2], [1, 2])
    with pytest.raises(ValueError, match="k must be >= 0"):
        index.search(1, -1)
    with pytest.raises(TypeError, match="k must be an integer"):
        index.search(1, 2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="k must be an integer"):
        index.search(1, True)
    with pytest.raises(ValueError, match="k must be >= 0"):
        index.search_batch([1], -2)
    with pytest.raises(ValueError, match="code"):
        index.search(-1, 1)
    with pytest.raises(ValueError, match="code"):
        index.search(2**64, 1)
    with pytest.raises(ValueError, match="radius"):
        index.within(1, 65)
    with pytest.raises(ValueError, match="radius"):
        index.within(1, -1)
    with pytest.raises(TypeError):
        index.get("1")  # type: ignore[arg-type]
    assert as_lists(index.search(np.uint64(1), np.int64(1))) == ([1], [0])


def test_extend() -> None:
    a = build([1, 5], [1, 5], snapshot_id="snap")
    b = build([3, 9], [3, 9], snapshot_id="snap")
    a.extend(b)
    assert a.ids.tolist() == [1, 3, 5, 9]
    assert a.codes.tolist() == [1, 3, 5, 9]
    assert len(b) == 2
    with pytest.raises(SchemeMismatchError, match="other-snap"):
        a.extend(build([20], [1], snapshot_id="other-snap"))
    with pytest.raises(SchemeMismatchError, match="simhash64-v9"):
        a.extend(build([20], [1], scheme="simhash64-v9", snapshot_id="snap"))
    with pytest.raises(ValueError, match="already in the index"):
        a.extend(b)
    assert len(a) == 4


def test_pickle_round_trip() -> None:
    index = build([4, 2], [U64_MAX, 7], snapshot_id="s1")
    copy = pickle.loads(pickle.dumps(index))
    assert copy.ids.tolist() == [2, 4]
    assert copy.codes.tolist() == [7, U64_MAX]
    assert copy.snapshot_id == "s1"
    copy.add([3], [3])  # has its own lock and state
    assert len(copy) == 3
    assert len(index) == 2


# --------------------------------------------------------------------------------------------
# persistence


def saved(tmp_path: Path, rng: random.Random, n: int = 300) -> tuple[Path, HammingIndex]:
    ids = rng.sample(range(10**9), n)
    codes = random_codes(rng, n)
    codes[:4] = EXTREMES
    index = build(ids, codes, snapshot_id="df-2024-06-01-0123abcd")
    path = tmp_path / "posts.idx"
    index.save(path)
    return path, index


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path: Path, rng: random.Random, mmap: bool) -> None:
    path, index = saved(tmp_path, rng)
    assert path.stat().st_size == 4096 + 16 * len(index)
    assert sorted(os.listdir(tmp_path)) == ["posts.idx"]  # no temporary file left behind
    loaded = HammingIndex.load(path, mmap=mmap, expected_scheme=SCHEME)
    assert loaded.scheme == SCHEME
    assert loaded.snapshot_id == "df-2024-06-01-0123abcd"
    assert loaded.ids.tolist() == index.ids.tolist()
    assert loaded.codes.tolist() == index.codes.tolist()
    assert loaded.codes.dtype == np.uint64
    assert loaded.ids.dtype == np.int64
    q = rng.getrandbits(64)
    assert as_lists(loaded.search(q, 10)) == as_lists(index.search(q, 10))
    # still mutable (copy-on-write); the file is untouched
    before = path.read_bytes()
    loaded.add([10**9 + 1], [5])
    assert loaded.remove([int(index.ids[0])]) == 1
    assert len(loaded) == len(index)
    assert path.read_bytes() == before
    # unverified load gives the same index
    fast = HammingIndex.load(path, mmap=mmap, verify=False)
    assert fast.codes.tolist() == index.codes.tolist()


@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_empty(tmp_path: Path, mmap: bool) -> None:
    path = tmp_path / "empty.idx"
    HammingIndex("s", "").save(str(path))
    loaded = HammingIndex.load(str(path), mmap=mmap)
    assert len(loaded) == 0
    assert loaded.scheme == "s"
    assert loaded.snapshot_id == ""
    assert path.stat().st_size == 4096


def test_save_header_layout(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    build([2, 1], [0xAB, U64_MAX], snapshot_id="snap").save(path)
    raw = path.read_bytes()
    magic, version, flags, n, body_crc = struct.unpack_from("<8sIIQI", raw, 0)
    assert (magic, version, flags, n) == (b"TXRCHIDX", 1, 0, 2)
    assert body_crc == zlib.crc32(raw[4096:])
    assert raw[32:36] == struct.pack("<I", len(SCHEME))
    assert raw[36 : 36 + len(SCHEME)] == SCHEME.encode()
    assert raw[100:104] == struct.pack("<I", 4)
    assert raw[104:108] == b"snap"
    assert np.frombuffer(raw, "<u8", 2, 4096).tolist() == [U64_MAX, 0xAB]
    assert np.frombuffer(raw, "<i8", 2, 4096 + 16).tolist() == [1, 2]


def test_save_overwrites_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a.idx"
    build([1], [1]).save(path)
    build([1, 2], [1, 2]).save(path)
    assert len(HammingIndex.load(path)) == 2
    old = path.read_bytes()

    def failing_replace(src: object, dst: object) -> None:
        raise OSError("simulated crash before rename")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        build([1, 2, 3], [1, 2, 3]).save(path)
    assert path.read_bytes() == old
    assert sorted(os.listdir(tmp_path)) == ["a.idx"]


def _rewrite_checksums(raw: bytearray) -> None:
    struct.pack_into("<I", raw, 24, zlib.crc32(bytes(raw[4096:])))
    struct.pack_into("<I", raw, 28, 0)
    struct.pack_into("<I", raw, 28, zlib.crc32(bytes(raw[:4096])))


@pytest.mark.parametrize("mmap", [False, True])
def test_corrupt_body_fails_checksum(tmp_path: Path, rng: random.Random, mmap: bool) -> None:
    path, index = saved(tmp_path, rng)
    raw = bytearray(path.read_bytes())
    raw[4096 + 8 * 17 + 3] ^= 0x10  # one bit of one fingerprint
    path.write_bytes(raw)
    with pytest.raises(IndexFileError, match="checksum") as info:
        HammingIndex.load(path, mmap=mmap)
    assert str(path) in str(info.value)
    assert "textrec build" in str(info.value)
    # verify=False skips the body checksum
    assert len(HammingIndex.load(path, mmap=mmap, verify=False)) == len(index)


def test_corrupt_header_fails_checksum(tmp_path: Path, rng: random.Random) -> None:
    path, _ = saved(tmp_path, rng)
    raw = bytearray(path.read_bytes())
    raw[40] ^= 0x01  # inside the scheme
    path.write_bytes(raw)
    with pytest.raises(IndexFileError, match="header checksum"):
        HammingIndex.load(path, verify=False)


@pytest.mark.parametrize("keep", [0, 5, 100, 4096, 4096 + 8, -1])
def test_truncated_file(tmp_path: Path, rng: random.Random, keep: int) -> None:
    path, _ = saved(tmp_path, rng)
    raw = path.read_bytes()
    path.write_bytes(raw[:keep])
    expected = "not a textrec index" if 0 <= keep < 8 else "truncated"
    with pytest.raises(IndexFileError, match=expected) as info:
        HammingIndex.load(path, mmap=True)
    assert str(path) in str(info.value)
    if keep >= 4096:
        assert str(len(raw)) in str(info.value)  # expected size
        assert str(len(raw[:keep])) in str(info.value)  # actual size


def test_trailing_bytes(tmp_path: Path, rng: random.Random) -> None:
    path, _ = saved(tmp_path, rng)
    with path.open("ab") as f:
        f.write(b"\0" * 8)
    with pytest.raises(IndexFileError, match="trailing"):
        HammingIndex.load(path)


def test_wrong_magic(tmp_path: Path, rng: random.Random) -> None:
    path, _ = saved(tmp_path, rng)
    raw = bytearray(path.read_bytes())
    raw[:8] = b"NOTANIDX"
    path.write_bytes(raw)
    with pytest.raises(IndexFileError, match="not a textrec index") as info:
        HammingIndex.load(path)
    assert str(path) in str(info.value)
    other = tmp_path / "notes.txt"
    other.write_text("hello\n")
    with pytest.raises(IndexFileError, match="not a textrec index"):
        HammingIndex.load(other)


def test_unsupported_version(tmp_path: Path, rng: random.Random) -> None:
    path, _ = saved(tmp_path, rng)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, 8, 2)
    path.write_bytes(raw)
    with pytest.raises(IndexFileError, match=r"unsupported index format version 2.*version 1"):
        HammingIndex.load(path)


def test_ids_not_increasing(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    build([1, 2, 3], [7, 8, 9]).save(path)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<qqq", raw, 4096 + 24, 1, 3, 3)
    _rewrite_checksums(raw)
    path.write_bytes(raw)
    with pytest.raises(IndexFileError, match="strictly increasing"):
        HammingIndex.load(path)


def test_expected_scheme_and_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "x.idx"
    build([1], [1], scheme="simhash64-v9", snapshot_id="snapA").save(path)
    with pytest.raises(SchemeMismatchError, match="simhash64-v9"):
        HammingIndex.load(path, expected_scheme=SCHEME)
    with pytest.raises(SchemeMismatchError, match="snapA"):
        HammingIndex.load(path, expected_snapshot_id="snapB")
    ok = HammingIndex.load(path, expected_scheme="simhash64-v9", expected_snapshot_id="snapA")
    assert ok.scheme == "simhash64-v9"
    assert ok.snapshot_id == "snapA"


# --------------------------------------------------------------------------------------------
# concurrency


def test_concurrent_readers_see_consistent_states() -> None:
    rng = random.Random(7)
    queries = [rng.getrandbits(64) for _ in range(4)]
    base_ids = list(range(0, 3000, 10))
    code_of = {i: rng.getrandbits(64) for i in base_ids}
    batches: list[list[int]] = []
    batch_of: dict[int, int] = {}
    for b in range(16):
        ids = [100_000 + 100 * b + j for j in range(25)]
        batches.append(ids)
        for i in ids:
            batch_of[i] = b
            # close to one of the queries, so batch documents make the top k
            code_of[i] = rng.choice(queries) ^ (
                rng.getrandbits(64) & rng.getrandbits(64) & rng.getrandbits(64)
            )
    index = HammingIndex()
    index.add(base_ids, [code_of[i] for i in base_ids])

    errors: list[BaseException] = []
    start = threading.Barrier(5)
    readers_done = threading.Event()
    writes = [0]
    # (query, k, radius or None for a top-k search, (ids, distances)); checked after the run so
    # that readers query as often as possible while the writers work.
    seen: list[tuple[int, int, int | None, tuple[list[int], list[int]]]] = []

    def expected(present: set[int], q: int, k: int) -> tuple[list[int], list[int]]:
        ids = sorted(set(base_ids) | {i for b in present for i in batches[b]})
        return brute([code_of[i] for i in ids], ids, q, k)

    def check(q: int, k: int, radius: int | None, result: tuple[list[int], list[int]]) -> None:
        ids, dist = result
        assert len(set(ids)) == len(ids)
        assert list(zip(dist, ids, strict=True)) == sorted(zip(dist, ids, strict=True))
        assert all(popcount(code_of[i] ^ q) == d for i, d in zip(ids, dist, strict=True))
        # A batch is added and removed atomically: any of its ids in a result means all of it
        # was in the state the query saw, and batches with no id in the result cannot have
        # changed it. So the result is the brute-force answer over base + those batches.
        present = {batch_of[i] for i in ids if i in batch_of}
        if radius is None:
            assert result == expected(present, q, k)
        else:
            all_ids, all_dist = expected(present, q, len(code_of))
            want = [(i, d) for i, d in zip(all_ids, all_dist, strict=True) if d <= radius]
            assert result == ([p[0] for p in want], [p[1] for p in want])

    def writer(mine: list[int]) -> None:
        try:
            start.wait()
            for _ in range(200):
                for b in mine:
                    index.add(batches[b], [code_of[i] for i in batches[b]])
                    writes[0] += 1
                for b in mine:
                    assert index.remove(batches[b]) == len(batches[b])
                    writes[0] += 1
                if readers_done.is_set():
                    break
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    def reader(seed: int) -> None:
        r = random.Random(seed)
        try:
            start.wait()
            for n in range(150):
                q = r.choice(queries)
                k = r.choice([1, 10, 40])
                if n % 5 == 4:
                    seen.append((q, k, 12, as_lists(index.within(q, 12))))
                elif n % 5 == 3:
                    ids, dist = index.search_batch([q], k)
                    seen.append((q, k, None, (ids[0].tolist(), dist[0].tolist())))
                else:
                    seen.append((q, k, None, as_lists(index.search(q, k))))
                time.sleep(0)  # yield the GIL so that writers run between (and during) reads
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        writers = [
            threading.Thread(target=writer, args=(list(range(0, 16, 2)),)),
            threading.Thread(target=writer, args=(list(range(1, 16, 2)),)),
        ]
        readers = [threading.Thread(target=reader, args=(s,)) for s in range(3)]
        for t in writers + readers:
            t.start()
        for t in readers:
            t.join()
        readers_done.set()
        for t in writers:
            t.join()
    finally:
        sys.setswitchinterval(old_interval)
    if errors:
        raise errors[0]
    assert len(seen) == 3 * 150
    assert writes[0] >= 32
    for q, k, radius, result in seen:
        check(q, k, radius, result)
    assert index.ids.tolist() == base_ids


# --------------------------------------------------------------------------------------------
# property test

any_code = st.integers(0, U64_MAX)
tie_code = st.sampled_from([0, 1, 2**63, U64_MAX, 0x5555555555555555])
near_code = st.integers(0, 15)  # a few low bits: many small distances and ties


@st.composite
def index_cases(draw: st.DrawFn) -> tuple[list[int], list[int], list[int], int, int]:
    code = draw(st.sampled_from([any_code, tie_code, near_code, st.one_of(tie_code, any_code)]))
    n = draw(st.integers(0, 40))
    codes = draw(st.lists(code, min_size=n, max_size=n))
    id_range = draw(st.sampled_from([n + 5, 2**63 - 1]))
    ids = draw(st.lists(st.integers(0, id_range), min_size=n, max_size=n, unique=True))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    q = draw(st.one_of(code, st.sampled_from(codes)) if codes else code)
    k = draw(st.integers(0, n + 3))
    return ids, codes, cuts, q, k


@settings(max_examples=100, deadline=None)
@given(index_cases())
def test_search_matches_brute_force_property(
    case: tuple[list[int], list[int], list[int], int, int],
) -> None:
    ids, codes, cuts, q, k = case
    index = HammingIndex()
    bounds = [0, *cuts, len(ids)]
    for lo, hi in itertools.pairwise(bounds):
        index.add(ids[lo:hi], codes[lo:hi])
    assert as_lists(index.search(q, k)) == brute(codes, ids, q, k)
    b_ids, b_dist = index.search_batch([q], k)
    want_ids, want_dist = brute(codes, ids, q, k)
    pad = k - len(want_ids)
    assert b_ids[0].tolist() == want_ids + [-1] * pad
    assert b_dist[0].tolist() == want_dist + [-1] * pad
    radius = min(64, k * 3)
    assert as_lists(index.within(q, radius)) == brute_within(codes, ids, q, radius)

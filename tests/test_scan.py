"""The compiled scan kernel (textrec/_hamming.c) against brute force and the NumPy path.

Every instruction-set variant the CPU supports is run, as is the NumPy fallback (forced by
setting ``textrec.content.hamming._kernel`` to None), the multi-thread split and the
multi-index radius tables, on data full of ties.
"""

from __future__ import annotations

import random
import struct
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

import textrec.content.hamming as index_module
from textrec.content.hamming import MAX_TABLE_RADIUS, HammingIndex, IndexFileError, kernel_name

compiled = index_module._compiled
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def brute(codes: np.ndarray, ids: np.ndarray, q: int, k: int) -> tuple[list[int], list[int]]:
    d = np.bitwise_count(codes ^ np.uint64(q)).astype(np.int64)
    order = np.lexsort((ids, d))[:k]
    return ids[order].tolist(), d[order].tolist()


def brute_within(codes: np.ndarray, ids: np.ndarray, q: int, r: int) -> tuple[list[int], list[int]]:
    found, dist = brute(codes, ids, q, len(ids))
    keep = [i for i, d in enumerate(dist) if d <= r]
    return [found[i] for i in keep], [dist[i] for i in keep]


def lists(result: tuple[np.ndarray, np.ndarray]) -> tuple[list[int], list[int]]:
    ids, dist = result
    assert ids.dtype == np.int64
    assert dist.dtype == np.int32
    return ids.tolist(), dist.tolist()


def tied_codes(rng: np.random.Generator, n: int) -> np.ndarray:
    """Random codes, a cluster of near neighbours of 0 and many exact duplicates."""
    codes = rng.integers(0, 2**64, size=n, dtype=np.uint64, endpoint=False)
    sparse = rng.integers(0, 2**64, size=(n, 3), dtype=np.uint64, endpoint=False)
    near = sparse[:, 0] & sparse[:, 1] & sparse[:, 2]
    codes[::3] = near[::3]
    codes[::7] = np.uint64(0x0F0F)
    codes[::11] = np.uint64(0)
    return codes


def kernels() -> list[str]:
    if compiled is None:
        return []
    names = ["generic"]
    for name in ("popcnt", "avx2", "avx512-vpopcntdq"):
        try:
            compiled.use_kernel(name)
        except ValueError:
            continue
        names.append(name)
    compiled.use_kernel("best")
    return names


@pytest.fixture
def force() -> Iterator[Callable[[str], None]]:
    """Switch to a named kernel, skipping the test where this CPU lacks it; back to the best one
    afterwards."""

    def use(name: str) -> None:
        assert compiled is not None
        try:
            compiled.use_kernel(name)
        except ValueError:
            pytest.skip(f"this CPU cannot run the {name} kernel")

    try:
        yield use
    finally:
        if compiled is not None:
            compiled.use_kernel("best")


@pytest.fixture(params=["numpy", *kernels()])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name: str = request.param
    if name == "numpy":
        monkeypatch.setattr(index_module, "_kernel", None)
        yield name
        return
    assert compiled is not None
    compiled.use_kernel(name)
    try:
        yield name
    finally:
        compiled.use_kernel("best")


def test_compiled_kernel_is_built_and_selected() -> None:
    # gcc and the Python headers are present wherever textrec is tested: a silently skipped
    # build would leave every user on the slow path.
    assert compiled is not None
    assert kernel_name() == compiled.kernel()
    assert kernel_name() in {"generic", "popcnt", "avx2", "avx512-vpopcntdq"}


def cpu_features() -> set[str]:
    """The instruction-set extensions of this CPU as NumPy found them at run time (CPUID and the
    OS's register support, as the kernel's own check; /proc/cpuinfo would show the host's under
    an emulator). Skips where NumPy does not say."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        pytest.skip("this NumPy does not report CPU features")
    return {name for name, present in __cpu_features__.items() if present}


# The features each kernel needs, in the order the kernel is chosen at import time.
NEEDS = {
    "avx512-vpopcntdq": {"AVX512F", "AVX512DQ", "AVX512VPOPCNTDQ", "POPCNT"},
    "avx2": {"AVX2", "BMI2", "POPCNT"},  # AMD Zen 1-3, Intel client cores
    "popcnt": {"POPCNT"},
    "generic": set(),
}


def test_kernel_follows_the_cpu_features() -> None:
    assert compiled is not None
    have = cpu_features()
    best = next(name for name, needs in NEEDS.items() if needs <= have)
    assert compiled.use_kernel("best") == best == kernel_name()
    try:
        for name, needs in NEEDS.items():
            if needs <= have:
                assert compiled.use_kernel(name) == name == kernel_name()
            else:
                with pytest.raises(ValueError):
                    compiled.use_kernel(name)
    finally:
        compiled.use_kernel("best")
    with pytest.raises(ValueError, match="unknown or unsupported kernel"):
        compiled.use_kernel("avx3")


@pytest.mark.parametrize("n", [1, 5, 31, 4096, 9000])
def test_search_matches_brute_force(path: str, n: int) -> None:
    rng = np.random.default_rng(n)
    codes = tied_codes(rng, n)
    ids = np.sort(rng.choice(10**9, size=n, replace=False)).astype(np.int64)
    index = HammingIndex()
    index.add(ids, codes)
    queries = [0, 0x0F0F, 2**64 - 1, int(codes[n // 2]), int(rng.integers(0, 2**63))]
    for q in queries:
        for k in (1, 2, 10, 64, n - 1, n, n + 3):
            if k < 1:
                continue
            assert lists(index.search(q, k)) == brute(codes, ids, q, k), (q, k)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 7, 8, 9, 16, 17, 20, 64, 100])
def test_batch_matches_brute_force(path: str, m: int) -> None:
    # With AVX-512, up to 17 queries share each loaded vector of codes (2, 4, 8 or 16 vector
    # queries, the 17th on scalar POPCNT), and 18 or more run the bit-sliced kernel
    rng = np.random.default_rng(m)
    n = 10_000  # more than one 4096-code block, and a partial one
    codes = tied_codes(rng, n)
    ids = np.arange(5, 5 + 3 * n, 3, dtype=np.int64)
    index = HammingIndex()
    index.add(ids, codes)
    queries = np.concatenate(
        [
            np.array([0, 0x0F0F, 2**64 - 1], dtype=np.uint64),
            codes[rng.integers(0, n, 40)] ^ np.uint64(1 << 40),
            rng.integers(0, 2**64, 60, dtype=np.uint64),
        ]
    )[:m]
    for k in (1, 13, 700):
        b_ids, b_dist = index.search_batch(queries, k)
        for row, q in enumerate(queries.tolist()):
            assert (b_ids[row].tolist(), b_dist[row].tolist()) == brute(codes, ids, q, k)


@pytest.mark.parametrize("m", [2, 3, 4, 5, 8, 9, 16, 17])
def test_each_query_of_a_small_batch_finds_its_own_neighbours(path: str, m: int) -> None:
    # One query of the batch has neighbours far from every other query's, planted after the
    # others' bounds have fallen to 0: a kernel that left it out of its shared filter would
    # miss them. Each position in the batch takes that role in turn.
    rng = np.random.default_rng(m)
    n = 9000
    codes = rng.integers(0, 2**64, size=n, dtype=np.uint64)
    codes[:50] = 0
    odd = int(rng.integers(0, 2**64, dtype=np.uint64))
    planted = rng.choice(np.arange(4096, n), size=12, replace=False)
    codes[planted] = np.uint64(odd) ^ (np.uint64(1) << rng.integers(0, 64, 12).astype(np.uint64))
    ids = np.arange(n, dtype=np.int64)
    index = HammingIndex()
    index.add(ids, codes)
    for j in range(m):
        queries = np.zeros(m, dtype=np.uint64)
        queries[j] = odd
        b_ids, b_dist = index.search_batch(queries, 5)
        assert (b_ids[j].tolist(), b_dist[j].tolist()) == brute(codes, ids, odd, 5), j
        assert b_dist[(j + 1) % m].tolist() == [0] * 5


@pytest.fixture
def restore_sliced_min() -> Iterator[None]:
    """Put back the batch size from which the bit-sliced kernel runs."""
    assert compiled is not None
    previous = compiled.sliced_min(64)
    try:
        yield
    finally:
        compiled.sliced_min(previous)


@pytest.mark.parametrize("kernel", ["avx512-vpopcntdq", "avx2"])
@pytest.mark.parametrize("n", [255, 256, 257, 511, 512, 513, 4096 + 512 * 3 + 77, 20_000])
def test_sliced_batch_equals_popcount_batch(
    restore_sliced_min: None, force: Callable[[str], None], kernel: str, n: int
) -> None:
    # The bit-sliced kernel (batches of many queries; sub-blocks of 512 codes with AVX-512, 256
    # with AVX2) against the popcount kernel of the same instruction set: the same keys for every
    # query, on ties, duplicates, 0 and all-ones codes, the popcount of a query on either side
    # of 32 (its two modes), and sub-blocks cut short by n.
    assert compiled is not None
    force(kernel)
    set_min = compiled.sliced_min
    rng = np.random.default_rng(n)
    codes = tied_codes(rng, n)
    queries = np.concatenate(
        [
            np.array([0, 2**64 - 1, 0x0F0F, 2**32 - 1, 2**33 - 1, 2**31 - 1], dtype=np.uint64),
            codes[rng.integers(0, n, 30)],
            codes[rng.integers(0, n, 30)] ^ np.uint64(3),
            rng.integers(0, 2**64, 30, dtype=np.uint64),
        ]
    )
    assert [bin(int(q)).count("1") for q in queries[:6]] == [0, 64, 8, 32, 33, 31]
    for k in (1, 10, 700):
        outs = []
        for threshold in (2, 10**9):
            set_min(threshold)
            out = np.zeros((len(queries), k), dtype=np.uint64)
            compiled.topk(codes, queries, k, out)
            outs.append(out)
        assert np.array_equal(outs[0], outs[1]), k
    with pytest.raises(ValueError, match="sliced_min"):
        set_min(1)


@pytest.mark.parametrize("kernel", ["avx512-vpopcntdq", "avx2"])
def test_each_kernel_has_its_own_sliced_threshold(
    restore_sliced_min: None, force: Callable[[str], None], kernel: str
) -> None:
    """0 is each kernel's own threshold (AVX2's full adders cost more, so the bit-sliced kernel
    overtakes the popcount group later there: 22 queries against 18); the batch's results do
    not depend on which of the two ran."""
    assert compiled is not None
    force(kernel)
    assert compiled.sliced_min(0) == 64 and compiled.sliced_min(0) == 0
    rng = np.random.default_rng(7)
    codes = tied_codes(rng, 5_000)
    for m in (17, 18, 21, 22, 23):
        queries = codes[rng.integers(0, len(codes), m)] ^ np.uint64(5)
        outs = []
        for threshold in (0, 2, 10**9):
            compiled.sliced_min(threshold)
            out = np.zeros((m, 10), dtype=np.uint64)
            compiled.topk(codes, queries, 10, out)
            outs.append(out)
        assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2]), m


@pytest.mark.parametrize("kernel", ["avx512-vpopcntdq", "avx2"])
@pytest.mark.parametrize("n", [4096, 4096 + 31, 4096 + 4 * 32 + 5, 50_001])
def test_streamed_single_query_equals_one_stream(
    force: Callable[[str], None], kernel: str, n: int
) -> None:
    # A single AVX-512 or AVX2 query over >= streams_min codes scans four parts at once, each
    # with its own bound, and merges them: the same keys as one stream, with ties (equal codes)
    # placed on both sides of every part boundary and in the tail after the last full step.
    assert compiled is not None
    force(kernel)
    rng = np.random.default_rng(n)
    codes = tied_codes(rng, n)
    part = n // 4 // 32 * 32
    for edge in (part, 2 * part, 3 * part, 4 * part, n - 1):
        codes[max(edge - 3, 0) : edge + 3] = np.uint64(0xF0F0)
    queries = [0, 0xF0F0, 0xF0F1, 2**64 - 1, int(codes[n // 3]) ^ 1]
    previous = compiled.streams_min(4096)
    try:
        # part // 2 - 32 is the largest k that still streams (2k + 64 must fit in a part)
        for k in (1, 10, 25, part // 2 - 32, part // 2 - 31, n):
            for q in queries:
                outs = []
                for threshold in (4096, 10**9):
                    compiled.streams_min(threshold)
                    out = np.zeros(k, dtype=np.uint64)
                    assert compiled.topk(codes, np.array([q], dtype=np.uint64), k, out) == k
                    outs.append(out)
                assert np.array_equal(outs[0], outs[1]), (k, q)
    finally:
        compiled.streams_min(previous)
    with pytest.raises(ValueError, match="streams_min"):
        compiled.streams_min(0)


def test_batch_pads_beyond_n(path: str) -> None:
    index = HammingIndex()
    index.add([9, 4, 6], [7, 7, 0])
    ids, dist = index.search_batch([7, 0], 5)
    assert ids.tolist() == [[4, 9, 6, -1, -1], [6, 4, 9, -1, -1]]
    assert dist.tolist() == [[0, 0, 3, -1, -1], [0, 3, 3, -1, -1]]


@pytest.mark.parametrize("n", [2, 7, 33, 255, 257, 4096 * 2 + 256 * 3 + 5])
def test_odd_sizes_match_brute_force(path: str, n: int) -> None:
    # n not a multiple of the vector width (4 or 8 codes), the 32-code step, the sub-block (256
    # or 512 codes) or the 4096-code block; single queries with k on both sides of the part
    # size's limit, and batches on both sides of the group size (17) and sliced_min (18).
    rng = np.random.default_rng(n)
    codes = tied_codes(rng, n)
    ids = np.arange(3, 3 + 2 * n, 2, dtype=np.int64)
    index = HammingIndex()
    index.add(ids, codes)
    pool = np.concatenate([np.array([0, 0x0F0F, 2**64 - 1], dtype=np.uint64), codes[::5]])
    pool = np.resize(pool, 40)
    for k in (1, 3, 50, n, n + 2):
        for q in pool[:4].tolist():
            assert lists(index.search(q, k)) == brute(codes, ids, q, k), (q, k)
        if k > n:
            continue  # a batch pads its rows beyond n (test_batch_pads_beyond_n)
        for m in (2, 17, 18, 40):
            b_ids, b_dist = index.search_batch(pool[:m], k)
            for row, q in enumerate(pool[:m].tolist()):
                assert (b_ids[row].tolist(), b_dist[row].tolist()) == brute(codes, ids, q, k)


@pytest.mark.parametrize("n", [1, 31, 32, 33, 4095, 4096 + 4 * 32 + 5, 30_001])
def test_within_at_every_radius_matches_brute_force(path: str, n: int) -> None:
    # The radius scan without tables, one stream below streams_min and four parts from it, with
    # matches at every distance and in the tail after the last full 32-code step.
    rng = np.random.default_rng(n)
    base = int(rng.integers(0, 2**64, dtype=np.uint64))
    bits = rng.integers(0, 64, size=(n, 12)).astype(np.uint64)
    keep = rng.random((n, 12)) < rng.random((n, 1))
    flips = np.bitwise_xor.reduce(np.where(keep, np.uint64(1) << bits, np.uint64(0)), axis=1)
    codes = np.uint64(base) ^ flips
    codes[-1] = np.uint64(base)
    ids = np.arange(n, dtype=np.int64) * 5
    index = HammingIndex()
    index.add(ids, codes)
    for q in (base, base ^ 0b111, int(codes[n // 2])):
        for r in (0, 1, 2, 3, 4, 5, 7, 8, 12, 32, 63, 64):
            assert lists(index.within(q, r)) == brute_within(codes, ids, q, r), (q, r)


@pytest.mark.parametrize("kernel", ["generic", "popcnt", "avx2", "avx512-vpopcntdq"])
def test_kernel_calls_on_no_codes_and_out_of_range_radii(
    force: Callable[[str], None], kernel: str
) -> None:
    # The module's own entry points, below HammingIndex (which answers an empty index without
    # them and checks the radius): nothing found in no codes, and a radius below 0 or above 64
    # finds nothing or everything.
    assert compiled is not None
    force(kernel)
    empty = np.zeros(0, dtype=np.uint64)
    out = np.zeros((3, 4), dtype=np.uint64)
    assert compiled.topk(empty, np.array([0, 1, 2], dtype=np.uint64), 4, out) == 0
    assert compiled.within(empty, 5, 64) == b""
    codes = tied_codes(np.random.default_rng(1), 5000)
    everything = np.frombuffer(compiled.within(codes, 0, 64), dtype=np.uint64)
    assert everything.shape == (5000,)
    assert np.array_equal(np.frombuffer(compiled.within(codes, 0, 1000), np.uint64), everything)
    assert compiled.within(codes, 0, -1) == b""


@pytest.mark.parametrize("threads", [1, 2, 3, None])
def test_threads_split_and_merge_exactly(
    path: str, threads: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_module, "_MIN_CODES_PER_THREAD", 1000)
    rng = np.random.default_rng(3)
    n = 7001
    codes = tied_codes(rng, n)
    ids = np.arange(n, dtype=np.int64) * 2
    index = HammingIndex()
    index.add(ids, codes)
    for q in (0, 0x0F0F, int(codes[4000])):
        for k in (1, 40, 3000, n + 1):
            assert lists(index.search(q, k, threads=threads)) == brute(codes, ids, q, k)
        b_ids, b_dist = index.search_batch([q, q ^ 1], 25, threads=threads)
        assert (b_ids[0].tolist(), b_dist[0].tolist()) == brute(codes, ids, q, 25)
        assert (b_ids[1].tolist(), b_dist[1].tolist()) == brute(codes, ids, q ^ 1, 25)


def test_threads_validation() -> None:
    index = HammingIndex()
    index.add([1], [1])
    with pytest.raises(ValueError, match="threads must be >= 1"):
        index.search(1, 1, threads=0)
    with pytest.raises(TypeError, match="threads must be an integer"):
        index.search_batch([1], 1, threads=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("tables", [False, True])
def test_within_matches_brute_force(path: str, tables: bool) -> None:
    rng = np.random.default_rng(11)
    n = 20_000
    base = int(rng.integers(0, 2**63))
    flips = np.zeros(n, dtype=np.uint64)
    for _ in range(6):  # up to 6 random bit flips from base, often fewer
        bits = rng.integers(0, 64, n).astype(np.uint64)
        flips ^= np.where(rng.random(n) < 0.5, np.uint64(1) << bits, np.uint64(0))
    codes = np.uint64(base) ^ flips
    codes[::5] = rng.integers(0, 2**64, size=codes[::5].shape[0], dtype=np.uint64)
    ids = np.sort(rng.choice(10**7, size=n, replace=False)).astype(np.int64)
    index = HammingIndex()
    index.add(ids, codes)
    if tables:
        index.enable_radius_index()
        assert index.radius_index_nbytes == (0 if path == "numpy" else 12 * n + 4 * (2**23 + 3))
    for q in (base, base ^ 0b1011, int(codes[7]), int(codes[10])):
        for r in (*range(MAX_TABLE_RADIUS + 2), 20, 64):
            assert lists(index.within(q, r)) == brute_within(codes, ids, q, r), (q, r)
    # mutations invalidate the tables; they are rebuilt for the new state
    gone = ids[::4]
    index.remove(gone)
    new_ids = np.arange(10**7, 10**7 + 100, dtype=np.int64)
    new_codes = np.uint64(base) ^ (np.uint64(1) << np.arange(100, dtype=np.uint64) % 64)
    index.add(new_ids, new_codes)
    all_ids = np.concatenate([np.delete(ids, np.s_[::4]), new_ids])
    all_codes = np.concatenate([np.delete(codes, np.s_[::4]), new_codes])
    for r in (0, 1, 4, 8):
        assert lists(index.within(base, r)) == brute_within(all_codes, all_ids, base, r)
    index.disable_radius_index()
    assert index.radius_index_nbytes == 0
    assert lists(index.within(base, 4)) == brute_within(all_codes, all_ids, base, 4)


def test_radius_tables_are_dropped_on_mutation() -> None:
    index = HammingIndex()
    index.add(range(100), range(100))
    index.enable_radius_index()
    assert index.radius_index_nbytes > 0
    index.add([1000], [5])
    assert index.radius_index_nbytes == 0  # the old state's tables are not kept alive
    assert lists(index.within(5, 0)) == ([5, 1000], [0, 0])
    assert index.radius_index_nbytes > 0


def test_mmap_search_without_verify(tmp_path: Path) -> None:
    rng = random.Random(5)
    ids = sorted(rng.sample(range(10**6), 3000))
    codes = np.array([rng.getrandbits(64) for _ in ids], dtype=np.uint64)
    index = HammingIndex()
    index.add(ids, codes)
    path = tmp_path / "x.idx"
    index.save(path)
    mapped = HammingIndex.load(path, mmap=True, verify=False)
    mapped.enable_radius_index()
    q = int(codes[17])
    assert lists(mapped.search(q, 9)) == lists(index.search(q, 9))
    assert lists(mapped.within(q, 6)) == brute_within(codes, np.array(ids), q, 6)


def test_unordered_ids_caught_only_by_verify(tmp_path: Path) -> None:
    index = HammingIndex()
    index.add([1, 2, 3], [7, 8, 9])
    path = tmp_path / "x.idx"
    index.save(path)
    raw = bytearray(path.read_bytes())
    raw[4096 + 24 : 4096 + 48] = np.array([3, 2, 1], dtype="<i8").tobytes()
    struct.pack_into("<I", raw, 24, zlib.crc32(bytes(raw[4096:])))
    struct.pack_into("<I", raw, 28, 0)
    struct.pack_into("<I", raw, 28, zlib.crc32(bytes(raw[:4096])))
    path.write_bytes(raw)
    with pytest.raises(IndexFileError, match="strictly increasing"):
        HammingIndex.load(path, mmap=True)
    assert len(HammingIndex.load(path, mmap=True, verify=False)) == 3


@pytest.fixture(scope="module")
def real_fingerprints(mecab: object) -> np.ndarray:
    """textrec fingerprints of the 300 fixture petitions, their titles alone, their first
    sentences and a few empty documents: clustered codes (short texts, near duplicates, exact
    duplicates) as in a real corpus, unlike uniform random codes."""
    import json

    from textrec import Analyzer, DFSnapshot

    analyzer = Analyzer(tokenizer=mecab)  # type: ignore[arg-type]
    with (FIXTURES / "petitions_300.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    texts: list[tuple[str, str | None]] = []
    for row in rows:
        texts.append((str(row["text"]), str(row["title"])))
        texts.append((str(row["title"]), None))
        texts.append((str(row["text"]).split(".")[0], None))
    texts += [("", None)] * 5
    counts = [analyzer.term_counts(text, title) for text, title in texts]
    snapshot = DFSnapshot.from_documents(counts)
    return np.array([analyzer.fingerprint(c, snapshot) for c in counts], dtype=np.uint64)


def test_real_fingerprints_match_brute_force(path: str, real_fingerprints: np.ndarray) -> None:
    codes = real_fingerprints
    n = len(codes)
    assert len(set(codes.tolist())) < n  # the data has exact duplicates
    ids = np.arange(0, 7 * n, 7, dtype=np.int64)
    index = HammingIndex()
    index.add(ids, codes)
    queries = codes[::9]
    for k in (1, 10, 100):
        b_ids, b_dist = index.search_batch(queries, k)
        for row, q in enumerate(queries.tolist()):
            want = brute(codes, ids, q, k)
            assert (b_ids[row].tolist(), b_dist[row].tolist()) == want, (q, k)
            if row % 4 == 0:
                assert lists(index.search(q, k)) == want, (q, k)
    index.enable_radius_index()
    for q in queries[::3].tolist():
        for r in (0, 2, 4, 8, 12):
            assert lists(index.within(q, r)) == brute_within(codes, ids, q, r), (q, r)

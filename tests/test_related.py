"""RelatedIndex: exact top-k of cosine over truncated, quantised vectors, with appends,
removals and concurrent queries."""

from __future__ import annotations

import importlib
import math
import random
import threading

import numpy as np
import pytest

from tests.helpers import missing
from textrec.content.related import IMPACT_LUT, RelatedIndex, quantize_impacts

related_module = importlib.import_module("textrec.content.related")


def random_docs(n: int, vocab: int, seed: int) -> list[dict[str, float]]:
    rng = random.Random(seed)
    return [
        {
            f"t{rng.randrange(vocab)}": rng.choice([0.5, 1.0, 2.0, rng.random() * 5 + 0.01])
            for _ in range(rng.randint(1, 30))
        }
        for _ in range(n)
    ]


def reference(
    docs: dict[int, dict[str, float]],
    query: dict[str, float],
    k: int,
    top: int,
    exclude: int | None = None,
    term_ids: dict[str, int] | None = None,
) -> list[tuple[int, float]]:
    """The definition, in plain Python: truncate (ties: smaller term id), normalise,
    quantise, dot, sort (ties: smaller document id)."""
    term_ids = term_ids or {}
    qn = math.sqrt(sum(w * w for w in query.values()))
    scored = []
    for doc_id, w in docs.items():
        if doc_id == exclude:
            continue
        kept = sorted(w.items(), key=lambda kv: (-kv[1], term_ids[kv[0]]))[:top]
        norm = math.sqrt(sum(v * v for _, v in kept))
        unit = {t: float(IMPACT_LUT[quantize_impacts(np.array([v / norm]))[0]]) for t, v in kept}
        s = sum(query.get(t, 0.0) / qn * u for t, u in unit.items())
        if s > 0:
            scored.append((doc_id, s))
    scored.sort(key=lambda x: (-x[1], x[0]))
    return scored[:k]


def assert_same_ranking(
    got: tuple[np.ndarray, np.ndarray], expected: list[tuple[int, float]]
) -> None:
    ids, scores = got
    assert len(ids) == len(expected)
    assert np.allclose(scores, [s for _, s in expected], atol=1e-5)
    for (doc_id, s), got_id in zip(expected, ids.tolist(), strict=True):
        if doc_id != got_id:  # only a float32 near-tie may swap places
            assert abs(s - dict(expected).get(got_id, -1)) < 1e-5


def build(docs: list[dict[str, float]], top: int = 8, chunks: int = 1) -> RelatedIndex:
    index = RelatedIndex([f"t{i}" for i in range(0, 40, 2)], top_terms=top, max_segments=3)
    ids = list(range(10, 10 + 3 * len(docs), 3))
    step = max(1, math.ceil(len(docs) / chunks))
    for a in range(0, len(docs), step):
        index.add(ids[a : a + step], docs[a : a + step])
    return index


@pytest.fixture(params=["compiled", "numpy"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test below runs with the compiled kernels (textrec/_related.c) and with the NumPy
    fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(related_module, "_kernels", None)
    elif related_module._compiled is None:
        missing("compiled", "textrec._related is not built here")
    return str(request.param)


@pytest.mark.parametrize("chunks", [1, 7])
def test_search_equals_the_definition(chunks: int, kernels: str) -> None:
    docs = random_docs(300, 60, seed=chunks)
    index = build(docs, top=8, chunks=chunks)
    by_id = dict(zip(range(10, 10 + 3 * len(docs), 3), docs, strict=True))
    term_ids = index._term_ids
    for q in random_docs(40, 60, seed=99):
        assert_same_ranking(index.search(q, 10), reference(by_id, q, 10, 8, None, term_ids))
    first = next(iter(by_id))
    assert_same_ranking(
        index.search(by_id[first], 5, exclude=first),
        reference(by_id, by_id[first], 5, 8, first, term_ids),
    )


def test_quantisation_is_within_two_percent() -> None:
    values = np.geomspace(1e-4, 1.0, 5000)
    rel = np.abs(IMPACT_LUT[quantize_impacts(values)] - values) / values
    assert rel.max() < 0.02
    assert quantize_impacts(np.array([1.0]))[0] == 255


def test_edges(kernels: str) -> None:
    index = RelatedIndex()
    assert index.search({"a": 1.0}, 5)[0].size == 0  # empty index
    index.add([1, 2], [{"a": 1.0}, {"b": 1.0}])
    assert index.search({"zzz": 1.0}, 5)[0].size == 0  # no shared term
    assert index.search({}, 5)[0].size == 0
    assert index.search({"a": 1.0}, 0)[0].size == 0
    ids, scores = index.search({"a": 2.0, "b": 2.0}, 10)  # k beyond N
    assert ids.tolist() == [1, 2] and np.allclose(scores, [math.sqrt(0.5)] * 2, atol=0.02)
    with pytest.raises(ValueError, match="k must be"):
        index.search({"a": 1.0}, -1)
    with pytest.raises(ValueError, match="increasing"):
        index.add([2], [{"a": 1.0}])
    with pytest.raises(ValueError, match="2 ids but 1"):
        index.add([5, 6], [{"a": 1.0}])


def test_remove_is_never_returned_again(kernels: str) -> None:
    docs = random_docs(100, 20, seed=4)
    index = build(docs, chunks=5)
    ids = list(range(10, 10 + 3 * len(docs), 3))
    assert index.remove(ids[:50]) == 50
    assert index.remove(ids[:50]) == 0
    assert index.remove([999_999]) == 0
    assert len(index) == 50
    for q in random_docs(20, 20, seed=5):
        assert not set(index.search(q, 100)[0].tolist()) & set(ids[:50])
    index.compact()
    assert len(index) == 50


def test_concurrent_queries_during_appends() -> None:
    index = RelatedIndex(top_terms=8)
    index.add([0], [{"seed": 1.0}])
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        try:
            while not stop.is_set():
                ids, scores = index.search({"t1": 1.0, "t2": 1.0, "seed": 1.0}, 20)
                assert list(scores) == sorted(scores, reverse=True)
                assert len(set(ids.tolist())) == len(ids)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    docs = random_docs(400, 10, seed=6)
    for i in range(0, 400, 10):
        index.add(list(range(1 + i, 11 + i)), docs[i : i + 10])
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert len(index) == 401


def test_compiled_and_numpy_kernels_give_identical_scores(monkeypatch: pytest.MonkeyPatch) -> None:
    if related_module._compiled is None:
        pytest.skip("textrec._related is not built here")
    docs = random_docs(2000, 300, seed=5)
    index = build(docs, top=16, chunks=4)
    queries = random_docs(100, 300, seed=6)
    compiled = [index.search(q, 20, exclude=13) for q in queries]
    monkeypatch.setattr(related_module, "_kernels", None)
    fallback = [index.search(q, 20, exclude=13) for q in queries]
    for (a_ids, a_s), (b_ids, b_s) in zip(compiled, fallback, strict=True):
        assert a_ids.tolist() == b_ids.tolist()
        assert a_s.tobytes() == b_s.tobytes()  # bit for bit


def test_corrupt_postings_raise_instead_of_reading_out_of_bounds() -> None:
    if related_module._compiled is None:
        pytest.skip("textrec._related is not built here")
    index = build(random_docs(50, 30, seed=1), top=8)
    seg = index._state.segments[0]
    seg.rows[0] = 10**6  # a row beyond every accumulator, as a damaged file could hold
    with pytest.raises(ValueError, match="corrupt"):
        for t in range(0, 30):
            index.search({f"t{t}": 1.0}, 5)

"""RelatedIndex: exact top-k of the quantised additive score over pruned impact postings, with
appends, removals, concurrent queries and its file; the pivoted BM25 score it serves."""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import missing
from textrec.content.ranking import Ranking
from textrec.content.related import IMPACT_LUT, RelatedIndex, quantize_impacts
from textrec.content.tfidf import DFSnapshot
from textrec.sources import RelatedSource, related_index_for

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
    max_impact: float = 1.0,
) -> list[tuple[int, float]]:
    """The definition, in plain Python: prune to the top weights (ties: smaller term id),
    quantise relative to max_impact, dot with the query, sort (ties: smaller document id)."""
    term_ids = term_ids or {}
    scored = []
    for doc_id, w in docs.items():
        if doc_id == exclude:
            continue
        kept = sorted(w.items(), key=lambda kv: (-kv[1], term_ids[kv[0]]))[:top]
        stored = {
            t: float(IMPACT_LUT[quantize_impacts(np.array([v / max_impact]))[0]]) * max_impact
            for t, v in kept
        }
        s = sum(query.get(t, 0.0) * u for t, u in stored.items())
        if s > 0:
            scored.append((doc_id, s))
    scored.sort(key=lambda x: (-x[1], x[0]))
    return scored[:k]


def assert_same_ranking(
    got: tuple[np.ndarray, np.ndarray], expected: list[tuple[int, float]]
) -> None:
    ids, scores = got
    assert len(ids) == len(expected)
    assert np.allclose(scores, [s for _, s in expected], rtol=1e-5, atol=1e-5)
    for (doc_id, s), got_id in zip(expected, ids.tolist(), strict=True):
        if doc_id != got_id:  # only a float32 near-tie may swap places
            assert abs(s - dict(expected).get(got_id, -1)) < 1e-5 * max(1.0, abs(s))


def build(docs: list[dict[str, float]], top: int = 8, chunks: int = 1) -> RelatedIndex:
    index = RelatedIndex(
        [f"t{i}" for i in range(0, 40, 2)], top_terms=top, max_segments=3, max_impact=6.0
    )
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
    term_ids = {t: i for i, t in enumerate(index.terms())}
    for q in random_docs(40, 60, seed=99):
        assert_same_ranking(
            index.search(q, 10), reference(by_id, q, 10, 8, None, term_ids, max_impact=6.0)
        )
    first = next(iter(by_id))
    assert_same_ranking(
        index.search(by_id[first], 5, exclude=first),
        reference(by_id, by_id[first], 5, 8, first, term_ids, max_impact=6.0),
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
    assert ids.tolist() == [1, 2] and np.allclose(scores, [2.0, 2.0], rtol=0.02)
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


@pytest.mark.parametrize("damage", ["ptr", "gap", "width"])
def test_corrupt_postings_raise_instead_of_reading_out_of_bounds(damage: str, kernels: str) -> None:
    index = build(random_docs(400, 30, seed=1), top=8)
    seg = index._state.segments[0]
    if damage == "ptr":
        seg.ptr[-1] += 10**6  # postings beyond the arrays, as a damaged file could hold
    elif damage == "gap":
        seg.packed[:-8] = 0xFF  # every gap at its block's largest value
    else:
        seg.widths[0] = 200
    with pytest.raises((ValueError, IndexError)) as caught:
        for t in range(0, 30):
            index.search({f"t{t}": 1.0}, 5)
    if kernels == "compiled":
        assert "corrupt" in str(caught.value)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_packed_rows_round_trip(seed: int) -> None:
    """Gaps of every width from 0 to 32 bits, terms that cross block boundaries, terms
    without postings, and rows up to 2**32 - 1 come back exactly."""
    rng = np.random.default_rng(seed)
    lens = rng.choice([0, 1, 2, 5, 127, 128, 129, 300], size=40)
    lens[7] = 3  # the largest rows
    ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    rows = []
    for t, n in enumerate(lens.tolist()):
        if t == 7:
            rows.append(np.array([0, 2**31 + 1, 2**32 - 1]))  # a 32-bit gap
            continue
        scale = 2 ** int(rng.integers(0, 24))
        steps = rng.integers(1, scale + 1, size=n)
        rows.append(np.cumsum(steps) - 1)
    flat = np.concatenate(rows).astype(np.int64)
    impacts = rng.integers(1, 256, size=len(flat)).astype(np.uint8)
    seg = related_module._Segment.from_rows(ptr, flat, impacts)
    assert seg.rows().tolist() == flat.tolist()
    for t in range(len(lens)):
        assert seg.term_rows(t).tolist() == flat[ptr[t] : ptr[t + 1]].tolist()
    assert int(seg.widths.max()) == 32
    unaligned = np.zeros(len(seg.packed) + 1, np.uint8)[1:]  # as a buffer could come
    unaligned[:] = seg.packed
    assert dataclasses.replace(seg, packed=unaligned).rows().tolist() == flat.tolist()
    merged = related_module._Segment.merge([seg])
    assert (
        merged.rows().tolist() == flat.tolist() and merged.packed.tobytes() == seg.packed.tobytes()
    )


def test_a_segment_of_few_terms_is_sparse(kernels: str) -> None:
    """A segment holding few of the vocabulary's terms lists them instead of keeping an
    offset for every term id: an append costs its own postings, whatever the vocabulary."""
    vocabulary = [f"w{i:05d}" for i in range(50_000)]
    index = RelatedIndex(vocabulary, max_impact=4.0, max_segments=64)
    docs = random_docs(41, 60, seed=4)
    docs = [{f"w{int(t[1:]) * 700:05d}": w for t, w in d.items()} for d in docs]
    ids = list(range(1, 42))
    for i, d in zip(ids, docs, strict=True):
        index.add([i], [d])
    segments = index._state.segments
    assert all(len(s.terms) == len(s.ptr) - 1 > 0 for s in segments)
    assert segments[-1].level == 0 and segments[-1].nbytes < 300  # not 4 bytes x 50,000 ids
    queries = random_docs(30, 60, seed=5)
    queries = [{f"w{int(t[1:]) * 700:05d}": w for t, w in q.items()} for q in queries]
    before = [index.search(q, 10) for q in queries]
    index.compact()
    (whole,) = index._state.segments
    assert len(whole.terms) > 0  # 60 of 50,000 term ids: still sparse
    for q, (a_ids, a_s) in zip(queries, before, strict=True):
        b_ids, b_s = index.search(q, 10)
        assert a_ids.tolist() == b_ids.tolist() and np.allclose(a_s, b_s, rtol=1e-6)
    dense = RelatedIndex([f"t{i}" for i in range(60)], max_impact=4.0)
    dense.add(ids, random_docs(41, 60, seed=4))
    assert len(dense._state.segments[0].terms) == 0  # most term ids used: dense
    for q, (a_ids, _) in zip(random_docs(30, 60, seed=5), before, strict=True):
        assert dense.search(q, 10)[0].tolist() == a_ids.tolist()


def test_sparse_rows_round_trip() -> None:
    rng = np.random.default_rng(7)
    lens = np.where(rng.random(500) < 0.05, rng.choice([1, 3, 128, 200], size=500), 0)
    ptr = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
    flat = np.concatenate(
        [np.sort(rng.choice(10**6, size=n, replace=False)) for n in lens.tolist()]
    ).astype(np.int64)
    seg = related_module._Segment.from_rows(ptr, flat, np.ones(len(flat), np.uint8))
    assert seg.terms.tolist() == np.flatnonzero(lens).tolist()
    assert seg.rows().tolist() == flat.tolist() and seg.max_row() == flat.max()
    for t in range(len(lens)):
        assert seg.term_rows(t).tolist() == flat[ptr[t] : ptr[t + 1]].tolist()
    assert seg.slot(len(lens) + 5) == -1 and seg.slot(-1) == -1
    later = related_module._Segment.from_rows(ptr, flat + 10**6, np.ones(len(flat), np.uint8))
    merged = related_module._Segment.merge([seg, later])
    assert (
        merged.rows().tolist()
        == np.concatenate(
            [
                np.concatenate([flat[ptr[t] : ptr[t + 1]], flat[ptr[t] : ptr[t + 1]] + 10**6])
                for t in range(len(lens))
            ]
        ).tolist()
    )


@pytest.mark.parametrize("chunk", [1, 7, 300, 1 << 20])
def test_a_merge_in_small_pieces_is_the_merge_of_everything(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Merging decodes a range of term ids at a time and packs a few blocks at a time: the
    result is, array for array, the segment of all the postings sorted at once."""
    rng = np.random.default_rng(chunk)
    shifted, base = [], 0
    for n_docs, vocab in [(400, 90), (3, 5000), (150, 40), (1, 3)]:  # dense and sparse
        postings = {(int(t), base + d) for d in range(n_docs) for t in rng.choice(vocab, size=30)}
        term_of, rows = np.array(sorted(postings), np.int64).T
        codes = rng.integers(1, 256, size=len(rows)).astype(np.uint8)
        shifted.append(related_module._Segment.from_sorted(term_of, rows, codes))
        base += n_docs
    assert len(shifted[1].terms) and not len(shifted[0].terms)  # sparse and dense
    term_of = np.concatenate([s.term_of() for s in shifted])
    order = np.argsort(term_of, kind="stable")
    expected = related_module._Segment.from_sorted(
        term_of[order],
        np.concatenate([s.rows() for s in shifted])[order],
        np.concatenate([s.impacts for s in shifted])[order],
    )
    monkeypatch.setattr(related_module, "_DECODE_CHUNK", chunk)
    monkeypatch.setattr(related_module, "_PACK_BLOCKS", 1 if chunk < 10 else 3)
    merged = related_module._Segment.merge(shifted)
    for name in ("terms", "ptr", "widths", "packed", "impacts", "offsets"):
        a, b = getattr(merged, name), getattr(expected, name)
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), name
    assert merged.level == 1


def test_document_ids_take_four_bytes_while_they_fit(kernels: str, tmp_path: Path) -> None:
    index = RelatedIndex(["a", "b"], max_impact=1.0)
    index.add([5, 2**32 - 1], [{"a": 0.5}, {"a": 0.25, "b": 0.5}])
    assert index._state.doc_ids.dtype == np.uint32
    assert index.search({"a": 1.0}, 5, exclude=5)[0].tolist() == [2**32 - 1]
    assert index.search({"a": 1.0}, 5, exclude=-3)[0].tolist() == [5, 2**32 - 1]
    assert index.search({"a": 1.0}, 5, exclude=2**40)[0].dtype == np.int64
    assert index.remove([-1, 2**40, 7]) == 0
    index.add([2**40], [{"b": 1.0}])  # an id beyond 32 bits: 8 bytes from now on
    assert index._state.doc_ids.dtype == np.int64
    assert index.search({"b": 1.0}, 5)[0].tolist() == [2**40, 2**32 - 1]
    assert index.remove([2**40, 5]) == 2
    path = str(tmp_path / "r.related")
    index.save(path, scheme="s", snapshot_id="x")
    again, _ = RelatedIndex.load(path)
    ids, dead = again.document_ids()
    assert ids.tolist() == [5, 2**32 - 1, 2**40] and dead.tolist() == [True, False, True]
    assert again.live_summary() == (1, 2**32 - 1)


def test_packed_postings_are_smaller_than_plain_rows() -> None:
    """Dense postings (every document shares the term) take about a bit a row."""
    index = RelatedIndex(["a"], max_impact=1.0)
    index.add(list(range(1, 10_001)), [{"a": 0.5}] * 10_000)
    seg = index._state.segments[0]
    assert int(seg.widths.max()) == 0 and len(seg.packed) == 8
    # impacts, ids and tombstones, 9 bytes a block of 128 postings, and no rows at all
    assert index.nbytes < 10_000 * (1 + 9) + 79 * 9 + 100


def test_file_round_trip_keeps_the_ranking(tmp_path: Path, kernels: str) -> None:
    docs = random_docs(200, 40, seed=8)
    index = build(docs, top=8, chunks=3)
    index.ranking = {"name": "bm25-pivot", "k1": 1.2, "b": 1.0, "pivot": 12.5}
    path = str(tmp_path / "r.related")
    index.save(path, scheme="s", snapshot_id="x", provenance="p")
    again, header = RelatedIndex.load(path)
    assert header["format"] == "textrec-related/4" and header["provenance"] == "p"
    assert again.ranking == index.ranking and again.max_impact == 6.0 and again.top_terms == 8
    for q in random_docs(20, 40, seed=9):
        a, b = index.search(q, 10), again.search(q, 10)
        assert a[0].tolist() == b[0].tolist() and a[1].tobytes() == b[1].tobytes()


def test_a_file_of_the_first_format_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "old.related")
    build(random_docs(20, 10, seed=1)).save(path, scheme="s", snapshot_id="x")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["header"]).decode())
    header["format"] = "textrec-related/1"  # the cosine index of earlier versions
    del header["ranking"], header["max_impact"]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="textrec-related/1"):
        RelatedIndex.load(path)


# The score: pivoted BM25 (textrec.content.ranking) -----------------------------------------


def test_ranking_weights_follow_the_formula() -> None:
    snapshot = DFSnapshot.from_documents([{"a": 1, "b": 1}, {"a": 1}, {"c": 1}, {"b": 1}])
    ranking = Ranking(min_pivot=1.0).fitted([8, 2, 2])
    assert ranking.pivot == pytest.approx(0.3 * (64 + 4 + 4) / 12)  # 1.8
    w = ranking.document_weights({"a": 3, "c": 1}, snapshot)
    norm = 1.2 * 4 / ranking.pivot  # longer than the pivot, b = 1: |d| / pivot
    assert w["a"] == pytest.approx(math.log(2) * 3 * 2.2 / (3 + norm))
    assert w["c"] == pytest.approx(math.log(4) * 1 * 2.2 / (1 + norm))
    short = ranking.document_weights({"c": 1}, snapshot)  # shorter: b_short = 0.3
    assert short["c"] == pytest.approx(math.log(4) * 2.2 / (1 + 1.2 * (0.7 + 0.3 / 1.8)))
    assert Ranking().fitted([8, 2, 2]).pivot == 15.0  # never below min_pivot
    q = ranking.query_weights({"a": 3, "zz": 1}, snapshot)
    assert q["a"] == pytest.approx((1 + math.log(3)) * math.log(2) ** 0.1)
    assert q["zz"] == pytest.approx(math.log(4) ** 0.1)  # unseen: df taken as 1
    assert ranking.document_weights({}, snapshot) == {}
    with pytest.raises(ValueError, match="not fitted"):
        Ranking().document_weights({"a": 1}, snapshot)
    assert Ranking.from_params(ranking.params()) == ranking
    with pytest.raises(ValueError, match="ranking 'cosine'"):
        Ranking.from_params({"name": "cosine"})
    older = {k: v for k, v in ranking.params().items() if k != "min_pivot"}
    with pytest.raises(ValueError, match="ranking parameters"):
        Ranking.from_params(older)  # an index made under other parameters is rebuilt


def test_a_document_cut_to_its_top_terms_is_weighed_at_its_kept_length() -> None:
    snapshot = DFSnapshot.from_documents([{f"t{i}": 1 for i in range(j, 40)} for j in range(40)])
    ranking = Ranking(min_pivot=1.0).fitted([40, 2, 2])
    counts = {f"t{i}": 1 + i % 3 for i in range(40)}
    full = ranking.document_weights(counts, snapshot)
    assert ranking.index_weights(counts, snapshot, top_terms=40) == full  # nothing cut
    cut = ranking.index_weights(counts, snapshot, top_terms=10)
    top = sorted(sorted(full, key=lambda t: -full[t])[:10])
    assert list(cut) == top  # the ten largest, in term order
    kept = {t: counts[t] for t in top}
    assert cut == ranking.document_weights(kept, snapshot)  # weighed as a 10-term document
    assert all(cut[t] > full[t] for t in top)  # shorter: each kept term weighs more
    whole = Ranking(min_pivot=1.0, kept_length=0.0).fitted([40, 2, 2])
    assert whole.index_weights(counts, snapshot, top_terms=10) == {t: full[t] for t in top}
    with pytest.raises(ValueError, match="kept_length"):
        Ranking(kept_length=0.5)


def brute_force(
    ranking: Ranking,
    snapshot: DFSnapshot,
    corpus: dict[int, dict[str, int]],
    query: dict[str, int],
    k: int,
    exclude: int | None,
    max_impact: float,
) -> list[int]:
    """The quantised pivoted-BM25 top k over every term of every document (ties by id), in
    float32 arithmetic like the index."""
    q = ranking.query_weights(query, snapshot)
    scored = []
    for doc_id, counts in corpus.items():
        if doc_id == exclude:
            continue
        s = np.float32(0.0)
        for t, w in ranking.document_weights(counts, snapshot).items():
            if t in q:
                code = quantize_impacts(np.array([w / max_impact]))[0]
                stored = np.float32(np.float64(IMPACT_LUT[code]) * max_impact)
                s = np.float32(s + np.float32(np.float32(q[t]) * stored))
        if s > 0:
            scored.append((-float(s), doc_id))
    return [d for _, d in sorted(scored)[:k]]


def test_the_served_score_is_the_quantised_score_exactly(kernels: str) -> None:
    rng = random.Random(3)
    vocab = [f"w{i}" for i in range(50)]
    corpus = {
        i * 2 + 1: {rng.choice(vocab): rng.randint(1, 4) for _ in range(rng.randint(1, 25))}
        for i in range(400)
    }
    snapshot = DFSnapshot.from_documents(list(corpus.values())[:300])  # later ones appended
    index = related_index_for(snapshot, (sum(c.values()) for c in corpus.values()))
    source = RelatedSource(index, snapshot)
    ids = list(corpus)
    for a in range(0, len(ids), 90):
        source.add(ids[a : a + 90], [], [corpus[i] for i in ids[a : a + 90]])
    for n, (doc_id, counts) in enumerate(list(corpus.items())[:60]):
        exclude = doc_id if n % 2 else None
        got, _ = index.search(source.query_weights(counts), 10, exclude=exclude)
        want = brute_force(source.ranking, snapshot, corpus, counts, 10, exclude, index.max_impact)
        assert got.tolist() == want, doc_id


def test_short_posts_do_not_crowd_out_a_related_long_one() -> None:
    # The failure of TF-IDF cosine that the pivoted score fixes: one-liners that share one
    # strong term with a long post outscored a long post on the same subject.
    long_a = {"선거": 4, "투표": 3, "후보": 3, "정당": 2, "공약": 2, "유권자": 2, "개표": 1}
    long_b = {"선거": 3, "투표": 2, "후보": 2, "정당": 2, "공약": 1, "여론": 2, "토론": 1}
    shorts = [{"선거": 1, f"영화{i}": 1} for i in range(30)]
    others = [{f"잡담{i}": 2, f"일상{i}": 1} for i in range(200)]
    corpus = [long_a, long_b, *shorts, *others]
    snapshot = DFSnapshot.from_documents(corpus)
    index = related_index_for(snapshot, (sum(c.values()) for c in corpus))
    source = RelatedSource(index, snapshot)
    source.add(list(range(len(corpus))), [], corpus)
    ids, _ = index.search(source.query_weights(long_a), 3, exclude=0)
    assert ids[0] == 1


@pytest.mark.parametrize(
    "damage",
    ["widths above 32", "packed too short", "rows beyond the documents", "ptr", "terms"],
)
def test_a_file_with_inconsistent_postings_is_refused(tmp_path: Path, damage: str) -> None:
    """A file whose members pass their checksums but do not fit together (as a buggy writer
    could make) is refused at load, before any query reads it."""
    path = str(tmp_path / "r.related")
    build(random_docs(300, 30, seed=3), top=8).save(path, scheme="s", snapshot_id="x")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    if damage == "widths above 32":
        arrays["widths"] = arrays["widths"].copy()
        arrays["widths"][0] = 33
    elif damage == "packed too short":
        arrays["packed"] = arrays["packed"][:-9]
    elif damage == "rows beyond the documents":
        arrays["doc_ids"], arrays["dead"] = arrays["doc_ids"][:10], arrays["dead"][:10]
    elif damage == "terms":
        arrays["terms"] = np.array([3, 2], np.uint32)
    else:
        arrays["ptr"] = arrays["ptr"][::-1].copy()
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with pytest.raises(ValueError, match="not a readable textrec related-posts index"):
        RelatedIndex.load(path)


def test_a_frozen_copy_is_saved_and_its_compaction_adopted(tmp_path: Path) -> None:
    docs = random_docs(400, 40, seed=11)
    index = build(docs[:300], top=8)
    index.add([4000], [docs[300]])  # a second, small segment
    assert len(index._state.segments) == 2
    query = {"t2": 1.0, "t4": 0.5, "t6": 0.25}
    before = index.search(query, 10)
    copy = index.frozen()
    copy.save(str(tmp_path / "r.related"), scheme="s", snapshot_id="x")
    assert index.adopt_compacted(copy)
    assert len(index._state.segments) == 1
    after = index.search(query, 10)
    assert before[0].tolist() == after[0].tolist() and before[1].tobytes() == after[1].tobytes()
    # A write after freezing is not in the copy's file, and once it merged the segments
    # the copy was made from, the copy's compaction is not taken.
    index.add([4100], [docs[301]])
    index.add([4200], [docs[302]])
    copy = index.frozen()  # the whole index, then two appended segments
    index.add([5000], [docs[303]])
    index.add([5100], [docs[304]])  # past max_segments (3): the appended ones merged
    copy.save(str(tmp_path / "r2.related"), scheme="s", snapshot_id="x")
    saved, _ = RelatedIndex.load(str(tmp_path / "r2.related"))
    assert 5000 not in saved.document_ids()[0].tolist() and len(saved) == 303
    assert not index.adopt_compacted(copy)
    assert len(index) == 305


def test_appends_merge_each_posting_a_few_times(monkeypatch: pytest.MonkeyPatch) -> None:
    """One document at a time: at most three segments a level, each posting merged a few
    times (not every few appends, as merging every segment after the first into one did),
    and the same ranking as one segment."""
    docs = random_docs(2000, 50, seed=12)
    merged = [0]
    real = related_module._Segment.merge.__func__

    def counting(cls: type, segments: list) -> object:
        merged[0] += sum(len(s.impacts) for s in segments)
        return real(cls, segments)

    monkeypatch.setattr(related_module._Segment, "merge", classmethod(counting))
    index = RelatedIndex([f"t{i}" for i in range(50)], max_impact=6.0)
    for i, d in enumerate(docs):
        index.add([i + 1], [d])
        levels = [s.level for s in index._state.segments]
        assert all(levels.count(v) < 4 for v in levels), levels  # four of a level merge
        assert levels == sorted(levels, reverse=True)
    postings = sum(len(s.impacts) for s in index._state.segments)
    assert merged[0] <= 6 * postings, (merged[0], postings)  # log4(2000) is about 5.5
    one = RelatedIndex([f"t{i}" for i in range(50)], max_impact=6.0)
    one.add(list(range(1, 2001)), docs)
    for q in random_docs(20, 50, seed=13):
        a, b = index.search(q, 10), one.search(q, 10)
        assert a[0].tolist() == b[0].tolist() and a[1].tobytes() == b[1].tobytes()


def test_a_large_segment_is_not_merged_for_a_few_appends() -> None:
    """An index added at once (one large segment), then appends: the appends merge among
    themselves; the large segment moves up a level instead of being rewritten for them."""
    docs = random_docs(12_000, 400, seed=14)
    index = RelatedIndex([f"t{i}" for i in range(400)], max_impact=6.0, top_terms=16)
    index.add(list(range(1, 12_001)), docs)
    large = index._state.segments[0]
    assert len(large.impacts) > 65536
    for i, d in enumerate(random_docs(16, 400, seed=15)):
        index.add([20_000 + i], [d])
        assert index._state.segments[0].impacts is large.impacts  # never rewritten
    assert index._state.segments[0].level > 0
    assert [s.level for s in index._state.segments[1:]] == [2]  # 16 appends: 4 of 4

"""DF snapshots and TF-IDF weights."""

from __future__ import annotations

import math

import pytest

from textrec import DFSnapshot, Weighting, idf, tfidf_weights
from textrec.content.tfidf import DFSnapshotError


def test_idf_formula() -> None:
    assert idf(100, 10) == pytest.approx(math.log(10))
    assert idf(100, 100) == 0.0
    assert idf(100, 0) == pytest.approx(math.log(100))  # unseen terms count as df = 1
    assert idf(0, 0) == 0.0


def test_from_documents_counts_each_document_once() -> None:
    snap = DFSnapshot.from_documents([["a", "a", "b"], ["b"], ["c", "b"]])
    assert snap.n_docs == 3
    assert dict(snap.df) == {"a": 1, "b": 3, "c": 1}
    assert len(snap) == 3 and "a" in snap and "z" not in snap


def test_snapshot_id_is_content_derived_and_order_independent() -> None:
    a = DFSnapshot.from_counts(5, {"나": 2, "가": 1})
    b = DFSnapshot.from_counts(5, {"가": 1, "나": 2})
    c = DFSnapshot.from_counts(6, {"가": 1, "나": 2})
    assert a.id == b.id != c.id
    assert len(a.id) == 16


def test_serialisation_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    snap = DFSnapshot.from_counts(4, {"버스": 2, "요금": 1, "zebra": 4})
    path = str(tmp_path / "df.json")
    snap.save(path)
    again = DFSnapshot.load(path)
    assert again == snap and again.id == snap.id
    assert snap.to_bytes().decode("utf-8").count("버스") == 1  # Hangul is not escaped


def test_bad_snapshots_are_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="between 1 and N=2"):
        DFSnapshot.from_counts(2, {"a": 3})
    with pytest.raises(ValueError, match="non-empty"):
        DFSnapshot.from_counts(2, {"": 1})
    path = tmp_path / "bad.json"
    path.write_text('{"format": "other"}')
    with pytest.raises(DFSnapshotError, match="expected format"):
        DFSnapshot.load(str(path))
    path.write_text("not json")
    with pytest.raises(DFSnapshotError, match="invalid JSON"):
        DFSnapshot.load(str(path))


def test_tfidf_weights_raw_and_log() -> None:
    snap = DFSnapshot.from_counts(8, {"a": 1, "b": 2, "c": 8})
    w = tfidf_weights({"a": 3, "b": 1, "c": 5, "new": 1}, snap)
    assert w["a"] == pytest.approx(3 * math.log(8))
    assert w["b"] == pytest.approx(math.log(4))
    assert w["c"] == 0.0
    assert w["new"] == pytest.approx(math.log(8))
    assert list(w) == sorted(w)
    wl = tfidf_weights({"a": 3}, snap, Weighting(tf="log"))
    assert wl["a"] == pytest.approx((1 + math.log(3)) * math.log(8))
    with pytest.raises(ValueError, match="tf must be"):
        Weighting(tf="bm25")  # type: ignore[arg-type]


def test_weighting_options_drop_terms_and_name_the_scheme() -> None:
    from textrec import Analyzer, whitespace_tokenizer

    snap = DFSnapshot.from_counts(10, {"ab": 1, "c": 1, "common": 9})
    counts = {"ab": 1, "c": 1, "common": 1}
    w = tfidf_weights(counts, snap, Weighting(min_term_length=2))
    assert w["c"] == 0.0 and w["ab"] > 0
    w = tfidf_weights(counts, snap, Weighting(max_df_ratio=0.5))
    assert w["common"] == 0.0 and w["c"] > 0
    assert Weighting().tag == ""
    assert Weighting(tf="log", min_term_length=2, max_df_ratio=0.05).tag == (
        "tf=log,minlen=2,maxdf=0.05"
    )
    # The tokenizer is part of the scheme: whitespace terms are not Mecab nouns.
    assert Analyzer(tokenizer=whitespace_tokenizer).scheme == "simhash64-v2+tok=whitespace"
    analyzer = Analyzer(
        tokenizer=whitespace_tokenizer, weighting=Weighting(tf="log"), title_weight=2
    )
    assert analyzer.scheme == "simhash64-v2+tf=log,title=2,tok=whitespace"
    assert analyzer.term_counts("a b", title="a") == {"a": 3, "b": 1}
    with pytest.raises(ValueError, match="max_df_ratio"):
        Weighting(max_df_ratio=0)
    with pytest.raises(ValueError, match="title_weight"):
        Analyzer(title_weight=-1)


def test_a_string_in_place_of_terms_is_refused() -> None:
    # Its characters would silently be counted as terms (scikit-learn guards the same).
    with pytest.raises(TypeError, match="document 0 is a string"):
        DFSnapshot.from_documents(["버스 요금"])
    with pytest.raises(TypeError, match="document 1 is a string"):
        DFSnapshot.from_documents([["버스"], "요금"])
    with pytest.raises(TypeError, match="a string was received"):
        DFSnapshot.from_documents("버스 요금")
    assert DFSnapshot.from_documents([["버스", "요금"], {"버스": 2}]).df == {"버스": 2, "요금": 1}

"""Property tests (hypothesis) of the tokenizer, the record parser, the fingerprint and the
Hamming index: invariants that must hold for any input, not just the fixtures."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from textrec.content.analyzer import Analyzer
from textrec.content.hamming import HammingIndex
from textrec.content.simhash import hamming, simhash
from textrec.content.tfidf import DFSnapshot
from textrec.content.tokenize import normalize_term
from textrec.pipeline.records import Record, RecordError, parse_record

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Text that looks like the corpora: Hangul syllables and jamo, Hanja, Latin, digits, emoji,
# punctuation, spaces and line breaks — and now and then anything at all.
KOREAN = st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3)
MIXED = st.one_of(
    KOREAN,
    st.characters(min_codepoint=0x1100, max_codepoint=0x11FF),
    st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF),
    st.sampled_from(list("abcXYZ0123456789 .,!?\n\t\u3000\u200b😀🇰🇷\u2028")),
    st.characters(codec="utf-8"),
)
TEXTS = st.text(MIXED, max_size=300)
TERMS = st.text(KOREAN, min_size=1, max_size=4)
COUNTS = st.dictionaries(TERMS, st.integers(1, 50), min_size=1, max_size=30)


@pytest.fixture(scope="module")
def analyzer(mecab) -> Analyzer:  # type: ignore[no-untyped-def]
    return Analyzer(tokenizer=mecab)


# the tokenizer -------------------------------------------------------------------------------


@SETTINGS
@given(text=TEXTS)
def test_tokenizer_terms_are_normalised_and_deterministic(mecab, text: str) -> None:  # type: ignore[no-untyped-def]
    terms = mecab(text)
    assert terms == mecab(text)
    for t in terms:
        assert t and t == normalize_term(t) and not any(c.isspace() for c in t)


@SETTINGS
@given(text=TEXTS)
def test_tokenizer_sees_the_nfkc_form(mecab, text: str) -> None:  # type: ignore[no-untyped-def]
    assert mecab(text) == mecab(unicodedata.normalize("NFKC", text))


@SETTINGS
@given(text=st.text(st.characters(categories=["Cs", "Lo", "Zs"]), max_size=50))
def test_tokenizer_survives_lone_surrogates(mecab, text: str) -> None:  # type: ignore[no-untyped-def]
    assert isinstance(mecab(text), list)


# records -------------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(raw=st.binary(max_size=200))
def test_parse_record_never_raises_on_bytes(raw: bytes) -> None:
    assert isinstance(parse_record(raw), Record | RecordError)


@settings(max_examples=300, deadline=None)
@given(
    obj=st.dictionaries(
        st.sampled_from(["id", "text", "title", "meta", "x"]),
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=3)
                | st.dictionaries(st.text(max_size=5), children, max_size=3)
            ),
            max_leaves=8,
        ),
    )
)
def test_parse_record_accepts_exactly_valid_objects(obj: dict[str, object]) -> None:
    result = parse_record(json.dumps(obj))
    valid = (
        isinstance(obj.get("id"), str)
        and bool(str(obj["id"]).strip())
        and not any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in str(obj["id"]))
        and isinstance(obj.get("text"), str)
        and bool(str(obj["text"]).strip())
        and (obj.get("title") is None or isinstance(obj.get("title"), str))
        and not any(
            isinstance(obj.get(f), str) and "\x00" in str(obj[f]) for f in ("id", "title", "text")
        )
    )
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        valid = False
    assert isinstance(result, Record) == valid, (obj, result)
    if isinstance(result, Record):
        assert (result.id, result.text) == (obj["id"], obj["text"])
        assert result.title == (obj.get("title") or None)
    else:
        assert result.reason  # always says why


# fingerprints --------------------------------------------------------------------------------


def _snapshot(counts: list[dict[str, int]]) -> DFSnapshot:
    return DFSnapshot.from_documents([list(c) for c in counts])


@SETTINGS
@given(docs=st.lists(COUNTS, min_size=1, max_size=8), data=st.data())
def test_fingerprint_ignores_term_order_and_scale(
    analyzer: Analyzer, docs: list[dict[str, int]], data: st.DataObject
) -> None:
    snapshot = _snapshot(docs)
    counts = docs[0]
    fp = analyzer.fingerprint(counts, snapshot)
    assert 0 <= fp < 2**64
    shuffled = dict(data.draw(st.permutations(list(counts.items()))))
    assert analyzer.fingerprint(shuffled, snapshot) == fp
    doubled = {t: 2 * c for t, c in counts.items()}  # raw tf: weights exactly doubled
    assert analyzer.fingerprint(doubled, snapshot) == fp


@SETTINGS
@given(docs=st.lists(COUNTS, min_size=1, max_size=8), data=st.data())
def test_snapshot_is_independent_of_document_order(
    docs: list[dict[str, int]], data: st.DataObject
) -> None:
    a = _snapshot(docs)
    b = _snapshot(data.draw(st.permutations(docs)))
    assert a.id == b.id and a.to_bytes() == b.to_bytes()
    assert DFSnapshot.from_bytes(a.to_bytes()).id == a.id


@SETTINGS
@given(weights=st.dictionaries(TERMS, st.floats(0.01, 1e6), min_size=1, max_size=30))
def test_simhash_of_a_subset_of_one_term_is_close(weights: dict[str, float]) -> None:
    """A document against itself is at distance 0; any fingerprint of one term is that
    term's own sign vector, whatever its weight."""
    fp = simhash(weights)
    assert hamming(fp, simhash(dict(reversed(list(weights.items()))))) == 0
    term = next(iter(weights))
    assert simhash({term: 1.0}) == simhash({term: 123.5})


@settings(max_examples=200, deadline=None)
@given(a=st.integers(0, 2**64 - 1), b=st.integers(0, 2**64 - 1), c=st.integers(0, 2**64 - 1))
def test_hamming_is_a_metric(a: int, b: int, c: int) -> None:
    assert hamming(a, a) == 0 and hamming(a, b) == hamming(b, a)
    assert hamming(a, b) == hamming(a ^ b, 0) <= 64
    assert hamming(a, c) <= hamming(a, b) + hamming(b, c)
    assert hamming(a, a ^ (2**64 - 1)) == 64


# the index -----------------------------------------------------------------------------------

CODES = st.lists(st.integers(0, 2**64 - 1), min_size=0, max_size=200)


def _brute(ids: np.ndarray, codes: list[int], q: int, k: int) -> list[tuple[int, int]]:
    pairs = sorted((hamming(q, c), int(i)) for i, c in zip(ids, codes, strict=True))
    return [(i, d) for d, i in pairs[:k]]


@settings(max_examples=150, deadline=None)
@given(
    codes=CODES,
    q=st.integers(0, 2**64 - 1),
    k=st.integers(0, 30),
    radius=st.integers(0, 64),
    data=st.data(),
)
def test_index_equals_brute_force(
    codes: list[int], q: int, k: int, radius: int, data: st.DataObject
) -> None:
    ids = np.array(
        data.draw(
            st.lists(st.integers(1, 10**12), min_size=len(codes), max_size=len(codes), unique=True)
        ),
        dtype=np.int64,
    )
    index = HammingIndex()
    index.add(ids, np.array(codes, dtype=np.uint64))
    found, dist = index.search(q, k)
    assert list(zip(found.tolist(), dist.tolist(), strict=True)) == _brute(ids, codes, q, k)
    w_ids, w_dist = index.within(q, radius)
    expected = [(i, d) for i, d in _brute(ids, codes, q, len(codes)) if d <= radius]
    assert list(zip(w_ids.tolist(), w_dist.tolist(), strict=True)) == expected
    index.enable_radius_index()
    t_ids, t_dist = index.within(q, min(radius, 8))
    assert list(zip(t_ids.tolist(), t_dist.tolist(), strict=True)) == [
        p for p in expected if p[1] <= min(radius, 8)
    ]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(codes=CODES, data=st.data())
def test_index_remove_and_save_round_trip(
    tmp_path: Path, codes: list[int], data: st.DataObject
) -> None:
    ids = np.arange(1, len(codes) + 1, dtype=np.int64)
    index = HammingIndex(snapshot_id="s" * 8)
    index.add(ids, np.array(codes, dtype=np.uint64))
    gone = data.draw(st.lists(st.sampled_from(ids.tolist()), unique=True)) if len(codes) else []
    assert index.remove(gone) == len(gone)
    path = tmp_path / "i.index"
    index.save(path)
    loaded = HammingIndex.load(path, verify=True)
    assert np.array_equal(loaded.ids, index.ids) and np.array_equal(loaded.codes, index.codes)
    assert loaded.snapshot_id == index.snapshot_id and len(loaded) == len(codes) - len(gone)
    assert not set(gone) & set(loaded.ids.tolist())

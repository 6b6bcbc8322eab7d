"""The compiled helpers of the build path against the Python code they stand in for.

``textrec._mecab`` reads nouns from MeCab's nodes, ``textrec._batch`` counts document
frequencies and computes fingerprints of many documents; each must give exactly what the
Python path gives (which the golden values and the KoNLPy comparison pin), on real text and
on any text. On Linux both are built by ``pip install``, and ``.ci/run`` requires them
(``TEXTREC_REQUIRE`` names ``compiled``), so the fast paths are the ones tested there.
"""

from __future__ import annotations

import gzip
import importlib
import itertools
import json
import math
import shlex
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import missing, shared_file
from textrec.content.analyzer import Analyzer
from textrec.content.tfidf import DFSnapshot, Weighting
from textrec.content.tokenize import (
    V2_TAGS,
    MecabNounTokenizer,
    _mecab_paths,
    _normalize_noun,
    normalize_term,
    term_tags,
)

simhash_module = importlib.import_module("textrec.content.simhash")
tfidf_module = importlib.import_module("textrec.content.tfidf")


def _compiled(name: str) -> Any:
    try:
        return importlib.import_module(f"textrec.{name}")
    except ImportError:
        missing("compiled", f"textrec.{name} is not built here")


@pytest.fixture(scope="module", params=[1, 2], ids=["terms-v1", "terms-v2"])
def version(request: pytest.FixtureRequest) -> int:
    """Each term scheme: the compiled reader must give its terms as the printed one does."""
    return int(request.param)


@pytest.fixture(scope="module")
def direct(version: int) -> MecabNounTokenizer:
    _compiled("_mecab")
    tokenizer = MecabNounTokenizer(tags=term_tags(version))
    assert tokenizer.uses_direct, "textrec._mecab is built but the tokenizer does not use it"
    return tokenizer


@pytest.fixture(scope="module")
def printed(version: int) -> MecabNounTokenizer:
    tokenizer = MecabNounTokenizer(direct=False, tags=term_tags(version))
    assert not tokenizer.uses_direct
    return tokenizer


def _real_texts(petitions: int, reviews: int) -> list[str]:
    with open(shared_file("petitions_ko_17cat.jsonl"), encoding="utf-8") as f:
        rows = [json.loads(line) for line in itertools.islice(f, petitions)]
    with gzip.open(shared_file("nsmc_raw_reviews.jsonl.gz"), "rt", encoding="utf-8") as g:
        rows += [json.loads(line) for line in itertools.islice(g, reviews)]
    return [r["text"] for r in rows] + [r["title"] for r in rows if r.get("title")]


# --------------------------------------------------------------------------------------------
# Nouns from MeCab's nodes


def test_direct_reader_gives_the_printed_readers_nouns_on_real_text(
    direct: MecabNounTokenizer, printed: MecabNounTokenizer, version: int
) -> None:
    # v2 reads the same nodes with another tag test: fewer short reviews suffice for it.
    reviews = 20_000 if version == 1 else 6_000
    texts = _real_texts(1000, reviews)
    assert len(texts) > 1000 + reviews
    differ = [t[:60] for t in texts if direct(t) != printed(t)]
    assert differ == []
    counted: list[dict[str, int]] = []
    for t in texts[:3000]:
        counts: dict[str, int] = {}
        direct.count_into(t, counts)
        counted.append(counts)
    assert counted == [dict(Counter(printed(t))) for t in texts[:3000]]
    # With their tags, in one pass: the same terms, and the tags the printed output shows.
    for t in texts[:200] + texts[1000:3000]:  # long petitions and short reviews
        pairs = direct.tagged(t)
        assert pairs == printed.tagged(t)
        assert [term for term, _ in pairs] == direct(t)


# Anything at all, weighted towards what MeCab's printed output could be misread on: tabs,
# line breaks of every kind, NUL, lone surrogates, capitals, full-width forms, jamo, emoji.
AWKWARD = st.text(
    st.one_of(
        st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3),
        st.sampled_from(list("\t\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\x00 ,.!?ABCxyz09")),
        st.sampled_from(list("ＡＢＣａ１２ㄱㅋㅏ\u1100\u1161\u11a8😀ᄀ한国語Ⅻ ﬁ")),
        st.characters(codec="utf-8"),
        st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),
    ),
    max_size=80,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=AWKWARD)
def test_direct_reader_agrees_with_the_printed_reader_on_any_text(
    direct: MecabNounTokenizer, printed: MecabNounTokenizer, text: str
) -> None:
    assert direct(text) == printed(text)
    assert direct.tagged(text) == printed.tagged(text)
    counts: dict[str, int] = {"앞": 2}  # counting adds to what is there
    direct.count_into(text, counts, 3)
    expected = Counter({"앞": 2})
    for term in printed(text):
        expected[term] += 3
    assert counts == dict(expected)


def _tagger(**options: int) -> Any:
    mecab = _compiled("_mecab")
    MecabNounTokenizer()  # loads the MeCab binding, and with it the library
    library = mecab.find_library("libmecab")
    assert library is not None
    return mecab.Tagger(library, ["", "-C", *shlex.split(f"-d {_mecab_paths()[0]}")], **options)


def test_a_full_term_cache_starts_over_without_changing_terms(
    printed: MecabNounTokenizer, version: int
) -> None:
    small = _tagger(cache_size=5, tags=term_tags(version))
    texts = _real_texts(0, 400)
    for text in texts:
        prepared = MecabNounTokenizer._prepare(text)
        if prepared:
            assert small.nouns(prepared, _normalize_noun) in (None, printed(text))
    with pytest.raises(ValueError, match="cache_size"):
        _tagger(cache_size=0)


def test_tagger_terms_follow_the_normalize_function_it_is_given() -> None:
    tagger = _tagger()
    # Hangul-syllable nouns cannot change under normalize_term and are taken as they are;
    # others (Hanja, jamo) go through the function.
    text = "國語 교육 ㄱ 자음"  # NFKC makes the compatibility jamo ㄱ a conjoining one
    normalized = ["國語", "교육", "\u1100", "자음"]
    assert tagger.nouns(text, _normalize_noun) == normalized
    # Another function empties the term cache: the terms are its own.
    assert tagger.nouns(text, lambda s: "x" + s) == ["x國語", "교육", "xㄱ", "자음"]
    assert tagger.nouns(text, lambda s: "") == ["교육", "자음"]
    assert tagger.nouns(text, normalize_term) == normalized
    assert tagger.nouns(text, normalize_term) == normalized  # from the cache


def test_tagger_hands_back_texts_for_the_printed_reader() -> None:
    tagger = _tagger()
    assert tagger.nouns("버스\r\n요금", _normalize_noun) is None
    assert tagger.nouns("버스\u2028요금", _normalize_noun) is None
    assert tagger.nouns("버스 \ud800 요금", _normalize_noun) is None  # not encodable
    counts = {"버스": 1}
    assert tagger.count_nouns("버스\x85요금", counts, 1, _normalize_noun) is False
    assert counts == {"버스": 1}  # untouched
    assert tagger.nouns("", _normalize_noun) == []
    assert tagger.nouns("버스\x00요금", _normalize_noun) == ["버스"]  # ends at NUL, as parse


def test_tagger_refuses_reentrant_use_and_bad_arguments(tmp_path: Any) -> None:
    tagger = _tagger()

    def reenter(surface: str) -> str:
        tagger.nouns("요금", _normalize_noun)
        return surface

    with pytest.raises(RuntimeError, match="in use by another thread"):
        tagger.nouns("國語 교육", reenter)
    assert tagger.nouns("버스 요금", _normalize_noun) == ["버스", "요금"]  # usable after
    with pytest.raises(TypeError, match="a text"):
        tagger.nouns(b"bytes", _normalize_noun)
    with pytest.raises(TypeError, match="must return a str"):
        tagger.nouns("國語", lambda s: 1)
    mecab = _compiled("_mecab")
    with pytest.raises(OSError, match="not loaded"):
        mecab.Tagger(str(tmp_path / "libmecab.so.2"), [""])
    library = mecab.find_library("libmecab")
    with pytest.raises(RuntimeError, match="MeCab"):
        mecab.Tagger(library, ["", "-d", str(tmp_path)])
    assert mecab.find_library("no-such-library-name") is None


def test_tagger_keeps_exactly_the_tags_it_is_given() -> None:
    text = "Docker 컨테이너 배포, 내가 그것을 3년 전에 iPhone15 ＡＢＣ 것이다"
    v2 = _tagger(tags=V2_TAGS)
    assert v2.nouns(text, _normalize_noun) == [
        "docker", "컨테이너", "배포", "내", "그것", "년", "전", "iphone", "abc", "것",
    ]  # fmt: skip
    assert _tagger(tags=["SL"]).nouns(text, _normalize_noun) == ["docker", "iphone", "abc"]
    # Not a prefix: NN does not take NNG, and a compound tag (NP+JKS) is not NP.
    assert _tagger(tags=["NN"]).nouns(text, _normalize_noun) == []
    assert "이게" not in _tagger(tags=["NP"]).nouns("이게 뭐야", _normalize_noun)
    assert _tagger(tags=None).nouns(text, _normalize_noun) == [
        "컨테이너", "배포", "내", "그것", "년", "전", "것",
    ]  # fmt: skip
    for bad in (["N,G"], [""], [1], "NNG,"):
        with pytest.raises((TypeError, ValueError)):
            _tagger(tags=bad)


def test_tokenizer_falls_back_to_the_printed_reader_when_asked(printed: MecabNounTokenizer) -> None:
    assert printed("버스 요금 인상") == ["버스", "요금", "인상"]
    import pickle

    copy = pickle.loads(pickle.dumps(printed))
    assert not copy.uses_direct


# --------------------------------------------------------------------------------------------
# DF counts and fingerprints of many documents


def test_compiled_df_and_fingerprints_equal_the_python_path_on_real_text(
    direct: MecabNounTokenizer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _compiled("_batch")
    analyzer = Analyzer(tokenizer=direct)
    counts = [analyzer.term_counts(t) for t in _real_texts(300, 5000)]
    counts = [c for c in counts if c]
    snapshot = DFSnapshot.from_documents(counts)
    fast = analyzer.fingerprints(counts, snapshot)
    fast_weights = simhash_module.simhash_batch([analyzer.weights(c, snapshot) for c in counts])

    monkeypatch.setattr(simhash_module, "_compiled", None)
    monkeypatch.setattr(tfidf_module, "_batch", None)
    slow_snapshot = DFSnapshot.from_documents(counts)
    assert slow_snapshot.id == snapshot.id
    slow = [analyzer.fingerprint(c, snapshot) for c in counts]
    assert fast == slow
    assert fast_weights == slow
    # Non-default weighting takes the weights path; still the same as one at a time.
    logtf = Analyzer(tokenizer=direct, weighting=Weighting(tf="log"))
    monkeypatch.undo()
    assert logtf.fingerprints(counts, snapshot) == [logtf.fingerprint(c, snapshot) for c in counts]


WEIGHTS = st.dictionaries(
    st.text(min_size=1, max_size=5),
    st.one_of(
        st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False),
        st.integers(0, 10**6),
        st.sampled_from([0.0, 5e-324, 1.0, 2.0**20, 1e-10]),
    ),
    max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(WEIGHTS, max_size=8))
def test_compiled_simhash_equals_the_scheme_on_any_weights(docs: list[dict[str, float]]) -> None:
    batch = _compiled("_batch")
    got = batch.simhash_many(docs, None, 0.0, simhash_module._digest)
    assert got == [simhash_module.simhash(d) for d in docs]


COUNTS = st.dictionaries(st.text(min_size=1, max_size=4), st.integers(-3, 10**9), max_size=10)


@settings(max_examples=300, deadline=None)
@given(docs=st.lists(COUNTS, max_size=8), n_docs=st.integers(1, 10**6))
def test_compiled_counts_path_equals_weights_then_simhash(
    docs: list[dict[str, int]], n_docs: int
) -> None:
    batch = _compiled("_batch")
    idf = {
        t: math.log(n_docs / (1 + i % n_docs))
        for i, t in enumerate(sorted({t for d in docs for t in d}))
    }
    unseen = math.log(n_docs)
    got = batch.simhash_many(docs, idf, unseen, simhash_module._digest)
    weights = [{t: c * idf.get(t, unseen) for t, c in d.items() if c > 0} for d in docs]
    assert got == [simhash_module.simhash(w) for w in weights]


def test_compiled_simhash_hands_back_what_the_scheme_refuses() -> None:
    batch = _compiled("_batch")
    digest = simhash_module._digest
    for bad in (-1.0, math.nan, math.inf, "1", None):
        assert batch.simhash_many([{"a": 1.0}, {"b": bad}], None, 0.0, digest) is None
    assert batch.simhash_many([{"a": 1.5}], {"a": 1.0}, 0.0, digest) is None  # a float count
    assert batch.simhash_many([{"a": 10**30}], {"a": 1.0}, 0.0, digest) is None
    # ...and the public functions then raise the scheme's own error.
    with pytest.raises(ValueError, match="finite and >= 0"):
        simhash_module.simhash_batch([{"a": 1.0}, {"b": -1.0}])
    with pytest.raises(ValueError, match="64 bytes"):
        batch.simhash_many([{"a": 1.0}], None, 0.0, lambda t: b"short")


def test_compiled_df_counts_every_kind_of_term_collection() -> None:
    batch = _compiled("_batch")
    df: dict[str, int] = {"a": 5}
    docs = [{"a": 3, "b": 1}, {"b": 2}.keys(), {"c"}, frozenset({"a", "c"})]
    assert batch.count_df(docs, df) == 4
    assert df == {"a": 7, "b": 2, "c": 2}
    with pytest.raises(TypeError):
        batch.count_df([1], {})
    snapshot = DFSnapshot.from_documents(iter([["a", "a", "b"], {"b": 1}, ("c", "b")]))
    assert (snapshot.n_docs, dict(snapshot.df)) == (3, {"a": 1, "b": 3, "c": 1})


# --------------------------------------------------------------------------------------------
# The scan kernel's instruction sets (textrec/_hamming.c; results in tests/test_scan.py)


def test_every_scan_kernel_this_cpu_supports_can_be_forced() -> None:
    # tests/test_scan.py runs each kernel the CPU supports against the NumPy path, forcing it
    # with use_kernel and skipping those it refuses; here the module must be built and accept
    # every kernel the CPU's features allow (as NumPy found them at run time), so that a host
    # with AVX-512 still tests the AVX2 kernel rather than skipping it.
    hamming = _compiled("_hamming")
    try:
        from numpy._core._multiarray_umath import __cpu_features__
    except ImportError:
        pytest.skip("this NumPy does not report CPU features")
    have = {name for name, present in __cpu_features__.items() if present}
    needs = {
        "generic": set(),
        "popcnt": {"POPCNT"},
        "avx2": {"AVX2", "BMI2", "POPCNT"},
        "avx512-vpopcntdq": {"AVX512F", "AVX512DQ", "AVX512VPOPCNTDQ", "POPCNT"},
    }
    try:
        for name, features in needs.items():
            if features <= have:
                assert hamming.use_kernel(name) == name == hamming.kernel()
            else:
                with pytest.raises(ValueError):
                    hamming.use_kernel(name)
    finally:
        hamming.use_kernel("best")

"""The fingerprint definition, pinned: golden values, invariants, an independent reference."""

from __future__ import annotations

import hashlib
import math
import random

import pytest

from textrec import DFSnapshot, fingerprint_hex, hamming, parse_fingerprint, simhash, tfidf_weights
from textrec.content.simhash import (
    SCHEME,
    SCHEME_V1,
    SchemeMismatchError,
    check_scheme,
    estimated_cosine,
)

SENTENCE = (
    "서울시는 내년부터 시내버스 요금을 인상한다고 발표했다. 시민들은 버스 요금 인상에 반대했다."
)
SENTENCE_NOUNS = [
    "서울시",
    "내년",
    "시내버스",
    "요금",
    "인상",
    "발표",
    "시민",
    "버스",
    "요금",
    "인상",
    "반대",
]
GOLDEN_SNAPSHOT = DFSnapshot(
    n_docs=10,
    df={
        "서울시": 2,
        "내년": 5,
        "시내버스": 1,
        "요금": 3,
        "인상": 3,
        "발표": 6,
        "시민": 4,
        "버스": 3,
        "반대": 2,
    },
)


def reference_simhash(weights: dict[str, float]) -> int:
    """The README's derivation, written again with Python integers only."""
    if not weights or max(weights.values()) == 0:
        return 0
    m = max(weights.values())
    sums = [0] * 64
    for term, w in weights.items():
        q = math.floor(w / m * 2**20 + 0.5)
        digest = hashlib.sha512(term.encode("utf-8")).digest()
        for j in range(64):
            sums[j] += q * (2 * digest[j] - 255)
    return sum(1 << j for j in range(64) if sums[j] > 0)


def test_scheme_is_versioned() -> None:
    assert SCHEME == "simhash64-v2"
    assert SCHEME_V1 == "simhash64-v1"


def test_golden_snapshot_id() -> None:
    assert GOLDEN_SNAPSHOT.id == "03f88166244c390f"


def test_golden_korean_sentence(mecab) -> None:  # type: ignore[no-untyped-def]
    nouns = mecab(SENTENCE)
    assert nouns == SENTENCE_NOUNS
    counts: dict[str, int] = {}
    for n in nouns:
        counts[n] = counts.get(n, 0) + 1
    fp = simhash(tfidf_weights(counts, GOLDEN_SNAPSHOT))
    assert fingerprint_hex(fp) == "779921e1fdd077c4"


V2_SENTENCE = (
    "Docker 컨테이너를 Kubernetes 클러스터에 배포했다. 우리는 3년 동안 운영한 경험을 나눈다."
)
V2_SNAPSHOT = DFSnapshot(
    n_docs=10,
    df={"docker": 2, "컨테이너": 3, "kubernetes": 1, "클러스터": 2, "배포": 4, "우리": 8,
        "년": 7, "동안": 6, "운영": 3, "경험": 5},
)  # fmt: skip


def test_golden_v2_sentence() -> None:
    """Term scheme v2 (Latin words lower-cased, exact tags); the derivation is v1's."""
    from textrec.content.tokenize import default_tokenizer

    terms = default_tokenizer(2)(V2_SENTENCE)
    assert terms == [
        "docker", "컨테이너", "kubernetes", "클러스터", "배포",
        "우리", "년", "동안", "운영", "경험",
    ]  # fmt: skip
    assert default_tokenizer(1)(V2_SENTENCE) == [t for t in terms if t.isascii() is False]
    assert V2_SNAPSHOT.id == "bc629e1586ad81a1"
    counts = {t: terms.count(t) for t in terms}
    assert fingerprint_hex(simhash(tfidf_weights(counts, V2_SNAPSHOT))) == "87214861a021c968"


def test_golden_single_terms() -> None:
    # One term: bit j is the top bit of digest byte j.
    assert fingerprint_hex(simhash({"가": 1.0})) == "eb0a351934ce2f71"
    assert fingerprint_hex(simhash({"a": 1.0})) == "63bd04620a8fe89c"
    digest = hashlib.sha512("가".encode()).digest()
    assert simhash({"가": 3.5}) == sum((digest[j] >> 7) << j for j in range(64))


def test_empty_document_is_zero() -> None:
    assert simhash({}) == 0
    assert fingerprint_hex(simhash({})) == "0000000000000000"
    assert simhash({"가": 0.0, "나": 0.0}) == 0


def test_matches_reference_on_random_documents() -> None:
    rng = random.Random(7)
    vocab = [f"단어{i}" for i in range(300)] + ["Latin", "漢字", "😀"]
    for _ in range(200):
        terms = rng.sample(vocab, rng.randint(1, 40))
        weights = {t: rng.choice([0.0, rng.random() * 10, float(rng.randint(1, 5))]) for t in terms}
        assert simhash(weights) == reference_simhash(weights)


def test_order_independence() -> None:
    weights = {f"t{i}": (i % 7) + 0.5 for i in range(50)}
    items = list(weights.items())
    expected = simhash(weights)
    for seed in range(10):
        random.Random(seed).shuffle(items)
        assert simhash(dict(items)) == expected


@pytest.mark.parametrize("factor", [2.0, 0.5, 1024.0, 3.0, 1e-3, 7.25])
def test_scaling_by_a_positive_constant_changes_nothing(factor: float) -> None:
    rng = random.Random(1)
    for _ in range(50):
        weights = {f"w{i}": rng.random() * 5 for i in range(rng.randint(1, 30))}
        scaled = {t: w * factor for t, w in weights.items()}
        assert simhash(scaled) == simhash(weights)


def test_hamming_identities() -> None:
    a = simhash({"요금": 2.0, "버스": 1.0})
    assert hamming(a, a) == 0
    assert hamming(a, ~a & (2**64 - 1)) == 64
    assert hamming(0, 2**64 - 1) == 64
    assert hamming(0b1011, 0b0001) == 2


def test_bad_weights_are_refused() -> None:
    with pytest.raises(ValueError, match="term '나'"):
        simhash({"가": 1.0, "나": -1.0})
    with pytest.raises(ValueError, match="finite"):
        simhash({"가": math.inf})


def test_hex_round_trip_and_errors() -> None:
    for value in (0, 1, 2**63 - 1, 2**63, 2**64 - 1):
        assert parse_fingerprint(fingerprint_hex(value)) == value
    assert fingerprint_hex(255) == "00000000000000ff"
    with pytest.raises(ValueError, match="16 hex digits"):
        parse_fingerprint("xyz")
    with pytest.raises(ValueError, match="unsigned 64-bit"):
        fingerprint_hex(2**64)


def test_estimated_cosine() -> None:
    assert estimated_cosine(0) == 1.0
    assert abs(estimated_cosine(32)) < 1e-12
    assert estimated_cosine(64) == -1.0


def test_scheme_mismatch_is_refused() -> None:
    check_scheme(SCHEME, SCHEME, what="index")
    with pytest.raises(SchemeMismatchError, match="simhash64-v0"):
        check_scheme(SCHEME, "simhash64-v0", what="index file x")


def test_similar_texts_are_closer_than_unrelated(mecab) -> None:  # type: ignore[no-untyped-def]
    snapshot = DFSnapshot.from_documents([["요금"], ["버스"], ["축구"], ["선수"], ["경기"]])

    def fp(text: str) -> int:
        counts: dict[str, int] = {}
        for n in mecab(text):
            counts[n] = counts.get(n, 0) + 1
        return simhash(tfidf_weights(counts, snapshot))

    a = fp("버스 요금이 오른다. 시내버스 요금 인상 발표.")
    b = fp("버스 요금 인상이 발표되었다. 시내버스 요금.")
    c = fp("축구 대표팀 선수들이 경기에서 승리했다. 감독은 선수를 칭찬했다.")
    assert hamming(a, b) < hamming(a, c)


def test_batch_equals_one_by_one() -> None:
    from textrec.content.simhash import simhash_batch

    rng = random.Random(11)
    vocab = [f"어휘{i}" for i in range(200)]
    docs: list[dict[str, float]] = [{}, {"가": 0.0}]
    for _ in range(300):
        terms = rng.sample(vocab, rng.randint(1, 25))
        docs.append({t: rng.choice([0.0, rng.random() * 9, 1.0]) for t in terms})
    docs.append({})
    assert simhash_batch(docs) == [simhash(d) for d in docs]
    assert simhash_batch([]) == []
    with pytest.raises(ValueError, match="term '나'"):
        simhash_batch([{"가": 1.0}, {"나": -2.0}])

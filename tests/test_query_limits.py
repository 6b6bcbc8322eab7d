"""The work of one query is bounded (issue 20, item 3): MeCab never reads an unbroken run of
more than MAX_RUN characters, the taggers of a thread that read a long text are released,
POST /similar reads at most --max-query-chars, and an answer that takes too long becomes a
503. Breaking long runs changes the terms of no document of the real corpora."""

from __future__ import annotations

import gzip
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.helpers import WIKINEWS, copy_database, shared_file
from textrec.content.tokenize import (
    MAX_RUN,
    MecabNounTokenizer,
    break_long_runs,
    normalize_term,
    normalize_text,
    nouns_of_parse,
)
from textrec.recommend import Recommender
from textrec.serve.app import DEFAULT_MAX_QUERY_CHARS, create_app


def _texts(path: Path) -> Iterator[str]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            for key in ("title", "text", "text_a", "text_b"):
                if isinstance(d.get(key), str):
                    yield d[key]


CORPORA = [
    "petitions_ko_17cat.jsonl",
    "small_extras_ko.jsonl",
    "ynat_headlines_7cat.jsonl",
    "pairs_ko_sts_paraphrase.jsonl",
    "nsmc_raw_reviews.jsonl.gz",
]


@pytest.mark.parametrize("name", CORPORA)
def test_breaking_long_runs_leaves_every_real_document_as_it_is(name: str) -> None:
    n = 0
    for text in _texts(shared_file(name)):
        prepared = normalize_text(text)
        assert break_long_runs(prepared) is prepared, text[:80]
        n += 1
    assert n > 1000


def test_the_bundled_sample_keeps_its_terms(mecab: MecabNounTokenizer) -> None:
    """Every text of the sample: the tokenizer's terms are those of MeCab's own output for
    the whole, unbroken text."""
    tagger = mecab._tagger()
    texts = list(_texts(WIKINEWS))
    assert len(texts) > 1000
    for text in texts:
        prepared = normalize_text(text)
        expected = [t for t in (normalize_term(n) for n in nouns_of_parse(tagger.parse(prepared)))]
        assert mecab(text) == [t for t in expected if t]


def test_long_runs_are_broken_for_mecab(mecab: MecabNounTokenizer) -> None:
    rng = random.Random(5)
    run = "".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(3 * MAX_RUN + 17))
    text = f"버스 정류장 {run} 노선\r개편"
    broken = break_long_runs(text)
    pieces = broken.split()
    assert max(len(p) for p in pieces) == MAX_RUN
    assert broken.replace(" ", "") == text.replace(" ", "")  # only spaces were added
    assert mecab(text) == mecab(broken)
    counts: dict[str, int] = {}
    mecab.count_into(text, counts)
    assert sum(counts.values()) == len(mecab(broken))
    # MeCab's own spaces end a run: a text of runs just under the limit is left alone
    spaced = "\t".join(["가" * MAX_RUN] * 5)
    assert break_long_runs(spaced) is spaced


def test_a_long_text_releases_the_threads_taggers() -> None:
    from textrec.content.tokenize import RELEASE_AFTER

    tok = MecabNounTokenizer()
    short = "서울시 버스 요금 인상 " * 10
    tok(short)
    first = tok._local.tagger
    tok(short)
    assert tok._local.tagger is first  # kept between ordinary texts
    assert tok(short * (RELEASE_AFTER // len(short) + 1))  # terms all the same
    assert tok._local.tagger is None and tok._local.direct is None
    counts: dict[str, int] = {}
    tok.count_into(short, counts)
    assert counts["버스"] == 10  # a new tagger, loaded on demand


@pytest.mark.slow
def test_the_worst_unbroken_texts_cost_little(mecab: MecabNounTokenizer) -> None:
    """300,000 Latin letters took 30 s of CPU, 330,000 Hangul syllables 16 s."""
    rng = random.Random(0)
    latin = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(300_000))
    hangul = "".join(chr(0xAC00 + rng.randrange(11172)) for _ in range(330_000))
    for text in (latin, hangul):
        start = time.process_time()
        mecab(text)
        assert time.process_time() - start < 10


@pytest.fixture
def db(wikinews_db: Path, tmp_path: Path) -> str:
    return copy_database(wikinews_db, tmp_path)


def test_a_query_over_the_limit_is_422(db: str) -> None:
    with TestClient(create_app(db, max_query_chars=1000)) as c:
        ok = c.post("/similar", json={"text": "버스 " * 250, "title": "버스" * 125, "k": 3})
        assert ok.status_code == 200
        r = c.post("/similar", json={"text": "버스 " * 250, "title": "버스" * 126, "k": 3})
        assert r.status_code == 422
        assert "1,002 characters long (text and title); the limit is 1,000" in r.json()["detail"]
    assert DEFAULT_MAX_QUERY_CHARS > 25_710  # the longest of 3,668 petitions fits


def test_an_answer_that_takes_too_long_is_503(db: str) -> None:
    release = threading.Event()
    entered = threading.Event()

    class Slow(Recommender):
        def similar_text(self, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
            entered.set()
            release.wait(60)
            return super().similar_text(*args, **kwargs)  # type: ignore[arg-type]

    app = create_app(recommender=lambda: Slow(db), request_timeout=0.5)
    with TestClient(app) as c:
        try:
            r = c.post("/similar", json={"text": "버스 정류장"})
            assert entered.is_set()
            assert r.status_code == 503 and "too long" in r.json()["detail"]
            assert r.headers["retry-after"] == "5"
        finally:
            release.set()
        assert c.get("/health").status_code == 200
        assert c.post("/similar", json={"text": "버스 정류장"}).status_code == 200


def test_a_tokenizing_request_releases_its_taggers_and_slots_are_bounded() -> None:
    from textrec.serve.limits import TokenizerSlots

    tok = MecabNounTokenizer()
    slots = TokenizerSlots(2)
    with slots.slot(tok):
        assert tok("서울시 버스 요금") == ["서울시", "버스", "요금"]
        assert tok._local.tagger is not None
    assert tok._local.tagger is None and tok._local.direct is None
    held = [slots.slot(tok), slots.slot(tok)]
    for h in held:
        h.__enter__()
    assert not slots._slots.acquire(blocking=False)  # a third request waits
    for h in held:
        h.__exit__(None, None, None)
    assert slots._slots.acquire(blocking=False)
    slots._slots.release()

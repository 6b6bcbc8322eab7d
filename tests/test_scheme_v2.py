"""Term scheme v2 in use: Latin-script posts, posts without terms, shared terms worth showing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import copy_database
from textrec import Recommender, Store
from textrec.check import check
from textrec.cli.main import main

MIXED = [
    {"id": "en-1", "title": "Docker in production", "text": "Docker containers and Kubernetes "
     "clusters: how we deploy Docker images with Kubernetes every day."},
    {"id": "mixed-1", "title": "Docker 컨테이너 배포", "text": "Docker 이미지를 만들고 Kubernetes "
     "클러스터에 배포하는 방법을 정리했습니다."},
    {"id": "en-2", "title": "Sourdough bread", "text": "Flour, water and salt: a sourdough "
     "starter needs patience."},
]  # fmt: skip
EMPTY = [
    {"id": "empty-emoji", "text": "😀🎉👍"},
    {"id": "empty-punct", "title": "!!!", "text": "??? ..."},
]


@pytest.fixture
def rec(wikinews_db: Path, tmp_path: Path) -> Recommender:
    return Recommender(copy_database(wikinews_db, tmp_path))


def test_english_and_mixed_posts_are_stored_and_related_by_their_latin_terms(
    rec: Recommender,
) -> None:
    assert rec.scheme == "simhash64-v2"
    stored, rejected = rec.add(MIXED)
    assert stored == ["en-1", "mixed-1", "en-2"] and not rejected
    top = rec.similar("en-1", k=3)
    assert top[0].id == "mixed-1"
    assert {"docker", "kubernetes"} <= set(top[0].shared_terms)
    back = rec.similar("mixed-1", k=1)[0]
    assert back.id == "en-1" and "docker" in back.shared_terms
    found = rec.similar_text("Kubernetes 운영 경험", k=2)
    assert {m.id for m in found} == {"en-1", "mixed-1"}
    assert check(rec.store, sample=1000).ok


def test_a_post_without_terms_is_stored_listed_and_fetchable_with_no_related_posts(
    rec: Recommender, tmp_path: Path
) -> None:
    warnings: list[object] = []
    stored, rejected = rec.add(EMPTY, warnings=warnings)
    assert stored == ["empty-emoji", "empty-punct"] and not rejected
    assert [str(w) for w in warnings] == [
        "<add>:1: no terms found in title or text: stored, but it gets no related posts "
        "(id 'empty-emoji')",
        "<add>:2: no terms found in title or text: stored, but it gets no related posts "
        "(id 'empty-punct')",
    ]
    assert rec.document("empty-emoji").text == "😀🎉👍"
    total, page = rec.documents(offset=644, limit=10)
    assert total == 646 and [d.external_id for d in page] == ["empty-emoji", "empty-punct"]
    for mode in ("related", "hamming"):
        assert rec.similar("empty-emoji", k=5, mode=mode) == []
        assert rec.similar_text("👍👍", k=5, mode=mode) == []
    # Both fingerprints are 0: they are not each other's near-duplicates, nor anyone's.
    assert rec.near_duplicates("empty-emoji", max_distance=64) == []
    assert all("empty" not in a + b for a, b, _ in rec.duplicate_pairs(max_distance=3))
    for mode in ("related", "hamming"):  # k is at most 100; len(rec) below covers the rest
        found = rec.similar("wikinews-0001", k=100, mode=mode)
        assert found and all(not m.id.startswith("empty") for m in found)
    assert len(rec) == 644  # in no index
    rec.save()
    report = check(rec.store, sample=1000)
    assert report.ok, report.problems
    assert not report.warnings, report.warnings
    reopened = Recommender(rec.store.url)
    assert len(reopened) == 644 and reopened.similar("empty-punct") == []


def test_ingest_warns_with_file_and_line_and_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    path = tmp_path / "posts.jsonl"
    rows = [*MIXED, *EMPTY]
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert main(["--db", db, "-q", "ingest", str(path)]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path}:4: no terms found" in err and f"warning: {path}:5: no terms" in err
    assert "5 stored, 2 without terms, 0 rejected" in err
    assert main(["--db", db, "-q", "build"]) == 0
    store = Store(db)
    _, codes, _ = store.fingerprints(str(store.current_snapshot_id()))
    assert sorted(codes.tolist())[:3] == [0, 0, sorted(codes.tolist())[2]] != 0
    assert main(["--db", db, "check"]) == 0
    assert main(["--db", db, "-q", "similar", "empty-emoji"]) == 0


def _tags_in(text: str) -> dict[str, set[str]]:
    """Every term of a text with the tags Mecab gave it there, read from MeCab's own output."""
    from textrec.content.tokenize import default_tokenizer, normalize_term, normalize_text

    tags: dict[str, set[str]] = {}
    for line in default_tokenizer(2)._tagger().parse(normalize_text(text)).splitlines()[:-1]:
        surface, _, features = line.partition("\t")
        tags.setdefault(normalize_term(surface), set()).add(features.split(",", 1)[0])
    return tags


def test_counters_and_pronouns_are_terms_but_never_shown(rec: Recommender) -> None:
    """Judged by the tag Mecab gave each word in the query's text, not by a word list."""
    function = {"NNB", "NNBC", "NP", "NR"}
    hidden_terms_that_rank = 0
    for n in range(1, 61):
        doc = rec.document(f"wikinews-{n:04d}")
        tags = _tags_in(f"{doc.title}\n{doc.text}")
        not_content = {t for t, found in tags.items() if found & function}
        hidden_terms_that_rank += len(not_content & set(doc.terms or {}))
        for m in rec.similar(doc.external_id, k=10):
            assert not not_content & set(m.shared_terms), (doc.external_id, m.shared_terms)
            assert all(tags[t] & {"NNG", "NNP", "SL"} for t in m.shared_terms)
    assert hidden_terms_that_rank >= 100  # they are terms (they rank), just never shown

"""Recommendations for each reader: ``Recommender.recommend``, the hybrid, the CLI and HTTP,
on real petitions with a seeded click log (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.helpers import built_petitions
from textrec import Recommender
from textrec.cli.main import main
from textrec.collab.synthetic import click_log
from textrec.evaluation.events import Interactions, evaluate_events
from textrec.hybrid import fuse
from textrec.serve.app import create_app

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"


def _groups(limit: int) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for line in FIXTURE.read_text("utf-8").splitlines()[:limit]:
        row = json.loads(line)
        groups[row["label"]].append(row["id"])
    return dict(groups)


@pytest.fixture
def read(db_url: str, tmp_path: Path) -> str:
    """200 petitions, built, with 150 seeded readers' events, in a database of each kind."""
    built_petitions(db_url, tmp_path, 200)
    rec = Recommender(db_url, index_path=str(tmp_path / "i.index"))
    stored, rejected = rec.add_events(click_log(_groups(200), users=150, seed=3))
    assert stored > 1000 and not rejected
    return db_url


def _rec(url: str, tmp_path: Path) -> Recommender:
    return Recommender(url, index_path=str(tmp_path / "i.index"))


def _history(rec: Recommender, user: str) -> set[str]:
    docs = rec.store.get_documents([e.document_id for e in rec.store.user_history(user)])
    return {d.external_id for d in docs.values()}


def test_a_reader_gets_k_posts_they_have_not_read_with_their_sources(
    read: str, tmp_path: Path
) -> None:
    rec = _rec(read, tmp_path)
    answer = rec.recommend("reader-0007", k=10)
    assert answer.basis == "history" and answer.mode == "hybrid" and answer.note is None
    assert len(answer.results) == 10
    ids = [r.id for r in answer.results]
    assert len(set(ids)) == 10 and not set(ids) & _history(rec, "reader-0007")
    scores = [r.score for r in answer.results]
    assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= scores[0] <= 1
    for r in answer.results:
        assert r.sources and set(r.sources) <= {"related", "readers"}
        if "readers" in r.sources:
            assert r.readers > 0
    assert any(r.shared_terms for r in answer.results)
    assert {s for r in answer.results for s in r.sources} == {"related", "readers"}
    kept = rec.recommend("reader-0007", k=10, exclude_read=False)
    assert set(r.id for r in kept.results) & _history(rec, "reader-0007")


@pytest.mark.parametrize("mode", ["related", "readers", "popular"])
def test_each_single_mode_answers_for_a_reader(read: str, tmp_path: Path, mode: str) -> None:
    rec = _rec(read, tmp_path)
    answer = rec.recommend("reader-0011", k=5, mode=mode)
    assert answer.mode == mode and len(answer.results) == 5
    assert all(r.sources == [mode] for r in answer.results)
    assert not {r.id for r in answer.results} & _history(rec, "reader-0011")


def test_a_new_post_is_recommended_through_content_from_the_moment_it_is_published(
    read: str, tmp_path: Path
) -> None:
    rec = _rec(read, tmp_path)
    # A reader who read three petitions; the new post is a copy of the first with another
    # ending, so that content ranks it first among the posts they have not read.
    first = rec.store.find_document(rec.recommend("reader-0020", k=1).results[0].id)
    assert first is not None
    reads = [d for d in list(rec.store.iter_documents())[:3]]
    rec.add_events([{"user": "fresh-reader", "item": d.external_id} for d in reads])
    before = rec.recommend("fresh-reader", k=10)
    assert all(r.id != "new-post" for r in before.results)
    base = reads[0]
    stored, _ = rec.add(
        [{"id": "new-post", "title": base.title, "text": base.text + " 새로 올린 글입니다."}]
    )
    assert stored == ["new-post"]
    answer = rec.recommend("fresh-reader", k=10, collapse=None)
    new = [r for r in answer.results if r.id == "new-post"]
    assert new, [r.id for r in answer.results]
    assert new[0].sources == ["related"] and new[0].readers == 0 and new[0].shared_terms
    # Its copy of a post the reader read is left out when copies collapse (the default).
    assert all(r.id != "new-post" for r in rec.recommend("fresh-reader", k=10).results)


def test_a_new_event_changes_the_readers_recommendations_at_once(read: str, tmp_path: Path) -> None:
    rec = _rec(read, tmp_path)
    some = next(iter(rec.store.iter_documents()))
    rec.add_events([{"user": "one-read", "item": some.external_id}])
    before = [r.id for r in rec.recommend("one-read", k=10, mode="readers").results]
    other = rec.store.find_document(before[-1])
    assert other is not None
    # The reader reads a post of another interest: their list changes with the next query.
    far = [
        d.external_id
        for d in rec.store.iter_documents()
        if d.external_id not in before and d.id != some.id
    ][-1]
    rec.add_events([{"user": "one-read", "item": far, "kind": "like"}])
    after = [r.id for r in rec.recommend("one-read", k=10, mode="readers").results]
    assert after != before and far not in after


def test_a_reader_without_events_gets_popular_posts_or_content_for_a_context(
    read: str, tmp_path: Path
) -> None:
    rec = _rec(read, tmp_path)
    popular = rec.recommend("never-seen", k=5)
    assert popular.basis == "popular" and popular.mode == "popular" and popular.note
    counts = [r.readers for r in popular.results]
    assert counts == sorted(counts, reverse=True) and counts[0] > 1
    top = rec.readers.popular(5)
    every = rec.recommend("never-seen", k=5, collapse=None)  # copies of a post too
    assert [r.readers for r in every.results] == top[1].astype(int).tolist()

    context = rec.recommend("never-seen", k=5, context_id="petition-510")
    assert context.basis == "context" and len(context.results) == 5
    assert "petition-510" not in {r.id for r in context.results}
    related = [m.id for m in rec.similar("petition-510", k=50, mode="related")]
    readers = [m.id for m in rec.similar("petition-510", k=50, mode="readers")]
    assert {r.id for r in context.results} <= set(related) | set(readers)
    content = rec.recommend("never-seen", k=5, context_id="petition-510", mode="related")
    assert [r.id for r in content.results] == related[:5]

    text = rec.recommend("never-seen", k=5, context_text="어린이집 보육교사 인건비")
    assert text.basis == "context" and len(text.results) == 5
    assert all(r.sources == ["related"] for r in text.results)
    assert "어린이집" in text.results[0].shared_terms or "보육" in text.results[0].shared_terms
    asked = rec.recommend("never-seen", k=5, mode="readers", context_text="어린이집")
    assert asked.mode == "related" and asked.note

    with pytest.raises(ValueError, match="not both"):
        rec.recommend("x", context_id="petition-510", context_text="어린이집")
    with pytest.raises(KeyError):
        rec.recommend("never-seen", context_id="no-such-post")
    with pytest.raises(ValueError, match="mode"):
        rec.recommend("reader-0001", mode="magic")
    with pytest.raises(ValueError, match="k must"):
        rec.recommend("reader-0001", k=0)


def test_a_factor_mode_without_a_model_answers_as_hybrid_and_says_why(
    read: str, tmp_path: Path
) -> None:
    rec = _rec(read, tmp_path)
    answer = rec.recommend("reader-0001", k=5, mode="als")
    assert answer.mode == "hybrid" and "textrec train --model als" in (answer.note or "")
    assert len(answer.results) == 5
    hybrid = rec.similar("petition-510", k=5, mode="als")
    assert [m.id for m in hybrid] == [m.id for m in rec.similar("petition-510", 5, mode="hybrid")]


def test_hybrid_similar_fuses_content_and_readers(read: str, tmp_path: Path) -> None:
    rec = _rec(read, tmp_path)
    doc = rec.store.find_document("petition-510")
    assert doc is not None and rec.readers_of("petition-510") > 0
    matches = rec.similar("petition-510", k=10, mode="hybrid")
    assert len(matches) == 10 and all(0 < m.score <= 1 for m in matches)
    related = {m.id for m in rec.similar("petition-510", k=50, mode="related")}
    readers = {m.id for m in rec.similar("petition-510", k=50, mode="readers")}
    assert {m.id for m in matches} <= related | readers
    assert {m.id for m in matches} & readers and {m.id for m in matches} & related
    for m in matches:
        assert m.sources and set(m.sources) <= {"related", "readers"}
        assert (m.id in readers) >= ("readers" in m.sources) and m.readers is not None
    assert {s for m in matches for s in m.sources or []} == {"related", "readers"}
    assert rec.similar("petition-510", k=3, mode="related")[0].sources is None


def test_recommendations_over_http_and_the_cli(
    read: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rec = _rec(read, tmp_path)
    expected = [r.id for r in rec.recommend("reader-0002", k=4).results]
    app = create_app(read, index_path=str(tmp_path / "i.index"), token="s3cret")
    with TestClient(app, headers={"Authorization": "Bearer s3cret"}) as client:
        r = client.get("/users/reader-0002/recommendations", params={"k": 4})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["basis"] == "history" and [x["id"] for x in body["results"]] == expected
        assert set(body["results"][0]) >= {"sources", "shared_terms", "readers", "because"}
        r = client.get("/users/nobody/recommendations", params={"context_id": "petition-510"})
        assert r.json()["basis"] == "context"
        assert client.get("/users/nobody/recommendations?context_id=nope").status_code == 404
        assert client.get("/users/x/recommendations?mode=magic").status_code == 422
        assert client.get("/users/x/recommendations?k=0").status_code == 422
        both = client.get("/users/x/recommendations?context_id=a&context_text=b")
        assert both.status_code == 422 and "not both" in both.text
        only = client.get("/users/reader-0002/recommendations?k=3&where=label%3D육아/교육")
        assert only.status_code == 200 and len(only.json()["results"]) == 3
        labels = {rec.store.find_document(x["id"]).meta["label"] for x in only.json()["results"]}  # type: ignore[union-attr]
        assert labels == {"육아/교육"}
        bad = client.get("/users/reader-0002/recommendations?since=yesterday")
        assert bad.status_code == 422 and "since" in bad.text
        # A reader's list reveals what they read: without the token, only their own key.
        anonymous = client.get("/users/reader-0002/recommendations", headers={"Authorization": ""})
        assert anonymous.status_code == 401
    args = ["--db", read, "--index", str(tmp_path / "i.index")]
    assert main([*args, "recommend", "reader-0002", "-k", "4", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [x["id"] for x in out["results"]] == expected
    assert main([*args, "recommend", "reader-0002", "-k", "4"]) == 0
    text = capsys.readouterr().out
    assert "from history" in text and expected[0] in text
    assert main([*args, "recommend", "nobody", "--context-id", "nope"]) == 1
    assert "nope" in capsys.readouterr().err
    where = ["--where", "label=육아/교육", "-k", "3", "--json"]
    assert main([*args, "recommend", "reader-0002", *where]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 3


def test_fuse_scales_each_source_and_divides_by_the_sources_that_know_an_item() -> None:
    lists = {
        "related": (np.array([1, 2, 3]), np.array([4.0, 2.0, 1.0])),
        "readers": (np.array([2, 4]), np.array([10.0, 5.0])),
    }
    known = {
        "readers": lambda ids: np.isin(ids, [1, 2, 4]),
        "related": lambda ids: np.ones(len(ids), bool),
    }
    fused = fuse(lists, known, weights={"related": 1.0, "readers": 1.0})
    # 1: (1 + 0) / 2 = 0.5; 2: (0.5 + 1) / 2 = 0.75; 3: readers never saw it: 0.25 / 1;
    # 4: (0 + 0.5) / 2 = 0.25 (content knows every item).
    assert fused.ids.tolist() == [2, 1, 3, 4]
    assert fused.scores.tolist() == pytest.approx([0.75, 0.5, 0.25, 0.25])
    assert fused.parts[2] == {"related": 0.5, "readers": 1.0}
    rrf = fuse(lists, known, rule="rrf", weights={"related": 1.0, "readers": 1.0})
    assert rrf.ids.tolist()[0] == 2
    assert fuse({}, {}).ids.tolist() == []
    with pytest.raises(ValueError, match="rule"):
        fuse(lists, known, rule="max")


def test_click_log_popularity_skews_reads_and_is_seeded() -> None:
    groups = {"a": [f"a{i}" for i in range(50)], "b": [f"b{i}" for i in range(50)]}
    flat = click_log(groups, users=300, seed=1)
    skewed = click_log(groups, users=300, seed=1, popularity=1.2)
    assert skewed == click_log(groups, users=300, seed=1, popularity=1.2)
    assert flat == click_log(groups, users=300, seed=1, popularity=0.0)

    def top_share(events: list[dict[str, str]]) -> float:
        counts: dict[str, int] = defaultdict(int)
        for e in events:
            counts[e["item"]] += e["kind"] == "view"
        ranked = sorted(counts.values(), reverse=True)
        return sum(ranked[:10]) / sum(ranked)

    assert top_share(skewed) > 2 * top_share(flat)


def test_eval_events_scores_content_and_hybrid_and_the_cold_start_protocol() -> None:
    groups = _groups(300)
    events = click_log(groups, users=400, seed=5, popularity=1.0)
    triples = [(e["user"], e["item"], float(n)) for n, e in enumerate(events)]
    data = Interactions.from_triples(triples)
    terms = {}
    from textrec.content.analyzer import Analyzer

    analyzer = Analyzer()
    for line in FIXTURE.read_text("utf-8").splitlines()[:300]:
        row = json.loads(line)
        terms[row["id"]] = analyzer.term_counts(row["text"], row.get("title"))
    item_terms = [terms[i] for i in data.item_names]
    options = {
        "content": {"item_terms": item_terms},
        "hybrid": {"item_terms": item_terms},
    }
    models = ["popular", "readers", "content", "hybrid"]
    warm = {s.model: s for s in evaluate_events(data, models=models, options=options)}
    assert warm["content"].ndcg > warm["popular"].ndcg * 0 and warm["readers"].ndcg > 0.05
    cold = {
        s.model: s for s in evaluate_events(data, models=models, options=options, new_items=0.2)
    }
    assert cold["readers"].recall == 0 and cold["popular"].recall == 0
    assert cold["content"].recall > 0.02
    assert cold["hybrid"].recall >= 0.8 * cold["content"].recall
    with pytest.raises(ValueError, match="--corpus"):
        evaluate_events(data, models=["content"])
    with pytest.raises(ValueError, match="between 0 and 1"):
        evaluate_events(data, models=["popular"], new_items=1.5)


def test_the_trained_models_join_the_hybrid_and_a_stale_or_broken_model_is_reported(
    read: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from textrec.check import check

    index = str(tmp_path / "i.index")
    args = ["--db", read, "--index", index]
    assert main([*args, "train", "--model", "als", "--quiet"]) == 0
    assert main([*args, "train", "--model", "bpr", "--quiet"]) == 0
    rec = _rec(read, tmp_path)
    assert set(rec.models) == {"als", "bpr"} and not rec.model_errors
    answer = rec.recommend("reader-0004", k=10)
    assert answer.mode == "hybrid" and answer.note is None
    with_als = [r for r in answer.results if "als" in r.sources]
    assert with_als and all(r.because for r in with_als)
    history = _history(rec, "reader-0004")
    assert all(set(r.because) <= history for r in with_als)
    for mode in ("als", "bpr"):
        only = rec.recommend("reader-0004", k=5, mode=mode)
        assert only.mode == mode and len(only.results) == 5 and only.note is None
        assert all(r.sources == [mode] for r in only.results)
        assert rec.similar("petition-510", k=5, mode=mode)
    assert all(not r.because for r in rec.recommend("reader-0004", k=5, mode="bpr").results)

    # New events after training: the model is stale, not wrong: it keeps serving, the
    # reader's new read counts at once, and stats and check say how stale it is.
    report = check(rec.store, index_path=index)
    assert report.ok and not any("stale" in w for w in report.warnings)
    before = [r.id for r in rec.recommend("reader-0004", k=10, mode="als").results]
    rec.add_events([{"user": "reader-0004", "item": before[0], "kind": "like"}])
    after = [r.id for r in rec.recommend("reader-0004", k=10, mode="als").results]
    assert before[0] not in after and after != before
    report = check(rec.store, index_path=index)
    assert any("als model" in w and "1 event since" in w for w in report.warnings)
    assert main([*args, "stats", "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["als_events_since"] == 1 and stats["bpr_events_since"] == 1

    # A retrained model is picked up by a running Recommender's refresh.
    assert main([*args, "train", "--model", "als", "--quiet"]) == 0
    assert rec.refresh()
    assert not [w for w in check(rec.store, index_path=index).warnings if "als model" in w]

    # A broken file: reported, and its mode answers as hybrid without it.
    Path(f"{index}.als").write_bytes(b"TEXTREC-FACTORS\n{not json")
    broken = _rec(read, tmp_path)
    assert "als" not in broken.models and "cannot be used" in broken.model_errors["als"]
    answer = broken.recommend("reader-0004", k=5, mode="als")
    assert answer.mode == "hybrid" and "cannot be used" in (answer.note or "")
    assert all("als" not in r.sources for r in answer.results)
    assert not check(broken.store, index_path=index).ok


def test_a_readers_list_needs_their_own_key_without_a_token(read: str, tmp_path: Path) -> None:
    with TestClient(create_app(read, index_path=str(tmp_path / "i.index"))) as client:
        made = client.post("/readers")
        assert made.status_code == 201
        reader, key = made.json()["id"], made.json()["key"]
        url = f"/users/{reader}/recommendations"
        assert client.get(url).status_code == 403
        assert client.get(url, headers={"X-Reader-Key": "0" * 64}).status_code == 403
        mine = client.get(url, headers={"X-Reader-Key": key})
        assert mine.status_code == 200 and mine.json()["basis"] == "popular"
        other = client.get("/users/reader-0002/recommendations", headers={"X-Reader-Key": key})
        assert other.status_code == 403


def test_forgetting_a_reader_erases_them_from_the_models_and_their_files(
    read: str, tmp_path: Path
) -> None:
    from textrec.check import check
    from textrec.collab.factors import FactorModel

    index = str(tmp_path / "i.index")
    for model in ("als", "bpr"):
        assert main(["--db", read, "--index", index, "train", "--model", model, "--quiet"]) == 0
    rec = _rec(read, tmp_path)
    als = rec.models["als"]
    read_by = sorted(rec.readers.read_by("reader-0009"))
    cols = [int(np.flatnonzero(als.items == d)[0]) for d in read_by]
    vectors = als.item_factors[cols].copy()
    assert "reader-0009" in als.users
    assert rec.forget("reader-0009") > 0
    assert "reader-0009" not in rec.models["als"].users
    assert not np.allclose(rec.models["als"].item_factors[cols], vectors)
    # The files were written again: a restart does not bring the reader back.
    for model in ("als", "bpr"):
        assert "reader-0009" not in FactorModel.load(f"{index}.{model}").users
    again = _rec(read, tmp_path)
    assert "reader-0009" not in again.models["als"].users
    assert again.recommend("reader-0009", k=3).basis == "popular"
    warnings = check(again.store, index_path=index).warnings
    assert not [w for w in warnings if "als model" in w]
    assert [w for w in warnings if "bpr model" in w and "erased reader" in w]
    # Retention deletes events behind the models' back: both are stale until retrained.
    from datetime import UTC, datetime

    assert again.expire_events(datetime(2030, 1, 1, tzinfo=UTC)) > 0
    warnings = check(again.store, index_path=index).warnings
    assert [w for w in warnings if "als model" in w and "events deleted" in w]


def test_eval_events_cli_reads_the_corpus_for_content_and_the_cold_start_protocol(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = tmp_path / "events.jsonl"
    log = click_log(_groups(300), users=300, seed=2, popularity=1.0)
    events.write_text("".join(json.dumps(e) + "\n" for e in log), "utf-8")
    argv = ["eval-events", str(events), "--models", "content,als,hybrid", "--json"]
    assert main([*argv, "--corpus", str(FIXTURE), "--new-items", "0.2"]) == 0
    rows = {r["model"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    assert rows["als"]["recall@10"] == 0 and rows["content"]["recall@10"] > 0.05
    assert rows["hybrid"]["recall@10"] >= 0.8 * rows["content"]["recall@10"]
    assert main(argv) == 1
    assert "--corpus" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "text": "글"}\nnot json\n', "utf-8")
    assert main([*argv, "--corpus", str(bad)]) == 1
    assert f"{bad}:2" in capsys.readouterr().err


def test_events_forget_on_the_command_line_erases_the_reader_from_the_model_files(
    read: str, tmp_path: Path
) -> None:
    from textrec.collab.factors import FactorModel

    index = str(tmp_path / "i.index")
    args = ["--db", read, "--index", index]
    assert main([*args, "train", "--model", "als", "--quiet"]) == 0
    server = _rec(read, tmp_path)  # a running server, with the model loaded
    assert "reader-0012" in server.models["als"].users
    assert main([*args, "events", "forget", "reader-0012"]) == 0
    assert "reader-0012" not in FactorModel.load(f"{index}.als").users
    assert server.refresh()  # the server reads the file written again
    assert "reader-0012" not in server.models["als"].users
    assert server.recommend("reader-0012", k=3).basis == "popular"


def test_a_reader_of_nearly_everything_joins_no_two_posts(read: str, tmp_path: Path) -> None:
    from textrec.collab.readers import CRAWLER_MIN_DOCUMENTS

    rec = _rec(read, tmp_path)
    ids = [d.external_id for d in rec.store.iter_documents()]
    target = ids[-1]
    assert rec.readers_of(target) >= 0
    rec.remove(target)  # a fresh post nobody has read, for the attacker to push
    rec.add([{"id": "target", "text": "광고 광고 광고 이벤트 당첨 무료 쿠폰"}])
    before = {i: [m.id for m in rec.similar(i, k=10, mode="readers")] for i in ids[:50]}
    assert not any("target" in lst for lst in before.values())
    # One client's single reader reads the target, then every post: a crawler.
    crawl = [{"user": "crawler", "item": "target"}]
    crawl += [{"user": "crawler", "item": i} for i in ids[:-1]]
    assert len(crawl) - 1 >= CRAWLER_MIN_DOCUMENTS
    rec.add_events(crawl)
    after = {i: [m.id for m in rec.similar(i, k=10, mode="readers")] for i in ids[:50]}
    assert not any("target" in lst for lst in after.values())
    # The real readers' lists stay nearly as they were (the crawler still counts in BM25's
    # lengths and averages, not as a reader joining two posts).
    overlap = [len(set(after[i]) & set(before[i])) / max(len(before[i]), 1) for i in before]
    assert sum(overlap) / len(overlap) >= 0.9

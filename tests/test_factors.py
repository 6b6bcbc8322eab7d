"""Reader models (ALS and BPR): trained from a real store's events, deterministic, saved and
read back, folding in new events at once, and the ``textrec train`` command."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from textrec import Recommender, Store, ingest, read_records
from textrec.cli.main import main
from textrec.collab.events import KIND_WEIGHTS, parse_event, store_events
from textrec.collab.factors import (
    FACTOR_MODELS,
    FactorModel,
    ModelFileError,
    model_path,
    model_staleness,
)
from textrec.collab.synthetic import click_log
from textrec.evaluation.events import Interactions, evaluate_events

GROUPS = ("경제", "정치", "사회", "과학")
# Settings for the small log (40 documents, 120 readers): BPR needs larger steps there.
SMALL: dict[str, dict[str, Any]] = {
    "als": {"factors": 8, "iterations": 20},
    "bpr": {"factors": 8, "iterations": 100, "learning_rate": 0.05},
}
PER_GROUP = 10


def _docs(tmp_path: Path) -> Path:
    src = tmp_path / "docs.jsonl"
    with src.open("w", encoding="utf-8") as f:
        for g, name in enumerate(GROUPS):
            for i in range(PER_GROUP):
                text = f"{name} 분야의 소식 {i}번째 기사 본문입니다"
                f.write(json.dumps({"id": f"{g}-{i}", "text": text}, ensure_ascii=False) + "\n")
    return src


def _groups() -> dict[str, list[str]]:
    return {name: [f"{g}-{i}" for i in range(PER_GROUP)] for g, name in enumerate(GROUPS)}


def _fill(url: str, tmp_path: Path, *, users: int = 120) -> Store:
    store = Store(url)
    ingest(store, read_records(str(_docs(tmp_path))))
    log = click_log(_groups(), users=users, reads=(4, 9), seed=0)
    report = store_events(store, (parse_event(e) for e in log))
    assert not report.rejected
    return store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return _fill(f"sqlite:///{tmp_path / 'f.db'}", tmp_path)


def _history(store: Store, user: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for batch in store.iter_events():
        for e in batch:
            if e.user == user:
                out[e.document_id] = out.get(e.document_id, 0.0) + KIND_WEIGHTS[e.kind]
    return out


def _group_of(store: Store) -> dict[int, int]:
    ids = store.internal_ids([d for docs in _groups().values() for d in docs])
    return {doc: int(ext.split("-")[0]) for ext, doc in ids.items()}


@pytest.mark.parametrize("kind", FACTOR_MODELS)
def test_training_twice_gives_the_same_arrays_and_file(
    store: Store, tmp_path: Path, kind: str
) -> None:
    a = FactorModel.train(store, model=kind, factors=8, iterations=10)
    b = FactorModel.train(store, model=kind, factors=8, iterations=10)
    assert np.array_equal(a.user_factors, b.user_factors)
    assert np.array_equal(a.item_factors, b.item_factors)
    assert a.users == b.users and np.array_equal(a.items, b.items)
    assert len(a.users) == 120 and len(a.items) == 40
    assert a.last_event == max(e.id for batch in store.iter_events() for e in batch)
    assert a.provenance and a.params["events"] == store.count_events()
    a.save(str(tmp_path / "a"))
    b.trained_at = a.trained_at
    b.save(str(tmp_path / "b"))
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    c = FactorModel.train(store, model=kind, factors=8, iterations=10, seed=1)
    assert not np.array_equal(a.item_factors, c.item_factors)


@pytest.mark.parametrize(
    ("kind", "golden"),
    [
        ("als", [0.9382, 0.9135, -0.0317, -0.0069]),
        ("bpr", [0.0308, -0.2398, -0.1656, 0.1848]),
    ],
)
def test_golden_values(kind: str, golden: list[float]) -> None:
    """The same matrix gives the same vectors, here and on every machine of this kind
    (implicit 0.7.3, seed 0)."""
    import scipy.sparse as sp

    rows = [0, 0, 1, 1, 2, 2, 3, 3]
    cols = [0, 1, 1, 2, 2, 3, 3, 0]
    matrix = sp.csr_matrix((np.ones(8), (rows, cols)), shape=(4, 4))
    rate: dict[str, Any] = {"learning_rate": 0.01} if kind == "bpr" else {}
    model = FactorModel.fit(matrix, model=kind, factors=2, iterations=5, regularization=0.1, **rate)
    scores = model.user_factors[0] @ model.item_factors.T
    assert scores.tolist() == pytest.approx(golden, abs=2e-4)


@pytest.mark.parametrize("kind", FACTOR_MODELS)
def test_save_and_load_round_trip(store: Store, tmp_path: Path, kind: str) -> None:
    model = FactorModel.train(store, model=kind, factors=8, iterations=5)
    path = model_path(str(tmp_path / "f.db.index"), kind)
    assert path.endswith(f".index.{kind}")
    model.save(path)
    back = FactorModel.load(path)
    assert back.model == kind and back.users == model.users
    assert np.array_equal(back.items, model.items)
    assert np.array_equal(back.user_factors, model.user_factors)
    assert np.array_equal(back.item_factors, model.item_factors)
    assert back.params == model.params and back.provenance == model.provenance
    assert back.last_event == model.last_event and back.trained_at == model.trained_at
    user = next(iter(model.users))
    history = _history(store, user)
    assert np.array_equal(model.recommend(user, history, 5)[0], back.recommend(user, history, 5)[0])


def test_a_damaged_file_is_refused_with_its_path(store: Store, tmp_path: Path) -> None:
    model = FactorModel.train(store, factors=4, iterations=2)
    good = tmp_path / "m.als"
    model.save(str(good))
    data = good.read_bytes()
    cases = {
        "truncated": data[: len(data) // 2],
        "header only": data[: data.index(b"\n", 20) + 1],
        "garbage": b"\x00\x01not a model at all",
        "empty": b"",
        "other version": data.replace(b'"version": 1', b'"version": 9', 1),
        "bad json": data.replace(b'"format"', b'"format', 1),
    }
    for name, content in cases.items():
        bad = tmp_path / f"{name}.als"
        bad.write_bytes(content)
        with pytest.raises(ModelFileError) as caught:
            FactorModel.load(str(bad))
        assert str(bad) in str(caught.value), name
    with pytest.raises(ModelFileError, match="cannot be read"):
        FactorModel.load(str(tmp_path / "missing.als"))


@pytest.mark.parametrize("kind", FACTOR_MODELS)
def test_a_new_event_changes_the_readers_recommendations_at_once(store: Store, kind: str) -> None:
    model = FactorModel.train(store, model=kind, **SMALL[kind])
    group = _group_of(store)
    user = "reader-0003"
    history = _history(store, user)
    before, _ = model.recommend(user, history, 5, exclude=history)
    mine = {group[d] for d in history}
    # Reads in a group the reader never touched pull that group into the list.
    other = next(g for g in range(len(GROUPS)) if g not in mine)
    new = [d for d, g in sorted(group.items()) if g == other][:4]
    after_history = {**history, **dict.fromkeys(new, 2.0)}
    after, scores = model.recommend(user, after_history, 5, exclude=after_history)
    assert not np.array_equal(before, after)
    assert any(group[int(d)] == other for d in after)
    assert list(scores) == sorted(scores, reverse=True)
    # The same history gives the same answer (the fold-in is seeded by the history).
    again, _ = model.recommend(user, after_history, 5, exclude=after_history)
    assert np.array_equal(after, again)


@pytest.mark.parametrize("kind", FACTOR_MODELS)
def test_unknown_readers_empty_histories_and_exclude(store: Store, kind: str) -> None:
    model = FactorModel.train(store, model=kind, **SMALL[kind])
    group = _group_of(store)
    science = [d for d, g in sorted(group.items()) if g == 3]
    history = dict.fromkeys(science[:3], 1.0)
    ids, _ = model.recommend("a-new-reader", history, 5, exclude=history)
    assert len(ids) == 5 and not set(ids.tolist()) & set(history)
    assert sum(group[int(d)] == 3 for d in ids) >= 3  # more of what they read
    assert len(model.recommend("nobody", {}, 5)[0]) == 0
    assert len(model.scores("nobody", {10**9: 1.0})[0]) == 0  # nothing in the model
    everything, scores = model.scores("a-new-reader", history)
    assert np.array_equal(everything, model.items) and scores.dtype == np.float32
    leave_out = ids[:2].tolist()
    fewer, _ = model.recommend("a-new-reader", history, 5, exclude=[*history, *leave_out])
    assert not set(fewer.tolist()) & set(leave_out)
    assert len(model.recommend("a-new-reader", history, 100)[0]) == 40


def test_similar_and_explain(store: Store) -> None:
    model = FactorModel.train(store, factors=8, iterations=20)
    group = _group_of(store)
    doc = next(d for d, g in sorted(group.items()) if g == 1)
    ids, scores = model.similar(doc, 5)
    assert doc not in ids.tolist() and len(ids) == 5
    assert sum(group[int(d)] == 1 for d in ids) >= 4
    assert list(scores) == sorted(scores, reverse=True) and scores[0] <= 1.0 + 1e-6
    assert len(model.similar(10**9, 5)[0]) == 0
    user = "reader-0003"
    history = _history(store, user)
    top, _ = model.recommend(user, history, 1, exclude=history)
    why = model.explain(user, history, int(top[0]), n=3)
    assert 1 <= len(why) <= 3 and all(d in history for d, _ in why)
    assert [s for _, s in why] == sorted((s for _, s in why), reverse=True)
    # The contributions of the whole history add up to the score.
    everything = model.explain(user, history, int(top[0]), n=len(history))
    ids_all, scores_all = model.scores(user, history)
    score = float(scores_all[list(ids_all).index(int(top[0]))])
    assert sum(s for _, s in everything) == pytest.approx(score, rel=1e-3, abs=1e-4)
    bpr = FactorModel.train(store, model="bpr", factors=8, iterations=5)
    assert bpr.explain(user, history, int(top[0])) == []


def test_forget_and_remove_items(store: Store) -> None:
    model = FactorModel.train(store, factors=8, iterations=20)
    user = "reader-0003"
    history = _history(store, user)
    left: dict[int, dict[str, float]] = {d: {} for d in history}
    for batch in store.iter_events():
        for e in batch:
            if e.document_id in left and e.user != user:
                left[e.document_id][e.user] = left[e.document_id].get(e.user, 0.0) + 1.0
    others = {u: r for u, r in model.users.items() if u != user}
    before = {u: model.user_factors[r].copy() for u, r in others.items()}
    touched = [list(model.items).index(d) for d in history]
    untouched = np.setdiff1d(np.arange(len(model.items)), touched)
    items_before = model.item_factors.copy()
    model.forget(user, left)
    assert user not in model.users and len(model.user_factors) == 119
    assert all(np.array_equal(model.user_factors[model.users[u]], v) for u, v in before.items())
    assert np.array_equal(model.item_factors[untouched], items_before[untouched])
    assert not np.allclose(model.item_factors[touched], items_before[touched])
    assert model.params.get("forgotten", 0) == 0  # an exact update: no retrain due
    bpr = FactorModel.train(store, model="bpr", factors=8, iterations=5)
    bpr.forget(user)
    assert user not in bpr.users and bpr.params["forgotten"] == 1
    gone = [int(d) for d in model.items[:3]]
    model.remove_items(gone)
    assert all(d not in model for d in gone) and len(model.items) == 37
    ids, _ = model.recommend("someone", dict.fromkeys(model.items[:5].tolist(), 1.0), 40)
    assert not set(ids.tolist()) & set(gone) and len(ids) == 37


def test_staleness_counts_the_events_since_training(store: Store, tmp_path: Path) -> None:
    model = FactorModel.train(store, factors=4, iterations=2)
    stale = model_staleness(model, store)
    assert stale["events_since"] == 0 and stale["same_store"] is True
    new = [parse_event({"user": "late", "item": "0-0"}) for _ in range(3)]
    store_events(store, new)
    assert model_staleness(model, store)["events_since"] == 3
    other = _fill(f"sqlite:///{tmp_path / 'other.db'}", tmp_path)
    assert model_staleness(model, other)["same_store"] is False


def test_train_command_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.db"
    url = f"sqlite:///{db}"
    Store(url)
    ingest(Store(url), read_records(str(_docs(tmp_path))))
    assert main(["--db", url, "train"]) == 1
    assert "holds no readers' events" in capsys.readouterr().err
    _events = tmp_path / "events.jsonl"
    _events.write_text(
        "".join(json.dumps(e) + "\n" for e in click_log(_groups(), users=50, seed=2)), "utf-8"
    )
    assert main(["--db", url, "events", "import", str(_events)]) == 0
    assert main(["--db", url, "-q", "train", "--model", "als", "--factors", "6"]) == 0
    err = capsys.readouterr().err
    assert "50 readers, 40 documents" in err and f"{db}.index.als" in err
    model = FactorModel.load(f"{db}.index.als")
    assert model.params["factors"] == 6 and len(model.users) == 50
    assert main(["--db", url, "train", "--model", "bpr", "--index", str(tmp_path / "x"), "-q"]) == 0
    assert FactorModel.load(str(tmp_path / "x.bpr")).model == "bpr"
    assert main(["--db", url, "train", "--model", "bpr", "--alpha", "2"]) == 1
    assert "bpr has no parameter alpha" in capsys.readouterr().err


def test_eval_events_scores_als_and_bpr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    groups = {f"g{g}": [f"d{g}-{i}" for i in range(15)] for g in range(5)}
    log = click_log(groups, users=300, reads=(6, 12), seed=1)
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in log[:800]), "utf-8")
    assert main(["eval-events", str(path), "--models", "als,bpr", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["model"] for r in rows] == ["als", "bpr"]
    assert all(0.0 < r["ndcg@10"] <= 1.0 for r in rows)
    data = Interactions.from_triples([(e["user"], e["item"], 0.0) for e in log])
    scores = {
        s.model: s
        for s in evaluate_events(
            data,
            models=["popular", "als", "bpr"],
            options={"als": {"factors": 8}, "bpr": SMALL["bpr"]},
        )
    }
    assert scores["als"].ndcg > scores["popular"].ndcg * 1.5
    assert scores["bpr"].ndcg > scores["popular"].ndcg * 1.2


def test_train_from_postgresql(postgres, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    url = postgres.create_database()
    store = _fill(url, tmp_path, users=60)
    model = FactorModel.train(store)
    assert len(model.users) == 60 and len(model.items) == 40
    assert model_staleness(model, store)["same_store"] is True
    assert main(["--db", url, "-q", "train"]) == 1
    assert "pass --index PATH" in capsys.readouterr().err
    assert main(["--db", url, "-q", "train", "--index", str(tmp_path / "pg.index")]) == 0
    back = FactorModel.load(str(tmp_path / "pg.index.als"))
    assert np.array_equal(back.item_factors, model.item_factors)


def _trained(tmp_path: Path) -> str:
    """A built store beside its trained ALS model file: its URL (the file is m.db.index.als)."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    _fill(url, tmp_path)
    assert main(["--db", url, "-q", "build"]) == 0
    assert main(["--db", url, "-q", "train", "--model", "als", "--factors", "8"]) == 0
    return url


def test_an_edited_post_keeps_its_vector_in_the_models(tmp_path: Path) -> None:
    """An edit gives a post a new internal id; the models keep its trained vector under it,
    in the Recommender that made the edit, in the model files it saves, and in the files
    ``textrec ingest --update`` renames."""
    url = _trained(tmp_path)
    db = tmp_path / "m.db"
    rec = Recommender(url)
    assert "als" in rec.models
    reader = "reader-0003"
    # a post the reader has not read
    target = rec.recommend(reader, 5, mode="als", collapse=None).results[0].id

    def lists(r: Recommender) -> tuple[list[str], list[tuple[str, float]]]:
        similar = [m.id for m in r.similar(target, k=8, mode="als", collapse=None)]
        mine = r.recommend(reader, 40, mode="als", collapse=None).results
        return similar, [(x.id, round(x.score, 5)) for x in mine]

    before = lists(rec)
    assert len(before[0]) == 8 and before[1][0][0] == target
    old = rec.store.internal_ids([target])[target]
    rec.update(target, {"text": "분야의 소식을 고친 기사 본문입니다"})
    new = rec.store.internal_ids([target])[target]
    assert new != old and new in rec.models["als"] and old not in rec.models["als"]
    assert rec.models["als"].holds(np.array([new, old])).tolist() == [True, False]
    assert lists(rec) == before  # the same vector answers under the new id
    # another process rewrites the model file before this one saved: the edit still holds
    stale = FactorModel.load(f"{db}.index.als")
    assert old in stale
    stale.params["rewritten"] = 1
    stale.save(f"{db}.index.als")
    assert rec.load_models() and rec.models["als"].params.get("rewritten") == 1
    assert new in rec.models["als"] and lists(rec) == before
    rec.save()
    assert lists(Recommender(url)) == before  # the saved file holds the new id
    edit = tmp_path / "edit.jsonl"
    edit.write_text(json.dumps({"id": "2-0", "text": "사회 분야의 새 기사"}) + "\n", "utf-8")
    was = FactorModel.load(f"{db}.index.als")
    old = rec.store.internal_ids(["2-0"])["2-0"]
    assert main(["--db", url, "-q", "ingest", "--update", str(edit)]) == 0
    now = FactorModel.load(f"{db}.index.als")
    new = rec.store.internal_ids(["2-0"])["2-0"]
    assert new != old and new in now and old not in now
    assert now.items[was.items == old][0] == new
    assert np.array_equal(now.item_factors, was.item_factors)


def test_a_servers_periodic_save_keeps_edits_past_a_crash(tmp_path: Path) -> None:
    """A server saves its files while it runs (``--save-interval``): what another process
    reads then, as a start-up after a crash would, holds the edited post's vector. Before
    the save it does not: the edit lived only in the server's memory."""
    from textrec.serve.app import _save_files

    url = _trained(tmp_path)
    rec = Recommender(url)
    target = rec.recommend("reader-0003", 5, mode="als", collapse=None).results[0].id
    old = rec.store.internal_ids([target])[target]
    assert _save_files(rec) is None  # nothing changed: no file written
    rec.update(target, {"text": "분야의 소식을 고친 기사 본문입니다"})
    new = rec.store.internal_ids([target])[target]
    crashed = Recommender(url)  # the files as a crash now would leave them
    assert new not in crashed.models["als"] and old in crashed.models["als"]
    assert _save_files(rec) == rec.index_path
    restarted = Recommender(url)
    assert new in restarted.models["als"]
    assert [m.id for m in restarted.similar(target, k=5, mode="als", collapse=None)] == [
        m.id for m in rec.similar(target, k=5, mode="als", collapse=None)
    ]
    assert not rec.changed and _save_files(rec) is None


@pytest.mark.slow  # waits for the server's timer
def test_a_running_server_saves_its_files_every_interval(tmp_path: Path) -> None:
    import time

    from fastapi.testclient import TestClient

    from textrec.serve.app import create_app

    url = _trained(tmp_path)
    rec = Recommender(url)
    target = rec.recommend("reader-0003", 5, mode="als", collapse=None).results[0].id
    app = create_app(recommender=lambda: rec, save_interval=0.2, refresh_interval=None)
    with TestClient(app) as client:
        r = client.put(f"/documents/{target}", json={"text": "분야의 소식을 고친 기사 본문입니다"})
        assert r.status_code == 200, r.text
        new = rec.store.internal_ids([target])[target]
        deadline = time.monotonic() + 60
        while new not in FactorModel.load(f"{tmp_path / 'm.db'}.index.als"):
            assert time.monotonic() < deadline, "no save within 60 s of a 0.2 s interval"
            time.sleep(0.1)
        assert new in Recommender(url).models["als"]  # while the server still runs
    with pytest.raises(ValueError, match="save_interval"):
        create_app(recommender=lambda: rec, save_interval=0)

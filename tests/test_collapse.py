"""Related lists without copies: a re-post of the query, or a second copy of a result, is left
out, and the next result takes its place (Python, CLI and HTTP)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from textrec import Recommender, Store, build, ingest, read_records
from textrec.cli.main import main
from textrec.content.simhash import hamming
from textrec.recommend import DEFAULT_COLLAPSE
from textrec.serve.app import create_app

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"


def _rows() -> list[dict[str, object]]:
    return [json.loads(x) for x in FIXTURE.read_text("utf-8").splitlines()]


@pytest.fixture
def rec(tmp_path: Path) -> Recommender:
    rows = _rows()
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    ingest(store, read_records(str(path)))
    build(store)
    rec = Recommender(store)
    query = str(rows[0]["id"])
    # A re-post of the query, and two more copies of its best related post.
    best = rec.document(rec.similar(query, k=1, collapse=None)[0].id)
    copies = [
        {"id": "repost-of-query", "title": rows[0]["title"], "text": rows[0]["text"]},
        {"id": "copy-1", "title": best.title, "text": best.text},
        {"id": "copy-2", "title": f"{best.title} (다시 올립니다)", "text": best.text},
    ]
    assert rec.add(copies)[0] == ["repost-of-query", "copy-1", "copy-2"]
    return rec


def _ids(matches: list) -> list[str]:  # type: ignore[type-arg]
    return [m.id for m in matches]


def test_copies_are_collapsed_and_the_list_still_holds_k(rec: Recommender) -> None:
    query = str(_rows()[0]["id"])
    everything = rec.similar(query, k=40, collapse=None)
    ids = _ids(everything)
    assert "repost-of-query" in ids[:3]  # uncollapsed, the re-post ranks first
    copies = [i for i in ids[:10] if i in ("copy-1", "copy-2")]
    assert len(copies) == 2

    collapsed = rec.similar(query, k=10)
    assert rec.collapse == DEFAULT_COLLAPSE == 4
    assert len(collapsed) == 10
    got = _ids(collapsed)
    assert "repost-of-query" not in got
    assert len([i for i in got if i in ("copy-1", "copy-2", _ids(everything)[1])]) <= 2
    # The survivors are the uncollapsed ranking with the copies taken out, in order.
    code = {i: rec.index.get(rec.store.internal_ids([i])[i]) for i in [query, *ids]}
    survivors: list[str] = []
    for i in ids:
        if all(hamming(code[i], code[s]) > 4 for s in [query, *survivors]):
            survivors.append(i)
    assert got == survivors[:10]
    for n, i in enumerate(got):  # no two within 4 bits, nor any within 4 of the query
        assert all(hamming(code[i], code[j]) > 4 for j in [query, *got[:n]])


def test_the_list_is_refilled_past_the_first_candidates(rec: Recommender) -> None:
    """More candidates are fetched when copies take the first places: k=1 still gives 1."""
    query = str(_rows()[0]["id"])
    top = rec.similar(query, k=1)
    assert len(top) == 1 and top[0].id != "repost-of-query"
    assert rec.similar("copy-1", k=3)[0].id not in ("copy-2",)
    for mode in ("related", "hamming"):
        assert len(rec.similar(query, k=25, mode=mode)) == 25


def test_collapse_is_configurable(rec: Recommender) -> None:
    query = str(_rows()[0]["id"])
    assert "repost-of-query" in _ids(rec.similar(query, k=5, collapse=None))
    assert "repost-of-query" not in _ids(rec.similar(query, k=5, collapse=0))
    rec.collapse = None
    assert "repost-of-query" in _ids(rec.similar(query, k=5))
    rec.collapse = 4
    for bad in (65, -1, 2.5, True):
        with pytest.raises(ValueError, match="collapse"):
            rec.similar(query, collapse=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="collapse"):
        Recommender(rec.store, collapse=-1)
    text = rec.document(query)
    free = _ids(rec.similar_text(text.text, title=text.title, k=5))
    assert query not in free and "repost-of-query" not in free


def test_cli_and_http(rec: Recommender, capsys: pytest.CaptureFixture[str]) -> None:
    query = str(_rows()[0]["id"])
    rec.save()
    url = rec.store.url
    capsys.readouterr()
    assert main(["--db", url, "-q", "similar", query, "-k", "3", "--json"]) == 0
    default = json.loads(capsys.readouterr().out)["results"]
    assert (
        main(["--db", url, "-q", "similar", query, "-k", "3", "--json", "--collapse", "off"]) == 0
    )
    off = json.loads(capsys.readouterr().out)["results"]
    assert "repost-of-query" in [m["id"] for m in off]
    assert "repost-of-query" not in [m["id"] for m in default] and len(default) == 3
    with pytest.raises(SystemExit):
        main(["--db", url, "similar", query, "--collapse", "65"])
    with TestClient(create_app(url)) as c:
        path = f"/documents/{query}/similar"
        plain = c.get(path, params={"k": 3}).json()["results"]
        assert [m["id"] for m in plain] == [m["id"] for m in default]
        kept = c.get(path, params={"k": 3, "collapse": -1}).json()["results"]
        assert [m["id"] for m in kept] == [m["id"] for m in off]
        assert c.get(path, params={"collapse": 65}).status_code == 422

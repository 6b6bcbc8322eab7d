"""The HTTP API on the bundled Wikinews sample, through the ASGI app in process (httpx)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from tests.helpers import copy_database
from textrec import Recommender, Store, build, ingest, read_records
from textrec.serve.app import MAX_K, create_app

CORPUS = Path(__file__).resolve().parents[1] / "textrec" / "data" / "wikinews_ko.jsonl.gz"
TOKEN = "s3cret-token"
MARS = (
    "화성 탐사선이 붉은 행성의 표면에서 물의 흔적을 발견했다. 탐사선 로버는 암석 시료를 채취했다."
)


@pytest.fixture
def db(wikinews_db: Path, tmp_path: Path) -> str:
    """A private copy of the built sample (and its index files) for tests that write."""
    return copy_database(wikinews_db, tmp_path)


@pytest.fixture
def client(db: str) -> Iterator[TestClient]:
    with TestClient(create_app(db, token=TOKEN, max_body_bytes=64 * 1024)) as c:
        yield c


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_health_and_openapi(client: TestClient) -> None:
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json()["status"] == "ok" and r.json()["documents"] == 644
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    assert {"/documents", "/documents/{id}", "/documents/{id}/similar", "/similar"} <= set(paths)
    assert {"get", "post"} <= set(paths["/documents"]) and "delete" in paths["/documents/{id}"]
    # What the results mean is said per mode, not as one formula for every mode.
    match = schema["components"]["schemas"]["MatchOut"]["properties"]
    assert "`related`: the pivoted BM25 relatedness" in match["score"]["description"]
    assert "`hamming`: SimHash's estimate" in match["score"]["description"]
    assert {"type": "null"} in match["distance"]["anyOf"]


def test_index_is_built_once_at_startup(db: str) -> None:
    opened: list[Recommender] = []

    def factory() -> Recommender:
        opened.append(Recommender(db))
        return opened[-1]

    app = create_app(recommender=factory)
    assert opened == []  # nothing is loaded before start-up
    with TestClient(app) as c:
        assert len(opened) == 1
        for _ in range(3):
            assert c.get("/documents/wikinews-0001/similar?k=3").status_code == 200
        assert len(opened) == 1


def test_list_is_paged_and_searchable(client: TestClient) -> None:
    first = client.get("/documents", params={"limit": 5}).json()
    assert first["total"] == 644 and len(first["items"]) == 5
    second = client.get("/documents", params={"offset": 5, "limit": 5}).json()
    assert not {d["id"] for d in first["items"]} & {d["id"] for d in second["items"]}
    title = client.get("/documents/wikinews-0007").json()["title"]
    word = title.split()[0]
    found = client.get("/documents", params={"q": word, "limit": 200}).json()
    assert 1 <= found["total"] < 644
    assert all(word in d["title"] for d in found["items"])
    assert "wikinews-0007" in {d["id"] for d in found["items"]}
    none = client.get("/documents", params={"q": "존재하지않는제목xyz"}).json()
    assert none == {"total": 0, "offset": 0, "limit": 50, "items": []}
    assert client.get("/documents", params={"limit": 0}).status_code == 422
    assert client.get("/documents", params={"offset": -1}).status_code == 422


def test_document_and_its_similar(client: TestClient) -> None:
    doc = client.get("/documents/wikinews-0001").json()
    assert doc["id"] == "wikinews-0001" and doc["text"] and isinstance(doc["meta"], dict)
    r = client.get("/documents/wikinews-0001/similar", params={"k": 7})
    assert r.status_code == 200
    body = r.json()
    assert body["id"] == "wikinews-0001" and len(body["results"]) == 7
    expected = Recommender(client.app.state.recommender.store).similar("wikinews-0001", k=7)  # type: ignore[attr-defined]
    assert [m["id"] for m in body["results"]] == [m.id for m in expected]
    for m, e in zip(body["results"], expected, strict=True):
        assert m["distance"] == e.distance and m["shared_terms"] == e.shared_terms
        assert m["score"] == pytest.approx(e.score, abs=1e-6)
    assert "wikinews-0001" not in {m["id"] for m in body["results"]}


def test_similar_text(client: TestClient) -> None:
    doc = client.get("/documents/wikinews-0054").json()
    query = {"text": doc["text"], "title": doc["title"], "k": 3, "collapse": -1}
    r = client.post("/similar", json=query)
    assert r.status_code == 200
    top = r.json()["results"][0]
    assert top["id"] == "wikinews-0054" and top["distance"] == 0 and top["score"] > 0.99
    # By default (and with collapse=4) the document is a copy of the text, not related to it.
    for collapse in (None, 4):
        body = {**query, "collapse": collapse} if collapse else {**query, "collapse": None}
        results = client.post("/similar", json=body).json()["results"]
        assert len(results) == 3 and all(m["distance"] > 4 for m in results)
    for bad in (65, -2, "x"):
        assert client.post("/similar", json={**query, "collapse": bad}).status_code == 422


@pytest.mark.parametrize("k", [0, -1, MAX_K + 1, "ten"])
def test_k_out_of_bounds_is_422(client: TestClient, k: object) -> None:
    r = client.get(f"/documents/wikinews-0001/similar?k={k}")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "k"]
    r = client.post("/similar", json={"text": "버스 요금", "k": k})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["body", "k"]


def test_k_at_the_bounds(client: TestClient) -> None:
    assert len(client.get("/documents/wikinews-0001/similar?k=1").json()["results"]) == 1
    assert len(client.get(f"/documents/wikinews-0001/similar?k={MAX_K}").json()["results"]) == 100


def test_unknown_id_is_404(client: TestClient) -> None:
    for r in (
        client.get("/documents/no-such-doc"),
        client.get("/documents/no-such-doc/similar"),
        client.delete("/documents/no-such-doc", headers=AUTH),
    ):
        assert r.status_code == 404
        assert r.json() == {"detail": "no document with id 'no-such-doc' is stored"}


def test_malformed_json_is_400(client: TestClient) -> None:
    r = client.post(
        "/similar", content=b'{"text": "abc", ', headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 400
    assert r.json()["detail"].startswith("malformed JSON in the request body")
    r = client.post(
        "/documents", content=b"[1, 2", headers={**AUTH, "Content-Type": "application/json"}
    )
    assert r.status_code == 400


def test_missing_fields_are_422(client: TestClient) -> None:
    r = client.post("/similar", json={"title": "no text"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "text"]
    r = client.post("/similar", json={"text": ""})
    assert r.status_code == 422
    r = client.post("/documents", json={"documents": []}, headers=AUTH)
    assert r.status_code == 422


def test_body_over_the_limit_is_413(client: TestClient) -> None:
    big = "가" * (64 * 1024)
    r = client.post("/similar", json={"text": big})
    assert r.status_code == 413
    assert "larger than the limit of 65536 bytes" in r.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it streams
        yield b'{"text": "'
        for _ in range(100):
            yield b"a" * 1024
        yield b'"}'

    r = client.post("/similar", content=chunks(), headers={"Content-Type": "application/json"})
    assert r.status_code == 413
    # The server still answers afterwards.
    assert client.get("/health").status_code == 200


def test_add_and_remove_need_the_token(client: TestClient) -> None:
    doc = {"documents": [{"id": "mars-1", "title": "화성 탐사", "text": MARS}]}
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        r = client.post("/documents", json=doc, headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"] == "Bearer"
        assert client.delete("/documents/wikinews-0001", headers=headers).status_code == 401
    assert client.get("/documents/mars-1").status_code == 404
    assert client.get("/documents/wikinews-0001").status_code == 200
    # Reads need no token.
    assert client.get("/documents/wikinews-0001/similar").status_code == 200


def test_add_is_visible_at_once_and_remove_too(client: TestClient) -> None:
    body = {
        "documents": [
            {"id": "mars-1", "title": "화성 탐사", "text": MARS, "source": "test"},
            {"id": "", "text": "x"},
            {"id": "wikinews-0001", "text": "이미 저장된 문서"},
        ]
    }
    r = client.post("/documents", json=body, headers=AUTH)
    assert r.status_code == 201
    out = r.json()
    assert out["ids"] == ["mars-1"]
    assert [(e["index"], e["reason"]) for e in out["rejected"]] == [
        (1, "field 'id' is empty"),
        (2, "id already stored"),
    ]
    assert client.get("/health").json()["documents"] == 645
    assert client.get("/documents/mars-1").json()["meta"] == {"source": "test"}
    query = {"text": MARS, "title": "화성 탐사", "k": 1, "collapse": -1}
    top = client.post("/similar", json=query).json()["results"][0]
    assert top["id"] == "mars-1" and top["distance"] == 0
    similar = client.get("/documents/mars-1/similar?k=5").json()["results"]
    assert len(similar) == 5 and "mars-1" not in {m["id"] for m in similar}

    assert client.delete("/documents/mars-1", headers=AUTH).status_code == 204
    assert client.get("/documents/mars-1").status_code == 404
    assert client.get("/health").json()["documents"] == 644
    results = client.post("/similar", json={"text": MARS, "k": 10}).json()["results"]
    assert "mars-1" not in {m["id"] for m in results}
    assert client.delete("/documents/mars-1", headers=AUTH).status_code == 404


def test_add_with_nothing_valid_is_422(client: TestClient) -> None:
    r = client.post("/documents", json={"documents": [{"id": "a"}, 5]}, headers=AUTH)
    assert r.status_code == 422
    reasons = [e["reason"] for e in r.json()["rejected"]]
    assert reasons == ["missing field 'text'", "expected a JSON object"]
    assert r.json()["ids"] == []


def test_without_a_token_writes_are_open(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEXTREC_TOKEN", raising=False)
    with TestClient(create_app(db)) as c:
        r = c.post("/documents", json={"documents": [{"id": "m", "text": MARS}]})
        assert r.status_code == 201


def test_token_from_the_environment(db: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTREC_TOKEN", "from-env")
    with TestClient(create_app(db)) as c:
        doc = {"documents": [{"id": "m", "text": MARS}]}
        assert c.post("/documents", json=doc).status_code == 401
        r = c.post("/documents", json=doc, headers={"Authorization": "Bearer from-env"})
        assert r.status_code == 201


def test_errors_do_not_leak_tracebacks(db: str) -> None:
    class Broken(Recommender):
        def similar(self, id: str, k: int = 10) -> list:  # type: ignore[override,type-arg]
            raise RuntimeError("secret internal detail /etc/shadow")

    app = create_app(recommender=lambda: Broken(db))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/documents/wikinews-0001/similar")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error"}
    assert "secret" not in r.text and "Traceback" not in r.text


@pytest.mark.parametrize(
    "path",
    [
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2fetc%2fpasswd",
        "/static/%2e%2e/server.py",
        "/static//etc/passwd",
        "/static/../server.py",
        "/..%2f..%2fetc/passwd",
    ],
)
def test_no_file_outside_the_static_folder(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code in (404, 400, 405), (path, r.status_code)
    assert "root:" not in r.text and "create_app" not in r.text


def test_page_and_static_files(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert '<ol id="docs"' in r.text
    for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and kind in r.headers["content-type"]


def test_serve_binds_loopback_by_default() -> None:
    from textrec.cli.main import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port, args.max_body, args.token) == ("127.0.0.1", 8000, 1 << 20, None)


def test_serve_before_build_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from textrec.cli.main import main

    assert main(["--db", f"sqlite:///{tmp_path / 'empty.db'}", "serve", "--port", "1"]) == 1
    err = capsys.readouterr().err
    assert "run `textrec build` first" in err and "Traceback" not in err


def test_index_files_are_saved_at_shutdown_after_writes(db: str) -> None:
    path = db.removeprefix("sqlite:///") + ".index"
    before = Path(path).stat().st_mtime_ns
    with TestClient(create_app(db)) as c:
        assert c.get("/documents/wikinews-0001/similar?k=3").status_code == 200
    assert Path(path).stat().st_mtime_ns == before  # nothing changed: nothing written
    with TestClient(create_app(db)) as c:
        r = c.post("/documents", json={"documents": [{"id": "mars", "text": MARS}]})
        assert r.status_code in (200, 201), r.text
    rec = Recommender(db)
    assert "mars" in [m.id for m in rec.similar_text(MARS, k=1, collapse=None)]
    assert len(rec.index) == 645 and not rec.changed
    from textrec.artifacts.indexes import StoreIndexes

    assert not StoreIndexes.open(rec.store, rec.analyzer, path).changed  # the files match


def test_append_after_an_offline_build_asks_for_a_restart(db: str, tmp_path: Path) -> None:
    with TestClient(create_app(db)) as c:
        # Meanwhile another process ingests more documents and builds a new DF snapshot.
        store = Store(db)
        more = tmp_path / "more.jsonl"
        more.write_text('{"id": "m1", "text": "' + MARS + '"}\n', encoding="utf-8")
        ingest(store, read_records(str(more)))
        build(store)
        r = c.post("/documents", json={"documents": [{"id": "m2", "text": MARS}]})
        assert r.status_code == 503
        assert "restart the server" in r.json()["detail"]
        assert c.get("/documents/m2").status_code == 404  # nothing half-stored


def test_ids_with_slashes_are_reachable(client: TestClient) -> None:
    # (An id with a literal "%2F" is checked over real HTTP in test_security.py: the test
    # client decodes paths twice.)
    ids = ["2024/01/mars", "https://blog.example/posts/7?x=1#y", "notes/similar", "100%"]
    docs = [{"id": i, "title": "화성 탐사", "text": MARS} for i in ids]
    assert client.post("/documents", json={"documents": docs}, headers=AUTH).json()["ids"] == ids
    for i in ids:
        path = quote(i, safe="")
        assert client.get(f"/documents/{path}").json()["id"] == i
        similar = client.get(f"/documents/{path}/similar?k=3").json()
        assert similar["id"] == i and len(similar["results"]) == 3
        assert i not in {m["id"] for m in similar["results"]}
    # An unencoded slash reaches the same document.
    assert client.get("/documents/2024/01/mars").json()["id"] == "2024/01/mars"
    assert client.get("/documents/2024/01/mars/similar?k=1").json()["id"] == "2024/01/mars"
    # "notes/similar" is a document of its own, not the similar posts of "notes".
    assert client.get("/documents/notes%2Fsimilar").json()["id"] == "notes/similar"
    assert client.get("/documents/notes/similar").status_code == 404  # no document "notes"
    for i in ids:
        assert client.delete(f"/documents/{quote(i, safe='')}", headers=AUTH).status_code == 204
        assert client.get(f"/documents/{quote(i, safe='')}").status_code == 404


def test_repeated_keys_in_a_body_are_refused_whole(client: TestClient) -> None:
    json_headers = {**AUTH, "Content-Type": "application/json"}
    r = client.post(
        "/similar",
        content=b'{"text": "\xeb\xb2\x84\xec\x8a\xa4", "k": 1, "k": 50}',
        headers=json_headers,
    )
    assert r.status_code == 422
    assert r.json() == {"detail": "invalid JSON body: field 'k' appears more than once"}
    body = '{"documents": [{"id": "r-1", "text": "버스 요금", "meta": {"a": 1, "a": 2}}]}'
    r = client.post("/documents", content=body.encode(), headers=json_headers)
    assert r.status_code == 422 and "'a' appears more than once" in r.json()["detail"]
    assert client.get("/documents/r-1").status_code == 404  # nothing stored
    # The same keys in different objects are fine, and so is a body that is not JSON (400).
    ok = '{"documents": [{"id": "r-2", "text": "버스 요금 인상"}, {"id": "r-3", "text": "버스"}]}'
    assert client.post("/documents", content=ok.encode(), headers=json_headers).status_code == 201
    assert client.post("/similar", content=b"{not json", headers=json_headers).status_code == 400


def test_ids_with_a_newline_reach_the_routes(client: TestClient) -> None:
    # Starlette's `path` convertor stops at a newline: such an id used to match no route (a
    # bare 404 before authentication). Now a write without the token is refused as such, and
    # reads answer that there is no such document.
    assert client.delete("/documents/%0A0").status_code == 401
    for url in ("/documents/%0A0", "/documents/a%0Ab/similar"):
        r = client.get(url)
        assert r.status_code == 404
        assert r.json()["detail"] != "Not Found", url

"""Security basics, audited: SQL only through bound parameters, loopback by default, the
write token, limits, no path traversal, no stack traces. Complements tests/test_server.py."""

from __future__ import annotations

import ast
import json
import socket
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from textrec import Store, build, ingest, read_records
from textrec.serve.app import create_app

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "petitions_300.jsonl"
SQL_CALLS = {"text", "sql_text", "execute", "exec_driver_sql", "executescript", "executemany"}
TOKEN = "tok-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _sql_built_from_strings() -> list[str]:
    """Calls that execute SQL whose text is built at run time (f-string, %, +, .format)."""
    found = []
    for path in sorted([*REPO.glob("textrec/**/*.py"), *REPO.glob("jobs/*.py")]):
        tree = ast.parse(path.read_text("utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if name not in SQL_CALLS:
                continue
            arg = node.args[0]
            dynamic = isinstance(arg, ast.JoinedStr | ast.BinOp) or (
                isinstance(arg, ast.Call)
                and isinstance(arg.func, ast.Attribute)
                and arg.func.attr == "format"
            )
            if dynamic:
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    return found


def test_sql_is_never_built_from_strings() -> None:
    assert _sql_built_from_strings() == []


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> str:
    tmp = tmp_path_factory.mktemp("sec")
    src = tmp / "d.jsonl"
    src.write_text("".join(FIXTURE.read_text("utf-8").splitlines(True)[:30]), "utf-8")
    url = f"sqlite:///{tmp / 's.db'}"
    store = Store(url)
    ingest(store, read_records(str(src)))
    build(store)
    store.close()
    return url


@pytest.fixture
def client(db: str) -> TestClient:
    return TestClient(create_app(db, token=TOKEN, max_body_bytes=32 * 1024))


INJECTIONS = [
    "x'); DROP TABLE documents; --",
    "' OR '1'='1",
    '" OR ""="',
    "%' OR 1=1 --",
    "\\'; DELETE FROM fingerprints; --",
    "1; ATTACH DATABASE '/tmp/x.db' AS x; --",
]


def test_sql_metacharacters_are_data(client: TestClient) -> None:
    with client as c:
        n = c.get("/health").json()["documents"]
        for i, evil in enumerate(INJECTIONS):
            r = c.get("/documents", params={"q": evil})
            assert r.status_code == 200 and r.json()["total"] == 0, evil
            assert c.get(f"/documents/{evil}").status_code in (404,), evil
            doc = {"id": evil, "title": evil, "text": f"버스 정류장 노선 {i}"}
            r = c.post("/documents", json={"documents": [doc]}, headers=AUTH)
            assert r.status_code == 201 and r.json()["ids"] == [evil], r.text
            got = c.get("/documents", params={"q": evil}).json()
            assert [d["id"] for d in got["items"]] == [evil]
        assert c.get("/health").json()["documents"] == n + len(INJECTIONS)
        # LIKE wildcards in a title search match themselves only.
        titles = [d["title"] or "" for d in c.get("/documents?limit=200").json()["items"]]
        for wildcard in ("%", "_"):
            expected = sum(wildcard in t for t in titles)
            assert c.get("/documents", params={"q": wildcard}).json()["total"] == expected


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Bearer {TOKEN.upper()}"},
        {"X-Token": TOKEN},
        {"Cookie": f"token={TOKEN}"},
    ],
)
def test_writes_without_the_exact_token_are_refused(client: TestClient, headers: dict) -> None:  # type: ignore[type-arg]
    doc = {"documents": [{"id": "intruder", "text": "버스 정류장"}]}
    with client as c:
        assert c.post("/documents", json=doc, headers=headers).status_code == 401
        assert c.post(f"/documents?token={TOKEN}", json=doc, headers=headers).status_code == 401
        assert c.delete("/documents/petition-510", headers=headers).status_code == 401
        edit = {"text": "버스 정류장 노선"}
        assert c.put("/documents/petition-510", json=edit, headers=headers).status_code == 401
        assert c.get("/documents/petition-510").status_code == 200
        assert c.get("/documents/petition-510").json()["text"] != edit["text"]
        assert c.get("/documents/intruder").status_code == 404


@pytest.mark.parametrize("k", ["0", "-1", "101", "1000000", "1e3", "nan", "", "2**63"])
def test_k_is_bounded_on_both_endpoints(client: TestClient, k: str) -> None:
    with client as c:
        assert c.get(f"/documents/petition-510/similar?k={k}").status_code == 422
        raw = f'{{"text": "버스", "k": {json.dumps(k)}}}'
        assert c.post("/similar", content=raw.encode()).status_code == 422


@pytest.mark.parametrize(
    "query", ["offset=-1", "offset=9223372036854775808", "limit=0", "limit=201", "q=" + "a" * 201]
)
def test_paging_is_bounded(client: TestClient, query: str) -> None:
    with client as c:
        r = c.get(f"/documents?{query}")
        assert r.status_code == 422 and "Traceback" not in r.text


def test_declared_body_over_the_limit_is_refused_before_reading(client: TestClient) -> None:
    with client as c:
        r = c.post(
            "/documents",
            content=b"{}",
            headers={**AUTH, "Content-Length": str(10**9), "Content-Type": "application/json"},
        )
        assert r.status_code in (400, 413)


@pytest.mark.parametrize(
    "path",
    [
        "/documents/..%2F..%2F..%2Fetc%2Fpasswd",
        "/documents/%2Fetc%2Fpasswd/similar",
        "/static/%2e%2e%2f%2e%2e%2fserver.py",
        "/static/..\\..\\server.py",
        "/static/%c0%ae%c0%ae/server.py",
        "/openapi.json/../../etc/passwd",
    ],
)
def test_no_path_reaches_a_file(client: TestClient, path: str) -> None:
    with client as c:
        r = c.get(path)
    assert r.status_code in (400, 404), (path, r.status_code)
    assert "root:" not in r.text and "import " not in r.text


def test_a_database_failure_is_a_generic_500(db: str, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "broken.db"
    shutil.copy(db.removeprefix("sqlite:///"), copy)
    with TestClient(create_app(f"sqlite:///{copy}"), raise_server_exceptions=False) as c:
        rec = c.app.state.recommender  # type: ignore[attr-defined]
        with rec.store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE documents")
        r = c.get("/documents/petition-510")
    assert r.status_code == 500
    assert r.json() == {"detail": "internal server error"}
    assert "sqlite" not in r.text.lower() and "Traceback" not in r.text


def test_textrec_serve_listens_on_loopback_only(db: str) -> None:
    from .live_server import serve

    with serve(db) as base:
        port = int(base.rsplit(":", 1)[1])
        addresses = {
            info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)
        } - {"127.0.0.1", "127.0.1.1"}
        for addr in addresses:  # the machine's other addresses: nothing listens there
            with socket.socket() as s:
                s.settimeout(2)
                assert s.connect_ex((addr, port)) != 0, addr
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass


def test_ids_are_taken_literally_over_real_http(tmp_path: Path) -> None:
    """Percent signs and encoded slashes in ids reach the right document through a real
    server (which decodes a path once, as the page expects)."""
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    from .live_server import serve

    src = tmp_path / "d.jsonl"
    ids = ["a%2Fb", "a/b", "x/similar", "100% 확실"]
    records = [json.loads(line) for line in FIXTURE.read_text("utf-8").splitlines()[: len(ids)]]
    src.write_text(
        "".join(json.dumps({**r, "id": i}) + "\n" for r, i in zip(records, ids, strict=True))
    )
    url = f"sqlite:///{tmp_path / 'ids.db'}"
    store = Store(url)
    ingest(store, read_records(str(src)))
    build(store)
    store.close()

    def get(base: str, path: str) -> tuple[int, dict[str, object]]:
        try:
            with urllib.request.urlopen(base + path, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    with serve(url) as base:
        for i in ids:
            status, body = get(base, f"/documents/{quote(i, safe='')}")
            assert (status, body["id"]) == (200, i)
            status, body = get(base, f"/documents/{quote(i, safe='')}/similar?k=2")
            assert (status, body["id"]) == (200, i)
        status, body = get(base, "/documents/x/similar")  # similar posts of "x": none stored
        assert status == 404 and "'x'" in str(body["detail"])


REBIND = {"Host": "rebind.attacker.example:8000"}


def test_a_request_for_another_host_name_is_refused(tmp_path: Path, db: str) -> None:
    """DNS rebinding: a page on rebind.attacker.example, resolved to 127.0.0.1, must not
    reach a loopback server; the loopback names still do."""
    import shutil

    from textrec.serve.app import LOOPBACK_HOSTS

    copy = tmp_path / "hosts.db"
    shutil.copy(db.removeprefix("sqlite:///"), copy)
    app = create_app(f"sqlite:///{copy}", allowed_hosts=LOOPBACK_HOSTS)
    with TestClient(app, base_url="http://127.0.0.1:8000") as c:
        doc = c.get("/documents?limit=1").json()["items"][0]["id"]
        assert c.delete(f"/documents/{doc}", headers=REBIND).status_code == 400
        assert c.get("/documents?limit=1", headers=REBIND).status_code == 400
        post = {"documents": [{"id": "x", "text": "화성 탐사"}]}
        assert c.post("/documents", json=post, headers=REBIND).status_code == 400
        assert c.get(f"/documents/{doc}").status_code == 200  # not deleted
        for name in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST"):
            assert c.get("/health", headers={"Host": name}).status_code == 200, name


def test_allowed_hosts_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, db: str) -> None:
    monkeypatch.setenv("TEXTREC_ALLOWED_HOSTS", "api, blog.example")
    with TestClient(create_app(db), base_url="http://api:8000") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"Host": "blog.example"}).status_code == 200
        assert c.get("/health", headers={"Host": "localhost:8000"}).status_code == 400


def test_textrec_serve_on_loopback_answers_loopback_names_only(tmp_path: Path, db: str) -> None:
    import http.client
    import shutil

    from .live_server import serve

    copy = tmp_path / "live.db"
    shutil.copy(db.removeprefix("sqlite:///"), copy)

    def status(port: int, method: str, path: str, host: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request(method, path, headers={"Host": host})
            return conn.getresponse().status
        finally:
            conn.close()

    with serve(f"sqlite:///{copy}") as base:
        port = int(base.rsplit(":", 1)[1])
        doc = "petition-510"
        assert status(port, "GET", f"/documents/{doc}", f"127.0.0.1:{port}") == 200
        assert status(port, "DELETE", f"/documents/{doc}", f"rebind.attacker.example:{port}") == 400
        assert status(port, "GET", f"/documents/{doc}", f"localhost:{port}") == 200
        assert status(port, "DELETE", f"/documents/{doc}", f"localhost:{port}") == 204

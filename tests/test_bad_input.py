"""Malformed input through every entry point: `textrec ingest`, `textrec build --runner`, and
the HTTP API. Every bad record is rejected with a message naming it, the good ones are stored,
nothing crashes, and `textrec check` passes afterwards.

``BAD`` is the corpus of malformed kinds (RELIABILITY.md counts them); ``ODD_BUT_GOOD`` are
inputs that look suspicious but are valid documents and must be stored.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from textrec import Store, build, ingest, read_records
from textrec.check import check
from textrec.cli.main import main
from textrec.pipeline.runners import build_with_runner, export_documents
from textrec.serve.app import create_app

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"
BUS = "버스 정류장 노선 개편"  # a text with nouns


def _good(limit: int, offset: int = 0) -> list[dict[str, object]]:
    rows = []
    with open(FIXTURE, encoding="utf-8") as f:
        for n, line in enumerate(f):
            if n >= offset:
                rows.append(json.loads(line))
            if len(rows) >= limit:
                break
    return rows


def _j(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _nested(depth: int) -> object:
    value: object = "x"
    for n in range(depth):
        value = [value] if n % 2 else {"k": value}
    return value


STORED_ID = "petition-510"  # the first fixture document: stored before the bad input arrives

# (kind, line as bytes, what the rejection must say)
BAD: list[tuple[str, bytes, str]] = [
    ("truncated JSON", b'{"id": "b1", "text": ', "invalid JSON"),
    ("trailing garbage", b'{"id": "b2", "text": "' + BUS.encode() + b'"} x', "invalid JSON"),
    ("single-quoted keys", b"{'id': 'b3', 'text': 'x'}", "invalid JSON"),
    ("JSON array", b"[1, 2]", "expected a JSON object, got list"),
    ("JSON string", b'"just a string"', "expected a JSON object, got str"),
    ("JSON null", b"null", "expected a JSON object, got null"),
    ("missing id", _j({"text": BUS}), "missing field 'id'"),
    ("empty id", _j({"id": "", "text": BUS}), "field 'id' is empty"),
    ("blank id", _j({"id": " \t ", "text": BUS}), "field 'id' is empty"),
    ("numeric id", _j({"id": 7, "text": BUS}), "field 'id' must be a string, got int"),
    ("null id", _j({"id": None, "text": BUS}), "field 'id' must be a string, got null"),
    ("id of 513 characters", _j({"id": "x" * 513, "text": BUS}), "the limit is 512"),
    ("id with ESC", _j({"id": "b\x1b[31m", "text": BUS}), "control character U+001B"),
    ("id with a line break", _j({"id": "b\nb", "text": BUS}), "control character U+000A"),
    ("id of zero-width spaces", _j({"id": "\u200b\u200d\ufeff", "text": BUS}), "no visible"),
    ("id with a right-to-left override", _j({"id": "b\u202egnp.exe", "text": BUS}), "U+202E"),
    ("id in NFD", _j({"id": "\u1100\u1161-nfd", "text": BUS}), "'가-nfd'"),
    ("missing text", _j({"id": "b4"}), "missing field 'text'"),
    ("empty text", _j({"id": "b5", "text": ""}), "field 'text' is empty"),
    ("blank text", _j({"id": "b6", "text": " \u3000\n"}), "field 'text' is empty"),
    ("numeric text", _j({"id": "b7", "text": 3}), "field 'text' must be a string, got int"),
    ("list text", _j({"id": "b8", "text": [BUS]}), "field 'text' must be a string, got list"),
    ("object text", _j({"id": "b9", "text": {"a": BUS}}), "must be a string, got dict"),
    ("numeric title", _j({"id": "b10", "text": BUS, "title": 3}), "field 'title' must be"),
    ("list title", _j({"id": "b11", "text": BUS, "title": ["a"]}), "field 'title' must be"),
    ("invalid UTF-8", b'{"id": "b12", "text": "\xff\xfe \xeb\xb2\x84"}', "invalid UTF-8"),
    ("overlong UTF-8", b'{"id": "b13", "text": "\xc0\xaf"}', "invalid UTF-8"),
    ("UTF-16 line", '{"id": "b14", "text": "버스"}'.encode("utf-16-le"), "looks like UTF-16"),
    ("UTF-16 with its mark", '{"id": "b30", "text": "버스"}'.encode("utf-16"), "UTF-16"),
    (
        "lines ended by CR alone",
        _j({"id": "b31", "text": BUS}) + b"\r" + _j({"id": "b32", "text": BUS}),
        "end with CR alone",
    ),
    ("NUL byte", b'{"id": "b15", "text": "\x00' + BUS.encode() + b'"}', "NUL character"),
    ("NUL escape in text", b'{"id": "b16", "text": "a\\u0000 ' + BUS.encode() + b'"}', "NUL"),
    ("NUL escape in title", '{"id": "b17", "text": "버스", "title": "\\u0000"}'.encode(), "NUL"),
    ("lone surrogate in text", '{"id": "b18", "text": "\\ud800 버스"}'.encode(), "lone surrogate"),
    ("lone surrogate in id", '{"id": "\\udfff", "text": "버스"}'.encode(), "lone surrogate"),
    (
        "lone surrogate in meta",
        '{"id": "b19", "text": "버스", "m": ["\\udc00"]}'.encode(),
        "surrogate",
    ),
    ("5,000-digit number", b'{"id": "b20", "text": "a", "n": ' + b"9" * 5000 + b"}", "digits"),
    ("nested 100,000 deep", b"[" * 100_000, "nested too deeply"),
    ("repeated key", '{"id": "b21", "id": "b22", "text": "버스"}'.encode(), "'id' appears more"),
    ("text over the limit", _j({"id": "b23", "text": "가" * 1_000_001}), "the limit is 1,000,000"),
    ("metadata nested 300 deep", _j({"id": "b29", "text": BUS, "m": _nested(300)}), "nested"),
    ("duplicate id in the file", _j({"id": "good-dup", "text": BUS}), "duplicate id in this"),
    ("duplicate id of the store", _j({"id": STORED_ID, "text": BUS}), "id already stored"),
]

# Valid, if unusual: each must be stored.
ODD_BUT_GOOD: list[tuple[str, bytes]] = [
    ("mixed Hanja", _j({"id": "g-hanja", "text": "大韓民國 憲法 제1조 민주공화국 國民 주권"})),
    ("control characters in text", _j({"id": "g-ctl", "text": "버스\x07 정류장\x1b[0m 노선"})),
    ("emoji with Korean", _j({"id": "g-emoji", "text": "오늘 버스 😀 정류장 🎉"})),
    ("nouns only in the title", _j({"id": "g-title", "title": "버스 정류장", "text": "!!!"})),
    (
        "NaN and Infinity in metadata",
        '{"id": "g-nan", "text": "버스", "a": NaN, "b": 1e999}'.encode(),
    ),
    ("CRLF line end", _j({"id": "g-crlf", "text": "지하철 노선"}) + b"\r"),
    ("metadata with NUL", '{"id": "g-meta", "text": "버스", "m": "a\\u0000b"}'.encode()),
    ("an id with spaces and Hangul", _j({"id": "g 가 나", "text": "버스 요금"})),
    ("only Latin letters", _j({"id": "b25", "text": "the quick brown fox jumps"})),
    # No terms at all: still posts, stored with a warning (and no related posts).
    ("no nouns: punctuation", _j({"id": "b24", "text": "!!! ??? ..."})),
    ("only digits", _j({"id": "b26", "text": "0123 4567 89"})),
    ("only emoji", _j({"id": "b27", "text": "😀🎉👍🏽 🇰🇷"})),
    ("only zero-width spaces", _j({"id": "b28", "text": "\u200b\u200b\u2060"})),
]
WITHOUT_TERMS = {"b24", "b26", "b27", "b28"}


def write_bad_file(path: Path) -> tuple[dict[int, str], list[str]]:
    """The mixed file: ``({line: expected reason}, ids of the good records)``."""
    good = _good(20, offset=1)
    lines: list[bytes] = [_j(good[0])]
    expected: dict[int, str] = {}
    good_ids = [str(good[0]["id"])]
    lines.append(_j({"id": "good-dup", "text": "버스 정류장 노선"}))
    good_ids.append("good-dup")
    for n, (_, raw, reason) in enumerate(BAD):
        lines.append(raw)
        expected[len(lines)] = reason
        doc = good[1 + n % (len(good) - 1)]
        if n < len(good) - 1:
            lines.append(_j(doc))
            good_ids.append(str(doc["id"]))
    for _, raw in ODD_BUT_GOOD:
        lines.append(raw)
        good_ids.append(json.loads(raw.decode("utf-8").strip())["id"])
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")  # with a byte-order mark
    return expected, good_ids


def test_the_corpus_has_at_least_30_kinds() -> None:
    assert len({kind for kind, _ in ODD_BUT_GOOD}) == len(ODD_BUT_GOOD)
    assert len({kind for kind, _, _ in BAD}) == len(BAD) >= 30


@pytest.mark.parametrize(
    ("built_first", "workers"),
    [(True, 1), (False, 1), (True, 2)],
    ids=["after-build", "before-build", "after-build-2-workers"],
)
def test_ingest_rejects_each_bad_record_by_line(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], built_first: bool, workers: int
) -> None:
    store = Store(db_url)
    first = _good(1)[0]
    assert ingest(store, read_records(str(_write(tmp_path / "a.jsonl", [first])))).stored
    if built_first:
        build(store)
    path = tmp_path / "bad.jsonl"
    expected, good_ids = write_bad_file(path)
    capsys.readouterr()
    status = main(
        ["--db", db_url, "-q", "ingest", "-j", str(workers), "--batch-size", "7", str(path)]
    )
    err = capsys.readouterr().err
    assert status == 1  # records were rejected
    for line, reason in expected.items():
        hits = [e for e in err.splitlines() if e.startswith(f"rejected: {path}:{line}: ")]
        assert len(hits) == 1 and reason in hits[0], (line, reason, hits)
    assert f"{len(good_ids)} stored" in err and f"{len(expected)} rejected" in err
    assert err.count("rejected: ") == len(expected)
    warned = [e for e in err.splitlines() if e.startswith("warning: ")]
    assert len(warned) == len(WITHOUT_TERMS), warned
    assert all(f"{path}:" in w and "no terms" in w for w in warned)
    assert "Traceback" not in err
    stored = store.existing_external_ids([*good_ids, STORED_ID])
    assert stored == set(good_ids) | {STORED_ID}
    assert store.count_documents() == len(good_ids) + 1
    if not built_first:
        build(store)
    report = check(store, sample=1000)
    assert report.ok, report.problems
    assert report.facts["recomputed"] == len(good_ids) + 1
    assert main(["--db", db_url, "check"]) == 0


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return path


def test_a_50_mb_line_and_a_million_empty_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'big.db'}"
    good = _good(3)
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as f:
        f.write(_j(good[0]) + b"\n")
        f.write(b'{"id": "huge", "text": "' + b"a" * 50_000_000 + b'"}\n')
        f.write(b"\n" * 1_000_000)
        f.write(_j(good[1]) + b"\n")
        f.write(b"   \n\t\n" * 1000)
        f.write(_j(good[2]) + b"\n")
    assert main(["--db", db, "-q", "ingest", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2: field 'text' is 50,000,000 characters long" in err
    assert "(id 'huge')" in err and "3 stored, 1 rejected" in err
    store = Store(db)
    build(store)
    assert store.count_documents() == 3 and check(store).ok


def test_empty_and_blank_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'e.db'}"
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    blank = tmp_path / "blank.jsonl"
    blank.write_bytes(b"\n \n\r\n\t\n")
    assert main(["--db", db, "-q", "ingest", str(empty), str(blank)]) == 0
    assert "0 stored, 0 rejected" in capsys.readouterr().err
    assert main(["--db", db, "build"]) == 1
    assert "holds no documents: run `textrec ingest FILE` first" in capsys.readouterr().err


@pytest.mark.parametrize("workers", [1, 2])
def test_a_truncated_gzip_keeps_the_committed_batches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], workers: int
) -> None:
    import gzip

    db = f"sqlite:///{tmp_path / 'gz.db'}"
    whole = gzip.compress(b"".join(_j(d) + b"\n" for d in _good(40)))
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(whole[: len(whole) * 3 // 4])
    args = ["ingest", "-j", str(workers), "--batch-size", "10", str(path)]
    assert main(["--db", db, "-q", *args]) == 1
    err = capsys.readouterr().err
    assert "cannot read after line" in err and "Traceback" not in err
    n = Store(db).count_documents()
    assert 0 < n < 40  # every record read before the break, and the count is reported
    assert f"the {n} valid record(s) before it were stored" in err
    assert main(["--db", db, "check"]) == 0


def test_a_corrupt_deflate_stream_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import gzip

    whole = bytearray(gzip.compress(b"".join(_j(d) + b"\n" for d in _good(40))))
    whole[12] ^= 0xFF  # the first deflate block's header: "invalid code lengths set"
    path = tmp_path / "corrupt.jsonl.gz"
    path.write_bytes(bytes(whole))
    db = f"sqlite:///{tmp_path / 'z.db'}"
    assert main(["--db", db, "-q", "ingest", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{path}: cannot read: Error -3 while decompressing data" in err
    assert "the 0 valid record(s) before it were stored" in err


def test_a_fifo_is_read_and_a_folder_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import threading

    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    lines = b"".join(_j(d) + b"\n" for d in _good(3))

    def feed() -> None:
        with open(fifo, "wb") as f:
            f.write(lines)

    writer = threading.Thread(target=feed)
    writer.start()
    db = f"sqlite:///{tmp_path / 'f.db'}"
    assert main(["--db", db, "-q", "ingest", str(fifo)]) == 0
    writer.join(30)
    assert "3 stored, 0 rejected" in capsys.readouterr().err
    assert main(["--db", db, "-q", "ingest", str(tmp_path)]) == 1
    assert "is a folder, not a file" in capsys.readouterr().err


def test_jobs_count_bad_records_and_build_the_good(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`textrec build --runner inline --input FILE` where FILE holds the stored documents and
    every kind of bad line: the jobs count the bad ones by kind and the build succeeds."""
    db = f"sqlite:///{tmp_path / 'jobs.db'}"
    store = Store(db)
    assert len(ingest(store, read_records(str(_write(tmp_path / "g.jsonl", _good(12))))).stored)
    exported = tmp_path / "stored.jsonl"
    export_documents(store.iter_documents(), str(exported))
    bad = [raw for kind, raw, _ in BAD if not kind.startswith("duplicate")]
    mixed = tmp_path / "mixed.jsonl"
    good_lines = exported.read_bytes().splitlines()
    lines = [x for pair in zip(good_lines, bad, strict=False) for x in pair]
    lines += good_lines[len(bad) :] + bad[len(good_lines) :]
    mixed.write_bytes(b"\n".join(lines) + b"\n")
    report = build_with_runner(store, "inline", inputs=[str(mixed)])
    assert report.n_docs == 12
    assert sum(report.bad_records.values()) == len(bad), report.bad_records
    assert check(store).ok
    assert main(["--db", db, "-q", "build", "--runner", "inline", "--input", str(mixed)]) == 0
    err = capsys.readouterr().err
    assert "bad records (inline): invalid UTF-8:" in err
    assert main(["--db", db, "check"]) == 0


# The HTTP API ------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    db = f"sqlite:///{tmp_path / 'http.db'}"
    store = Store(db)
    ingest(store, read_records(str(_write(tmp_path / "g.jsonl", _good(10)))))
    build(store)
    store.close()
    return TestClient(create_app(db, token="t", max_body_bytes=8 << 20))


AUTH = {"Authorization": "Bearer t", "Content-Type": "application/json"}


def test_http_rejects_each_bad_document_and_stores_the_good(client: TestClient) -> None:
    with client as c:
        before = c.get("/health").json()["documents"]
        n_good = 0
        for kind, raw, reason in BAD:
            second = _j(_good(1, 20 + n_good)[0])
            if kind == "duplicate id in the file":  # twice in one request: the second is bad
                second = raw
            body = b'{"documents": [' + raw + b", " + second + b"]}"
            r = c.post("/documents", content=body, headers=AUTH)
            assert r.status_code in (201, 400, 413, 422), (kind, r.status_code, r.text)
            assert "Traceback" not in r.text and "internal server error" not in r.text, kind
            if r.status_code == 201:  # the bad one named, the good one stored
                out = r.json()
                assert len(out["ids"]) == 1 and len(out["rejected"]) == 1, (kind, out)
                assert out["rejected"][0]["index"] == (kind == "duplicate id in the file")
                assert reason.split(", got")[0] in out["rejected"][0]["reason"], (kind, out)
                n_good += 1
            elif kind == "repeated key":  # refused whole, as ambiguous JSON: nothing stored
                assert r.status_code == 422, (kind, r.text)
                detail = r.json()["detail"]
                assert detail == "invalid JSON body: field 'id' appears more than once", r.text
            else:  # the body itself is not JSON (or not UTF-8): nothing stored, 400
                assert r.status_code == 400, (kind, r.text)
                detail = r.json()["detail"]
                # FastAPI's own message when the body is not UTF-8 or json.loads raises
                # something else than a JSONDecodeError (RecursionError, a 5,000-digit number).
                assert "malformed JSON" in detail or "error parsing the body" in detail, kind
        for kind, raw in ODD_BUT_GOOD:
            r = c.post("/documents", content=b'{"documents": [' + raw + b"]}", headers=AUTH)
            assert r.status_code == 201, (kind, r.text)
        after = c.get("/health").json()["documents"]  # the indexed: not those without terms
        assert after == before + n_good + len(ODD_BUT_GOOD) - len(WITHOUT_TERMS)
        assert n_good >= 25
        db = c.app.state.recommender.store.url  # type: ignore[attr-defined]
    store = Store(db)
    assert check(store).ok, check(store).problems


@pytest.mark.parametrize(
    "body",
    [
        {"text": "\ud800 버스 정류장"},
        {"text": "버스\u0000 정류장"},
        {"text": "😀🎉"},
        {"text": "the quick brown fox"},
        {"text": "가" * 500_000, "k": 100},
        {"text": "버스", "title": "\udfff"},
        {"text": "버스", "k": 0},
        {"text": "버스", "k": 101},
        {"text": "버스", "k": "ten"},
        {"text": "버스", "k": 1.5},
        {"text": ""},
        {"text": None},
        {"text": ["버스"]},
        {},
        [],
        "버스",
    ],
)
def test_http_similar_never_fails_on_odd_text(client: TestClient, body: object) -> None:
    raw = json.dumps(body, ensure_ascii=True).encode()
    with client as c:
        r = c.post("/similar", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code in (200, 400, 422), r.text
    assert "internal server error" not in r.text
    if r.status_code == 200:
        assert isinstance(r.json()["results"], list)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"\xff\xfe",
        b"null",
        b"[]",
        b'{"documents": []}',
        b'{"documents": {}}',
        b'{"documents": null}',
        b'{"documents": [1, "a", null, []]}',
        b"\x00" * 100,
    ],
)
def test_http_add_with_nothing_valid_never_fails(client: TestClient, raw: bytes) -> None:
    with client as c:
        r = c.post("/documents", content=raw, headers=AUTH)
        assert r.status_code in (400, 422), (raw, r.status_code, r.text)
        assert "internal server error" not in r.text
        assert c.get("/health").json()["documents"] == 10


def test_nul_in_an_id_or_a_title_search_is_an_answer_not_an_error(
    db_url: str, tmp_path: Path
) -> None:
    """PostgreSQL refuses NUL in a query (500s); SQLite's LIKE stopped at it (every title
    matched). No stored id or title can hold one, so nothing matches."""
    store = Store(db_url)
    ingest(store, read_records(str(_write(tmp_path / "d.jsonl", _good(5)))))
    build(store)
    store.close()
    with TestClient(create_app(db_url, token="t")) as c:
        r = c.get("/documents", params={"q": "\x00"})
        assert (r.status_code, r.json()["total"], r.json()["items"]) == (200, 0, [])
        assert c.get("/documents", params={"q": "a\x00b"}).json()["total"] == 0
        for path in ("/documents/a%00b", "/documents/%00", "/documents/a%00b/similar"):
            r = c.get(path)
            assert r.status_code == 404 and "is stored" in r.json()["detail"], path
        assert c.delete("/documents/a%00b", headers=AUTH).status_code == 404
        assert c.get("/health").json()["documents"] == 5


def test_metadata_at_the_nesting_limit_is_stored_and_read_back(client: TestClient) -> None:
    from textrec.pipeline.records import MAX_META_DEPTH

    deep = {"id": "deep", "text": BUS, "m": _nested(MAX_META_DEPTH)}
    deeper = {"id": "deeper", "text": BUS, "m": _nested(MAX_META_DEPTH + 1)}
    with client as c:
        r = c.post("/documents", json={"documents": [deep, deeper]}, headers=AUTH)
        assert r.status_code == 201 and r.json()["ids"] == ["deep"]
        assert "nested more than 64 levels" in r.json()["rejected"][0]["reason"]
        got = c.get("/documents/deep")
        assert got.status_code == 200 and got.json()["meta"]["m"] == deep["m"]


def test_check_names_a_document_stored_with_too_deep_metadata(tmp_path: Path) -> None:
    """Stored before ingest refused such metadata: the API could never return it."""
    from textrec.pipeline.records import MAX_META_DEPTH
    from textrec.store.sql import NewDocument

    db = f"sqlite:///{tmp_path / 'deep.db'}"
    store = Store(db)
    ingest(store, read_records(str(_write(tmp_path / "g.jsonl", _good(5)))))
    build(store)
    from textrec.content.analyzer import Analyzer

    terms = Analyzer().term_counts(BUS)
    store.add_documents(
        [NewDocument("deep", BUS, None, {"m": _nested(MAX_META_DEPTH + 200)}, terms)]
    )
    build(store)
    report = check(store, sample=1000)
    assert any("'deep': metadata field 'm' is nested more than 64" in p for p in report.problems)

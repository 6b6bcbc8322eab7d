"""The `textrec` command line, end to end on real Mecab and SQLite, and bad input."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from textrec.cli.main import main
from textrec.content.simhash import parse_fingerprint
from textrec.store.sql import Store

GOOD = [
    {
        "id": "bus-1",
        "title": "버스 요금 인상",
        "text": "서울시가 시내버스 요금을 인상한다. 시민들은 버스 요금 인상에 반대했다.",
    },
    {
        "id": "bus-2",
        "title": "버스 요금",
        "text": "시내버스 요금 인상 계획이 발표되었다. 버스 회사와 시민의 의견이 갈렸다.",
    },
    {
        "id": "soccer-1",
        "title": "축구 경기",
        "text": "국가대표 축구 선수들이 월드컵 예선 경기에서 승리했다.",
        "label": "sport",
    },
    {
        "id": "soccer-2",
        "title": "월드컵",
        "text": "월드컵 본선에 진출한 축구 대표팀 감독이 선수 명단을 발표했다.",
    },
    {
        "id": "weather-1",
        "title": "태풍",
        "text": "태풍이 남부 지방에 상륙해 비바람 피해가 예상된다. 기상청은 주의를 당부했다.",
    },
]


def write_jsonl(path: Path, rows: list[object]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return path


@pytest.fixture
def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def run(db: str, *args: str) -> int:
    return main(["--db", db, "-q", *args])


def test_every_subcommand_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in [
        "ingest",
        "build",
        "similar",
        "query",
        "fingerprint",
        "stats",
        "check",
        "migrate",
        "demo",
    ]:
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
        assert "usage: textrec " + cmd in capsys.readouterr().out


def test_ingest_build_similar_query(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corpus = write_jsonl(tmp_path / "c.jsonl", GOOD)
    assert run(db, "ingest", str(corpus)) == 0
    assert "5 stored" in capsys.readouterr().err
    assert run(db, "build") == 0
    capsys.readouterr()
    assert run(db, "similar", "bus-1", "soccer-1", "-k", "2", "--json") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert first["query"] == "bus-1"
    assert first["results"][0]["id"] == "bus-2"
    assert set(first["results"][0]) == {"id", "title", "distance", "score", "shared_terms"}
    assert "버스" in first["results"][0]["shared_terms"]  # the terms the text output shows
    assert all(r["id"] != "bus-1" for r in first["results"])
    assert run(db, "similar", "soccer-1") == 0
    out = capsys.readouterr().out
    assert out.startswith("soccer-1  축구 경기") and "rank" in out
    assert run(db, "query", "월드컵 축구 대표팀 선수", "-k", "1", "--json") == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["id"].startswith("soccer")
    assert run(db, "fingerprint", "버스 요금 인상") == 0
    fp = capsys.readouterr().out.strip()
    assert len(fp) == 16 and parse_fingerprint(fp) >= 0
    assert run(db, "stats", "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["documents"] == 5 and stats["indexed"] == 5 and stats["index_bytes"] == 80
    assert stats["related_index_bytes"] > 0


def test_build_is_idempotent_and_append_is_searchable(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(db, "ingest", str(write_jsonl(tmp_path / "a.jsonl", GOOD[:4])))
    run(db, "build")
    store = Store(db)
    first = store.current_snapshot_id()
    run(db, "build")
    assert store.current_snapshot_id() == first
    # Appended after the build: fingerprinted at ingest against the current snapshot.
    run(db, "ingest", str(write_jsonl(tmp_path / "b.jsonl", GOOD[4:])))
    assert "1 fingerprinted" in capsys.readouterr().err
    assert run(db, "query", "태풍 피해 기상청", "-k", "1", "--json") == 0
    assert json.loads(capsys.readouterr().out)["results"][0]["id"] == "weather-1"


def test_query_before_build_says_to_build(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(db, "ingest", str(write_jsonl(tmp_path / "a.jsonl", GOOD)))
    capsys.readouterr()
    assert run(db, "similar", "bus-1") == 1
    assert "run `textrec build` first" in capsys.readouterr().err
    assert run(db, "query", "버스") == 1
    assert "run `textrec build` first" in capsys.readouterr().err


def test_unknown_id_is_a_clear_error(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(db, "ingest", str(write_jsonl(tmp_path / "a.jsonl", GOOD)))
    run(db, "build")
    capsys.readouterr()
    assert run(db, "similar", "nope") == 1
    assert "no document with id 'nope'" in capsys.readouterr().err


def test_bad_input_is_reported_with_file_and_line(
    db: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    big = "가" * 5_000_001
    rows: list[object] = [
        GOOD[0],  # 1 good
        '{"id": "x", "text": ',  # 2 invalid JSON
        {"title": "no id", "text": "버스"},  # 3 missing id
        {"id": "", "text": "버스"},  # 4 empty id
        {"id": "t1"},  # 5 missing text
        {"id": "t2", "text": "   "},  # 6 empty text
        {"id": 7, "text": "버스"},  # 7 non-string id
        {"id": "t3", "text": ["버스"]},  # 8 non-string text
        {"id": "t4", "text": "버스", "title": 3},  # 9 non-string title
        GOOD[0],  # 10 duplicate in the file
        {"id": "t5", "text": "!!! ??? ..."},  # 11 no nouns
        {"id": "t6", "text": big},  # 12 a 5 MB document
        "[1, 2]",  # 13 not an object
        GOOD[1],  # 14 good
    ]
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with open(path, "ab") as f:
        f.write(b'{"id": "t7", "text": "\xff\xfe \xeb\xb2\x84\xec\x8a\xa4"}\n')  # 15 invalid UTF-8
    assert run(db, "ingest", str(path)) == 1
    err = capsys.readouterr().err
    expected = {
        2: "invalid JSON",
        3: "missing field 'id'",
        4: "field 'id' is empty",
        5: "missing field 'text'",
        6: "field 'text' is empty",
        7: "field 'id' must be a string",
        8: "field 'text' must be a string",
        9: "field 'title' must be a string",
        10: "duplicate id in this input",
        12: "field 'text' is 5,000,001 characters long; the limit is 1,000,000",
        13: "expected a JSON object",
        15: "invalid UTF-8",
    }
    for line, reason in expected.items():
        assert f"bad.jsonl:{line}: {reason}" in err, (line, err)
    assert "warning: " in err and "bad.jsonl:11: no terms found" in err  # stored all the same
    assert "3 stored, 1 without terms, 12 rejected" in err
    store = Store(db)
    assert store.count_documents() == 3
    # The same file again: every good record is now a duplicate against the store.
    assert run(db, "ingest", "--skip-invalid", str(path)) == 0
    assert "bad.jsonl:1: id already stored (id 'bus-1')" in capsys.readouterr().err
    assert store.count_documents() == 3


def test_gzip_and_stdin(db: str, tmp_path: Path) -> None:
    gz = tmp_path / "c.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        for row in GOOD[:2]:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    assert run(db, "ingest", str(gz)) == 0
    proc = subprocess.run(
        [sys.executable, "-m", "textrec", "--db", db, "-q", "ingest", "-"],
        input="\n".join(json.dumps(r, ensure_ascii=False) for r in GOOD[2:]) + "\n",
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert Store(db).count_documents() == 5


def test_missing_file_is_a_clear_error(db: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(db, "ingest", "/nonexistent/x.jsonl") == 1
    assert "/nonexistent/x.jsonl: no such file" in capsys.readouterr().err


def test_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'demo.db'}"
    assert main(["--db", db, "-q", "demo"]) == 0
    out = capsys.readouterr().out
    assert "644 documents stored, 0 rejected" in out
    assert out.count("rank") == 4  # three related lists, one readers-also-read list
    assert "synthetic reader events stored; readers also read:" in out
    readers = out.split("readers also read:")[1]
    assert readers.count("  1  wikinews-") == 1  # a non-empty list
    # The noisy shared terms (counters, dates, pronouns, dependent nouns) are gone;
    # the code judges them by the tag Mecab gave, this list only checks the outcome.
    shown = [
        t for line in out.splitlines() if "[" in line for t in line.split("[")[1][:-1].split(", ")
    ]
    assert len(shown) > 40 and not {"명", "월", "일", "년", "그", "것", "데"} & set(shown)
    assert "fifa" in shown  # Latin words are terms
    assert main(["--db", db, "-q", "demo"]) == 1  # not fresh any more

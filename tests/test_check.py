"""`textrec check` finds what is wrong, and passes on a consistent store."""

from __future__ import annotations

import json
import struct
import zipfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from textrec.cli.main import main
from textrec.store.sql import Store

DOCS = [
    {"id": "a", "title": "버스 요금", "text": "시내버스 요금 인상 발표. 시민 반대."},
    {"id": "b", "title": "축구", "text": "축구 대표팀 선수 경기 승리."},
    {"id": "c", "title": "태풍", "text": "태풍 상륙 비바람 피해 기상청 예보."},
    {"id": "d", "title": "선거", "text": "국회의원 선거 투표율 발표와 개표 결과."},
]


@pytest.fixture
def built(tmp_path: Path) -> str:
    path = tmp_path / "docs.jsonl"
    path.write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS), encoding="utf-8")
    db = f"sqlite:///{tmp_path / 'check.db'}"
    assert main(["--db", db, "-q", "ingest", str(path)]) == 0
    assert main(["--db", db, "-q", "build"]) == 0
    return db


def test_consistent_store_passes(built: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", built, "check"]) == 0
    out = capsys.readouterr().out
    assert "ok: the store, its DF snapshot and the index agree" in out
    assert "recomputed: 4" in out


def test_ingest_after_build_keeps_the_index_file_current(
    built: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    more = tmp_path / "more.jsonl"
    more.write_text(json.dumps({"id": "e", "text": "지하철 요금 인상"}, ensure_ascii=False))
    assert main(["--db", built, "-q", "ingest", str(more)]) == 0
    capsys.readouterr()
    assert main(["--db", built, "check"]) == 0
    captured = capsys.readouterr()
    assert "indexed: 5" in captured.out and "warning" not in captured.err


def test_tampered_fingerprint_is_found(built: str, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(built)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE fingerprints SET fp = fp + 1 WHERE document_id = 1"))
    assert main(["--db", built, "check"]) == 1
    err = capsys.readouterr().err
    assert "problem: document 'a': stored fingerprint" in err
    # The file claims the store's present state (the tamper bypassed textrec, so the
    # generation did not move) but disagrees with it: it would be used as it is.
    assert "problem: index file" in err and "does not match it" in err


def test_missing_fingerprint_and_wrong_scheme(
    built: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = Store(built)
    with store.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM fingerprints WHERE document_id = 2"))
        conn.execute(sa.text("UPDATE fingerprints SET scheme = 'old' WHERE document_id = 3"))
    assert main(["--db", built, "check"]) == 1
    err = capsys.readouterr().err
    assert "1 document(s) have no fingerprint" in err and "'b'" in err
    assert "1 fingerprint(s) have scheme 'old'" in err


def test_corrupt_snapshot_payload(built: str, capsys: pytest.CaptureFixture[str]) -> None:
    import gzip

    store = Store(built)
    sid = store.current_snapshot_id()
    record = store.snapshot_record(sid)  # type: ignore[arg-type]
    assert record is not None
    tampered = record["data"].replace(b'"n_docs":4', b'"n_docs":5')
    with store.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE df_snapshots SET data = :d WHERE id = :i"),
            {"d": gzip.compress(tampered), "i": sid},
        )
    assert main(["--db", built, "check"]) == 1
    assert "checksum mismatch" in capsys.readouterr().err


def test_corrupt_index_file(built: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = built.removeprefix("sqlite:///") + ".index"
    data = bytearray(Path(path).read_bytes())
    data[-1] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    assert main(["--db", built, "check"]) == 1
    assert "checksum" in capsys.readouterr().err


def test_before_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--db", f"sqlite:///{tmp_path / 'x.db'}", "check"]) == 0
    assert "snapshot: None" in capsys.readouterr().out


def test_corrupt_related_index_file(built: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = Path(built.removeprefix("sqlite:///") + ".index.related")
    assert path.exists()
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:  # flip a byte of the postings' data, not of a zip header
        member = z.getinfo("packed.npy")
    name_len, extra_len = struct.unpack_from("<HH", data, member.header_offset + 26)
    start = member.header_offset + 30 + name_len + extra_len
    data[start + member.compress_size // 2] ^= 0xFF  # the member's CRC no longer matches
    path.write_bytes(bytes(data))
    assert main(["--db", built, "check"]) == 1
    err = capsys.readouterr().err
    assert "not a readable textrec related-posts index" in err and str(path) in err


def test_missing_related_index_file_is_a_warning(
    built: str, capsys: pytest.CaptureFixture[str]
) -> None:
    Path(built.removeprefix("sqlite:///") + ".index.related").unlink()
    assert main(["--db", built, "check"]) == 0
    assert "related-posts index file" in capsys.readouterr().err


def _set_related_format(path: Path, fmt: str) -> None:
    import json

    import numpy as np

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["header"]).decode())
    header["format"] = fmt
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def test_a_related_file_of_an_earlier_format_is_a_warning(
    built: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """What upgrading textrec leaves: the server rebuilds it at start-up, the build rewrites
    it; not damage. A format no textrec wrote is still a problem."""
    path = Path(built.removeprefix("sqlite:///") + ".index.related")
    _set_related_format(path, "textrec-related/3")
    assert main(["--db", built, "check"]) == 0
    err = capsys.readouterr().err
    assert f"warning: {path} is of an earlier textrec's format ('textrec-related/3'" in err
    assert "until `textrec build` writes it again" in err
    _set_related_format(path, "textrec-related/99")
    assert main(["--db", built, "check"]) == 1
    err = capsys.readouterr().err
    assert "problem: " in err and "'textrec-related/99' is not 'textrec-related/4'" in err
    assert main(["--db", built, "-q", "build"]) == 0
    assert main(["--db", built, "check"]) == 0
    assert "related-posts" not in capsys.readouterr().err


def test_leftover_temporary_files_are_a_warning(
    built: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = Path(built.removeprefix("sqlite:///"))
    (db.parent / f".{db.name}.index.0123456789abcdef.tmp").write_bytes(b"half")
    (db.parent / f".{db.name}.index.related.fedcba9876543210.tmp").write_bytes(b"half")
    assert main(["--db", built, "check"]) == 0
    err = capsys.readouterr().err
    assert "2 temporary file(s) of interrupted index writes" in err

"""The mrjob jobs against the in-process pipeline, on real Mecab and real runners.

The reference is the in-process build (``textrec.pipeline.build.build``) over 300 real petitions
(``tests/fixtures/petitions_300.jsonl``). Every runner must reproduce its DF snapshot byte for
byte (same id) and every fingerprint: inline, local (two processes) and Spark (pyspark on a
``local[2]`` master).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import missing
from textrec.cli.main import main
from textrec.content.analyzer import Analyzer
from textrec.content.hamming import HammingIndex
from textrec.content.simhash import SCHEME, fingerprint_hex
from textrec.content.tfidf import DFSnapshot
from textrec.jobs._documents import reason_kind
from textrec.pipeline.build import build
from textrec.pipeline.ingest import ingest
from textrec.pipeline.records import Record, read_records
from textrec.pipeline.runners import (
    JobsError,
    build_with_runner,
    fingerprint_new_with_runner,
    run_df_job,
    run_fingerprint_job,
)
from textrec.store.sql import NewDocument, Store

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"
REPO = Path(__file__).resolve().parents[1]


class Reference:
    """The in-process build of the fixture: snapshot bytes and fingerprints by external id."""

    def __init__(self, snapshot: DFSnapshot, fingerprints: dict[str, str]) -> None:
        self.snapshot = snapshot
        self.fingerprints = fingerprints


def stored_fingerprints(store: Store, snapshot_id: str) -> dict[str, str]:
    ids, fps, scheme = store.fingerprints(snapshot_id)
    assert scheme in (SCHEME, None)
    docs = store.get_documents([int(i) for i in ids])
    return {
        docs[int(i)].external_id: fingerprint_hex(int(fp)) for i, fp in zip(ids, fps, strict=True)
    }


def by_id(lines: list[dict[str, str]], snapshot_id: str) -> dict[str, str]:
    assert all(line["scheme"] == SCHEME for line in lines)
    assert all(line["snapshot"] == snapshot_id for line in lines)
    found = {line["id"]: line["fingerprint"] for line in lines}
    assert len(found) == len(lines), "a document was fingerprinted twice"
    return found


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, mecab: object) -> Reference:
    folder = tmp_path_factory.mktemp("ref")
    store = Store(f"sqlite:///{folder / 'ref.db'}")
    report = ingest(store, read_records(str(FIXTURE)))
    assert len(report.stored) == 300 and not report.rejected
    built = build(store, index_path=str(folder / "ref.index"))
    current = store.current_snapshot()
    assert current is not None
    fps = stored_fingerprints(store, built.snapshot_id)
    store.close()
    assert len(fps) == 300
    return Reference(current[0], fps)


def ingested_store(path: Path, limit: int | None = None) -> Store:
    store = Store(f"sqlite:///{path}")
    records = list(read_records(str(FIXTURE)))[:limit]
    report = ingest(store, records)
    assert not report.rejected
    return store


# inline, local, spark: the same bytes as in process ----------------------------------------


def test_inline_jobs_match_inprocess_and_are_idempotent(reference: Reference) -> None:
    snapshot, bad = run_df_job([str(FIXTURE)], "inline")
    assert bad == {}
    assert snapshot.to_bytes() == reference.snapshot.to_bytes()
    assert snapshot.id == reference.snapshot.id
    again, _ = run_df_job([str(FIXTURE)], "inline")
    assert again.to_bytes() == snapshot.to_bytes()


def test_inline_fingerprints_match_inprocess_and_are_idempotent(
    reference: Reference, tmp_path: Path
) -> None:
    snapshot_path = tmp_path / "df.json"
    reference.snapshot.save(str(snapshot_path))
    lines, bad = run_fingerprint_job([str(FIXTURE)], str(snapshot_path), "inline")
    assert bad == {}
    assert by_id(lines, reference.snapshot.id) == reference.fingerprints
    again, _ = run_fingerprint_job([str(FIXTURE)], str(snapshot_path), "inline")
    assert again == lines


def _module(*args: str, cwd: Path) -> bytes:
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=cwd,
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-3000:]
    return proc.stdout


def test_no_top_level_jobs_package_is_installed(tmp_path: Path) -> None:
    # A top-level `jobs` in site-packages would shadow a user's own `jobs` module.
    probe = "import importlib.util as u; print(u.find_spec('jobs'), u.find_spec('textrec.jobs'))"
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    jobs, packaged = proc.stdout.split(" ", 1)
    assert jobs == "None" and "textrec/jobs" in packaged


@pytest.mark.slow
def test_job_scripts_and_modules_run_on_their_own_inline_and_local(
    reference: Reference, tmp_path: Path
) -> None:
    # The repository's thin script, as users run it (`python jobs/df.py -r ...`).
    proc = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "df.py"), "-r", "inline", str(FIXTURE)],
        cwd=tmp_path,
        capture_output=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-3000:]
    assert proc.stdout == reference.snapshot.to_bytes() + b"\n"
    out = _module("textrec.jobs.df", "-r", "inline", str(FIXTURE), cwd=tmp_path)
    assert out == reference.snapshot.to_bytes() + b"\n"
    (tmp_path / "df.json").write_bytes(out)

    out = _module(
        "textrec.jobs.fingerprint",
        "-r",
        "local",
        "--num-cores",
        "2",
        "--python-bin",
        sys.executable,
        "--df-snapshot",
        "df.json",
        str(FIXTURE),
        cwd=tmp_path,
    )
    text = out.decode("utf-8")
    lines = [json.loads(line) for line in text.splitlines()]
    assert by_id(lines, reference.snapshot.id) == reference.fingerprints
    assert list(lines[0]) == ["id", "fingerprint", "scheme", "snapshot"]
    assert all(len(line["fingerprint"]) == 16 for line in lines)


@pytest.mark.slow
def test_cli_build_on_the_local_runner(reference: Reference, tmp_path: Path) -> None:
    db = tmp_path / "local.db"
    assert main(["--db", f"sqlite:///{db}", "-q", "ingest", str(FIXTURE)]) == 0
    assert main(["--db", f"sqlite:///{db}", "-q", "build", "--runner", "local"]) == 0
    store = Store(f"sqlite:///{db}")
    assert store.current_snapshot_id() == reference.snapshot.id
    assert stored_fingerprints(store, reference.snapshot.id) == reference.fingerprints
    index = HammingIndex.load(f"{db}.index")
    assert index.snapshot_id == reference.snapshot.id
    assert len(index) == 300


def _spark_available() -> None:
    if shutil.which("java") is None:
        missing("spark", "Spark needs Java: apt-get install -y openjdk-17-jre-headless")
    try:
        import pyspark  # noqa: F401
    except ImportError:
        missing("spark", "pyspark is not installed (pip install 'textrec[spark]')")


@pytest.mark.slow
def test_build_on_spark_local_matches_inprocess(reference: Reference, tmp_path: Path) -> None:
    _spark_available()
    store = ingested_store(tmp_path / "spark.db")
    report = build_with_runner(store, "spark", cores=2)
    assert report.snapshot_id == reference.snapshot.id
    assert report.n_docs == 300 and report.fingerprinted == 300
    assert report.bad_records == {}
    current = store.current_snapshot()
    assert current is not None
    assert current[0].to_bytes() == reference.snapshot.to_bytes()
    assert stored_fingerprints(store, reference.snapshot.id) == reference.fingerprints


# bad records and empty input ----------------------------------------------------------------


def test_bad_records_are_counted_not_fingerprinted(tmp_path: Path) -> None:
    good = [json.loads(line) for line in FIXTURE.read_text("utf-8").splitlines()[:20]]
    hangul = {"id": "청원-한글", "title": "버스 요금", "text": "시내버스 요금 인상에 반대합니다."}
    bad_lines = [
        "{not json",
        json.dumps({"id": 7, "text": "버스 요금"}),
        json.dumps({"id": "no-text"}),
        json.dumps({"id": "empty-text", "text": "   "}),
        json.dumps({"id": "bad-title", "title": 3, "text": "버스 요금"}),
        json.dumps({"id": "no-nouns", "text": "!!! ... ???"}),
        json.dumps([1, 2]),
    ]
    lines = [json.dumps(d, ensure_ascii=False) for d in good]
    lines[5:5] = bad_lines
    lines.append(json.dumps(hangul, ensure_ascii=False))
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    expected_bad = {
        "invalid JSON": 1,
        "field 'id' must be a string": 1,
        "missing field 'text'": 1,
        "field 'text' is empty": 1,
        "field 'title' must be a string or null": 1,
        "expected a JSON object": 1,
    }
    snapshot, bad = run_df_job([str(path)], "inline")
    assert bad == expected_bad
    analyzer = Analyzer()
    # A document without terms is a document: it counts in N, and its fingerprint is 0.
    no_terms = {"id": "no-nouns", "text": "!!! ... ???"}
    docs = [*good, no_terms, hangul]
    counts = [analyzer.term_counts(d["text"], d.get("title")) for d in docs]
    assert counts[len(good)] == {}
    assert snapshot == DFSnapshot.from_documents(c.keys() for c in counts)

    snapshot_path = tmp_path / "df.json"
    snapshot.save(str(snapshot_path))
    out, bad = run_fingerprint_job([str(path)], str(snapshot_path), "inline")
    assert bad == expected_bad
    assert by_id(out, snapshot.id) == {
        d["id"]: fingerprint_hex(analyzer.fingerprint(c, snapshot))
        for d, c in zip(docs, counts, strict=True)
    }


def test_fingerprint_output_is_utf8_with_hangul_unescaped(tmp_path: Path) -> None:
    from textrec.jobs.fingerprint import UnicodeJSONValueProtocol

    value = {"id": "청원-1", "fingerprint": "00ff00ff00ff00ff", "scheme": SCHEME, "snapshot": "x"}
    raw = UnicodeJSONValueProtocol().write(None, value)
    assert "청원-1".encode() in raw and b"\\u" not in raw
    assert UnicodeJSONValueProtocol().read(raw) == (None, value)


def test_empty_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    snapshot, bad = run_df_job([str(empty)], "inline")
    assert (snapshot.n_docs, len(snapshot), bad) == (0, 0, {})
    snapshot_path = tmp_path / "df.json"
    snapshot.save(str(snapshot_path))
    assert run_fingerprint_job([str(empty)], str(snapshot_path), "inline") == ([], {})
    with pytest.raises(ValueError, match="holds no documents"):
        build_with_runner(Store(f"sqlite:///{tmp_path / 'empty.db'}"), "inline")


def test_reason_kind_drops_the_details() -> None:
    assert reason_kind("invalid JSON: Expecting value at column 3") == "invalid JSON"
    assert reason_kind("invalid UTF-8 at byte 12") == "invalid UTF-8"
    assert reason_kind("field 'id' must be a string, got int 5") == "field 'id' must be a string"
    long_text = "field 'text' is 1,000,001 characters long; the limit is 1,000,000 (raise it)"
    assert reason_kind(long_text) == "field 'text' is too long"


# append and re-snapshot through the store ---------------------------------------------------


@pytest.mark.slow
def test_append_then_resnapshot_through_the_store(reference: Reference, tmp_path: Path) -> None:
    db = tmp_path / "grow.db"
    store = ingested_store(db, limit=250)
    first = build_with_runner(store, "inline")
    assert first.n_docs == 250 and first.fingerprinted == 250
    old = stored_fingerprints(store, first.snapshot_id)

    # 50 documents arrive without fingerprints (a bulk load into the store).
    rest = [r for r in read_records(str(FIXTURE)) if isinstance(r, Record)][250:]
    store.add_documents([NewDocument(r.id, r.text, r.title, r.meta) for r in rest])
    appended = fingerprint_new_with_runner(store, "inline")
    assert appended.snapshot_id == first.snapshot_id
    assert appended.fingerprinted == 50
    assert store.current_snapshot_id() == first.snapshot_id
    now = stored_fingerprints(store, first.snapshot_id)
    assert {k: now[k] for k in old} == old  # old fingerprints were not recomputed or changed
    snap = store.current_snapshot()
    assert snap is not None
    analyzer = Analyzer()
    for r in rest:
        fp = analyzer.fingerprint(analyzer.term_counts(r.text, r.title), snap[0])
        assert now[r.id] == fingerprint_hex(fp)
    index = HammingIndex.load(f"{db}.index")
    assert (index.snapshot_id, len(index)) == (first.snapshot_id, 300)
    assert main(["--db", f"sqlite:///{db}", "-q", "check"]) == 0
    # Nothing left to append: a second run changes nothing.
    assert fingerprint_new_with_runner(store, "inline").fingerprinted == 0

    # Re-snapshot: the grown corpus gets the reference snapshot; everything is re-fingerprinted.
    second = build_with_runner(store, "inline")
    assert second.snapshot_id == reference.snapshot.id != first.snapshot_id
    assert second.fingerprinted == 300
    assert stored_fingerprints(store, second.snapshot_id) == reference.fingerprints
    assert store.count_fingerprints(first.snapshot_id) == 0  # the index never mixes snapshots
    index = HammingIndex.load(f"{db}.index")
    assert (index.snapshot_id, len(index)) == (second.snapshot_id, 300)
    assert main(["--db", f"sqlite:///{db}", "-q", "check"]) == 0  # index files match the store

    # Inputs that are not the stored documents are refused, and the store is left as it was.
    part = tmp_path / "part.jsonl"
    part.write_text("".join(FIXTURE.read_text("utf-8").splitlines(True)[:10]), "utf-8")
    with pytest.raises(JobsError, match="exactly the stored documents"):
        build_with_runner(store, "inline", inputs=[str(part)])
    assert store.current_snapshot_id() == second.snapshot_id
    assert store.count_fingerprints(second.snapshot_id) == 300


def test_input_with_a_repeated_document_is_refused(reference: Reference, tmp_path: Path) -> None:
    store = ingested_store(tmp_path / "dup.db", limit=30)
    first = build_with_runner(store, "inline")
    lines = FIXTURE.read_text("utf-8").splitlines(True)[:30]
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text("".join([*lines[:29], lines[0]]), "utf-8")  # 30 lines, one repeated
    with pytest.raises(JobsError, match="exactly the stored documents"):
        build_with_runner(store, "inline", inputs=[str(wrong)])
    assert store.current_snapshot_id() == first.snapshot_id
    assert store.count_fingerprints(first.snapshot_id) == 30


def test_cli_runner_options_need_a_runner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["--db", db, "-q", "build", "--input", str(FIXTURE)]) == 1
    assert "--input needs an mrjob runner" in capsys.readouterr().err
    assert main(["--db", db, "-q", "build", "--append"]) == 1
    assert "--append needs an mrjob runner" in capsys.readouterr().err
    assert main(["--db", db, "-q", "build", "--runner", "inline", "--append"]) == 1
    assert "textrec build" in capsys.readouterr().err  # nothing built yet: says what to run

"""Ingest with worker processes extracting terms ahead (``workers`` > 1, ``textrec ingest -j``):
the same documents, terms, warnings, rejections and fingerprints as in one process, on real
Mecab and SQLite; a worker that dies is reported with where the input stood."""

from __future__ import annotations

import contextlib
import gzip
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from textrec.cli.main import main
from textrec.content.analyzer import Analyzer
from textrec.pipeline.build import build
from textrec.pipeline.ingest import IngestReport, ingest
from textrec.pipeline.records import read_records
from textrec.store.sql import Store

SAMPLE = Path(__file__).resolve().parents[1] / "textrec" / "data" / "wikinews_ko.jsonl.gz"


def _sample(n: int) -> list[dict[str, Any]]:
    with gzip.open(SAMPLE, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for _, line in zip(range(n), f, strict=False)]
    assert len(rows) == n
    return rows


def _write(path: Path, rows: list[Any]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n")
    return str(path)


def _stored(store: Store) -> list[tuple[str, dict[str, int] | None]]:
    return [(d.external_id, d.terms) for d in store.iter_documents()]


def _fingerprints(store: Store) -> dict[str, int]:
    current = store.current_snapshot_id()
    assert current is not None
    ids, fps, _ = store.fingerprints(current)
    by_id = {d.id: d.external_id for d in store.iter_documents()}
    return {by_id[int(i)]: int(fp) for i, fp in zip(ids, fps, strict=True)}


def _summary(report: IngestReport) -> tuple[Any, ...]:
    return (
        report.stored,
        [(e.source, e.line, e.reason, e.id) for e in report.rejected],
        [(w.source, w.line, w.reason, w.id) for w in report.warnings],
        report.fingerprinted,
        report.updated,
    )


def test_workers_store_what_one_process_stores(tmp_path: Path) -> None:
    rows = _sample(160)
    first, rest = rows[:60], rows[60:]
    odd: list[Any] = [
        {"id": "emoji-only", "text": "😀😀 !!! ..."},  # no terms: stored with a warning
        "{not json",
        {"id": rest[3]["id"], "text": "같은 아이디가 다시 나왔다"},  # a duplicate in the input
        {"id": "no-text"},
        {"id": "latin", "text": "Docker 컨테이너 배포와 Kubernetes 운영"},
    ]
    tail = _write(tmp_path / "rest.jsonl", rest[:40] + odd + rest[40:])
    head = _write(tmp_path / "first.jsonl", first)
    results = {}
    for workers in (1, 2):
        store = Store(f"sqlite:///{tmp_path / f'w{workers}.db'}")
        ingest(store, read_records(head), batch_size=7)
        build(store)  # the rest is fingerprinted as it is stored
        report = ingest(store, read_records(tail), batch_size=7, workers=workers)
        results[workers] = (_summary(report), _stored(store), _fingerprints(store))
    one, two = results[1], results[2]
    assert two[0] == one[0]
    assert two[1] == one[1]
    assert two[2] == one[2]
    summary = one[0]
    assert len(summary[0]) == 160 - 60 + 2  # the emoji-only and the Latin post are stored
    assert [r[1] for r in summary[1]] == [42, 43, 44]  # not JSON, duplicate, no text
    assert [w[3] for w in summary[2]] == ["emoji-only"]
    assert summary[3] == len(summary[0])  # fingerprinted as stored
    terms = dict(one[1])
    assert {"docker", "kubernetes"} <= set(terms["latin"] or {})


def test_workers_with_update_replace_as_one_process_does(tmp_path: Path) -> None:
    rows = _sample(40)
    edited = [
        dict(r, text=r["text"] + " 수정된 기사 본문에 날씨 예보를 덧붙였다.") for r in rows[::3]
    ]
    new = [{"id": "new-1", "text": "새로 들어온 기사: 태풍이 남부 지방에 상륙했다."}]
    results = {}
    for workers in (1, 2):
        store = Store(f"sqlite:///{tmp_path / f'u{workers}.db'}")
        ingest(store, read_records(_write(tmp_path / "a.jsonl", rows)), batch_size=9)
        path = _write(tmp_path / "edits.jsonl", edited + new)
        report = ingest(store, read_records(path), batch_size=4, update=True, workers=workers)
        results[workers] = (_summary(report), _stored(store))
    assert results[2] == results[1]
    assert results[1][0][4] == [r["id"] for r in edited]


def test_workers_need_a_scheme_that_names_its_analyzer(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'c.db'}")
    path = _write(tmp_path / "a.jsonl", _sample(3))
    custom = Analyzer(tokenizer=str.split, scheme="my-split-v1")
    with pytest.raises(ValueError, match="'my-split-v1' is not one: use workers=1"):
        ingest(store, read_records(path), analyzer=custom, workers=2)
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        ingest(store, read_records(path), workers=0)
    assert store.count_documents() == 0
    report = ingest(store, read_records(path), analyzer=custom)  # in this process it works
    assert len(report.stored) == 3


def test_a_worker_that_dies_is_reported_with_the_input_line(tmp_path: Path) -> None:
    rows = _sample(120)
    store = Store(f"sqlite:///{tmp_path / 'k.db'}")
    ingest(store, read_records(_write(tmp_path / "a.jsonl", rows[:20])))
    build(store)
    path = _write(tmp_path / "b.jsonl", rows[20:])
    killed: list[int] = []

    def kill_workers(ids: list[int], fps: list[int], terms: list[dict[str, int]]) -> None:
        if not killed:  # after the first committed batch, as an out-of-memory kill would
            for child in multiprocessing.active_children():
                killed.append(child.pid or 0)
                os.kill(child.pid or 0, signal.SIGKILL)

    with pytest.raises(RuntimeError) as caught:
        ingest(store, read_records(path), batch_size=1, workers=2, on_stored=kill_workers)
    assert killed
    message = str(caught.value)
    assert "a term worker process stopped while reading" in message
    assert str(path) in message
    assert "the batches committed before it are stored" in message
    # Everything before the batch named is stored, whole; nothing after it.
    line = int(re.search(re.escape(path) + r":(\d+)", message).group(1))  # type: ignore[union-attr]
    stored = {d.external_id for d in store.iter_documents()}
    assert {r["id"] for r in rows[20 : 20 + line - 1]} <= stored
    assert not {r["id"] for r in rows[20 + line - 1 :]} & stored
    assert not multiprocessing.active_children()


def test_cli_ingest_with_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _write(tmp_path / "a.jsonl", _sample(30))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["--db", db, "-q", "ingest", "-j", "2", "--batch-size", "4", path]) == 0
    assert "30 stored, 0 rejected" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["--db", db, "-q", "ingest", "--workers", "0", path])
    assert exited.value.code == 2
    assert "--workers" in capsys.readouterr().err


def _big_input(tmp_path: Path, copies: int = 20) -> str:
    rows = _sample(644)
    return _write(
        tmp_path / "big.jsonl", [dict(r, id=f"{r['id']}~{c}") for c in range(copies) for r in rows]
    )


def _ingest_until_first_commit(db: str, path: str) -> tuple[subprocess.Popen[str], list[str]]:
    """``textrec -v ingest -j 2`` in a session of its own, returned once a batch is committed,
    with the pids of its child processes (the workers, and Python's resource tracker)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "textrec", "--db", db, "-v", "ingest", "-j", "2", path],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if "committed 500 document(s)" in line:
            break
    else:
        raise AssertionError(f"no batch was committed: {proc.communicate()}")
    children = subprocess.run(
        ["pgrep", "-P", str(proc.pid)], capture_output=True, text=True, check=True
    ).stdout.split()
    assert len(children) >= 2
    return proc, children


def _clean_up(proc: subprocess.Popen[str]) -> None:
    """Whatever a failed assertion left: the ingest's whole session, and its pipes."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    proc.wait(timeout=30)


def _described(pids: list[str]) -> str:
    """What each process left is: its command line, state, parent and wait channel."""
    out = []
    for pid in pids:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = Path(f"/proc/{pid}/status").read_text()
            wchan = Path(f"/proc/{pid}/wchan").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        state, ppid = fields.get("State", "").strip(), fields.get("PPid", "").strip()
        out.append(f"{pid} [{state}, parent {ppid}, waiting in {wchan}]: {cmd[:200]}")
    return "; ".join(out)


def _gone(pids: list[str], within: float = 30.0) -> list[str]:
    deadline = time.monotonic() + within
    alive = pids
    while alive and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = [p for p in pids if os.path.exists(f"/proc/{p}")]
    return alive


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_and_keeps_whole_batches(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'int.db'}"
    proc, children = _ingest_until_first_commit(db, _big_input(tmp_path))
    try:
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130
        assert "Traceback" not in err  # neither the ingest nor a worker prints one
        alive = _gone(children)
        assert alive == [], _described(alive)
    finally:
        _clean_up(proc)
    stored = Store(db).count_documents()
    assert stored > 0 and stored % 500 == 0  # whole transactions only


@pytest.mark.slow
def test_workers_do_not_outlive_a_killed_ingest(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'kill.db'}"
    proc, children = _ingest_until_first_commit(db, _big_input(tmp_path))
    try:
        os.kill(proc.pid, signal.SIGKILL)  # the ingest alone, as an out-of-memory kill does
        proc.wait(timeout=60)
        # The workers and Python's resource tracker hold its stderr: read to the end once
        # they are all gone.
        alive = _gone(children)
        assert alive == [], _described(alive)
        proc.communicate(timeout=60)
    finally:
        _clean_up(proc)
    stored = Store(db).count_documents()
    assert stored > 0 and stored % 500 == 0

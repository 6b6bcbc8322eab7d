"""``kill -9`` scenarios, shared by ``tests/test_crash.py`` (a few kills each, in CI) and
``bench/crash_loop.py`` (many kills each, figures in RELIABILITY.md).

Each scenario runs the real CLI as a subprocess (``python -m textrec``) on a SQLite file,
sends SIGKILL after a random (seeded) delay, and then verifies what must hold after a crash,
raising ``AssertionError`` naming what broke:

- ``ingest``: the server restarts on the store and serves; the store holds every acknowledged
  document (``textrec -v ingest`` logs
  "committed N document(s) through FILE:LINE (id ...)" after each committed batch: every
  document up to that line is acknowledged) and no partial batch: the new documents are
  exactly the first m batches of the input, each complete (text, title, stored term counts
  and fingerprint recomputed by ``check``). Re-running the same ingest stores exactly the
  missing ones, and ``check`` passes.
- ``build``: the current DF snapshot is the old one or the new one, ``check`` passes, the
  server restarts on the store and serves, and re-running the build completes it.
- ``snapshot``: a process rewriting the index files in a loop is killed; each file is then
  exactly the old or the new one (never torn), and ``check`` passes.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from textrec import Store, build, ingest, read_records
from textrec.check import check
from textrec.content.hamming import HammingIndex
from textrec.content.related import RelatedIndex

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "petitions_300.jsonl"
# A kill lands at a random moment of a run timed beforehand; when a run goes faster than the
# timing runs, a late kill finds it finished and does not count. Up to this many attempts per
# kill keep late kills (in the final renames) without failing on a fast machine.
ATTEMPTS_PER_KILL = 4
CLI = [sys.executable, "-m", "textrec"]
ACK = re.compile(r"committed (\d+) document\(s\) through (.+):(\d+) \(id '(.*)'\)$")


@dataclass
class Tally:
    """What a scenario did."""

    scenario: str
    kills: int = 0  # runs killed before they finished
    finished: int = 0  # runs that finished before the kill was due
    acknowledged: int = 0  # documents acknowledged by killed runs (ingest)
    lost: int = 0  # acknowledged documents missing afterwards: must stay 0
    partial_batches: int = 0  # must stay 0
    torn_files: int = 0  # must stay 0
    server_restarts: int = 0
    leftover_temp_files: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "TEXTREC_TOKEN": ""}


def run_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=_env()
    )


def run_and_kill(args: list[str], delay: float) -> tuple[bool, str]:
    """Run the CLI; SIGKILL it after ``delay`` seconds. ``(killed, stderr)``."""
    proc = subprocess.Popen(
        [*CLI, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        _, err = proc.communicate(timeout=delay)
        return False, err
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        return True, err


def copy_db(src: Path, dst: Path) -> Path:
    """Copy a SQLite store with its index files (no -wal: stores are closed when copied)."""
    for suffix in ("", ".index", ".index.related"):
        if Path(f"{src}{suffix}").exists():
            shutil.copy(f"{src}{suffix}", f"{dst}{suffix}")
    return dst


def _temp_files(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.name.startswith(".") and p.is_file()]


def _read_corpus(path: Path, limit: int | None) -> list[dict[str, object]]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def _write(path: Path, rows: list[dict[str, object]]) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def _assert_check(db: str, where: str) -> None:
    store = Store(db)
    try:
        report = check(store, sample=100_000)
    finally:
        store.close()
    assert report.ok, f"{where}: textrec check found {report.problems}"
    proc = run_cli("--db", db, "check")
    assert proc.returncode == 0, f"{where}: `textrec check` exited {proc.returncode}: {proc.stderr}"


def assert_server_serves(db: str, n_docs: int, doc_id: str, timeout: float = 60.0) -> None:
    """Start `textrec serve` on the store, query it, stop it."""
    sys.path.insert(0, str(REPO))
    from tests.live_server import serve

    with serve(db, timeout=timeout) as base:
        with urllib.request.urlopen(f"{base}/health", timeout=10) as r:
            health = json.loads(r.read())
        assert health["documents"] == n_docs, health
        with urllib.request.urlopen(f"{base}/documents/{doc_id}/similar?k=5", timeout=30) as r:
            assert r.status == 200 and len(json.loads(r.read())["results"]) >= 1


# ingest --------------------------------------------------------------------------------------


def ingest_scenario(
    work: Path,
    kills: int,
    *,
    seed: int = 0,
    corpus: Path = FIXTURE,
    limit: int | None = 300,
    batch_size: int = 20,
    serve_every: int = 5,
    workers: int = 1,
    log: Callable[[str], None] = lambda _: None,
) -> Tally:
    started = time.monotonic()
    tally = Tally("ingest")
    jobs = ["-j", str(workers)]  # the killed runs' term worker processes
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    rows = _read_corpus(corpus, limit)
    n_base = max(10, len(rows) // 6)
    base = work / "base.db"
    base_store = Store(f"sqlite:///{base}")
    ingest(base_store, read_records(str(_write(work / "base.jsonl", rows[:n_base]))))
    build(base_store)
    base_ids = {d.external_id for d in base_store.iter_documents()}
    base_store.close()
    source = _write(work / "input.jsonl", rows[n_base:])
    by_id = {str(r["id"]): r for r in rows[n_base:]}

    # The reference: an uninterrupted run gives each stored id its line, hence its batch.
    ref = copy_db(base, work / "ref.db")
    t0 = time.monotonic()
    proc = run_cli("-q", "--db", f"sqlite:///{ref}", "ingest", "--skip-invalid",
                   "--batch-size", str(batch_size), str(source))  # fmt: skip
    duration = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    line_of = {r.id: r.line for r in read_records(str(source)) if hasattr(r, "text")}
    ref_store = Store(f"sqlite:///{ref}")
    expected = {d.external_id for d in ref_store.iter_documents()} - base_ids
    ref_store.close()
    batches: dict[int, set[str]] = {}
    for doc_id in expected:
        batches.setdefault((line_of[doc_id] - 1) // batch_size, set()).add(doc_id)
    log(f"ingest: {len(expected)} documents in {len(batches)} batches, {duration:.1f} s a run")

    i = -1
    while tally.kills < kills and i + 1 < ATTEMPTS_PER_KILL * kills:  # finished runs do not count
        i += 1
        db_path = copy_db(base, work / f"k{i % 2}.db")
        for stale in (f"{db_path}-wal", f"{db_path}-shm"):
            if os.path.exists(stale):
                os.unlink(stale)
        db = f"sqlite:///{db_path}"
        delay = rng.uniform(0.2, duration)
        killed, err = run_and_kill(
            ["-v", "-q", "--db", db, "ingest", *jobs, "--batch-size", str(batch_size), str(source)],
            delay,
        )
        tally.kills += killed
        tally.finished += not killed
        acked_through = 0
        for line in err.splitlines():
            m = ACK.search(line)
            if m:
                acked_through = max(acked_through, int(m.group(3)))
        acked = {d for d in expected if line_of[d] <= acked_through}
        tally.acknowledged += len(acked) if killed else 0
        store = Store(db)
        docs = {d.external_id: d for d in store.iter_documents()}
        store.close()
        new = set(docs) - base_ids
        lost = acked - new
        tally.lost += len(lost)
        assert not lost, f"kill {i} at {delay:.2f} s: acknowledged but not stored: {sorted(lost)}"
        present = sorted({(line_of[d] - 1) // batch_size for d in new})
        whole = present == list(range(len(present))) and all(batches[b] <= new for b in present)
        if not whole:
            tally.partial_batches += 1
        assert whole, f"kill {i} at {delay:.2f} s: not whole batches: batches {present}"
        for d in new:
            row = by_id[d]
            assert docs[d].text == row["text"] and docs[d].title == (row.get("title") or None)
        _assert_check(db, f"ingest kill {i} at {delay:.2f} s")
        if serve_every and i % serve_every == 0:
            assert_server_serves(db, len(docs), next(iter(base_ids)))
            tally.server_restarts += 1
        # Re-run: exactly the missing ones are stored.
        proc = run_cli("-q", "--db", db, "ingest", "--skip-invalid",
                       "--batch-size", str(batch_size), str(source))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        m = re.search(r": (\d+) stored", proc.stderr)
        assert m and int(m.group(1)) == len(expected - new), (proc.stderr, len(expected - new))
        store = Store(db)
        final = {d.external_id for d in store.iter_documents()} - base_ids
        store.close()
        assert final == expected, f"kill {i}: after the re-run {len(final)} != {len(expected)}"
        _assert_check(db, f"ingest kill {i}, after the re-run")
        tally.leftover_temp_files += len(_temp_files(work))
        for p in _temp_files(work):
            p.unlink()
        log(f"ingest kill {i}: {delay:.2f} s, killed={killed}, {len(new)} stored, "
            f"{len(acked)} acknowledged")  # fmt: skip
    tally.seconds = time.monotonic() - started
    return tally


# build ---------------------------------------------------------------------------------------


def _prepare_build(work: Path, corpus: Path, limit: int | None) -> tuple[Path, str, str, int]:
    """A store built over part of the corpus, then the rest ingested (fingerprinted under the
    old snapshot): ``(db path, old snapshot, new snapshot, documents)``."""
    rows = _read_corpus(corpus, limit)
    cut = len(rows) * 3 // 4
    base = work / "base.db"
    store = Store(f"sqlite:///{base}")
    ingest(store, read_records(str(_write(work / "a.jsonl", rows[:cut]))))
    old = build(store).snapshot_id
    ingest(store, read_records(str(_write(work / "b.jsonl", rows[cut:]))))
    n = store.count_documents()
    store.close()
    ref = copy_db(base, work / "ref.db")
    store = Store(f"sqlite:///{ref}")
    new = build(store).snapshot_id
    store.close()
    assert old != new
    return base, old, new, n


def build_scenario(
    work: Path,
    kills: int,
    *,
    seed: int = 0,
    corpus: Path = FIXTURE,
    limit: int | None = 300,
    serve_every: int = 5,
    log: Callable[[str], None] = lambda _: None,
) -> Tally:
    started = time.monotonic()
    tally = Tally("build")
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    base, old, new, n = _prepare_build(work, corpus, limit)
    durations = []
    for _ in range(2):  # the first run reads a cold cache
        t0 = time.monotonic()
        proc = run_cli("-q", "--db", f"sqlite:///{copy_db(base, work / 'timing.db')}", "build")
        durations.append(time.monotonic() - t0)
        assert proc.returncode == 0, proc.stderr
    duration = min(durations)
    log(f"build: {n} documents, {duration:.1f} s a run")
    any_id = next(iter(_read_corpus(corpus, 1)))["id"]
    i = -1
    while tally.kills < kills and i + 1 < ATTEMPTS_PER_KILL * kills:  # finished runs do not count
        i += 1
        db_path = copy_db(base, work / f"k{i % 2}.db")
        for stale in (f"{db_path}-wal", f"{db_path}-shm"):
            if os.path.exists(stale):
                os.unlink(stale)
        db = f"sqlite:///{db_path}"
        delay = rng.uniform(0.2, duration)
        killed, _ = run_and_kill(["-q", "--db", db, "build"], delay)
        tally.kills += killed
        tally.finished += not killed
        store = Store(db)
        current = store.current_snapshot_id()
        count = store.count_documents()
        store.close()
        assert current in (old, new), f"kill {i}: current snapshot {current}"
        assert count == n, f"kill {i}: {count} documents, expected {n}"
        tally.lost += n - count
        _assert_check(db, f"build kill {i} at {delay:.2f} s")
        if serve_every and i % serve_every == 0:
            assert_server_serves(db, n, str(any_id))
            tally.server_restarts += 1
        proc = run_cli("-q", "--db", db, "build")
        assert proc.returncode == 0, proc.stderr
        store = Store(db)
        assert store.current_snapshot_id() == new
        store.close()
        _assert_check(db, f"build kill {i}, after the re-run")
        tally.leftover_temp_files += len(_temp_files(work))
        for p in _temp_files(work):
            p.unlink()
        log(f"build kill {i}: {delay:.2f} s, killed={killed}, snapshot {'new' if current == new else 'old'}")  # fmt: skip  # noqa: E501
    tally.seconds = time.monotonic() - started
    return tally


# snapshot files ------------------------------------------------------------------------------

_WRITER = """
import sys
from textrec.content.hamming import HammingIndex
from textrec.content.related import RelatedIndex
target, a, b, big_target, big_a, big_b = sys.argv[1:]
pairs = [
    (target, HammingIndex.load(a), HammingIndex.load(b)),
    (big_target, HammingIndex.load(big_a), HammingIndex.load(big_b)),
]
related = [RelatedIndex.load(a + ".related"), RelatedIndex.load(b + ".related")]
print("ready", flush=True)
i = 0
while True:
    for path, x, y in pairs:
        (x if i % 2 else y).save(path)
    r, header = related[i % 2]
    r.save(
        target + ".related",
        scheme=header["scheme"],
        snapshot_id=header["snapshot_id"],
        provenance=header["provenance"],
    )
    i += 1
"""


def _same_index(x: HammingIndex, y: HammingIndex) -> bool:
    return (x.scheme, x.snapshot_id) == (y.scheme, y.snapshot_id) and bool(
        np.array_equal(x.ids, y.ids) and np.array_equal(x.codes, y.codes)
    )


def snapshot_scenario(
    work: Path,
    kills: int,
    *,
    seed: int = 0,
    corpus: Path = FIXTURE,
    limit: int | None = 300,
    big: int = 2_000_000,
    log: Callable[[str], None] = lambda _: None,
) -> Tally:
    """Index files rewritten in a loop (the store's current files and their stale versions
    alternately, and a ``big``-document index): killed, each file is whole, old or new."""
    started = time.monotonic()
    tally = Tally("snapshot")
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    base, _, _, n = _prepare_build(work, corpus, limit)
    ref = work / "ref.db"  # built under the new snapshot: its files are current
    versions = {"new": work / "new.index", "old": work / "old.index"}
    for name, db in (("new", ref), ("old", base)):
        shutil.copy(f"{db}.index", versions[name])
        shutil.copy(f"{db}.index.related", f"{versions[name]}.related")
    gen = np.random.default_rng(seed)
    big_versions = []
    for name in ("big_a", "big_b"):
        index = HammingIndex()
        index.add(np.arange(1, big + 1, dtype=np.int64), gen.integers(0, 2**63, big, np.uint64))
        index.save(work / name)
        big_versions.append(HammingIndex.load(work / name))
    wanted = {k: HammingIndex.load(v) for k, v in versions.items()}
    wanted_rel = {k: RelatedIndex.load(f"{v}.related") for k, v in versions.items()}
    big_target = work / "big.index"
    for i in range(kills):
        db_path = copy_db(ref, work / "live.db")
        db = f"sqlite:///{db_path}"
        target = f"{db_path}.index"
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, target, str(versions["new"]), str(versions["old"]),
             str(big_target), str(work / "big_a"), str(work / "big_b")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
        )  # fmt: skip
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.strip() == "ready", proc.stderr.read() if proc.stderr else ""
        delay = rng.uniform(0.0, 1.5)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()  # also closes the pipes
        assert proc.returncode == -signal.SIGKILL, (proc.returncode, err)
        tally.kills += 1
        loaded = HammingIndex.load(target, verify=True)
        whole = any(_same_index(loaded, w) for w in wanted.values())
        big_loaded = HammingIndex.load(big_target, verify=True)
        whole = whole and any(_same_index(big_loaded, w) for w in big_versions)
        related, header = RelatedIndex.load(f"{target}.related")
        whole = whole and any(
            (header, related.live_summary()) == (h, r.live_summary())
            for r, h in wanted_rel.values()
        )
        tally.torn_files += not whole
        assert whole, f"kill {i} at {delay:.2f} s: an index file is neither the old nor the new"
        _assert_check(db, f"snapshot kill {i} at {delay:.2f} s")
        leftovers = _temp_files(work)
        tally.leftover_temp_files += len(leftovers)
        for p in leftovers:
            p.unlink()
        log(f"snapshot kill {i}: {delay:.2f} s, {len(leftovers)} temporary file(s) left over")
    store = Store(f"sqlite:///{work / 'live.db'}")
    assert store.count_documents() == n
    store.close()
    tally.seconds = time.monotonic() - started
    return tally


# events --------------------------------------------------------------------------------------

EVENT_ACK = re.compile(r"committed (\d+) event\(s\) through (.+):(\d+)$")


def events_scenario(
    work: Path,
    kills: int,
    *,
    seed: int = 0,
    corpus: Path = FIXTURE,
    limit: int | None = 40,
    n_events: int = 60_000,
    batch_size: int = 2_000,
    log: Callable[[str], None] = lambda _: None,
) -> Tally:
    """``textrec events import`` killed at a random moment: every acknowledged event is
    stored, batches are whole, and `check` passes."""
    started = time.monotonic()
    tally = Tally("events")
    rng = random.Random(seed)
    work.mkdir(parents=True, exist_ok=True)
    base = work / "base.db"
    store = Store(f"sqlite:///{base}")
    ingest(store, read_records(str(_write(work / "docs.jsonl", _read_corpus(corpus, limit)))))
    build(store)
    items = [d.external_id for d in store.iter_documents()]
    store.close()
    events = [{"user": f"u{n % 997}", "item": items[n % len(items)]} for n in range(n_events)]
    source = _write(work / "events.jsonl", events)  # type: ignore[arg-type]
    ref = copy_db(base, work / "ref.db")
    t0 = time.monotonic()
    proc = run_cli("-q", "--db", f"sqlite:///{ref}", "events", "import",
                   "--batch-size", str(batch_size), str(source))  # fmt: skip
    duration = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    i = -1
    while tally.kills < kills and i + 1 < ATTEMPTS_PER_KILL * kills:
        i += 1
        db_path = copy_db(base, work / f"e{i % 2}.db")
        for stale in (f"{db_path}-wal", f"{db_path}-shm"):
            if os.path.exists(stale):
                os.unlink(stale)
        db = f"sqlite:///{db_path}"
        delay = rng.uniform(0.2, duration)
        killed, err = run_and_kill(
            ["-v", "-q", "--db", db, "events", "import", "--batch-size", str(batch_size),
             str(source)],
            delay,
        )  # fmt: skip
        tally.kills += killed
        tally.finished += not killed
        acked = max((int(m.group(3)) for m in map(EVENT_ACK.search, err.splitlines()) if m),
                    default=0)  # fmt: skip
        store = Store(db)
        stored = store.count_events()
        store.close()
        tally.acknowledged += acked if killed else 0
        tally.lost += max(acked - stored, 0)
        assert stored >= acked, f"kill {i} at {delay:.2f} s: {acked} acknowledged, {stored} stored"
        if stored % batch_size and stored != n_events:
            tally.partial_batches += 1
        assert stored % batch_size == 0 or stored == n_events, (i, stored)
        _assert_check(db, f"events kill {i} at {delay:.2f} s")
        log(f"events kill {i}: {delay:.2f} s, killed={killed}, {stored} stored, {acked} acked")
    tally.seconds = time.monotonic() - started
    return tally


SCENARIOS = {
    "ingest": ingest_scenario,
    "build": build_scenario,
    "snapshot": snapshot_scenario,
    "events": events_scenario,
}

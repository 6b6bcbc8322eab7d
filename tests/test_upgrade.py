"""Upgrading a store of term scheme v1: it answers under v1 until `textrec build` switches it
to v2 in one transaction, with terms derived anew from the stored texts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textrec import Analyzer, Recommender, Store, build, ingest, read_records
from textrec.check import check
from textrec.cli.main import main
from textrec.content.tfidf import DFSnapshot
from textrec.pipeline.build import InProcessPasses, run_build

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"
LATIN = [
    {"id": "en-1", "title": "Docker in production", "text": "Docker containers and Kubernetes "
     "clusters: how we deploy Docker images with Kubernetes every day."},
    {"id": "mixed-1", "title": "Docker 컨테이너 배포", "text": "Docker 이미지를 만들고 Kubernetes "
     "클러스터에 배포하는 방법을 정리했습니다."},
]  # fmt: skip
V1 = Analyzer(version=1)


def _write(path: Path, rows: list[dict[str, object]]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    return str(path)


def _petitions(start: int, stop: int) -> list[dict[str, object]]:
    lines = FIXTURE.read_text("utf-8").splitlines()[start:stop]
    return [json.loads(line) for line in lines]


def _v1_store(url: str, tmp_path: Path) -> Store:
    """A store as textrec made it before term scheme v2."""
    store = Store(url)
    rows = _petitions(0, 40) + LATIN
    report = ingest(store, read_records(_write(tmp_path / "a.jsonl", rows)), analyzer=V1)
    assert len(report.stored) == 42 and [w.id for w in report.warnings] == ["en-1"]
    build(store, analyzer=V1)
    assert store.scheme() == "simhash64-v1"
    return store


class WatchingPasses(InProcessPasses):
    """In-process passes that, once the new fingerprints are written but before the switch,
    open the store afresh as a reader would."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.seen: list[str] = []

    def fingerprint(self, store, analyzer, snapshot, todo):  # type: ignore[no-untyped-def]
        done = super().fingerprint(store, analyzer, snapshot, todo)
        rec = Recommender(self.url)
        self.seen.append(rec.scheme)
        assert rec.similar("en-1") == []  # v1 has no terms for it
        assert rec.similar(str(_petitions(0, 1)[0]["id"]), k=3)
        assert check(Store(self.url), sample=1000).ok
        return done


def test_a_v1_store_answers_under_v1_until_build_switches_it_in_one_go(
    db_url: str, tmp_path: Path
) -> None:
    store = _v1_store(db_url, tmp_path)
    old_snapshot = store.current_snapshot_id()
    rec = Recommender(db_url)
    assert rec.scheme == "simhash64-v1" and rec.analyzer.version == 1
    assert rec.similar("en-1") == []
    # Ingest and --keep-scheme builds keep it v1.
    assert (
        main(["--db", db_url, "-q", "ingest", _write(tmp_path / "b.jsonl", _petitions(40, 45))])
        == 0
    )
    assert Store(db_url).scheme() == "simhash64-v1"
    assert run_build(Store(db_url), InProcessPasses(), upgrade=False).upgraded_from is None
    assert Store(db_url).scheme() == "simhash64-v1"
    assert check(Store(db_url), sample=1000).ok

    passes = WatchingPasses(db_url)
    report = run_build(Store(db_url), passes)
    assert passes.seen == ["simhash64-v1"]  # still v1 until the switch
    assert report.upgraded_from == "simhash64-v1"
    store = Store(db_url)
    assert store.scheme() == "simhash64-v2"
    current = store.current_snapshot()
    assert current is not None and current[1] == "simhash64-v2"
    assert current[0].id != old_snapshot
    assert store.snapshot_record(str(old_snapshot)) is not None  # kept, its fingerprints not
    assert store.fingerprint_schemes(current[0].id) == {"simhash64-v2": 47}

    # Every document's terms were derived anew from its text, and stored.
    v2 = Analyzer()
    docs = list(store.iter_documents())
    assert len(docs) == 47 and not store.ids_without_terms()
    assert all(d.terms == v2.term_counts(d.text, d.title) for d in docs)
    assert current[0] == DFSnapshot.from_documents(d.terms or {} for d in docs)
    assert "docker" in current[0]

    fresh = Recommender(db_url)
    assert fresh.scheme == "simhash64-v2"
    top = fresh.similar("en-1", k=1)[0]
    assert top.id == "mixed-1" and "docker" in top.shared_terms
    report_check = check(store, sample=1000)
    assert report_check.ok, report_check.problems
    assert report_check.facts["recomputed"] == 47
    # The old Recommender still answers from what it holds (its own, v1, index).
    assert rec.similar(str(_petitions(0, 1)[0]["id"]), k=3)
    # A second build is a plain rebuild: nothing to upgrade, the same snapshot.
    again = build(Store(db_url))
    assert again.upgraded_from is None and again.snapshot_id == current[0].id


def test_cli_build_upgrades_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    _v1_store(url, tmp_path)
    assert main(["--db", url, "-q", "build", "--keep-scheme"]) == 0
    assert "upgraded" not in capsys.readouterr().err
    assert Store(url).scheme() == "simhash64-v1"
    assert main(["--db", url, "-q", "build"]) == 0
    err = capsys.readouterr().err
    assert "from scheme simhash64-v1 to simhash64-v2" in err
    assert main(["--db", url, "check"]) == 0
    assert main(["--db", url, "-q", "similar", "en-1"]) == 0
    assert "mixed-1" in capsys.readouterr().out


def test_an_ingest_that_meets_the_switch_takes_the_new_scheme(tmp_path: Path) -> None:
    """A batch fingerprinted under v1 that commits after the upgrade is redone under v2."""
    url = f"sqlite:///{tmp_path / 'v1.db'}"
    store = _v1_store(url, tmp_path)
    records = list(read_records(_write(tmp_path / "late.jsonl", _petitions(50, 53))))

    class UpgradeFirst:
        """Runs the upgrade when ingest asks the store's snapshot, after it chose v1."""

        def __init__(self) -> None:
            self.done = False

        def __iter__(self):  # type: ignore[no-untyped-def]
            for record in records:
                if not self.done:
                    build(Store(url))
                    self.done = True
                yield record

    report = ingest(store, UpgradeFirst())
    assert len(report.stored) == 3 and not report.rejected
    assert store.scheme() == "simhash64-v2"
    late = store.find_document(str(_petitions(50, 51)[0]["id"]))
    assert late is not None and late.terms == Analyzer().term_counts(late.text, late.title)
    assert check(store, sample=1000).ok


def test_a_runner_build_upgrades_too(tmp_path: Path) -> None:
    """The jobs derive terms from the exported texts under the scheme they are given."""
    from textrec.pipeline.runners import build_with_runner

    url = f"sqlite:///{tmp_path / 'v1.db'}"
    _v1_store(url, tmp_path)
    report = build_with_runner(Store(url), "inline")
    assert report.upgraded_from == "simhash64-v1" and report.bad_records == {}
    store = Store(url)
    assert store.scheme() == "simhash64-v2" and not store.ids_without_terms()
    in_process = build(Store(url))  # the same snapshot as in process: nothing to upgrade
    assert in_process.snapshot_id == report.snapshot_id and in_process.upgraded_from is None
    assert check(store, sample=1000).ok
    assert Recommender(url).similar("en-1", k=1)[0].id == "mixed-1"


def test_an_upgrade_by_term_workers_equals_one_in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``build(workers=2)`` (``textrec build --cores 2``) derives the terms of an upgrade in
    two processes: the same DF snapshot, fingerprints and stored terms as one process."""
    import textrec.pipeline.build

    monkeypatch.setattr(textrec.pipeline.build, "WORKERS_FROM", 10)  # a small store here
    results = []
    for workers in (1, 2):
        url = f"sqlite:///{tmp_path / f'w{workers}.db'}"
        folder = tmp_path / f"w{workers}"
        folder.mkdir()
        store = _v1_store(url, folder)
        report = build(store, workers=workers)
        assert report.upgraded_from == "simhash64-v1"
        current = store.current_snapshot_id()
        assert current is not None
        ids, fps, scheme = store.fingerprints(current)
        names = {d.id: d.external_id for d in store.iter_documents()}
        terms = {d.external_id: d.terms for d in store.iter_documents()}
        fingerprints = {names[int(i)]: int(fp) for i, fp in zip(ids, fps, strict=True)}
        results.append((current, scheme, fingerprints, terms))
        assert not store.ids_without_terms()
    assert results[1] == results[0]
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        build(Store(f"sqlite:///{tmp_path / 'w1.db'}"), workers=0)

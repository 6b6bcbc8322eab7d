"""One owner of the scheme: a stored scheme name maps back to the analyzer that made it, and
every entry point builds its analyzer from the store's scheme."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from textrec import (
    Analyzer,
    Recommender,
    SchemeMismatchError,
    Store,
    Weighting,
    build,
    ingest,
    read_records,
    whitespace_tokenizer,
)
from textrec.check import check
from textrec.cli.main import main
from textrec.content.scheme import (
    SchemeSettings,
    SchemeUnavailableError,
    parse_scheme,
    scheme_name,
    upgraded_scheme,
)

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "petitions_300.jsonl"


def _docs(path: Path, start: int, stop: int) -> str:
    path.write_text("".join(FIXTURE.read_text("utf-8").splitlines(True)[start:stop]), "utf-8")
    return str(path)


@pytest.mark.parametrize(
    "settings",
    [
        SchemeSettings(),
        SchemeSettings(weighting=Weighting(tf="log")),
        SchemeSettings(weighting=Weighting(tf="log", min_term_length=2, max_df_ratio=0.5)),
        SchemeSettings(title_weight=3),
        SchemeSettings(tokenizer="whitespace", weighting=Weighting(max_df_ratio=0.25)),
        SchemeSettings(version=1),
        SchemeSettings(weighting=Weighting(tf="log"), title_weight=2, version=1),
    ],
)
def test_scheme_names_map_back_to_their_settings(settings: SchemeSettings) -> None:
    name = scheme_name(settings)
    assert parse_scheme(name) == settings
    analyzer = Analyzer.from_scheme(name)
    assert analyzer.scheme == name
    assert (analyzer.weighting, analyzer.title_weight, analyzer.version) == (
        settings.weighting,
        settings.title_weight,
        settings.version,
    )


def test_golden_scheme_names() -> None:
    assert Analyzer().scheme == "simhash64-v2"
    assert Analyzer(weighting=Weighting(tf="log")).scheme == "simhash64-v2+tf=log"
    assert Analyzer(title_weight=2).scheme == "simhash64-v2+title=2"
    assert Analyzer(tokenizer=whitespace_tokenizer).scheme == "simhash64-v2+tok=whitespace"
    assert Analyzer(version=1).scheme == "simhash64-v1"
    assert Analyzer(weighting=Weighting(tf="log"), version=1).scheme == "simhash64-v1+tf=log"
    assert Analyzer.from_scheme("simhash64-v1").version == 1


def test_a_v1_analyzer_gives_konlpys_nouns_and_v2_adds_latin_words() -> None:
    text = "Docker 컨테이너 배포 3년 후기"
    assert Analyzer.from_scheme("simhash64-v1").term_counts(text) == {
        "년": 1, "배포": 1, "컨테이너": 1, "후기": 1,
    }  # fmt: skip
    assert Analyzer().term_counts(text, title="Kubernetes") == {
        "docker": 1, "kubernetes": 1, "년": 1, "배포": 1, "컨테이너": 1, "후기": 1,
    }  # fmt: skip
    # Counters stay terms, but are never shown: only the content words.
    assert Analyzer().shown_terms(text) == {"docker", "컨테이너", "배포", "후기"}
    assert Analyzer(tokenizer=whitespace_tokenizer).shown_terms(text) is None


def test_upgraded_scheme_keeps_the_settings_under_the_current_terms() -> None:
    assert upgraded_scheme("simhash64-v1") == "simhash64-v2"
    assert upgraded_scheme("simhash64-v1+tf=log,title=2") == "simhash64-v2+tf=log,title=2"
    assert upgraded_scheme("simhash64-v2+tf=log") is None
    assert upgraded_scheme("my-tokenizer-v1") is None


@pytest.mark.parametrize(
    "name",
    [
        "my-tokenizer-v1",
        "simhash64-v1+tok=mine",
        "simhash64-v1+tf=cube",
        "simhash64-v1+x=1",
        "simhash64-v1+title=2,tf=log",
        "simhash64-v3",
        "simhash64-v02",
    ],
)
def test_names_textrec_cannot_rebuild_are_refused_with_the_reason(name: str) -> None:
    with pytest.raises(SchemeUnavailableError, match=name.replace("+", r"\+")):
        Analyzer.from_scheme(name)


def test_a_custom_tokenizer_must_name_its_scheme() -> None:
    with pytest.raises(ValueError, match="name its scheme"):
        Analyzer(tokenizer=str.split)
    assert Analyzer(tokenizer=str.split, scheme="split-v1").scheme == "split-v1"


def test_a_log_tf_store_stays_log_tf_through_every_entry_point(tmp_path: Path) -> None:
    """Defect: a store built with tf=log, opened by a plain Recommender or the CLI, got
    raw-TF fingerprints filed under the tf=log scheme, and `check` then failed."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log_tf = Analyzer(weighting=Weighting(tf="log"))
    store = Store(url)
    ingest(store, read_records(_docs(tmp_path / "a.jsonl", 0, 40)), analyzer=log_tf)
    build(store, analyzer=log_tf)
    assert store.scheme() == "simhash64-v2+tf=log"

    rec = Recommender(url)  # no analyzer: the store's
    assert rec.analyzer.scheme == "simhash64-v2+tf=log"
    records = [json.loads(line) for line in FIXTURE.read_text("utf-8").splitlines()[40:45]]
    stored, rejected = rec.add(records)
    assert len(stored) == 5 and not rejected
    assert main(["--db", url, "ingest", _docs(tmp_path / "b.jsonl", 45, 50)]) == 0
    assert main(["--db", url, "build"]) == 0  # a rebuild keeps the scheme too
    assert Store(url).scheme() == "simhash64-v2+tf=log"
    assert main(["--db", url, "ingest", _docs(tmp_path / "c.jsonl", 50, 53)]) == 0
    report = check(Store(url), sample=1000)
    assert report.ok, report.problems
    assert report.facts["recomputed"] == 53
    assert main(["--db", url, "check"]) == 0

    # The same documents fingerprinted by a store built raw: the fingerprints differ, so
    # the stored ones really are log-TF ones.
    raw = Store(f"sqlite:///{tmp_path / 'raw.db'}")
    ingest(raw, read_records(_docs(tmp_path / "d.jsonl", 0, 53)))
    build(raw)
    assert not check(raw).problems
    _, log_codes, _ = Store(url).fingerprints(str(Store(url).current_snapshot_id()))
    _, raw_codes, _ = raw.fingerprints(str(raw.current_snapshot_id()))
    assert len(log_codes) == len(raw_codes) == 53
    assert sorted(log_codes.tolist()) != sorted(raw_codes.tolist())


def test_a_conflicting_analyzer_is_refused_naming_both_schemes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log_tf = Analyzer(weighting=Weighting(tf="log"))
    store = Store(url)
    ingest(store, read_records(_docs(tmp_path / "a.jsonl", 0, 20)), analyzer=log_tf)
    both = r"simhash64-v2\+tf=log.*'simhash64-v2'"
    with pytest.raises(SchemeMismatchError, match=both):  # before any build, too
        ingest(store, read_records(_docs(tmp_path / "b.jsonl", 20, 25)), analyzer=Analyzer())
    with pytest.raises(SchemeMismatchError, match=both):
        build(store, analyzer=Analyzer())
    build(store)  # the store's own scheme
    with pytest.raises(SchemeMismatchError, match=both):
        Recommender(url, analyzer=Analyzer())
    assert store.count_documents() == 20 and check(store).ok


def test_a_custom_tokenizer_store_is_python_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'custom.db'}"
    mine = Analyzer(tokenizer=str.split, scheme="split-v1")
    store = Store(url)
    records = [
        {"id": "a", "text": "bus fare rises"},
        {"id": "b", "text": "bus route changes"},
        {"id": "c", "text": "football match tonight"},
    ]
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records), "utf-8")
    ingest(store, read_records(str(path)), analyzer=mine)
    build(store, analyzer=mine)
    rec = Recommender(url, analyzer=mine)
    assert [m.id for m in rec.similar("a", k=1)] == ["b"]
    with pytest.raises(SchemeUnavailableError, match="custom tokenizer"):
        Recommender(url)
    assert main(["--db", url, "similar", "a"]) == 1
    assert "custom tokenizer" in capsys.readouterr().err
    assert main(["--db", url, "check"]) == 1
    assert "custom tokenizer" in capsys.readouterr().err
    assert check(store, analyzer=mine).ok


def test_the_jobs_rebuild_the_stores_scheme(tmp_path: Path) -> None:
    from textrec.pipeline.runners import build_with_runner

    log_tf = Analyzer(weighting=Weighting(tf="log"), title_weight=2)
    fingerprints = []
    for name, runner in (("a", None), ("b", "inline")):
        store = Store(f"sqlite:///{tmp_path / name}.db")
        ingest(store, read_records(_docs(tmp_path / "docs.jsonl", 0, 30)), analyzer=log_tf)
        if runner is None:
            build(store, analyzer=log_tf)
        else:
            build_with_runner(store, runner)  # no analyzer given: the store's
        assert store.scheme() == "simhash64-v2+tf=log,title=2"
        _, codes, scheme = store.fingerprints(str(store.current_snapshot_id()))
        assert scheme == "simhash64-v2+tf=log,title=2"
        fingerprints.append(codes.tolist())
        assert check(store, sample=1000).ok
    assert fingerprints[0] == fingerprints[1]

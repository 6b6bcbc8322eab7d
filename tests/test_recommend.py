"""The Python API on the bundled Wikinews sample: similar, similar_text, add, remove."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import copy_database
from textrec import NotBuiltError, Recommender, Store
from textrec.artifacts.indexes import default_index_path
from textrec.content.hamming import HammingIndex
from textrec.sources import RelatedSource

CORPUS = Path(__file__).resolve().parents[1] / "textrec" / "data" / "wikinews_ko.jsonl.gz"


@pytest.fixture
def built(wikinews_db: Path) -> str:
    """The shared built sample (read-only: tests that write use copy_of_built)."""
    return f"sqlite:///{wikinews_db}"


def test_not_built(tmp_path: Path) -> None:
    with pytest.raises(NotBuiltError, match="textrec build"):
        Recommender(f"sqlite:///{tmp_path / 'empty.db'}")


def test_similar_excludes_the_query_and_is_ordered(built: str) -> None:
    rec = Recommender(built)
    assert len(rec) == 644
    matches = rec.similar("wikinews-0001", k=10)
    assert len(matches) == 10
    assert all(m.id != "wikinews-0001" for m in matches)
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    assert all(m.score > 0.0 for m in matches)  # pivoted BM25: 0 or more, not a cosine
    assert all(m.shared_terms for m in matches)
    assert matches[0].to_dict().keys() == {"id", "title", "distance", "score", "shared_terms"}
    by_hamming = rec.similar("wikinews-0001", k=10, mode="hamming")
    assert [m.distance for m in by_hamming] == sorted(m.distance for m in by_hamming)
    assert all(m.id != "wikinews-0001" for m in by_hamming)
    with pytest.raises(ValueError, match="unknown mode 'x'"):
        rec.similar("wikinews-0001", mode="x")


def test_related_mode_finds_the_same_story(built: str) -> None:
    # wikinews-0001 announces the 2018/2022 World Cup candidates; 0054 is the host decision.
    rec = Recommender(built)
    top = [m.id for m in rec.similar("wikinews-0001", k=3)]
    assert "wikinews-0054" in top
    assert "월드컵" in rec.similar("wikinews-0001", k=1)[0].shared_terms


@pytest.fixture
def copy_of_built(wikinews_db: Path, tmp_path: Path) -> str:
    return copy_database(wikinews_db, tmp_path)


def test_near_duplicates(copy_of_built: str) -> None:
    rec = Recommender(copy_of_built)
    doc = rec.store.find_document("wikinews-0002")
    assert doc is not None
    assert rec.near_duplicates("wikinews-0002", 0) == []
    rec.add([{"id": "copy", "title": doc.title, "text": doc.text}])
    rec.add([{"id": "edited", "title": doc.title, "text": doc.text + " 추가 문장입니다."}])
    rec.add([{"id": "retitled", "title": "완전히 다른 제목 축구 경기", "text": doc.text}])
    dups = rec.near_duplicates("wikinews-0002", 6)
    assert [(m.id, m.distance) for m in dups][:2] == [("copy", 0), ("retitled", 0)]
    assert "edited" in [m.id for m in dups]
    # The same text under another title: a few bits apart, but reported at distance 0.
    assert rec.index.get(rec.store.find_document("retitled").id) != rec.index.get(  # type: ignore[union-attr]
        doc.id
    )
    assert [m.id for m in rec.near_duplicates("retitled", 0)] == ["wikinews-0002", "copy"]
    pairs = rec.duplicate_pairs(0)
    assert ("copy", "retitled", 0) in pairs and ("wikinews-0002", "copy", 0) in pairs
    with pytest.raises(ValueError, match="max_distance"):
        rec.near_duplicates("wikinews-0002", 65)


def test_similar_text_finds_the_document_itself(built: str) -> None:
    rec = Recommender(built)
    doc = rec.store.find_document("wikinews-0054")
    assert doc is not None
    top, second = rec.similar_text(doc.text, k=2, title=doc.title, collapse=None)
    # Every term of the document is shared with itself: it outscores any other by far.
    assert top.id == "wikinews-0054" and top.distance == 0 and top.score > 1.5 * second.score
    [top] = rec.similar_text(doc.text, k=1, title=doc.title, mode="hamming", collapse=None)
    assert top.id == "wikinews-0054" and top.distance == 0 and top.score == 1.0
    # By default it is a copy of the query, not a related post: the next one takes its place.
    [top] = rec.similar_text(doc.text, k=1, title=doc.title)
    assert top.id != "wikinews-0054" and top.distance is not None and top.distance > 4


def test_index_file_is_used_when_it_matches(built: str) -> None:
    store = Store(built)
    path = default_index_path(store)
    assert path is not None
    on_disk = HammingIndex.load(path)
    assert len(on_disk) == 644
    assert on_disk.snapshot_id == store.current_snapshot_id()


def test_add_and_remove_are_visible_without_rebuild(copy_of_built: str) -> None:
    db = copy_of_built.removeprefix("sqlite:///")
    rec = Recommender(f"sqlite:///{db}")
    text = (
        "화성 탐사선이 붉은 행성의 표면에서 물의 흔적을 발견했다. "
        "탐사선 로버는 암석 시료를 채취했다."
    )
    stored, rejected = rec.add(
        [{"id": "new-1", "title": "화성 탐사", "text": text}, {"id": "", "text": "x"}]
    )
    assert stored == ["new-1"]
    assert len(rejected) == 1 and "field 'id' is empty" in str(rejected[0])
    assert len(rec) == 645
    assert rec.similar_text(text, k=1)[0].id == "new-1"
    assert rec.similar_text(text, k=1, mode="hamming")[0].id == "new-1"
    # The index file no longer matches the store, so a new Recommender reloads from it.
    again = Recommender(f"sqlite:///{db}")
    assert len(again) == 645
    rec.remove("new-1")
    assert len(rec) == 644
    assert all(m.id != "new-1" for m in rec.similar_text(text, k=5))
    assert all(m.id != "new-1" for m in rec.similar_text(text, k=5, mode="hamming"))
    assert len(Recommender(f"sqlite:///{db}")) == 644


def test_index_files_are_used_only_while_they_match(copy_of_built: str, caplog) -> None:  # type: ignore[no-untyped-def]
    import logging

    from textrec.artifacts.indexes import related_path

    db = copy_of_built.removeprefix("sqlite:///")
    related_file = related_path(db + ".index")
    assert Path(related_file).exists()  # written by build
    with caplog.at_level(logging.INFO, logger="textrec.artifacts"):
        rec = Recommender(copy_of_built)
    assert not [r for r in caplog.records if "stale" in r.message or "not used" in r.message]

    rec.add([{"id": "x-1", "title": "월드컵", "text": "월드컵 유치 후보 도시 발표"}])
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="textrec.artifacts"):
        again = Recommender(copy_of_built)  # the files no longer match: brought up to date
    assert any("was behind the store" in r.message for r in caplog.records)
    assert len(again.related) == 645
    rec.save()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="textrec.artifacts"):
        third = Recommender(copy_of_built)
    assert not [r for r in caplog.records if "stale" in r.message]
    query = "월드컵 유치 후보 도시 발표"  # x-1's own text: among the first when indexed
    expected = [m.id for m in third.similar_text(query, k=5, collapse=None)]
    assert "x-1" in expected

    Path(related_file).write_bytes(b"garbage")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="textrec.artifacts"):
        fourth = Recommender(copy_of_built)
    assert any("not used" in r.message for r in caplog.records)
    assert [m.id for m in fourth.similar_text(query, k=5, collapse=None)] == expected


def test_related_index_file_catches_up_instead_of_rebuilding(
    copy_of_built: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog,  # type: ignore[no-untyped-def]
) -> None:
    import importlib
    import logging
    import os

    from textrec.artifacts.indexes import related_path

    build_module = importlib.import_module("textrec.artifacts.indexes")

    db = copy_of_built.removeprefix("sqlite:///")
    rec = Recommender(copy_of_built)
    rec.add(
        [
            {"id": "m-1", "title": "화성 탐사", "text": "화성 탐사선이 물의 흔적을 발견했다."},
            {"id": "m-2", "title": "월드컵", "text": "월드컵 유치 후보 도시 발표와 축구 경기"},
        ]
    )
    rec.remove("wikinews-0003")
    # No save: the files on disk are as before, as when a server dies after writes.

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the related index was rebuilt from every document")

    monkeypatch.setattr(build_module, "build_related_index", no_rebuild)
    monkeypatch.setattr(build_module, "index_from_store", no_rebuild)
    with caplog.at_level(logging.INFO, logger="textrec.artifacts"):
        caught_up = Recommender(copy_of_built)
    behind = [r.message for r in caplog.records if "was behind the store" in r.message]
    assert len(behind) == 3  # the Hamming index file, the related-posts and the readers' files
    assert len(caught_up) == 645  # 644 + 2 - 1
    monkeypatch.undo()

    # The ranking's length pivot is fitted when an index is built and kept by the appends
    # (as the DF snapshot is), so the caught-up index equals one rebuilt from the store under
    # the same pivot.
    source = caught_up.sources["related"]
    assert isinstance(source, RelatedSource)
    rebuilt = build_module.build_related_index(
        caught_up.store, caught_up.snapshot, caught_up.analyzer, ranking=source.ranking
    )
    assert rebuilt.ranking == caught_up.related.ranking
    for query in ["m-1", "m-2", "wikinews-0001", "wikinews-0100", "wikinews-0400"]:
        doc = caught_up.store.find_document(query)
        assert doc is not None and doc.terms is not None
        weights = source.query_weights(doc.terms)
        got = caught_up.related.search(weights, 10, exclude=doc.id)
        want = rebuilt.search(weights, 10, exclude=doc.id)
        assert got[0].tolist() == want[0].tolist() and got[1].tobytes() == want[1].tobytes()
    os.remove(related_path(db + ".index"))
    os.remove(db + ".index")
    from_store = Recommender(copy_of_built)  # both rebuilt, the Hamming index from every code
    assert len(from_store.related) == 645
    for query in ["m-1", "m-2", "wikinews-0001", "wikinews-0100", "wikinews-0400"]:
        assert "wikinews-0003" not in {m.id for m in caught_up.similar(query, k=10)}
        hamming = [(m.id, m.distance) for m in caught_up.similar(query, k=10, mode="hamming")]
        assert hamming == [
            (m.id, m.distance) for m in from_store.similar(query, k=10, mode="hamming")
        ]


def test_a_result_missing_from_the_hamming_index_has_no_distance(copy_of_built: str) -> None:
    # The related index may hold a document that the Hamming index no longer does (removed
    # by another thread between the two): its distance is unknown, not 0.
    rec = Recommender(copy_of_built)
    first = rec.similar("wikinews-0001", k=3)
    assert all(m.distance is not None for m in first)
    gone = rec.store.find_document(first[0].id)
    assert gone is not None
    rec.index.remove([gone.id])
    again = rec.similar("wikinews-0001", k=3)
    assert [m.id for m in again] == [m.id for m in first]
    assert again[0].distance is None and again[0].score == first[0].score
    assert again[0].to_dict()["distance"] is None


def test_a_related_index_file_of_the_cosine_format_is_rebuilt(
    copy_of_built: str,
    caplog,  # type: ignore[no-untyped-def]
) -> None:
    import json
    import logging

    import numpy as np

    from textrec.artifacts.indexes import related_path

    path = related_path(copy_of_built.removeprefix("sqlite:///") + ".index")
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(bytes(arrays["header"]).decode())
    header["format"] = "textrec-related/1"  # as the TF-IDF cosine index of earlier versions
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    with caplog.at_level(logging.WARNING, logger="textrec.artifacts"):
        rec = Recommender(copy_of_built)
    assert any("rebuilding it from the store" in r.message for r in caplog.records)
    assert len(rec.related) == 644 and rec.related.ranking["name"] == "bm25-pivot"
    assert "wikinews-0054" in [m.id for m in rec.similar("wikinews-0001", k=3)]


def test_writes_do_not_wait_for_the_index_files(
    wikinews_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save takes what to write under the writers' lock and writes it after letting go:
    a document added while the files are being written is stored and searchable at once,
    the files hold the state from before it (their stamp says so), and the next start-up
    catches it up from the store."""
    import threading

    from textrec.content import related as related_module

    url = copy_database(wikinews_db, tmp_path)
    rec = Recommender(url)
    rec.add([{"id": "first-new", "text": "대통령 선거 결과가 발표되었다", "title": "선거"}])
    writing, release = threading.Event(), threading.Event()
    real = related_module.atomic_write

    def held(path: str, write: object) -> None:
        writing.set()
        assert release.wait(120), "the test never let the save finish"
        real(path, write)  # type: ignore[arg-type]

    monkeypatch.setattr(related_module, "atomic_write", held)
    failures: list[BaseException] = []

    def run(fn: object) -> threading.Thread:
        def body() -> None:
            try:
                fn()  # type: ignore[operator]
            except BaseException as exc:  # reported below
                failures.append(exc)

        t = threading.Thread(target=body)
        t.start()
        return t

    saver = run(rec.save)
    assert writing.wait(120)
    text = "선거 결과 발표 이후 대통령의 첫 기자회견이 열렸다"
    adder = run(lambda: rec.add([{"id": "during-save", "text": text, "title": "기자회견"}]))
    adder.join(120)
    done_while_saving = not adder.is_alive()
    release.set()
    saver.join(120)
    adder.join(120)
    assert not failures and not saver.is_alive()
    assert done_while_saving, "the add waited for the save to write its files"
    assert "during-save" in [m.id for m in rec.similar("first-new", k=5, collapse=None)]
    monkeypatch.setattr(related_module, "atomic_write", real)
    path = url.removeprefix("sqlite:///") + ".index.related"
    saved, _ = related_module.RelatedIndex.load(path)
    during = rec.document("during-save")
    assert during.id not in saved.document_ids()[0].tolist()  # written as it was before
    assert rec.changed  # the add is not in the files yet: the next save writes it
    again = Recommender(url)
    assert "during-save" in [m.id for m in again.similar("first-new", k=5, collapse=None)]


def test_saving_compacts_the_related_index_it_froze(copy_of_built: str) -> None:
    rec = Recommender(copy_of_built)
    for i in range(12):  # more appended segments than the index keeps apart
        rec.add(
            [{"id": f"new-{i}", "text": f"대통령 선거 결과 발표 {i}번째 기사", "title": "선거"}]
        )
    related = rec.sources["related"]
    assert isinstance(related, RelatedSource)
    before = related.index.search({"선거": 1.0, "대통령": 0.5}, 10)
    assert len(related.index._state.segments) > 1
    rec.save()
    assert len(related.index._state.segments) == 1
    after = related.index.search({"선거": 1.0, "대통령": 0.5}, 10)
    assert before[0].tolist() == after[0].tolist() and before[1].tobytes() == after[1].tobytes()

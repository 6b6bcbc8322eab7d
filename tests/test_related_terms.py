"""How many terms of each document the related-posts index keeps (``textrec build
--related-terms N``): the store remembers it, every index made from the store keeps it
(a rebuild, a start-up whose file was made under another number, a running server's catch-up),
and ``check`` names a file made under another number."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import copy_database
from textrec import Recommender, Store, build
from textrec.check import check
from textrec.cli.main import main

QUERIES = ["wikinews-0001", "wikinews-0100", "wikinews-0333"]


def _lists(rec: Recommender) -> list[list[str]]:
    return [[m.id for m in rec.similar(q, k=10, collapse=None)] for q in QUERIES]


def test_fewer_terms_a_document_are_kept_everywhere(
    wikinews_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = copy_database(wikinews_db, tmp_path)
    db = url.removeprefix("sqlite:///")
    full = Recommender(url)
    assert full.store.related_terms() is None and full.related.top_terms == 512
    full_lists = _lists(full)
    full_bytes = full.related.nbytes - full.related._lexicon.nbytes  # the term dictionary apart

    assert main(["--db", url, "-q", "build", "--related-terms", "8"]) == 0
    assert Store(url).related_terms() == 8
    pruned = Recommender(url)  # from the file the build wrote
    pruned_bytes = pruned.related.nbytes - pruned.related._lexicon.nbytes
    assert pruned.related.top_terms == 8 and pruned_bytes < full_bytes * 0.6
    pruned_lists = _lists(pruned)
    assert pruned_lists != full_lists  # fewer terms: other lists
    assert check(Store(url)).ok
    assert main(["--db", url, "stats"]) == 0
    assert "related_terms: 8" in capsys.readouterr().out

    os.remove(f"{db}.index.related")  # rebuilt from the store: still 8 terms
    rebuilt = Recommender(url)
    assert rebuilt.related.top_terms == 8 and _lists(rebuilt) == pruned_lists

    # a running recommender follows a build that sets another number
    assert full.refresh() is True and full.related.top_terms == 8
    assert _lists(full) == pruned_lists
    build(Store(url))  # a build that does not say keeps the setting
    assert Store(url).related_terms() == 8 and Recommender(url).related.top_terms == 8

    # a file made under another number is rebuilt at start-up, and check says so
    stale = f"{tmp_path}/stale.related"
    os.replace(f"{db}.index.related", stale)
    assert main(["--db", url, "-q", "build", "--related-terms", "512"]) == 0
    os.replace(stale, f"{db}.index.related")
    report = check(Store(url))
    assert any("8 terms" in w and "stale" in w for w in report.warnings), report.warnings
    back = Recommender(url)
    assert back.related.top_terms == 512 and _lists(back) == full_lists


def test_a_bad_number_of_terms_is_refused(
    wikinews_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = copy_database(wikinews_db, tmp_path)
    for bad in ("0", "-3", "many"):
        with pytest.raises(SystemExit):
            main(["--db", url, "build", "--related-terms", bad])
        assert "--related-terms" in capsys.readouterr().err
    with pytest.raises(ValueError, match="related_terms"):
        build(Store(url), related_terms=0)
    assert Store(url).related_terms() is None  # nothing stored

"""A query interrupted at any point leaves the next query correct (issue 20, item 2).

Each related-posts query accumulates scores in a per-thread scratch space; a query that stops
half-way (an exception, Ctrl-C, out of memory) must not leave it dirty. The fault injector
raises at every line the query executes in turn, with a tracer.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import pytest

from tests.helpers import copy_database
from tests.test_related import random_docs
from textrec.content.related import RelatedIndex
from textrec.recommend import MAX_K, Recommender

related_module = importlib.import_module("textrec.content.related")
RELATED_FILE = related_module.__file__


class Injected(Exception):
    """The fault the tracer raises."""


def fail_at(step: int, fault: type[BaseException], call: Callable[[], Any]) -> bool:
    """Run ``call`` and raise ``fault`` at the ``step``-th line it executes in
    textrec/content/related.py; True when the fault was raised (False: ``call`` finished
    in fewer steps)."""
    seen = 0

    def local(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal seen
        if event == "line":
            seen += 1
            if seen == step:
                raise fault("injected")
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        return local if frame.f_code.co_filename == RELATED_FILE else None

    sys.settrace(tracer)
    try:
        call()
    except fault:
        return True
    finally:
        sys.settrace(None)
    return False


@pytest.fixture(params=["compiled", "numpy"])
def kernels(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    if request.param == "numpy":
        monkeypatch.setattr(related_module, "_kernels", None)
    elif related_module._compiled is None:
        pytest.skip("the compiled kernels are not built")
    yield request.param


@pytest.mark.parametrize("fault", [Injected, KeyboardInterrupt, MemoryError])
def test_a_fault_at_every_step_of_a_query_leaves_the_next_one_correct(
    kernels: str, fault: type[BaseException]
) -> None:
    docs = random_docs(300, 80, seed=7)
    index = RelatedIndex(top_terms=16)
    index.add(list(range(1, 301)), docs)
    index.remove([5, 9])
    queries = [(docs[0], 1), (docs[41], 42), (docs[170], None)]
    expected = [index.search(q, 10, exclude=ex) for q, ex in queries]
    step = 1
    while fail_at(step, fault, lambda: index.search(docs[0], 10, exclude=1)):
        for (q, ex), (ids, scores) in zip(queries, expected, strict=True):
            got_ids, got_scores = index.search(q, 10, exclude=ex)
            assert got_ids.tolist() == ids.tolist(), f"after a fault at step {step}"
            np.testing.assert_array_equal(got_scores, scores)
        step += 1
    assert step > 10  # the query really was interrupted at each of its steps


def test_a_bad_k_is_refused_before_any_work(kernels: str) -> None:
    docs = random_docs(50, 30, seed=3)
    index = RelatedIndex()
    index.add(list(range(1, 51)), docs)
    before = index.search(docs[0], 5, exclude=1)
    for bad in (True, 2.0, -1, "3"):
        with pytest.raises(ValueError, match="k must be a whole number"):
            index.search(docs[0], bad, exclude=1)  # type: ignore[arg-type]
    assert index.search(docs[0], 5, exclude=1)[0].tolist() == before[0].tolist()


def test_k_true_then_a_query_gives_the_same_results(wikinews_db: Path, tmp_path: Path) -> None:
    """The reported sequence: similar(k=10), similar(k=True), similar(k=10) gave []."""
    rec = Recommender(copy_database(wikinews_db, tmp_path))
    first = [m.id for m in rec.similar("wikinews-0001", k=10)]
    other = [m.id for m in rec.similar("wikinews-0100", k=10)]
    assert len(first) == 10
    for bad in (True, False, 0, MAX_K + 1, 10**8, 2.5, None):
        with pytest.raises(ValueError, match=f"k must be a whole number 1..{MAX_K}"):
            rec.similar("wikinews-0001", k=bad)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="k must be a whole number"):
            rec.similar_text("월드컵 축구", k=bad)  # type: ignore[arg-type]
    assert [m.id for m in rec.similar("wikinews-0001", k=10)] == first
    assert [m.id for m in rec.similar("wikinews-0100", k=10)] == other
    assert len(rec.similar("wikinews-0001", k=MAX_K)) == MAX_K


def test_the_http_and_python_limits_on_k_agree() -> None:
    from textrec.serve.app import MAX_K as HTTP_MAX_K

    assert HTTP_MAX_K == MAX_K


@pytest.mark.parametrize("k", ["0", "101", "100000000", "1.5", "true"])
def test_the_cli_refuses_a_k_outside_1_to_100(k: str, capsys: pytest.CaptureFixture[str]) -> None:
    from textrec.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["--db", "sqlite:///unused.db", "similar", "-k", k, "some-id"])
    assert exc.value.code == 2
    assert "-k" in capsys.readouterr().err

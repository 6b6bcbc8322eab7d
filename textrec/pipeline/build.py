"""The build: one sequence for every runner.

:func:`run_build` is the whole sequence; the two heavy passes come from a :class:`Passes`,
in process (:class:`InProcessPasses`, what :func:`build` uses) or as mrjob jobs
(:class:`textrec.pipeline.runners.JobPasses`, what ``textrec build --runner R`` uses):

1. the analyzer is the store's (:func:`~textrec.content.scheme.analyzer_for`);
2. the DF pass counts N and df(term) over the stored documents: a
   :class:`~textrec.content.tfidf.DFSnapshot`, with the same id on every runner;
3. the snapshot is recorded as ``building`` and the fingerprint pass fingerprints every
   document that has no fingerprint under it (none when nothing changed: a build is
   idempotent);
4. the snapshot is made current in one transaction (readers never see a mix);
5. documents that an ingest committed meanwhile under the old snapshot lost that fingerprint
   at activation: they are fingerprinted now, in process (from now on every ingest
   fingerprints under the new snapshot), so no document is left without one;
6. the index files are rewritten from the store (:mod:`textrec.artifacts.indexes`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from tqdm import tqdm

from textrec.artifacts.indexes import StoreIndexes, default_index_path, load_hamming
from textrec.content.analyzer import Analyzer
from textrec.content.hamming import HammingIndex
from textrec.content.scheme import analyzer_for
from textrec.content.tfidf import DFSnapshot
from textrec.store.sql import Store

__all__ = [
    "BuildReport",
    "InProcessPasses",
    "Passes",
    "build",
    "fingerprint_in_process",
    "load_index",
    "refresh_index_file",
    "run_build",
]

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """The outcome of a build."""

    snapshot_id: str
    n_docs: int
    n_terms: int
    fingerprinted: int
    index_path: str | None


class Passes(Protocol):
    """The two heavy passes of a build, over the stored documents.

    Used as a context manager around both passes (a runner exports the documents once, for
    example); ``bad_records`` collects what a pass rejected, by kind.
    """

    name: str
    bad_records: dict[str, int]

    def session(self, store: Store, analyzer: Analyzer) -> AbstractContextManager[None]: ...

    def document_frequency(self, store: Store, analyzer: Analyzer) -> DFSnapshot:
        """N and df(term) of the stored documents."""
        ...

    def fingerprint(
        self, store: Store, analyzer: Analyzer, snapshot: DFSnapshot, todo: set[int]
    ) -> int:
        """Store the fingerprints under ``snapshot`` of (at least) the documents ``todo``;
        returns how many were written."""
        ...


def _counts_of(
    store: Store, analyzer: Analyzer, desc: str, progress: bool
) -> Iterator[tuple[int, dict[str, int]]]:
    """``(id, term counts)`` of every stored document, in id order."""
    with tqdm(total=store.count_documents(), desc=desc, unit="doc", disable=not progress) as bar:
        for doc_id, terms, title, text in store.iter_terms():
            yield doc_id, terms if terms is not None else analyzer.term_counts(text or "", title)
            bar.update(1)


def fingerprint_in_process(
    store: Store,
    analyzer: Analyzer,
    snapshot: DFSnapshot,
    todo: set[int],
    *,
    progress: bool = False,
    batch_size: int = 5000,
    desc: str = "fingerprints",
) -> int:
    """Fingerprint the stored documents ``todo`` under ``snapshot``, in batches."""
    written = 0
    ids: list[int] = []
    counts: list[dict[str, int]] = []

    def flush() -> int:
        fps = analyzer.fingerprints(counts, snapshot)
        n = store.put_fingerprints(snapshot.id, analyzer.scheme, zip(ids, fps, strict=True))
        ids.clear()
        counts.clear()
        return n

    if not todo:
        return 0
    for doc_id, terms in _counts_of(store, analyzer, desc, progress):
        if doc_id in todo:
            ids.append(doc_id)
            counts.append(terms)
            if len(ids) >= batch_size:
                written += flush()
    return written + flush()


class InProcessPasses:
    """Both passes in this process, reading the term counts stored with each document."""

    name = "inprocess"

    def __init__(self, *, progress: bool = False, batch_size: int = 5000) -> None:
        self.progress = progress
        self.batch_size = batch_size
        self.bad_records: dict[str, int] = {}

    def session(self, store: Store, analyzer: Analyzer) -> AbstractContextManager[None]:
        from contextlib import nullcontext

        return nullcontext()

    def document_frequency(self, store: Store, analyzer: Analyzer) -> DFSnapshot:
        df: Counter[str] = Counter()
        n = 0
        for _, terms in _counts_of(store, analyzer, "document frequency", self.progress):
            df.update(terms.keys())
            n += 1
        return DFSnapshot.from_counts(n, df)

    def fingerprint(
        self, store: Store, analyzer: Analyzer, snapshot: DFSnapshot, todo: set[int]
    ) -> int:
        return fingerprint_in_process(
            store, analyzer, snapshot, todo, progress=self.progress, batch_size=self.batch_size
        )


def run_build(
    store: Store,
    passes: Passes,
    *,
    analyzer: Analyzer | None = None,
    index_path: str | None = None,
) -> BuildReport:
    """The build sequence of the module docstring, with ``passes`` for steps 2 and 3."""
    analyzer = analyzer_for(store.scheme(), analyzer, where=store.url)
    if store.count_documents() == 0:
        raise ValueError(f"{store.url} holds no documents: run `textrec ingest FILE` first.")
    with passes.session(store, analyzer):
        snapshot = passes.document_frequency(store, analyzer)
        if (
            store.snapshot_status(snapshot.id) != ("ready", analyzer.scheme)
            or store.current_snapshot_id() != snapshot.id
        ):
            store.begin_snapshot(snapshot, analyzer.scheme)
        todo = store.ids_without_fingerprint(snapshot.id)
        done = passes.fingerprint(store, analyzer, snapshot, todo) if todo else 0
    store.activate_snapshot(snapshot.id)
    late = store.ids_without_fingerprint(snapshot.id)
    if late:
        log.info("fingerprinting %d document(s) ingested during the build", len(late))
        done += fingerprint_in_process(store, analyzer, snapshot, late, desc="late fingerprints")
    log.info(
        "DF snapshot %s (%s): %d documents, %d terms",
        snapshot.id,
        passes.name,
        snapshot.n_docs,
        len(snapshot),
    )
    index_path = refresh_index_file(store, index_path, analyzer)
    return BuildReport(snapshot.id, snapshot.n_docs, len(snapshot), done, index_path)


def build(
    store: Store,
    *,
    analyzer: Analyzer | None = None,
    index_path: str | None = None,
    progress: bool = False,
    batch_size: int = 5000,
) -> BuildReport:
    """Compute the DF snapshot of all stored documents in process, fingerprint them, make it
    current and write the index files (:func:`run_build` with :class:`InProcessPasses`).

    Idempotent: when the corpus has not changed, the snapshot id is the same and only
    documents without a fingerprint under it are fingerprinted.
    """
    passes = InProcessPasses(progress=progress, batch_size=batch_size)
    return run_build(store, passes, analyzer=analyzer, index_path=index_path)


def refresh_index_file(
    store: Store, index_path: str | None = None, analyzer: Analyzer | None = None
) -> str | None:
    """Bring the index files up to date with the store (caught up, or rebuilt) unless they
    match it already; returns their path (None for a store with no file beside it)."""
    path = index_path if index_path is not None else default_index_path(store)
    if path is None or store.current_snapshot_id() is None:
        return None
    analyzer = analyzer_for(store.scheme(), analyzer, where=store.url)
    indexes = StoreIndexes.open(store, analyzer, path)
    if indexes.changed:
        indexes.save(path)
    return path


def load_index(store: Store, index_path: str | None = None) -> HammingIndex:
    """The Hamming index of the current snapshot: from the index file when it matches the
    store (or can be caught up with it), otherwise from the store's fingerprints."""
    path = index_path if index_path is not None else default_index_path(store)
    return load_hamming(store, path)

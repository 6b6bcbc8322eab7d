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
6. after an upgrade of the term scheme (see :func:`run_build`), the documents' new term
   counts are stored;
7. the index files are rewritten from the store (:mod:`textrec.artifacts.indexes`).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from tqdm import tqdm

from textrec.artifacts.indexes import StoreIndexes, default_index_path, load_hamming
from textrec.content.analyzer import Analyzer
from textrec.content.hamming import HammingIndex
from textrec.content.scheme import analyzer_for, upgraded_scheme
from textrec.content.tfidf import DFSnapshot
from textrec.pipeline.workers import check_workers, extract
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
    "store_terms",
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
    upgraded_from: str | None = None
    """The store's scheme before this build, when the build upgraded it."""


class Passes(Protocol):
    """The two heavy passes of a build, over the stored documents.

    Used as a context manager around both passes (a runner exports the documents once, for
    example); ``bad_records`` collects what a pass rejected, by kind.
    """

    name: str
    bad_records: dict[str, int]
    rederive: bool
    """Whether the passes derive each document's terms from its text (an upgrade needs
    that) rather than read the stored ones."""

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
    store: Store,
    analyzer: Analyzer,
    desc: str,
    progress: bool,
    *,
    from_text: bool = False,
    workers: int = 1,
) -> Iterator[tuple[int, dict[str, int]]]:
    """``(id, term counts)`` of every stored document, in id order: the stored counts, or
    with ``from_text`` (an upgrade) derived anew from the stored title and text, by
    ``workers`` processes when more than one."""
    total = store.count_documents()
    with tqdm(total=total, desc=desc, unit="doc", disable=not progress) as bar:
        rows = store.iter_terms(texts=from_text)
        if from_text:
            chunks = _chunked((i, title, text) for i, _, title, text in rows)
            pool = _workers_for(total, workers)
            for ids, counts in extract(chunks, analyzer, pool, _documents, _AGAIN):
                yield from zip(ids, counts, strict=True)
                bar.update(len(ids))
            return
        for doc_id, terms, title, text in rows:
            yield doc_id, terms if terms is not None else analyzer.term_counts(text or "", title)
            bar.update(1)


_AGAIN = "the build stopped; run it again (the store answers under its current scheme meanwhile)"

WORKERS_FROM = 2000
"""Term workers start for this many stored documents or more: starting one takes about a
second, what MeCab takes for a thousand petitions."""


def _workers_for(documents: int, workers: int) -> int:
    return workers if workers > 1 and documents >= WORKERS_FROM else 1


def _chunked(
    docs: Iterable[tuple[int, str | None, str | None]], size: int = 500
) -> Iterator[tuple[list[int], list[tuple[str, str | None]]]]:
    """``(ids, [(text, title)])`` of ``size`` documents at a time."""
    ids: list[int] = []
    texts: list[tuple[str, str | None]] = []
    for doc_id, title, text in docs:
        ids.append(doc_id)
        texts.append((text or "", title))
        if len(ids) >= size:
            yield ids, texts
            ids, texts = [], []
    if ids:
        yield ids, texts


def _documents(ids: list[int]) -> str:
    return f"the stored documents of internal ids {ids[0]} to {ids[-1]}"


def fingerprint_in_process(
    store: Store,
    analyzer: Analyzer,
    snapshot: DFSnapshot,
    todo: set[int],
    *,
    progress: bool = False,
    batch_size: int = 5000,
    desc: str = "fingerprints",
    from_text: bool = False,
    workers: int = 1,
) -> int:
    """Fingerprint the stored documents ``todo`` under ``snapshot``, in batches (their terms
    derived from their text with ``from_text``, by ``workers`` processes)."""
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
    for doc_id, terms in _counts_of(
        store, analyzer, desc, progress, from_text=from_text, workers=workers
    ):
        if doc_id in todo:
            ids.append(doc_id)
            counts.append(terms)
            if len(ids) >= batch_size:
                written += flush()
    return written + flush()


class InProcessPasses:
    """Both passes in this process, reading the term counts stored with each document.

    ``workers``: processes that derive terms anew from the stored texts in an upgrade."""

    name = "inprocess"

    def __init__(self, *, progress: bool = False, batch_size: int = 5000, workers: int = 1) -> None:
        self.progress = progress
        self.batch_size = batch_size
        self.workers = workers
        self.bad_records: dict[str, int] = {}
        self.rederive = False

    def session(self, store: Store, analyzer: Analyzer) -> AbstractContextManager[None]:
        from contextlib import nullcontext

        return nullcontext()

    def document_frequency(self, store: Store, analyzer: Analyzer) -> DFSnapshot:
        df: Counter[str] = Counter()
        n = 0
        for _, terms in _counts_of(
            store,
            analyzer,
            "document frequency",
            self.progress,
            from_text=self.rederive,
            workers=self.workers,
        ):
            df.update(terms.keys())
            n += 1
        return DFSnapshot.from_counts(n, df)

    def fingerprint(
        self, store: Store, analyzer: Analyzer, snapshot: DFSnapshot, todo: set[int]
    ) -> int:
        return fingerprint_in_process(
            store,
            analyzer,
            snapshot,
            todo,
            progress=self.progress,
            batch_size=self.batch_size,
            from_text=self.rederive,
            workers=self.workers,
        )


def run_build(
    store: Store,
    passes: Passes,
    *,
    analyzer: Analyzer | None = None,
    index_path: str | None = None,
    upgrade: bool = True,
    related_terms: int | None = None,
    workers: int = 1,
) -> BuildReport:
    """The build sequence of the module docstring, with ``passes`` for steps 2 and 3.

    ``workers``: processes that derive the terms to store after an upgrade (and those of
    ``passes`` in process: :class:`InProcessPasses`).

    ``related_terms``: how many terms of each document the related-posts index keeps from
    this build on (the store remembers it; default: as before, at first 512, which serves
    the exact top k of the score). Fewer take less memory, and the lists then differ from
    the exact score's (bench/README.md, "Fewer terms a document").

    ``upgrade`` (the default): a store of an older term scheme (``simhash64-v1``) is rebuilt
    under the current one with the same settings (:func:`~textrec.content.scheme.upgraded_scheme`):
    every document's terms are derived anew from its stored title and text into a new DF
    snapshot and fingerprints, while the store keeps answering under its old scheme; the
    switch of snapshot and scheme is one transaction; the new term counts are then stored.
    With ``upgrade=False`` (or an ``analyzer`` of the old scheme) the store keeps its scheme.
    """
    if related_terms is not None and (
        not isinstance(related_terms, int) or isinstance(related_terms, bool) or related_terms < 1
    ):
        raise ValueError(f"related_terms must be a whole number >= 1, got {related_terms!r}")
    stored = store.scheme()
    analyzer, upgrading = _build_analyzer(store, stored, analyzer, upgrade)
    check_workers(analyzer if upgrading else None, workers)  # workers only derive terms anew
    if store.count_documents() == 0:
        raise ValueError(f"{store.url} holds no documents: run `textrec ingest FILE` first.")
    if upgrading:
        log.info("upgrading %s from scheme %s to %s", store.url, stored, analyzer.scheme)
        passes.rederive = True
    with passes.session(store, analyzer):
        snapshot = passes.document_frequency(store, analyzer)
        if (
            store.snapshot_status(snapshot.id) != ("ready", analyzer.scheme)
            or store.current_snapshot_id() != snapshot.id
        ):
            store.begin_snapshot(snapshot, analyzer.scheme, upgrade=upgrading)
        todo = store.ids_without_fingerprint(snapshot.id)
        done = passes.fingerprint(store, analyzer, snapshot, todo) if todo else 0
    store.activate_snapshot(
        snapshot.id, scheme=analyzer.scheme if upgrading else None, related_terms=related_terms
    )
    late = store.ids_without_fingerprint(snapshot.id)
    if late:
        log.info("fingerprinting %d document(s) ingested during the build", len(late))
        done += fingerprint_in_process(store, analyzer, snapshot, late, desc="late fingerprints")
    if upgrading:
        store_terms(store, analyzer, workers=workers)
    log.info(
        "DF snapshot %s (%s): %d documents, %d terms",
        snapshot.id,
        passes.name,
        snapshot.n_docs,
        len(snapshot),
    )
    index_path = refresh_index_file(store, index_path, analyzer, readers=True)
    return BuildReport(
        snapshot.id,
        snapshot.n_docs,
        len(snapshot),
        done,
        index_path,
        stored if upgrading else None,
    )


def _build_analyzer(
    store: Store, stored: str | None, analyzer: Analyzer | None, upgrade: bool
) -> tuple[Analyzer, bool]:
    """The analyzer a build uses, and whether the build upgrades the store's scheme."""
    target = upgraded_scheme(stored) if stored is not None and upgrade else None
    if analyzer is None and target is not None:
        return Analyzer.from_scheme(target), True
    if analyzer is not None and target is not None and analyzer.scheme == target:
        return analyzer, True
    return analyzer_for(stored, analyzer, where=store.url), False


def store_terms(
    store: Store, analyzer: Analyzer, *, batch_size: int = 2000, workers: int = 1
) -> int:
    """Derive and store the term counts of the documents whose terms are not stored (all of
    them right after an upgrade), in batches, by ``workers`` processes when more than one;
    returns how many were written."""
    ids = store.ids_without_terms()
    docs = (
        (i, d.title, d.text)
        for start in range(0, len(ids), batch_size)
        for i, d in store.get_documents(ids[start : start + batch_size]).items()
    )
    written = 0
    pool = _workers_for(store.count_documents(), workers)
    for keys, counts in extract(_chunked(docs, batch_size), analyzer, pool, _documents, _AGAIN):
        written += store.put_terms(analyzer.scheme, zip(keys, counts, strict=True))
    return written


def build(
    store: Store,
    *,
    analyzer: Analyzer | None = None,
    index_path: str | None = None,
    progress: bool = False,
    batch_size: int = 5000,
    upgrade: bool = True,
    related_terms: int | None = None,
    workers: int = 1,
) -> BuildReport:
    """Compute the DF snapshot of all stored documents in process, fingerprint them, make it
    current and write the index files (:func:`run_build` with :class:`InProcessPasses`).
    ``workers``: processes that derive every document's terms anew in an upgrade of
    :data:`WORKERS_FROM` documents or more (the other builds read the stored terms).

    Idempotent: when the corpus has not changed, the snapshot id is the same and only
    documents without a fingerprint under it are fingerprinted.
    """
    passes = InProcessPasses(progress=progress, batch_size=batch_size, workers=workers)
    return run_build(
        store,
        passes,
        analyzer=analyzer,
        index_path=index_path,
        upgrade=upgrade,
        related_terms=related_terms,
        workers=workers,
    )


def refresh_index_file(
    store: Store,
    index_path: str | None = None,
    analyzer: Analyzer | None = None,
    *,
    readers: bool = False,
) -> str | None:
    """Bring the index files up to date with the store (caught up, or rebuilt) unless they
    match it already; returns their path (None for a store with no file beside it).
    ``readers``: the readers' file too (:mod:`textrec.collab.readers`; a build writes it, an
    ingest of documents leaves it to the next start-up)."""
    path = index_path if index_path is not None else default_index_path(store)
    if path is None or store.current_snapshot_id() is None:
        return None
    analyzer = analyzer_for(store.scheme(), analyzer, where=store.url)
    indexes = StoreIndexes.open(store, analyzer, path)
    if indexes.changed:
        indexes.save(path)
    if readers:
        from textrec.collab.readers import open_readers, readers_path

        index = open_readers(store, readers_path(path), queries=False)
        if index.changed:
            index.save(readers_path(path))
    return path


def load_index(store: Store, index_path: str | None = None) -> HammingIndex:
    """The Hamming index of the current snapshot: from the index file when it matches the
    store (or can be caught up with it), otherwise from the store's fingerprints."""
    path = index_path if index_path is not None else default_index_path(store)
    return load_hamming(store, path)

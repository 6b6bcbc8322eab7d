"""In-process build and ingest: the single-machine pipeline over the store.

``ingest`` validates documents, extracts their terms once (stored with the document) and, when
the store already has a DF snapshot, fingerprints them against it in the same transaction, so
an appended document is immediately searchable. ``build`` computes a DF snapshot over every
stored document, fingerprints every document under it and makes it current, then writes the
index snapshot file.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from .corpus import Record, RecordError
from .index import HammingIndex
from .pipeline import Analyzer
from .related import RelatedIndex
from .store import DuplicateIdError, NewDocument, SnapshotChangedError, Store
from .tfidf import DFSnapshot

__all__ = [
    "BuildReport",
    "IngestReport",
    "build",
    "build_related_index",
    "default_index_path",
    "ingest",
    "load_index",
    "load_related_index",
    "refresh_index_file",
    "related_path",
]

log = logging.getLogger(__name__)

_SNAPSHOT_RETRIES = 5


@dataclass
class IngestReport:
    """What an ingest stored and what it rejected."""

    stored: list[str] = field(default_factory=list)
    rejected: list[RecordError] = field(default_factory=list)
    fingerprinted: int = 0


@dataclass
class BuildReport:
    """The outcome of a build."""

    snapshot_id: str
    n_docs: int
    n_terms: int
    fingerprinted: int
    index_path: str | None


def default_index_path(store: Store) -> str | None:
    """``<database file>.index`` beside a SQLite database file, else None."""
    path = store.sqlite_path
    return f"{path}.index" if path else None


def _batches(
    items: Iterable[Record | RecordError], size: int
) -> Iterator[list[Record | RecordError]]:
    batch: list[Record | RecordError] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def ingest(
    store: Store,
    records: Iterable[Record | RecordError],
    *,
    analyzer: Analyzer | None = None,
    batch_size: int = 500,
    progress: bool = False,
    on_stored: Callable[[list[int], list[int], list[dict[str, int]]], None] | None = None,
    under_snapshot: tuple[DFSnapshot, str] | None = None,
) -> IngestReport:
    """Store valid records in transactions of ``batch_size``; collect the rejected ones.

    A record is rejected when it is malformed (see :mod:`textrec.corpus`), has no terms, or
    its id is already stored or appeared earlier in this ingest. ``on_stored(ids, fps, terms)``
    is called after each committed batch that was fingerprinted (the Recommender adds them to
    its indexes there).
    """
    analyzer = analyzer or Analyzer()
    report = IngestReport()
    seen: set[str] = set()
    # ``under_snapshot=(DFSnapshot, scheme)``: fingerprint under this one instead of reading
    # (and parsing) the store's current snapshot; the Recommender passes the one its index
    # uses, which also keeps appended fingerprints comparable with its index.
    current = under_snapshot if under_snapshot is not None else store.current_snapshot()
    bar = tqdm(desc="ingest", unit="doc", disable=not progress, leave=False)
    for batch in _batches(records, batch_size):
        good: list[Record] = []
        for item in batch:
            if isinstance(item, RecordError):
                report.rejected.append(item)
            elif item.id in seen:
                report.rejected.append(
                    RecordError(item.source, item.line, "duplicate id in this input", item.id)
                )
            else:
                seen.add(item.id)
                good.append(item)
        already = store.existing_external_ids([r.id for r in good])
        docs: list[NewDocument] = []
        kept: list[Record] = []
        for r in good:
            if r.id in already:
                report.rejected.append(RecordError(r.source, r.line, "id already stored", r.id))
                continue
            terms = analyzer.term_counts(r.text, r.title)
            if not terms:
                report.rejected.append(
                    RecordError(r.source, r.line, "no terms (nouns) found in title or text", r.id)
                )
                continue
            docs.append(NewDocument(r.id, r.text, r.title, r.meta, terms))
            kept.append(r)
        if docs:
            fps: list[int] | None = None
            fp_arg = None
            if current is not None:
                snapshot, scheme = current
                fps = analyzer.fingerprints([d.terms or {} for d in docs], snapshot)
                fp_arg = (snapshot.id, scheme, fps)
            try:
                for attempt in range(_SNAPSHOT_RETRIES):
                    try:
                        ids = store.add_documents(
                            docs, fingerprints=fp_arg, require_no_snapshot=True
                        )
                        break
                    except SnapshotChangedError:
                        # A build activated another snapshot: fingerprint under it instead.
                        # The Recommender's index is tied to its snapshot: it must reload.
                        if under_snapshot is not None or attempt == _SNAPSHOT_RETRIES - 1:
                            raise
                        current = store.current_snapshot()
                        fps, fp_arg = None, None
                        if current is not None:
                            snapshot, scheme = current
                            fps = analyzer.fingerprints([d.terms or {} for d in docs], snapshot)
                            fp_arg = (snapshot.id, scheme, fps)
            except DuplicateIdError as exc:  # a concurrent writer took an id meanwhile
                clash = set(exc.ids)
                for r in kept:
                    if r.id in clash:
                        report.rejected.append(
                            RecordError(r.source, r.line, "id already stored", r.id)
                        )
                keep = [i for i, r in enumerate(kept) if r.id not in clash]
                docs = [docs[i] for i in keep]
                kept = [kept[i] for i in keep]
                if fps is not None and fp_arg is not None:
                    fps = [fps[i] for i in keep]
                    fp_arg = (fp_arg[0], fp_arg[1], fps)
                ids = (
                    store.add_documents(docs, fingerprints=fp_arg, require_no_snapshot=True)
                    if docs
                    else []
                )
            report.stored.extend(r.id for r in kept)
            if kept:  # the acknowledgement: these documents are committed (see RELIABILITY.md)
                last = kept[-1]
                log.info(
                    "committed %d document(s) through %s:%d (id %r)",
                    len(kept),
                    last.source,
                    last.line,
                    last.id,
                )
            if fps is not None:
                report.fingerprinted += len(fps)
                if on_stored is not None:
                    on_stored(ids, fps, [d.terms or {} for d in docs])
        bar.update(len(batch))
    bar.close()
    report.rejected.sort(key=lambda e: (e.source, e.line))
    return report


def build(
    store: Store,
    *,
    analyzer: Analyzer | None = None,
    index_path: str | None = None,
    progress: bool = False,
    batch_size: int = 5000,
) -> BuildReport:
    """Compute the DF snapshot of all stored documents, fingerprint them, make it current.

    Idempotent: when the corpus has not changed, the snapshot id is the same and only
    documents without a fingerprint under it are fingerprinted.
    """
    analyzer = analyzer or Analyzer()
    total = store.count_documents()
    if total == 0:
        raise ValueError(f"{store.url} holds no documents: run `textrec ingest FILE` first.")

    def counts_of_all(desc: str) -> Iterator[tuple[int, dict[str, int]]]:
        with tqdm(total=total, desc=desc, unit="doc", disable=not progress) as bar:
            for doc_id, terms, title, text in store.iter_terms():
                if terms is None:
                    terms = analyzer.term_counts(text or "", title)
                yield doc_id, terms
                bar.update(1)

    df: Counter[str] = Counter()
    n = 0
    for _, terms in counts_of_all("document frequency"):
        df.update(terms.keys())
        n += 1
    snapshot = DFSnapshot.from_counts(n, df)
    del df
    status = store.snapshot_status(snapshot.id)
    if status != ("ready", analyzer.scheme) or store.current_snapshot_id() != snapshot.id:
        store.begin_snapshot(snapshot, analyzer.scheme)
    done = 0
    ids: list[int] = []
    counts: list[dict[str, int]] = []

    def flush() -> int:
        fps = analyzer.fingerprints(counts, snapshot)
        written = store.put_fingerprints(snapshot.id, analyzer.scheme, zip(ids, fps, strict=True))
        ids.clear()
        counts.clear()
        return written

    todo = store.ids_without_fingerprint(snapshot.id)
    if todo:
        for doc_id, terms in counts_of_all("fingerprints"):
            if doc_id in todo:
                ids.append(doc_id)
                counts.append(terms)
                if len(ids) >= batch_size:
                    done += flush()
        done += flush()
    store.activate_snapshot(snapshot.id)
    # Documents that an ingest committed under the old snapshot after the listing above lost
    # that fingerprint at activation; from now on every ingest fingerprints under this one.
    late = store.ids_without_fingerprint(snapshot.id)
    if late:
        for doc_id, terms in counts_of_all("late fingerprints"):
            if doc_id in late:
                ids.append(doc_id)
                counts.append(terms)
        done += flush()
    log.info("DF snapshot %s: %d documents, %d terms", snapshot.id, n, len(snapshot))
    if index_path is None:
        index_path = default_index_path(store)
    if index_path is not None:
        index_from_store(store, snapshot.id, analyzer.scheme).save(index_path)
        related = build_related_index(store, snapshot, analyzer)
        related.save(related_path(index_path), scheme=analyzer.scheme, snapshot_id=snapshot.id)
    return BuildReport(snapshot.id, n, len(snapshot), done, index_path)


def index_from_store(store: Store, snapshot_id: str, scheme: str) -> HammingIndex:
    ids, codes, stored_scheme = store.fingerprints(snapshot_id)
    index = HammingIndex(scheme=stored_scheme or scheme, snapshot_id=snapshot_id)
    index.add(ids, codes)
    return index


def related_path(index_path: str) -> str:
    """The related-posts index file that goes with an index file."""
    return f"{index_path}.related"


def build_related_index(
    store: Store, snapshot: DFSnapshot, analyzer: Analyzer, *, batch_size: int = 20_000
) -> RelatedIndex:
    """A :class:`~textrec.related.RelatedIndex` of every stored document under ``snapshot``,
    from the term counts stored with each document."""
    related = RelatedIndex(snapshot.df.keys())
    ids: list[int] = []
    weights: list[dict[str, float]] = []
    for doc_id, terms, title, text in store.iter_terms():
        if terms is None:
            terms = analyzer.term_counts(text or "", title)
        ids.append(doc_id)
        weights.append(analyzer.weights(terms, snapshot))
        if len(ids) >= batch_size:
            related.add(ids, weights)
            ids, weights = [], []
    related.add(ids, weights)
    related.compact()
    return related


def load_related_index(
    store: Store,
    snapshot: DFSnapshot,
    scheme: str,
    analyzer: Analyzer,
    index_path: str | None,
    *,
    fingerprinted: npt.NDArray[np.int64] | None = None,
) -> RelatedIndex:
    """The related-posts index: from ``<index_path>.related`` when that file matches the store
    (scheme, DF snapshot and the same documents) or can be brought up to date with it,
    otherwise built from the store. ``fingerprinted``: the ids of the documents that have a
    fingerprint under ``snapshot``, when the caller has them (the Hamming index's ids), to
    save reading them again."""
    return _load_related(store, snapshot, scheme, analyzer, index_path, fingerprinted)[0]


def _load_related(
    store: Store,
    snapshot: DFSnapshot,
    scheme: str,
    analyzer: Analyzer,
    index_path: str | None,
    fingerprinted: npt.NDArray[np.int64] | None = None,
) -> tuple[RelatedIndex, bool]:
    if index_path is not None and os.path.exists(related_path(index_path)):
        path = related_path(index_path)
        try:
            related, header = RelatedIndex.load(path)
        except ValueError as exc:
            log.warning("%s not used (%s); building from the store", path, exc)
        else:
            if (header.get("scheme"), header.get("snapshot_id")) == (scheme, snapshot.id):
                if related.live_summary() == store.fingerprint_summary(snapshot.id):
                    return related, True
                if _catch_up_related(related, store, snapshot, analyzer, fingerprinted):
                    log.info("%s was behind the store; applied the changes since", path)
                    return related, False
            log.info("%s is stale; building from the store", path)
    return build_related_index(store, snapshot, analyzer), False


def _catch_up_related(
    related: RelatedIndex,
    store: Store,
    snapshot: DFSnapshot,
    analyzer: Analyzer,
    fingerprinted: npt.NDArray[np.int64] | None,
) -> bool:
    """Bring a related-posts index saved earlier under the current snapshot up to date with
    the store (the documents appended and removed since, as after a crash before the file was
    rewritten), instead of rebuilding it from every document. False when that cannot be done:
    documents fingerprinted out of id order, or more new documents than old ones (a rebuild
    costs no more then), or the store changed meanwhile."""
    target = fingerprinted if fingerprinted is not None else store.fingerprints(snapshot.id)[0]
    ids, dead = related.document_ids()
    removed = np.setdiff1d(ids[~dead], target, assume_unique=True)
    added = np.setdiff1d(target, ids, assume_unique=True)
    if len(added) and len(ids) and added[0] <= ids[-1]:
        return False
    if len(added) > len(target) // 2:
        return False
    related.remove(removed.tolist())
    for start in range(0, len(added), 5000):
        chunk = added[start : start + 5000].tolist()
        docs = store.get_documents(chunk)
        weights = []
        for doc_id in chunk:
            doc = docs[doc_id]
            terms = (
                doc.terms if doc.terms is not None else analyzer.term_counts(doc.text, doc.title)
            )
            weights.append(analyzer.weights(terms, snapshot))
        related.add(chunk, weights)
    return related.live_summary() == store.fingerprint_summary(snapshot.id)


def refresh_index_file(
    store: Store, index_path: str | None = None, analyzer: Analyzer | None = None
) -> str | None:
    """Rewrite the index files from the store if they no longer match; return the path."""
    path = index_path if index_path is not None else default_index_path(store)
    current = store.current_snapshot()
    if path is None or current is None:
        return None
    index, from_file = _load_index(store, path)
    if not from_file:
        index.save(path)
    snapshot, scheme = current
    related, from_file = _load_related(
        store, snapshot, scheme, analyzer or Analyzer(), path, index.ids
    )
    if not from_file:
        related.save(related_path(path), scheme=scheme, snapshot_id=snapshot.id)
    return path


def load_index(store: Store, index_path: str | None = None) -> HammingIndex:
    """The index of the current snapshot: from ``index_path`` when that file matches the store
    (scheme, DF snapshot and the same document ids), otherwise from the store's fingerprints."""
    path = index_path if index_path is not None else default_index_path(store)
    return _load_index(store, path)[0]


def _load_index(store: Store, path: str | None) -> tuple[HammingIndex, bool]:
    """``(index, whether it came from the file at path)``."""
    from .store import NotBuiltError

    current = store.current_snapshot()
    if current is None:
        raise NotBuiltError(store.url)
    snapshot, scheme = current
    if path is not None and os.path.exists(path):
        try:
            index = HammingIndex.load(path)
        except (OSError, ValueError) as exc:
            log.warning("index file %s not used (%s); loading from the store", path, exc)
        else:
            summary = (len(index), int(index.ids.sum()))
            if index.scheme == scheme and index.snapshot_id == snapshot.id:
                if summary == store.fingerprint_summary(snapshot.id):
                    return index, True
                if _catch_up_index(index, store, snapshot.id):
                    log.info("index file %s was behind the store; applied the changes since", path)
                    return index, False
            log.info("index file %s is stale; loading from the store", path)
    return index_from_store(store, snapshot.id, scheme), False


def _catch_up_index(index: HammingIndex, store: Store, snapshot_id: str) -> bool:
    """Bring an index file of the current snapshot up to date with the store's fingerprints
    (appends and removals since it was written) without reading every fingerprint when only
    appends happened. False when the store changed meanwhile or more changed than is left."""
    last = int(index.ids[-1]) if len(index) else -1
    ids, codes, _ = store.fingerprints(snapshot_id, after=last)
    if len(ids) > len(index):
        return False
    index.add(ids, codes)
    target = store.fingerprint_summary(snapshot_id)
    if (len(index), int(index.ids.sum())) != target:
        stored = store.fingerprinted_ids(snapshot_id)
        index.remove(np.setdiff1d(index.ids, stored, assume_unique=True))
        missing = np.setdiff1d(stored, index.ids, assume_unique=True)
        if len(missing):
            ids, codes, _ = store.fingerprints(snapshot_id, only=missing.tolist())
            index.add(ids, codes)
    return (len(index), int(index.ids.sum())) == store.fingerprint_summary(snapshot_id)

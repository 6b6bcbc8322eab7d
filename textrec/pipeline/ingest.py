"""Ingest: validate records, extract their terms once, store them; fingerprint at once.

Each record's terms are computed once and stored with the document. When the store already
has a DF snapshot, the batch is fingerprinted against it in the same transaction, so an
appended document is immediately searchable (a ``Recommender`` adds it to its indexes through
``on_stored``). The analyzer is the store's (:func:`~textrec.content.scheme.analyzer_for`):
a request under another scheme is refused.

Mecab takes about two thirds of an ingest's time. With ``workers`` > 1 the terms of the next
batches are extracted by that many worker processes while the current batch is written, in
input order: the same terms, stored in the same transactions, only sooner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field, replace

from tqdm import tqdm

from textrec.content.analyzer import Analyzer
from textrec.content.scheme import analyzer_for
from textrec.content.tfidf import DFSnapshot
from textrec.pipeline.records import Record, RecordError
from textrec.pipeline.workers import TermWorkerError, Texts, check_workers, terms_ahead
from textrec.store.sql import DuplicateIdError, NewDocument, SnapshotChangedError, Store

__all__ = ["NO_TERMS", "IngestReport", "TermWorkerError", "ingest"]

NO_TERMS = "no terms found in title or text: stored, but it gets no related posts"
"""The warning for a document without terms (emoji, punctuation, or a script Mecab does not
read as words). Such a post is still stored, listed and fetchable; its fingerprint is 0, so
it is left out of the indexes (``hamming`` mode, near-duplicates, related posts)."""

log = logging.getLogger(__name__)

_SNAPSHOT_RETRIES = 5


@dataclass
class IngestReport:
    """What an ingest stored and what it rejected."""

    stored: list[str] = field(default_factory=list)
    rejected: list[RecordError] = field(default_factory=list)
    fingerprinted: int = 0
    updated: list[str] = field(default_factory=list)
    """The ids among ``stored`` that replaced a stored document (``update=True``)."""
    replaced: list[tuple[int, int]] = field(default_factory=list)
    """``(old internal id, new internal id)`` of each of :attr:`updated`: an edited document
    gets a new internal id (the indexes only append)."""
    warnings: list[RecordError] = field(default_factory=list)
    """Stored records worth a look: those whose title and text gave no terms (stored and
    fetchable, but with no related posts: :data:`NO_TERMS`)."""


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


Terms = dict[int, dict[str, int]]
"""Term counts extracted ahead, by ``id()`` of the batch's records."""


def _lines(records: list[Record]) -> str:
    if not records:
        return "the input"
    first, last = records[0], records[-1]
    lines = f"{first.line}" if first.line == last.line else f"{first.line}-{last.line}"
    return f"{first.source}:{lines}"


def _terms_ahead(
    batches: Iterator[list[Record | RecordError]], scheme: str, workers: int
) -> Generator[tuple[list[Record | RecordError], Terms], None, None]:
    """Each batch with its records' term counts under ``scheme``, extracted by ``workers``
    processes a few batches ahead of the one returned; in input order."""

    def chunks() -> Iterator[tuple[tuple[list[Record | RecordError], list[Record]], Texts]]:
        for batch in batches:
            records = [r for r in batch if isinstance(r, Record)]
            yield (batch, records), [(r.text, r.title) for r in records]

    after = (
        "the batches committed before it are stored (ingest again: ids already stored are "
        "reported and skipped)"
    )
    for (batch, records), counts in terms_ahead(
        chunks(), scheme, workers, lambda payload: _lines(payload[1]), after
    ):
        yield batch, {id(r): c for r, c in zip(records, counts, strict=True)}


def ingest(
    store: Store,
    records: Iterable[Record | RecordError],
    *,
    analyzer: Analyzer | None = None,
    batch_size: int = 500,
    progress: bool = False,
    on_stored: Callable[[list[int], list[int], list[dict[str, int]]], None] | None = None,
    under_snapshot: tuple[DFSnapshot, str] | None = None,
    update: bool = False,
    on_replaced: Callable[[list[tuple[int, int]]], None] | None = None,
    workers: int = 1,
) -> IngestReport:
    """Store valid records in transactions of ``batch_size``; collect the rejected ones.

    A record is rejected when it is malformed (see :mod:`textrec.pipeline.records`), or its id
    is already stored or appeared earlier in this ingest. A record without terms is stored,
    with a warning (:data:`NO_TERMS`).
    ``on_stored(ids, fps, terms)`` is called after each committed batch that was fingerprinted
    (the Recommender adds them to its indexes there).

    ``update``: a record whose id is stored replaces that document (title, text, metadata,
    terms and fingerprint, in the batch's transaction; see
    :meth:`~textrec.store.sql.Store.replace_documents`), the others are added: an upsert.
    ``on_replaced([(old id, new id)])`` is then called, before ``on_stored`` with the new
    ids, for the batch's edited documents (an edited document gets a new internal id).

    ``workers`` > 1: that many processes extract the terms of the next batches while this
    one writes (the analyzer must be one :meth:`~textrec.content.analyzer.Analyzer.from_scheme`
    rebuilds: a tokenizer of your own runs in this process only). The workers are started
    with ``spawn``, so a script that calls this needs the usual
    ``if __name__ == "__main__":`` guard.
    """
    explicit = analyzer is not None
    analyzer = analyzer_for(store.scheme(), analyzer, where=store.url)
    check_workers(analyzer, workers)
    report = IngestReport()
    seen: set[str] = set()
    # ``under_snapshot=(DFSnapshot, scheme)``: fingerprint under this one instead of reading
    # (and parsing) the store's current snapshot; the Recommender passes the one its index
    # uses, which also keeps appended fingerprints comparable with its index.
    current = under_snapshot if under_snapshot is not None else store.current_snapshot()
    bar = tqdm(desc="ingest", unit="doc", disable=not progress, leave=False)
    batches: Generator[tuple[list[Record | RecordError], Terms], None, None]
    batches = ((b, {}) for b in _batches(records, batch_size))
    ahead = analyzer.scheme
    if workers > 1:
        batches = _terms_ahead(_batches(records, batch_size), ahead, workers)
    try:
        for batch, extracted in batches:
            if analyzer.scheme != ahead:  # a build upgraded the scheme meanwhile: extract here
                extracted = {}

            def terms_of(
                r: Record, extracted: Terms = extracted, analyzer: Analyzer = analyzer
            ) -> dict[str, int]:
                found = extracted.get(id(r))
                return found if found is not None else analyzer.term_counts(r.text, r.title)

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
            if update:
                if good:
                    analyzer, current = _replace_batch(
                        store, good, analyzer, current, report, explicit, under_snapshot,
                        on_stored, on_replaced, terms_of,
                    )  # fmt: skip
                bar.update(len(batch))
                continue
            already = store.existing_external_ids([r.id for r in good])
            docs: list[NewDocument] = []
            kept: list[Record] = []
            for r in good:
                if r.id in already:
                    report.rejected.append(RecordError(r.source, r.line, "id already stored", r.id))
                    continue
                terms = terms_of(r)
                if not terms:
                    report.warnings.append(RecordError(r.source, r.line, NO_TERMS, r.id))
                docs.append(NewDocument(r.id, r.text, r.title, r.meta, terms))
                kept.append(r)
            if docs:
                fps, fp_arg = _fingerprints_of(analyzer, docs, current)
                try:
                    for attempt in range(_SNAPSHOT_RETRIES):
                        try:
                            ids = store.add_documents(
                                docs,
                                fingerprints=fp_arg,
                                require_no_snapshot=True,
                                scheme=analyzer.scheme,
                            )
                            break
                        except SnapshotChangedError:
                            # A build activated another snapshot: fingerprint under it instead.
                            # The Recommender's index is tied to its snapshot: it must reload.
                            if under_snapshot is not None or attempt == _SNAPSHOT_RETRIES - 1:
                                raise
                            current = store.current_snapshot()
                            if not explicit and store.scheme() != analyzer.scheme:
                                # The build upgraded the store's term scheme: the terms too.
                                analyzer = analyzer_for(store.scheme(), None, where=store.url)
                                docs = [
                                    replace(d, terms=analyzer.term_counts(d.text, d.title))
                                    for d in docs
                                ]
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
                        store.add_documents(
                            docs,
                            fingerprints=fp_arg,
                            require_no_snapshot=True,
                            scheme=analyzer.scheme,
                        )
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
    finally:
        batches.close()  # stops the workers now, not when the generator is collected
    bar.close()
    report.rejected.sort(key=lambda e: (e.source, e.line))
    stored = set(report.stored)
    report.warnings = [w for w in report.warnings if w.id in stored]
    return report


def _fingerprints_of(
    analyzer: Analyzer, docs: list[NewDocument], current: tuple[DFSnapshot, str] | None
) -> tuple[list[int] | None, tuple[str, str, list[int]] | None]:
    """The documents' fingerprints under the current ``(snapshot, scheme)``, and the
    ``fingerprints`` argument of the store's writes; ``(None, None)`` before the first build."""
    if current is None:
        return None, None
    snapshot, scheme = current
    fps = analyzer.fingerprints([d.terms or {} for d in docs], snapshot)
    return fps, (snapshot.id, scheme, fps)


def _replace_batch(
    store: Store,
    good: list[Record],
    analyzer: Analyzer,
    current: tuple[DFSnapshot, str] | None,
    report: IngestReport,
    explicit: bool,
    under_snapshot: tuple[DFSnapshot, str] | None,
    on_stored: Callable[[list[int], list[int], list[dict[str, int]]], None] | None,
    on_replaced: Callable[[list[tuple[int, int]]], None] | None,
    terms_of: Callable[[Record], dict[str, int]],
) -> tuple[Analyzer, tuple[DFSnapshot, str] | None]:
    """One batch of ``ingest(update=True)``: every record replaces or adds its document, in
    one transaction. Returns the analyzer and snapshot in force afterwards (a build may have
    switched them meanwhile). ``terms_of``: a record's terms under the analyzer given."""

    def documents() -> list[NewDocument]:
        return [
            NewDocument(r.id, r.text, r.title, r.meta, analyzer.term_counts(r.text, r.title))
            for r in good
        ]

    docs = [NewDocument(r.id, r.text, r.title, r.meta, terms_of(r)) for r in good]
    for attempt in range(_SNAPSHOT_RETRIES):
        fps, fp_arg = _fingerprints_of(analyzer, docs, current)
        last = attempt == _SNAPSHOT_RETRIES - 1
        try:
            pairs = store.replace_documents(
                docs, fingerprints=fp_arg, require_no_snapshot=True, scheme=analyzer.scheme
            )
            break
        except SnapshotChangedError:
            if under_snapshot is not None or last:
                raise
            current = store.current_snapshot()
            if not explicit and store.scheme() != analyzer.scheme:
                analyzer = analyzer_for(store.scheme(), None, where=store.url)
                docs = documents()
        except DuplicateIdError:  # a concurrent writer added one of them: replace it now
            if last:
                raise
    report.stored.extend(r.id for r in good)
    report.updated.extend(r.id for (old, _), r in zip(pairs, good, strict=True) if old is not None)
    report.replaced.extend((old, new) for old, new in pairs if old is not None)
    report.warnings.extend(
        RecordError(r.source, r.line, NO_TERMS, r.id)
        for r, d in zip(good, docs, strict=True)
        if not d.terms
    )
    log.info(
        "committed %d document(s) through %s:%d (id %r)",
        len(good),
        good[-1].source,
        good[-1].line,
        good[-1].id,
    )
    if on_replaced is not None:
        on_replaced([(old, new) for old, new in pairs if old is not None])
    if fps is not None:
        report.fingerprinted += len(fps)
        if on_stored is not None:
            on_stored([new for _, new in pairs], fps, [d.terms or {} for d in docs])
    return analyzer, current

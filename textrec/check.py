"""`textrec check`: verify that the store, its DF snapshot and the index file agree.

Every problem found is named; an empty list means the store is consistent:

- the current DF snapshot's stored payload hashes to its id, and its N and vocabulary size
  match its row;
- every document has exactly one fingerprint under the current snapshot, all of its scheme
  (0 for a document without weighted terms, which the index files leave out);
- a random sample of documents, re-tokenised from their text, gives the stored term counts and
  the stored fingerprint;
- the index file (when there is one) is intact (checksum); one whose scheme, snapshot or
  contents no longer match the store is reported as a warning, since it is then not used;
- so is the related-posts index file beside it (``<index>.related``): unreadable is a
  problem; stale, missing or of an earlier textrec's format a warning (it is then rebuilt
  from the store at start-up);
- and the readers' file (``<index>.readers``) likewise: unreadable is a problem, behind, of
  another store, stale or missing a warning (it is then caught up or rebuilt at start-up).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from textrec.artifacts import Freshness, freshness
from textrec.artifacts.indexes import default_index_path, related_key, related_path, related_terms
from textrec.content.analyzer import Analyzer
from textrec.content.hamming import HammingIndex
from textrec.content.related import EarlierFormatError, RelatedIndex
from textrec.content.scheme import analyzer_for
from textrec.content.simhash import fingerprint_hex
from textrec.content.tfidf import DFSnapshot, DFSnapshotError
from textrec.pipeline.records import MAX_META_DEPTH, too_deep_field
from textrec.store.sql import Store, StoreStamp

__all__ = ["CheckReport", "check"]


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    facts: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(
    store: Store,
    *,
    index_path: str | None = None,
    sample: int = 100,
    seed: int = 0,
    analyzer: Analyzer | None = None,
) -> CheckReport:
    """Check the store (and the index file) for consistency; see the module docstring."""
    report = CheckReport()
    stamp = store.stamp()
    n_docs = store.count_documents()
    report.facts["documents"] = n_docs
    sid = store.current_snapshot_id()
    if sid is None:
        report.facts["snapshot"] = None
        return report
    report.facts["snapshot"] = sid
    record = store.snapshot_record(sid)
    if record is None:
        report.problems.append(f"the current snapshot {sid} has no row in df_snapshots")
        return report
    scheme = str(record["scheme"])
    report.facts["scheme"] = scheme
    analyzer = analyzer_for(store.scheme(), analyzer, where=store.url)
    try:
        snapshot = DFSnapshot.from_bytes(record["data"], source=f"snapshot {sid}")
    except (DFSnapshotError, ValueError) as exc:
        report.problems.append(f"snapshot {sid}: stored payload is unreadable: {exc}")
        return report
    if snapshot.id != sid:
        report.problems.append(
            f"snapshot {sid}: stored payload hashes to {snapshot.id} (checksum mismatch)"
        )
    if (snapshot.n_docs, len(snapshot)) != (record["n_docs"], record["n_terms"]):
        report.problems.append(
            f"snapshot {sid}: row says N={record['n_docs']}, {record['n_terms']} terms; "
            f"payload has N={snapshot.n_docs}, {len(snapshot)} terms"
        )
    if record["status"] != "ready":
        report.problems.append(f"snapshot {sid} is current but its status is {record['status']}")

    ids, codes, _ = store.fingerprints(sid)
    report.facts["fingerprints"] = len(ids)
    missing = [d.external_id for d in store.documents_without_fingerprint(sid)]
    if missing:
        shown = ", ".join(repr(m) for m in missing[:5])
        report.problems.append(
            f"{len(missing)} document(s) have no fingerprint under snapshot {sid}: {shown}"
            + (" …" if len(missing) > 5 else "")
        )
    if len(ids) + len(missing) != n_docs:
        report.problems.append(
            f"{n_docs} documents but {len(ids)} fingerprints and {len(missing)} missing"
        )
    schemes = store.fingerprint_schemes(sid)
    for other, count in schemes.items():
        if other != scheme:
            report.problems.append(f"{count} fingerprint(s) have scheme {other!r}, not {scheme!r}")

    # Recompute a sample from the texts.
    if len(ids):
        rng = random.Random(seed)
        chosen = sorted(rng.sample(range(len(ids)), min(sample, len(ids))))
        docs = store.get_documents([int(ids[i]) for i in chosen])
        checked = 0
        for i in chosen:
            doc = docs.get(int(ids[i]))
            if doc is None:
                continue
            deep = too_deep_field(doc.meta)
            if deep is not None:
                report.problems.append(
                    f"document {doc.external_id!r}: metadata field {deep!r} is nested more "
                    f"than {MAX_META_DEPTH} levels deep, which the HTTP API cannot return "
                    "(stored before ingest refused it): remove it and ingest it again"
                )
            terms = analyzer.term_counts(doc.text, doc.title)
            if doc.terms is not None and doc.terms != terms:
                report.problems.append(
                    f"document {doc.external_id!r}: stored term counts differ from its text's"
                )
            fp = analyzer.fingerprint(terms, snapshot)
            if fp != int(codes[i]):
                report.problems.append(
                    f"document {doc.external_id!r}: stored fingerprint "
                    f"{fingerprint_hex(int(codes[i]))} but its text gives {fingerprint_hex(fp)}"
                )
            checked += 1
        report.facts["recomputed"] = checked

    path = index_path if index_path is not None else default_index_path(store)
    report.facts["index_file"] = path
    if path is not None:
        nonzero = codes != 0  # documents without weighted terms are in no index
        ids, codes = ids[nonzero], codes[nonzero]
        try:
            index = HammingIndex.load(path, verify=True)
        except FileNotFoundError:
            report.problems.append(f"index file {path} does not exist: run `textrec build`")
        except (OSError, ValueError, EOFError) as exc:
            report.problems.append(_unreadable("index file", path, exc))
        else:
            same = np.array_equal(index.ids, ids) and np.array_equal(index.codes, codes)
            _check_file(
                report,
                f"index file {path}",
                (index.scheme, index.snapshot_id, index.provenance),
                (scheme, sid, stamp),
                same,
                f"{len(index)} documents, the store has {len(ids)} fingerprints",
            )
            report.facts["indexed"] = len(index)
        key = related_key(sid, related_terms(store))  # and the terms a document it keeps
        _check_related(report, related_path(path), (scheme, key, stamp), ids)
        _check_readers(report, path, store, stamp)
        _check_models(report, path, store)
        _check_leftovers(report, path)
    return report


def _check_readers(report: CheckReport, index_path: str, store: Store, stamp: StoreStamp) -> None:
    """The readers' file beside the index (:mod:`textrec.collab.readers`), by the rule of
    the other derived files; one that claims the store's present state must hold every
    document with events, through the last event."""
    from textrec.collab.events import KIND_WEIGHTS
    from textrec.collab.readers import (
        READERS_SCHEME,
        read_readers_file,
        readers_path,
        weights_label,
    )

    path = readers_path(index_path)
    if not os.path.exists(path):
        report.warnings.append(
            f"readers file {path} does not exist: the readers' index is derived from every "
            "event at each start-up until `textrec build` (or a server's shutdown) writes it"
        )
        return
    try:
        header, arrays = read_readers_file(path)
    except (OSError, ValueError) as exc:
        report.problems.append(_unreadable("readers file", path, exc))
        return
    what = f"readers file {path}"
    if (header.get("scheme"), header.get("weights")) != (
        READERS_SCHEME,
        weights_label(KIND_WEIGHTS),
    ):
        report.warnings.append(
            f"{what} is stale: made under signature scheme {header.get('scheme')!r} and "
            f"weights {header.get('weights')}; it is rebuilt from the events at the next start-up"
        )
        return
    documents = len(arrays["doc_ids"])
    report.facts["readers_documents"] = documents
    stats = store.event_stats()
    last = store.last_event_id()
    same = stats["documents"] == documents and int(header.get("last_event", -1)) >= last
    if int(header.get("erasures", -1)) != store.erasures():
        report.warnings.append(
            f"{what} is stale: events were deleted since it was written (forget, retention); "
            "it is rebuilt from the events at the next start-up"
        )
        return
    _check_file(
        report,
        what,
        (READERS_SCHEME, "", str(header.get("provenance") or "")),
        (READERS_SCHEME, "", stamp),
        same,
        f"{documents} documents with readers through event {header.get('last_event')}, the "
        f"store has {stats['documents']} through event {last}",
    )


def _check_models(report: CheckReport, index_path: str, store: Store) -> None:
    """The factor models beside the index (``textrec train``): one that cannot be read or
    was trained from another store is a problem (its mode answers as hybrid); a stale one
    (events since its training, readers erased from it inexactly) a warning."""
    from textrec.collab.factors import model_files, model_staleness

    for name, path, model in model_files(index_path):
        if isinstance(model, Exception):
            report.problems.append(
                f"{model}; the {name} mode answers as hybrid until `textrec train --model {name}`"
            )
            continue
        state = model_staleness(model, store)
        report.facts[f"{name}_model"] = (
            f"{len(model.users):,} readers, {len(model.items):,} documents, trained "
            f"{model.trained_at} through event {model.last_event}; "
            f"{state['events_since']:,} events since"
        )
        if not state["same_store"]:
            report.problems.append(
                f"the {name} model {path} was trained from another store; it is not used: run "
                f"`textrec train --model {name}`"
            )
        elif state["events_since"] or state["forgotten"] or state["erasures_since"]:
            since = int(str(state["events_since"]))
            why = [f"{since:,} event{'s' if since != 1 else ''} since its training"]
            if state["forgotten"]:
                why.append(f"{state['forgotten']} erased reader(s) still in its item vectors")
            if state["erasures_since"]:
                why.append(
                    "events deleted since its training (retention, or a reader forgotten by "
                    "another process) still count in it"
                )
            report.warnings.append(
                f"the {name} model {path} is stale ({'; '.join(why)}): it serves them folded "
                f"in per reader; `textrec train --model {name}` refreshes it"
            )


def _check_file(
    report: CheckReport,
    what: str,
    made: tuple[str, str, str],
    store: tuple[str, str, StoreStamp],
    same: bool,
    counts: str,
) -> None:
    """A derived file's header against the store (the rule of :mod:`textrec.artifacts`).

    A stale file is not an inconsistency: it is caught up or rebuilt at the next start-up,
    which only takes longer. A file that claims the store's present stamp but holds other
    documents is a problem: it would be used as it is."""
    scheme, sid, stamp = store
    if made[:2] != (scheme, sid):
        report.warnings.append(
            f"{what} is stale: scheme {made[0]!r} and snapshot {made[1]!r}, the store's are "
            f"{scheme!r} and {sid!r}; `textrec build` rewrites it"
        )
        return
    state = freshness(made[2], stamp)
    if state is Freshness.CURRENT and not same:
        report.problems.append(
            f"{what} records the store's present state but does not match it ({counts}): "
            f"delete it, or run `textrec build` to rewrite it"
        )
    elif state is Freshness.FOREIGN:
        report.warnings.append(
            f"{what} was made from another database (or a copy of this one that has diverged "
            f"since); it is rebuilt from the store at the next start-up"
        )
    elif not same:
        report.warnings.append(
            f"{what} is behind the store ({counts}); it is caught up at the next start-up"
        )


def _check_leftovers(report: CheckReport, index_path: str) -> None:
    """Temporary files of index writes that a crash interrupted: harmless (the files in use
    were renamed into place whole), but they take space until removed."""
    folder = os.path.dirname(os.path.abspath(index_path))
    name = os.path.basename(index_path)
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    leftovers = sorted(
        e
        for e in entries
        # atomic_write's temporary names: ".<file>.<random>.tmp", for the index file and for
        # "<index file>.related" alike.
        if e.startswith(f".{name}.") and e.endswith(".tmp")
    )
    if leftovers:
        report.warnings.append(
            f"{len(leftovers)} temporary file(s) of interrupted index writes in {folder} "
            f"({', '.join(leftovers[:3])}{' …' if len(leftovers) > 3 else ''}): "
            f"left by killed writers; the next write of the file deletes those older than a "
            f"minute, and they are safe to delete when no textrec process is running"
        )


def _unreadable(what: str, path: str, exc: BaseException) -> str:
    reason = str(exc) if path in str(exc) else f"{what} {path} cannot be read: {exc}"
    return (
        f"{reason}; it is rebuilt from the store at each start-up (with a warning) until "
        "`textrec build` writes it again"
    )


def _check_related(
    report: CheckReport,
    path: str,
    store: tuple[str, str, StoreStamp],
    fingerprinted: npt.NDArray[np.int64],
) -> None:
    if not os.path.exists(path):
        report.warnings.append(
            f"related-posts index file {path} does not exist: it is built from the store at "
            f"each start-up until `textrec build` writes it"
        )
        return
    try:
        related, header = RelatedIndex.load(path)
    except EarlierFormatError as exc:  # expected after upgrading textrec: not damage
        report.warnings.append(
            f"{exc}: it is built from the store at each start-up until `textrec build` "
            f"writes it again"
        )
        return
    except (OSError, ValueError, EOFError) as exc:
        report.problems.append(_unreadable("related-posts index file", path, exc))
        return
    ids, dead = related.document_ids()
    live = ids[~dead]
    _check_file(
        report,
        f"related-posts index file {path}",
        (
            str(header.get("scheme")),
            related_key(str(header.get("snapshot_id")), related.top_terms),
            str(header.get("provenance") or ""),
        ),
        store,
        bool(np.array_equal(live, fingerprinted)),
        f"{len(live)} documents, the store has {len(fingerprinted)} fingerprints",
    )
    report.facts["related_indexed"] = len(live)

"""The ``textrec`` command line: a thin layer over the library.

Every subcommand has ``--help``. The database is ``--db URL``, else ``$TEXTREC_DB``, else
``sqlite:///textrec.db``. Exit status: 0 on success, 1 when something failed or records were
rejected, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from importlib import resources
from typing import TextIO

from sqlalchemy.exc import SQLAlchemyError

from textrec import __version__
from textrec.artifacts.indexes import StoreIndexes, default_index_path
from textrec.check import check
from textrec.content.analyzer import Analyzer
from textrec.content.scheme import analyzer_for
from textrec.content.simhash import fingerprint_hex
from textrec.content.tokenize import TokenizerUnavailableError
from textrec.evaluation.events import MODELS as EVENT_MODELS
from textrec.evaluation.events import PROTOCOLS
from textrec.filters import FilterError, Filters
from textrec.pipeline.build import build, refresh_index_file
from textrec.pipeline.ingest import TermWorkerError, ingest
from textrec.pipeline.records import DEFAULT_MAX_CHARS, Record, RecordError, read_records
from textrec.pipeline.runners import RUNNERS, JobsError
from textrec.recommend import (
    DEFAULT_COLLAPSE,
    MAX_K,
    MODES,
    RECOMMEND_MODES,
    Match,
    Recommendations,
    Recommender,
    UnknownDocumentError,
)
from textrec.sources import CONTENT_MODES
from textrec.store.sql import (
    NotBuiltError,
    SchemaOutOfDateError,
    Store,
    StoreReplacedError,
    describe_database_error,
    resolve_db_url,
)

__all__ = ["main"]


class CliError(Exception):
    """An error to report to the user in one line, without a traceback."""


class UsageError(CliError):
    """A bad option value found after parsing: reported in one line, exit status 2."""


def _store(args: argparse.Namespace) -> Store:
    return Store(args.db)


def _read_text(arg: str) -> str:
    return sys.stdin.read() if arg == "-" else arg


def _print_matches(out: TextIO, query: str, title: str | None, matches: list[Match]) -> None:
    out.write(f"{query}  {title or ''}\n".rstrip() + "\n")
    if not matches:
        out.write("  (no related documents)\n")
        return
    width = max(len(m.id) for m in matches)
    out.write(f"  {'rank':>4}  {'id':<{width}}  {'dist':>4}  {'score':>6}  title\n")
    for rank, m in enumerate(matches, start=1):
        shared = f"  [{', '.join(m.shared_terms)}]" if m.shared_terms else ""
        out.write(
            f"  {rank:>4}  {m.id:<{width}}  {'-' if m.distance is None else m.distance:>4}  "
            f"{m.score:>6.3f}  "
            f"{m.title or ''}{shared}\n"
        )


def _json_line(out: TextIO, query: str, matches: list[Match]) -> None:
    payload = {
        "query": query,
        "results": [m.to_dict() for m in matches],  # as over HTTP
    }
    out.write(json.dumps(payload, ensure_ascii=False) + "\n")


# subcommands ---------------------------------------------------------------------------------


def cmd_ingest(args: argparse.Namespace) -> int:
    store = _store(args)
    total_stored = 0
    rejected = 0
    for path in args.files:
        if path != "-" and not os.path.exists(path):
            raise CliError(f"{path}: no such file")
        if os.path.isdir(path):
            raise CliError(f"{path}: is a folder, not a file")
        broken: list[OSError] = []
        report = ingest(
            store,
            _until_unreadable(read_records(path, max_chars=args.max_chars), broken),
            batch_size=args.batch_size,
            progress=not args.quiet,
            update=args.update,
            workers=args.workers,
        )
        if broken:  # what was read before the break is stored; say how much
            for err in report.rejected:
                print(f"rejected: {err}", file=sys.stderr)
            raise CliError(
                f"{broken[0]}; the {len(report.stored)} valid record(s) before it were stored"
            )
        for err in report.rejected:
            print(f"rejected: {err}", file=sys.stderr)
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if report.fingerprinted:
            refresh_index_file(store, args.index)
        if report.replaced:  # edited posts keep their vectors in the reader models
            from textrec.collab.factors import rename_in_model_files

            index = args.index or default_index_path(store)
            if index:
                rename_in_model_files(str(index), report.replaced)
        total_stored += len(report.stored)
        rejected += len(report.rejected)
        extra = f", {report.fingerprinted} fingerprinted" if report.fingerprinted else ""
        warned = f", {len(report.warnings)} without terms" if report.warnings else ""
        updated = f" ({len(report.updated)} of them replaced)" if args.update else ""
        print(
            f"{path}: {len(report.stored)} stored{updated}{extra}{warned}, "
            f"{len(report.rejected)} rejected",
            file=sys.stderr,
        )
    if rejected and not args.skip_invalid:
        print(
            f"textrec: {rejected} record(s) rejected (the valid ones were stored); "
            f"pass --skip-invalid to exit 0 anyway",
            file=sys.stderr,
        )
        return 1
    return 0


def _until_unreadable(
    records: Iterator[Record | RecordError], broken: list[OSError]
) -> Iterator[Record | RecordError]:
    """``records`` until the file cannot be read further (a truncated or corrupt gzip, an
    I/O error); the error is put in ``broken``, so the records read before it are stored."""
    try:
        yield from records
    except OSError as exc:
        broken.append(exc)


def cmd_build(args: argparse.Namespace) -> int:
    store = _store(args)
    started = time.perf_counter()
    if args.runner == "inprocess":
        for flag, value in (("--input", args.input), ("--mrjob-conf", args.mrjob_conf)):
            if value:
                raise CliError(f"{flag} needs an mrjob runner (--runner inline|local|spark|...)")
        if args.append:
            raise CliError(
                "--append needs an mrjob runner; `textrec ingest` already "
                "fingerprints new documents in process"
            )
        report = build(
            store,
            index_path=args.index,
            progress=not args.quiet,
            upgrade=not args.keep_scheme,
            related_terms=args.related_terms,
            workers=args.cores,
        )
    else:
        from textrec.pipeline.runners import build_with_runner, fingerprint_new_with_runner

        options = {"index_path": args.index, "conf_path": args.mrjob_conf, "cores": args.cores}
        if args.append:
            if args.input:
                raise CliError("--append fingerprints stored documents; it takes no --input")
            if args.related_terms is not None:
                raise CliError("--related-terms needs a full build; it takes no --append")
            jobs_report = fingerprint_new_with_runner(store, args.runner, **options)
        else:
            jobs_report = build_with_runner(
                store,
                args.runner,
                inputs=args.input,
                upgrade=not args.keep_scheme,
                related_terms=args.related_terms,
                **options,
            )
        for kind, count in jobs_report.bad_records.items():
            print(f"bad records ({args.runner}): {kind}: {count:,}", file=sys.stderr)
        report = jobs_report
    elapsed = time.perf_counter() - started
    if report.upgraded_from:
        print(
            f"upgraded {store!r} from scheme {report.upgraded_from} to {store.scheme()}",
            file=sys.stderr,
        )
    print(
        f"DF snapshot {report.snapshot_id}: {report.n_docs:,} documents, "
        f"{report.n_terms:,} terms; {report.fingerprinted:,} fingerprinted in {elapsed:.1f} s",
        file=sys.stderr,
    )
    if report.index_path:
        print(f"index written to {report.index_path}", file=sys.stderr)
    return 0


def _recommender(args: argparse.Namespace) -> Recommender:
    return Recommender(_store(args), index_path=args.index, readers_store=args.readers_store)


def _filters(args: argparse.Namespace) -> Filters:
    """The filters of ``--exclude``, ``--where``, ``--since`` and ``--recency-days``; a bad
    one is a usage error naming its option."""
    try:
        return Filters.parse(
            exclude=args.exclude or (),
            where=args.where or (),
            since=args.since,
            recency_days=args.recency_days,
        )
    except FilterError as exc:
        option = "--" + exc.argument.replace("_", "-")
        raise UsageError(f"{option}: {str(exc).split(': ', 1)[1]}") from None


def cmd_similar(args: argparse.Namespace) -> int:
    filters = _filters(args)
    rec = _recommender(args)
    failed = False
    for doc_id in args.ids:
        try:
            doc = rec.store.find_document(doc_id)
            matches = rec.similar(
                doc_id, k=args.k, mode=args.mode, collapse=args.collapse, filters=filters
            )
        except UnknownDocumentError as exc:
            print(f"textrec: {exc}", file=sys.stderr)
            failed = True
            continue
        if args.json:
            _json_line(sys.stdout, doc_id, matches)
        else:
            _print_matches(sys.stdout, doc_id, doc.title if doc else None, matches)
            if not matches and args.mode == "readers" and rec.readers_of(doc_id) == 0:
                print("  (it has no readers yet: no events name it)")
    return 1 if failed else 0


def cmd_recommend(args: argparse.Namespace) -> int:
    rec = _recommender(args)
    try:
        answer = rec.recommend(
            args.user,
            k=args.k,
            mode=args.mode,
            exclude_read=not args.include_read,
            context_id=args.context_id,
            context_text=args.context_text,
            collapse=args.collapse,
            filters=_filters(args),
        )
    except UnknownDocumentError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(answer.to_dict(), ensure_ascii=False))
    else:
        _print_recommendations(sys.stdout, args.user, answer)
    return 0


def _print_recommendations(out: TextIO, user: str, answer: Recommendations) -> None:
    print(f"{user}: {answer.mode}, from {answer.basis}", file=out)
    if answer.note:
        print(f"  ({answer.note})", file=out)
    for n, r in enumerate(answer.results, 1):
        extra = []
        if r.shared_terms:
            extra.append(", ".join(r.shared_terms))
        if r.readers:
            extra.append("1 reader" if r.readers == 1 else f"{r.readers:,} readers")
        if r.because:
            extra.append("because you read " + ", ".join(r.because))
        print(f"{n:>3}. {r.score:8.4f}  {r.id}  {r.title or ''}  [{'+'.join(r.sources)}]", file=out)
        if extra:
            print(f"       {'; '.join(extra)}", file=out)
    if not answer.results:
        print("  (nothing to recommend)", file=out)


def cmd_events_import(args: argparse.Namespace) -> int:
    from textrec.collab.events import read_events, store_events

    store = _store(args)
    rejected = 0
    for path in args.files:
        if path != "-" and not os.path.isfile(path):
            raise CliError(f"{path}: no such file")
        started = time.perf_counter()
        report = store_events(store, read_events(path), batch_size=args.batch_size)
        for err in report.rejected:
            print(f"rejected: {err}", file=sys.stderr)
        rejected += len(report.rejected)
        rate = report.stored / max(time.perf_counter() - started, 1e-9)
        print(
            f"{path}: {report.stored:,} events stored ({rate:,.0f} a second), "
            f"{len(report.rejected):,} rejected",
            file=sys.stderr,
        )
    if rejected and not args.skip_invalid:
        print(
            f"textrec: {rejected} event(s) rejected (the valid ones were stored); "
            f"pass --skip-invalid to exit 0 anyway",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_events_stats(args: argparse.Namespace) -> int:
    stats = _store(args).event_stats()
    if args.json:
        print(json.dumps(stats, ensure_ascii=False))
    else:
        for key, value in stats.items():
            print(f"{key:>10}: {value}")
    return 0


def cmd_events_forget(args: argparse.Namespace) -> int:
    from textrec.collab.factors import FactorModel, forget_reader, model_files

    store = _store(args)
    index = args.index or default_index_path(store)
    models: dict[str, FactorModel] = {}
    for _, path, model in model_files(str(index)) if index else ():
        if isinstance(model, Exception):
            print(f"textrec: {model}: not changed", file=sys.stderr)
        else:
            models[path] = model
    total = 0
    for user in args.users:
        erasure = store.erase_events(user=user)
        total += erasure.count
        print(f"{user}: {erasure.count:,} event(s) deleted", file=sys.stderr)
        for path, model in models.items():
            if forget_reader(model, store, user, erasure):
                model.save(path)  # written again at once: the reader is gone from the file
                print(f"{user}: erased from {path}", file=sys.stderr)
    if total:
        print(
            "a running server follows within its refresh interval (it rebuilds its readers "
            "index from the events left)",
            file=sys.stderr,
        )
    return 0


def cmd_events_expire(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    before = datetime.now(UTC) - timedelta(days=args.older_than_days)
    n = _store(args).expire_events(before)
    when = before.isoformat(timespec="seconds")
    print(f"{n:,} event(s) older than {when} deleted", file=sys.stderr)
    return 0


def cmd_eval_events(args: argparse.Namespace) -> int:
    from textrec.collab.events import read_events
    from textrec.evaluation.events import Interactions, evaluate_events

    triples = []
    for path in args.events:
        for event in read_events(path):
            if isinstance(event, RecordError):
                print(f"skipped: {event}", file=sys.stderr)
            else:
                triples.append((event.user, event.item, event.time.timestamp()))
    if not triples:
        raise CliError("no valid events to evaluate")
    data = Interactions.from_triples(triples)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    options: dict[str, dict[str, object]] = {}
    if args.corpus:
        item_terms = _corpus_terms(args.corpus, data.item_names)
        options = {"content": {"item_terms": item_terms}, "hybrid": {"item_terms": item_terms}}
    elif "content" in models:
        raise CliError("the content model needs the items' texts: give --corpus FILE.jsonl")
    try:
        scores = evaluate_events(
            data,
            protocol=args.protocol,
            seed=args.seed,
            models=models,
            options=options,
            new_items=args.new_items,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for score in scores:
        row = score.as_dict()
        if args.json:
            print(json.dumps(row))
        else:
            print("  ".join(f"{k}={v}" for k, v in row.items()))
    return 0


def _corpus_terms(path: str, items: list[str]) -> list[dict[str, int]]:
    """The term counts of the evaluated items, from a JSONL corpus (their ids are the events'
    items); an item missing from it has no text, hence no content score."""
    from textrec.content.analyzer import Analyzer

    analyzer = Analyzer()
    wanted = set(items)
    found: dict[str, dict[str, int]] = {}
    for record in read_records(path):
        if isinstance(record, RecordError):
            raise CliError(f"--corpus: {record}")
        if record.id in wanted:
            found[record.id] = analyzer.term_counts(record.text, record.title)
    if not found:
        raise CliError(f"--corpus {path}: no document of it is an item of the events")
    missing = len(wanted) - len(found)
    if missing:
        print(
            f"{missing:,} item(s) of the events are not in {path}: no content score",
            file=sys.stderr,
        )
    return [found.get(i, {}) for i in items]


def cmd_train(args: argparse.Namespace) -> int:
    from textrec.collab.factors import FactorModel, model_path

    store = _store(args)
    index = args.index or default_index_path(store)
    if index is None:
        raise CliError(
            f"{store!r} is not a SQLite file, so the model has no default place beside it: "
            f"pass --index PATH (the model is written to PATH.{args.model})"
        )
    if store.count_events() == 0:
        raise CliError(
            f"{store!r} holds no readers' events to train on: import some first "
            "(textrec events import FILE)"
        )
    started = time.perf_counter()
    model = FactorModel.train(
        store,
        model=args.model,
        factors=args.factors,
        iterations=args.iterations,
        regularization=args.regularization,
        learning_rate=args.learning_rate,
        alpha=args.alpha,
        seed=args.seed,
        threads=args.threads,
        progress=not args.quiet,
    )
    path = model_path(index, args.model)
    model.save(path)
    elapsed = time.perf_counter() - started
    print(
        f"{args.model}: {len(model.users):,} readers, {len(model.items):,} documents, "
        f"{model.params['events']:,} events (through event {model.last_event}), "
        f"{model.params['factors']} factors, {model.params['iterations']} iterations, "
        f"in {elapsed:.1f} s; written to {path}",
        file=sys.stderr,
    )
    return 0


def cmd_query(args: argparse.Namespace) -> int:
    filters = _filters(args)
    text = _read_text(args.text)
    if not text.strip():
        raise CliError("the query text is empty")
    matches = _recommender(args).similar_text(
        text, k=args.k, mode=args.mode, collapse=args.collapse, filters=filters
    )
    if args.json:
        _json_line(sys.stdout, text, matches)
    else:
        _print_matches(sys.stdout, "query", None, matches)
    return 0


def cmd_dups(args: argparse.Namespace) -> int:
    rec = _recommender(args)
    if args.ids:
        failed = False
        for doc_id in args.ids:
            try:
                matches = rec.near_duplicates(doc_id, args.max_distance)
            except UnknownDocumentError as exc:
                print(f"textrec: {exc}", file=sys.stderr)
                failed = True
                continue
            if args.json:
                _json_line(sys.stdout, doc_id, matches)
            else:
                doc = rec.store.find_document(doc_id)
                _print_matches(sys.stdout, doc_id, doc.title if doc else None, matches)
        return 1 if failed else 0
    pairs = rec.duplicate_pairs(args.max_distance)
    for a, b, dist in pairs:
        if args.json:
            print(json.dumps({"a": a, "b": b, "distance": dist}, ensure_ascii=False))
        else:
            print(f"{dist:>3}  {a}  {b}")
    if not args.json:
        print(f"{len(pairs)} pair(s) within {args.max_distance} bits", file=sys.stderr)
    return 0


def cmd_fingerprint(args: argparse.Namespace) -> int:
    text = _read_text(args.text)
    store = _store(args)
    current = store.current_snapshot()
    if current is None:
        raise NotBuiltError(store.url)

    analyzer = analyzer_for(store.scheme(), where=store.url)
    fp = analyzer.fingerprint_text(text, current[0])
    print(fingerprint_hex(fp))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    store = _store(args)
    current = store.current_snapshot()
    stats: dict[str, object] = {
        "database": store.engine.url.render_as_string(hide_password=True),
        "documents": store.count_documents(),
    }
    if current is None:
        stats["snapshot"] = None
    else:
        snapshot, scheme = current
        path = args.index or default_index_path(store)
        indexes = StoreIndexes.open(store, analyzer_for(scheme, where=store.url), path)
        index, related = indexes.hamming, indexes.related
        stats.update(
            snapshot=snapshot.id,
            scheme=scheme,
            snapshot_documents=snapshot.n_docs,
            vocabulary=len(snapshot),
            indexed=len(index),
            index_bytes=index.nbytes,
            related_index_bytes=related.nbytes,
            related_terms=related.top_terms,
            index_file=path,
        )
        if path is not None:
            stats.update(_model_stats(store, path))
    if args.json:
        print(json.dumps(stats, ensure_ascii=False))
    else:
        for key, value in stats.items():
            if key in ("index_bytes", "related_index_bytes") and isinstance(value, int):
                value = f"{value:,} ({value / max(int(str(stats['indexed'])), 1):.0f} per document)"
            elif isinstance(value, int):
                value = f"{value:,}"
            print(f"{key:>18}: {value if value is not None else '(none: run `textrec build`)'}")
    return 0


def _model_stats(store: Store, index_path: str) -> dict[str, object]:
    """How stale each trained factor model is (``<model>_events_since`` and more)."""
    from textrec.collab.factors import model_files, model_staleness

    out: dict[str, object] = {}
    for name, path, model in model_files(index_path):
        if isinstance(model, Exception):
            out[f"{name}_model"] = f"unusable: {model}"
            continue
        state = model_staleness(model, store)
        out[f"{name}_model"] = path
        out[f"{name}_trained_at"] = model.trained_at
        out[f"{name}_events_since"] = state["events_since"]
        if not state["same_store"]:
            out[f"{name}_model"] = f"{path} (trained from another store: not used)"
    return out


def cmd_migrate(args: argparse.Namespace) -> int:
    store = Store(args.db, create=False)
    before, after = store.upgrade()
    if before == after:
        print(f"{store!r}: schema already at revision {after}")
    else:
        print(f"{store!r}: schema upgraded from revision {before or '(empty)'} to {after}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    store = _store(args)
    report = check(store, index_path=args.index, sample=args.sample)
    for key, value in report.facts.items():
        print(f"{key:>14}: {value}")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in report.problems:
        print(f"problem: {problem}", file=sys.stderr)
    if report.problems:
        print(f"textrec: check found {len(report.problems)} problem(s)", file=sys.stderr)
        return 1
    print("ok: the store, its DF snapshot and the index agree")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from textrec.content.tfidf import Weighting
    from textrec.evaluation.quality import EvalCorpus, evaluate, near_duplicate_quality

    weighting = Weighting(
        tf=args.tf, min_term_length=args.min_term_length, max_df_ratio=args.max_df
    )
    analyzer = Analyzer(weighting=weighting, title_weight=args.title_weight)
    if analyzer.scheme != Analyzer().scheme:
        print(f"weighting: {analyzer.scheme}", file=sys.stderr)

    def say(message: str) -> None:
        if not args.quiet:
            print(message, file=sys.stderr)

    started = time.perf_counter()
    main_corpus = EvalCorpus.read(args.corpus, analyzer, limit=args.limit)
    say(f"{args.corpus}: {len(main_corpus):,} documents")
    distractors = EvalCorpus([], [], [], [], [])
    for path in args.distractors:

        def tokenised(n: int, path: str = path) -> None:
            say(f"{path}: {n:,} documents tokenised")

        more = EvalCorpus.read(path, analyzer, labelled=False, progress=tokenised)
        distractors = distractors.extend(more, len(more))
        say(f"{path}: {len(more):,} distractor documents")
    say(f"tokenised in {time.perf_counter() - started:.0f} s")
    sizes = (
        sorted({0, *(min(n, len(distractors)) for n in args.sizes)}) if args.distractors else [0]
    )
    rows = []
    for n in sizes:
        corpus = main_corpus.extend(distractors, n)
        for result in evaluate(
            corpus,
            len(main_corpus),
            modes=args.modes,
            n_queries=args.queries,
            seed=args.seed,
            analyzer=analyzer,
            top_terms=args.top_terms,
        ):
            rows.append(result.as_dict())
            if args.json:
                print(json.dumps(result.as_dict(), ensure_ascii=False), flush=True)
            else:
                r = result
                line = (
                    f"{r.mode:<14} N={r.n_docs:>9,}  topic p@10 {r.topic_precision:.3f} "
                    f"± {r.topic_se:.3f}"
                )
                if r.recall is not None:
                    line += (
                        f"  recall@10 vs exact {r.recall:.3f}  p50 {r.p50_ms:.2f} ms  "
                        f"p99 {r.p99_ms:.2f} ms  {r.bytes_per_doc:.1f} B/doc"
                    )
                print(line, flush=True)
    if args.near_duplicates:
        for row in near_duplicate_quality(main_corpus, analyzer=analyzer):
            if args.json:
                print(json.dumps({"near_duplicates": row}), flush=True)
            else:
                print(
                    f"near-duplicates r<={row['max_distance']}: precision {row['precision']:.3f}"
                    f"  recall {row['recall']:.3f}  ({row['predicted']} predicted,"
                    f" {row['true_pairs']} pairs with 5-gram Jaccard >= 0.8)"
                )
    return 0


DEMO_QUERIES = ("wikinews-0007", "wikinews-0001", "wikinews-0002")


def cmd_demo(args: argparse.Namespace) -> int:
    if args.db:
        url = resolve_db_url(args.db)
    else:
        folder = tempfile.mkdtemp(prefix="textrec-demo-")
        url = f"sqlite:///{os.path.join(folder, 'demo.db')}"
    store = Store(url)
    if store.count_documents():
        raise CliError(f"{url} already holds documents; the demo needs a fresh database")
    corpus = resources.files("textrec") / "data" / "wikinews_ko.jsonl.gz"
    with resources.as_file(corpus) as path:
        print(f"ingesting the bundled Korean Wikinews sample (CC BY 2.5) into {url}")
        report = ingest(store, read_records(str(path)), progress=not args.quiet)
    print(f"{len(report.stored)} documents stored, {len(report.rejected)} rejected")
    result = build(store, progress=not args.quiet)
    print(f"built DF snapshot {result.snapshot_id}: {result.n_terms:,} terms")
    rec = Recommender(store)
    for doc_id in DEMO_QUERIES:
        print()
        doc = store.find_document(doc_id)
        _print_matches(sys.stdout, doc_id, doc.title if doc else None, rec.similar(doc_id, k=5))
    # Readers: a seeded synthetic click log whose readers follow content clusters.
    from textrec.collab.synthetic import click_log

    ids = [d.external_id for d in store.iter_documents()]
    clusters = {i: [i, *(m.id for m in rec.similar(i, k=8))] for i in ids[::8]}
    stored, _ = rec.add_events(click_log(clusters, users=400, seed=0))
    print(f"\n{stored:,} synthetic reader events stored; readers also read:")
    doc_id = max([*DEMO_QUERIES, *clusters], key=rec.readers_of)
    doc = store.find_document(doc_id)
    _print_matches(
        sys.stdout, doc_id, doc.title if doc else None, rec.similar(doc_id, k=5, mode="readers")
    )
    # Per reader: ALS trained as `textrec train` does, then one reader's hybrid list.
    from textrec.collab.factors import FactorModel, model_path

    if rec.index_path is not None:
        FactorModel.train(store, model="als").save(model_path(rec.index_path, "als"))
        rec.load_models()
    print("\nfor one reader (content, readers also read and ALS, fused):")
    _print_recommendations(sys.stdout, "reader-0000", rec.recommend("reader-0000", k=5))
    print(f"\nTry: textrec --db {url} similar wikinews-0100 --mode readers")
    print(f"     textrec --db {url} recommend reader-0001")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from textrec.serve.app import LOOPBACK_HOSTS, allowed_hosts_from, create_app
        from textrec.serve.connections import guarded_protocol
    except ImportError as exc:
        raise CliError(
            f"serving needs the 'serve' extra ({exc.name} is missing): pip install 'textrec[serve]'"
        ) from None
    token = os.environ.get("TEXTREC_TOKEN") if args.token is None else args.token
    loopback = args.host in ("127.0.0.1", "localhost", "::1")
    if not loopback and not token:
        print(
            f"textrec: warning: serving on {args.host} without --token: anyone who can reach "
            "it can add and delete documents",
            file=sys.stderr,
        )
    # The Host names answered: a web page cannot reach a loopback server under a name of its
    # own that resolves to 127.0.0.1 (DNS rebinding).
    hosts = allowed_hosts_from(args.allowed_hosts)
    if not hosts and loopback:
        hosts = list(LOOPBACK_HOSTS)
    elif not hosts:
        print(
            f"textrec: warning: serving on {args.host} without --allowed-hosts: requests for "
            "any host name are answered (DNS rebinding); name the ones clients use",
            file=sys.stderr,
        )
    # Open the store now so a missing build is a one-line error, not a failed start-up.
    rec = _recommender(args)
    rec.collapse = args.collapse
    app = create_app(
        token=token or None,
        max_body_bytes=args.max_body,
        recommender=lambda: rec,
        allowed_hosts=hosts,
        max_query_chars=args.max_query_chars,
        request_timeout=args.request_timeout,
        refresh_interval=args.refresh_interval,
        events_retention_days=args.events_retention_days,
        save_interval=args.save_interval or None,
    )
    print(
        f"textrec: serving {len(rec):,} documents on http://{args.host}:{args.port}/",
        file=sys.stderr,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info" if args.verbose else "warning",
        server_header=False,
        http=guarded_protocol(
            header_timeout=args.header_timeout,
            body_timeout=args.body_timeout,
            max_connections=args.max_connections,
        ),
    )
    return 0


# parser --------------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {value}")
    return value


def _finite_float(text: str, *, zero: bool) -> float:
    """A finite number > 0, or >= 0 when ``zero``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number {'>=' if zero else '>'} 0, got {text}")
    return value


def _positive_float(text: str) -> float:
    return _finite_float(text, zero=False)


def _non_negative_float(text: str) -> float:
    return _finite_float(text, zero=True)


def _k(text: str) -> int:
    value = _positive_int(text)
    if value > MAX_K:
        raise argparse.ArgumentTypeError(f"expected a number 1..{MAX_K}, got {value}")
    return value


def _add_ranking_options(p: argparse.ArgumentParser) -> None:
    """-k, --mode and --json, shared by the commands that rank documents."""
    p.add_argument("-k", type=_k, default=10, help=f"how many, 1..{MAX_K} (default: 10)")
    p.add_argument(
        "--mode",
        choices=MODES,
        default=MODES[0],
        help="related: pivoted BM25 over the related-posts index (default); hamming: the 64-bit "
        "fingerprints alone; readers: readers also read; hybrid: content, readers and ALS "
        "fused; als, bpr: the trained models' item factors",
    )
    p.add_argument(
        "--collapse",
        type=_collapse_bits,
        default=DEFAULT_COLLAPSE,
        metavar="BITS",
        help="leave out copies: results whose fingerprint is within BITS bits of the query's "
        f"or of a higher-ranked result's (default: {DEFAULT_COLLAPSE}; 'off' keeps them)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    _add_filter_options(p)


def _add_filter_options(p: argparse.ArgumentParser) -> None:
    """--exclude, --where, --since and --recency-days (textrec.filters)."""
    f = p.add_argument_group("filters", "applied inside the top k: k results come back when k pass")
    f.add_argument(
        "--exclude", action="append", metavar="ID", help="never return this id (repeatable)"
    )
    f.add_argument(
        "--where",
        action="append",
        metavar="FIELD=VALUE",
        help="only documents whose metadata FIELD equals VALUE, compared as text "
        "(repeatable: all must hold)",
    )
    f.add_argument(
        "--since",
        metavar="DATE",
        help="only documents published at or after DATE (ISO 8601: 2026-11-01 or "
        "2026-11-01T09:00:00+09:00): their metadata 'time', else when they were stored",
    )
    f.add_argument(
        "--recency-days",
        metavar="N",
        help="recency boost: a score is multiplied by 0.5 ** (age in days / N)",
    )


def _collapse_bits(text: str) -> int | None:
    if text.strip().lower() == "off":
        return None
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 64:
        raise argparse.ArgumentTypeError(f"expected 'off' or a number of bits 0..64, got {text}")
    return value


def _add_train_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from textrec.collab.factors import DEFAULTS, FACTOR_MODELS

    p = sub.add_parser("train", help="train a reader model (ALS or BPR) from the events")
    als, bpr = DEFAULTS["als"], DEFAULTS["bpr"]
    p.description = (
        "Train a matrix-factorisation model of the readers' events (implicit's ALS or BPR) and "
        "write it beside the index: <index path>.als or .bpr. A model trained before newer "
        "events keeps serving, with each reader's new events folded in at query time; train "
        "again to bring the document vectors up to date. The same events and settings give "
        "the same model (fixed seed; BPR with one thread)."
    )
    p.add_argument(
        "--model", choices=FACTOR_MODELS, default=FACTOR_MODELS[0], help="default: %(default)s"
    )
    p.add_argument(
        "--factors",
        type=_positive_int,
        metavar="N",
        help=f"vector size (default: ALS {als['factors']}, BPR {bpr['factors']})",
    )
    p.add_argument(
        "--iterations",
        type=_positive_int,
        metavar="N",
        help=f"passes (default: ALS {als['iterations']}, BPR {bpr['iterations']})",
    )
    p.add_argument(
        "--regularization",
        type=_positive_float,
        metavar="X",
        help=f"default: ALS {als['regularization']}, BPR {bpr['regularization']}",
    )
    p.add_argument(
        "--alpha",
        type=_positive_float,
        metavar="X",
        help=f"ALS: confidence per unit of event weight (default: {als['alpha']})",
    )
    p.add_argument(
        "--learning-rate",
        type=_positive_float,
        metavar="X",
        help=f"BPR: step size (default: {bpr['learning_rate']})",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        default=1,
        help="training threads (default: %(default)s; BPR is reproducible with 1 only)",
    )
    # Also accepted after the subcommand (textrec train --index PATH --quiet).
    p.add_argument("--index", metavar="PATH", default=argparse.SUPPRESS, help="index file path")
    p.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bar"
    )
    p.set_defaults(func=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="textrec",
        description="Related posts for Korean text: Mecab nouns, TF-IDF, 64-bit SimHash.",
    )
    parser.add_argument("--version", action="version", version=f"textrec {__version__}")
    parser.add_argument(
        "--db",
        metavar="URL",
        help="SQLAlchemy database URL (default: $TEXTREC_DB or sqlite:///textrec.db)",
    )
    parser.add_argument(
        "--index",
        metavar="PATH",
        help="index snapshot file (default: <database file>.index for SQLite)",
    )
    parser.add_argument(
        "--readers-store",
        metavar="URL",
        default=os.environ.get("TEXTREC_READERS_STORE") or None,
        help="keep the readers' signature index in Redis (redis://host:port/db) instead of "
        "in memory (default: $TEXTREC_READERS_STORE, else memory)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("ingest", help="store documents from JSON Lines files")
    p.description = (
        "Store documents from JSON Lines files (.jsonl, .jsonl.gz, or - for stdin). Each line "
        "is an object with 'id' and 'text' (strings), optional 'title'; other fields are kept "
        "as metadata. Bad records are reported with file:line and skipped; the rest is stored. "
        "With -v, each committed transaction is logged as 'committed N document(s) through "
        "FILE:LINE': the valid records up to that line are then stored, whatever happens."
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument(
        "--skip-invalid", action="store_true", help="exit 0 even if records were rejected"
    )
    p.add_argument(
        "--max-chars",
        type=_positive_int,
        default=DEFAULT_MAX_CHARS,
        help="reject texts longer than this (default: %(default)s)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        default=500,
        help="documents per transaction (default: %(default)s)",
    )
    p.add_argument(
        "-j",
        "--workers",
        type=_positive_int,
        default=1,
        help="processes that extract terms (Mecab) ahead of the writes; Mecab takes about two "
        "thirds of an ingest, so up to one a core speeds it up (default: %(default)s)",
    )
    p.add_argument(
        "--update",
        "--upsert",
        action="store_true",
        help="a record whose id is stored replaces that document (title, text, metadata; its "
        "terms and fingerprint are derived anew, its readers' events kept) instead of being "
        "rejected",
    )
    p.set_defaults(func=cmd_ingest)

    p = sub.add_parser("build", help="compute the DF snapshot and all fingerprints")
    p.description = (
        "Compute the DF snapshot over all stored documents, fingerprint every document under "
        "it, make it current and write the index snapshot file. With --runner, the two "
        "passes run as mrjob jobs (jobs/df.py, jobs/fingerprint.py) on that runner. A store "
        "of an older term scheme (simhash64-v1) is upgraded to the current one: every "
        "document's terms are derived anew from its stored text, and the store switches to "
        "the new snapshot in one transaction (it answers under the old scheme until then)."
    )
    p.add_argument(
        "--runner",
        choices=RUNNERS,
        default="inprocess",
        help="where to run: inprocess (default), or an mrjob runner",
    )
    p.add_argument(
        "--input",
        action="append",
        metavar="FILE",
        help="JSONL files holding exactly the stored documents, read by the jobs instead of "
        "an export of the store (repeatable; local paths, hdfs:// or s3:// URIs)",
    )
    p.add_argument(
        "--mrjob-conf",
        metavar="PATH",
        help="mrjob configuration file (see jobs/mrjob.conf.example); without it, local and "
        "spark run on this machine",
    )
    p.add_argument(
        "--cores",
        type=_positive_int,
        default=2,
        help="processes for the local runner and the Spark local master, and, in a scheme "
        "upgrade, processes that derive the terms anew from the stored texts (default: 2)",
    )
    p.add_argument(
        "--append",
        action="store_true",
        help="with a runner: only fingerprint documents that have none under the current "
        "DF snapshot, without recomputing it",
    )
    p.add_argument(
        "--keep-scheme",
        action="store_true",
        help="rebuild under the store's own scheme even when it is an older one, instead of "
        "upgrading it",
    )
    p.add_argument(
        "--related-terms",
        type=_positive_int,
        default=None,
        metavar="N",
        help="terms of each document the related-posts index keeps, from this build on "
        "(default: as the last build set it, at first 512: the exact top k of the score); "
        "fewer take less memory on long posts and rank differently from the exact score "
        "(measured on petitions: 64 terms, half the memory, 32 a third, topic precision "
        "within 0.01 of the exact score's; bench/README.md)",
    )
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("similar", help="related documents of stored documents")
    p.add_argument("ids", nargs="+", metavar="ID")
    _add_ranking_options(p)
    p.set_defaults(func=cmd_similar)

    p = sub.add_parser("recommend", help="posts to recommend to a reader, from their events")
    p.description = (
        "Posts for one reader: hybrid (default) fuses content, readers-also-read and the ALS "
        "model (textrec train); a post nobody has read yet is reachable through content. A "
        "reader without events gets content-based posts for --context-id or --context-text, "
        "else the most read posts."
    )
    p.add_argument("user", metavar="USER")
    p.add_argument("-k", type=_k, default=10, help=f"how many, 1..{MAX_K} (default: 10)")
    p.add_argument("--mode", choices=RECOMMEND_MODES, default=RECOMMEND_MODES[0])
    p.add_argument(
        "--include-read", action="store_true", help="keep the posts the reader already read"
    )
    context = p.add_mutually_exclusive_group()
    context.add_argument("--context-id", metavar="ID", help="a stored post the reader is on")
    context.add_argument("--context-text", metavar="TEXT", help="a text the reader is on")
    p.add_argument(
        "--collapse",
        type=_collapse_bits,
        default=DEFAULT_COLLAPSE,
        metavar="BITS",
        help=f"leave out copies within BITS bits (default: {DEFAULT_COLLAPSE}; 'off' keeps them)",
    )
    p.add_argument("--json", action="store_true", help="the answer as one JSON object")
    _add_filter_options(p)
    p.set_defaults(func=cmd_recommend)

    p = sub.add_parser("query", help="stored documents related to a free text")
    p.add_argument("text", metavar="TEXT", help="the text, or - to read standard input")
    _add_ranking_options(p)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("dups", help="near-duplicate documents, by fingerprint distance")
    p.description = (
        "Near-duplicates by the Hamming distance of the 64-bit fingerprints: of the given "
        "documents, or every pair in the store when no ID is given. 3 bits is the measured "
        "precision/recall knee on the petitions corpus; 6 bits favours recall."
    )
    p.add_argument("ids", nargs="*", metavar="ID")
    p.add_argument(
        "--max-distance",
        type=int,
        default=3,
        choices=range(0, 65),
        metavar="R",
        help="largest Hamming distance, 0..64 (default: 3)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_dups)

    p = sub.add_parser("fingerprint", help="the 16-hex-digit fingerprint of a text")
    p.add_argument("text", metavar="TEXT", help="the text, or - to read standard input")
    p.set_defaults(func=cmd_fingerprint)

    p = sub.add_parser("stats", help="documents, vocabulary, DF snapshot, index size")
    p.add_argument("--json", action="store_true", help="as one JSON object")
    p.set_defaults(func=cmd_stats)

    p = sub.add_parser("check", help="verify that the store, DF snapshot and index agree")
    p.description = (
        "Verify the current DF snapshot's checksum, that every document has a fingerprint of "
        "the current scheme, that a sample of fingerprints recomputed from the texts equals "
        "the stored ones, and that the index file is intact. Exits 1 naming every problem."
    )
    p.add_argument(
        "--sample",
        type=_positive_int,
        default=100,
        help="documents to recompute (default: %(default)s)",
    )
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("migrate", help="upgrade the database schema to this textrec's")
    p.description = (
        "Upgrade the database's schema to the revision this version of textrec uses, keeping "
        "every document, snapshot and fingerprint. Back the database up first."
    )
    p.set_defaults(func=cmd_migrate)

    p = sub.add_parser("eval", help="measure each retrieval mode against peer rankings")
    p.description = (
        "Topic precision@10 (with its standard error) of each mode and of peer rankings scored "
        "exactly (TF-IDF cosine, BM25 at b=0.75 and b=0.3, and the default score without "
        "quantisation or pruning); each mode's recall@10 against that exact default score, "
        "p50/p99 latency and bytes per document; with distractor files, at each corpus size. "
        "Queries are drawn from CORPUS with a fixed seed. CORPUS and distractors are JSONL "
        "with id, title, text and label."
    )
    p.add_argument("corpus", metavar="CORPUS")
    p.add_argument(
        "--distractors",
        nargs="*",
        default=[],
        metavar="FILE",
        help="unlabelled documents appended, in file order, to grow N",
    )
    p.add_argument(
        "--sizes",
        nargs="*",
        type=int,
        default=[],
        metavar="N",
        help="how many distractors to append for each run (0 is always run)",
    )
    p.add_argument("--modes", nargs="+", choices=CONTENT_MODES, default=list(CONTENT_MODES))
    p.add_argument("--queries", type=_positive_int, default=1000)
    p.add_argument(
        "--top-terms",
        type=_positive_int,
        default=None,
        help="terms kept per document in the related index (default: the index's own)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--limit",
        type=_positive_int,
        default=None,
        help="read only the first N documents of CORPUS",
    )
    p.add_argument(
        "--tf",
        choices=["raw", "log"],
        default="raw",
        help="term frequency: raw counts (default) or 1 + ln(tf)",
    )
    p.add_argument(
        "--title-weight",
        type=int,
        default=1,
        metavar="W",
        help="count each title term W times (default: 1)",
    )
    p.add_argument(
        "--min-term-length",
        type=_positive_int,
        default=1,
        metavar="L",
        help="give weight 0 to terms shorter than L characters (default: 1)",
    )
    p.add_argument(
        "--max-df",
        type=float,
        default=None,
        metavar="RATIO",
        help="give weight 0 to terms in more than RATIO of the documents",
    )
    p.add_argument(
        "--near-duplicates",
        action="store_true",
        help="also measure near-duplicate precision/recall on CORPUS",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per result")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("events", help="readers' events: import, statistics")
    events = p.add_subparsers(dest="events_command", required=True, metavar="ACTION")
    e = events.add_parser("import", help="store events from JSON Lines or CSV files")
    e.description = (
        "Store readers' events from JSON Lines ({'user', 'item', 'kind'?, 'source'?, 'time'?}) "
        "or CSV files with a header naming those columns (.gz too, or - for stdin). A bad "
        "event is reported with file:line and skipped; the rest is stored."
    )
    e.add_argument("files", nargs="+", metavar="FILE")
    e.add_argument("--skip-invalid", action="store_true", help="exit 0 even if some were rejected")
    e.add_argument(
        "--batch-size",
        type=_positive_int,
        default=100_000,
        help="events per transaction (default: %(default)s)",
    )
    e.set_defaults(func=cmd_events_import)
    e = events.add_parser("forget", help="erase every event of readers")
    e.description = (
        "Delete every event of each USER from the store, in one transaction a reader. The "
        "readers' signatures follow: a running server rebuilds its readers index from the "
        "events left at its next refresh, a new one never sees them. Says how many were "
        "deleted (0 for a reader never seen)."
    )
    e.add_argument("users", nargs="+", metavar="USER")
    e.set_defaults(func=cmd_events_forget)
    e = events.add_parser("expire", help="delete events older than some days")
    e.description = (
        "Delete every event whose time is more than N days ago (the retention that "
        "`textrec serve --events-retention-days N` applies by itself)."
    )
    e.add_argument(
        "--older-than-days", type=_positive_float, required=True, metavar="N", help="days"
    )
    e.set_defaults(func=cmd_events_expire)
    e = events.add_parser("stats", help="events by kind, readers, documents, time span")
    e.add_argument("--json", action="store_true", help="as one JSON object")
    e.set_defaults(func=cmd_events_stats)

    p = sub.add_parser("eval-events", help="measure recommendations from events")
    p.description = (
        "Precision@10, recall@10, NDCG@10 and catalogue coverage of each model, over a full "
        "ranking of all items with each user's training items excluded. Needs events only, "
        "except content and hybrid, which read the items' texts (--corpus)."
    )
    p.add_argument("events", nargs="+", metavar="EVENTS", help="JSON Lines or CSV event files")
    p.add_argument("--protocol", choices=PROTOCOLS, default=PROTOCOLS[0])
    p.add_argument("--seed", type=int, default=0, help="seed of the split (default: 0)")
    p.add_argument(
        "--models",
        default="popular,readers",
        help=f"comma-separated, of {', '.join(EVENT_MODELS)} (default: %(default)s)",
    )
    p.add_argument(
        "--corpus",
        metavar="FILE",
        help="the items' texts (JSON Lines with id, text, title?), for content and hybrid",
    )
    p.add_argument(
        "--new-items",
        type=float,
        metavar="SHARE",
        help="cold start: hold this share of the items (e.g. 0.2) out of training entirely; "
        "the test events are those on them (recall@10 says who finds new posts)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per model")
    p.set_defaults(func=cmd_eval_events)

    _add_train_parser(sub)

    p = sub.add_parser("demo", help="build the bundled Korean Wikinews sample and query it")
    p.description = (
        "Ingest the bundled sample corpus (644 Korean Wikinews articles, CC BY 2.5) into a "
        "fresh SQLite file (in a temporary folder unless --db is given), build it, and show "
        "related posts for a few documents."
    )
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("serve", help="the HTTP API and the web page")
    p.description = (
        "Serve the HTTP API (OpenAPI schema at /openapi.json) and the related-posts page at / "
        "with uvicorn. Binds 127.0.0.1 unless --host says otherwise. The index is loaded once "
        "at start-up."
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    p.add_argument(
        "--collapse",
        type=_collapse_bits,
        default=DEFAULT_COLLAPSE,
        metavar="BITS",
        help="the default of the 'collapse' parameter: copies within BITS bits are left out "
        f"of related lists (default: {DEFAULT_COLLAPSE}; 'off' keeps them)",
    )
    p.add_argument("--port", type=_positive_int, default=8000, help="port (default: %(default)s)")
    p.add_argument(
        "--token",
        help="require 'Authorization: Bearer TOKEN' on POST /documents and DELETE "
        "(default: $TEXTREC_TOKEN; none: writes are open)",
    )
    p.add_argument(
        "--max-body",
        type=_positive_int,
        default=1 << 20,
        metavar="BYTES",
        help="largest request body accepted (default: %(default)s)",
    )
    p.add_argument(
        "--max-query-chars",
        type=_positive_int,
        default=50_000,
        metavar="N",
        help="longest text (with its title) POST /similar reads (default: %(default)s)",
    )
    p.add_argument(
        "--request-timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="an answer not started by then is replaced by 503 (default: %(default)s)",
    )
    p.add_argument(
        "--refresh-interval",
        type=_positive_float,
        default=2.0,
        metavar="SECONDS",
        help="how often to look for writes by other processes (ingest from cron, other "
        "servers, a build) and catch up with them (default: %(default)s)",
    )
    p.add_argument(
        "--save-interval",
        type=_non_negative_float,
        default=600.0,
        metavar="SECONDS",
        help="how often to save the index files while serving, when anything changed, so "
        "that a crash loses less and the next start-up has less to catch up with; 0: only "
        "at shutdown (default: %(default)s)",
    )
    p.add_argument(
        "--events-retention-days",
        type=_positive_float,
        default=None,
        metavar="N",
        help="delete readers' events older than N days, at start-up and every hour "
        "(default: $TEXTREC_EVENTS_RETENTION_DAYS, else keep them)",
    )
    p.add_argument(
        "--allowed-hosts",
        metavar="NAMES",
        default=None,
        help="comma-separated host names the server answers to (the Host header; '*' for "
        "any); default: $TEXTREC_ALLOWED_HOSTS, else 127.0.0.1,localhost,[::1] when bound "
        "to loopback, else any",
    )
    p.add_argument(
        "--header-timeout",
        type=_positive_float,
        default=10.0,
        metavar="SECONDS",
        help="time a client has to send a request's headers (default: %(default)s)",
    )
    p.add_argument(
        "--body-timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="time a client then has to send the request's body (default: %(default)s)",
    )
    p.add_argument(
        "--max-connections",
        type=_positive_int,
        default=256,
        metavar="N",
        help="connections held at once; more are answered 503 (default: %(default)s)",
    )
    p.set_defaults(func=cmd_serve)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not args.verbose:
        # "No configs specified for inline runner" and the like: expected, not a problem.
        logging.getLogger("mrjob.conf").setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except UsageError as exc:
        print(f"textrec: error: {exc}", file=sys.stderr)
        return 2
    except (
        CliError,
        NotBuiltError,
        SchemaOutOfDateError,
        UnknownDocumentError,
        TokenizerUnavailableError,
        JobsError,
        StoreReplacedError,
        TermWorkerError,
    ) as exc:
        print(f"textrec: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"textrec: error: {exc}", file=sys.stderr)
        return 1
    except SQLAlchemyError as exc:  # a corrupt file, a full disk, a lost server
        detail = describe_database_error(exc, resolve_db_url(args.db))
        print(f"textrec: error: {detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130

"""Run the build as mrjob jobs: inline, local, Spark, Hadoop or EMR.

``textrec build --runner R`` does what :func:`textrec.pipeline.build.build` does, with the two heavy
passes run as the jobs of ``jobs/``:

1. the stored documents are exported to a temporary JSON Lines file (or ``--input`` files,
   which must hold exactly the stored documents, are used as they are);
2. :class:`textrec.jobs.df.MRDocumentFrequency` counts N and df(term): its output is the canonical
   :class:`~textrec.content.tfidf.DFSnapshot`, with the same id as the in-process build;
3. :class:`textrec.jobs.fingerprint.MRFingerprint` fingerprints every document under that snapshot,
   which travels to the tasks as a file;
4. the fingerprints are loaded into the store under the new snapshot, which is then made
   current in one transaction (readers never see a mix of snapshots), and the index files
   (Hamming and related-posts) are rewritten from the store, with the functions ``build``
   uses.

:func:`fingerprint_new_with_runner` is the append path: documents stored after the last build
that have no fingerprint yet are fingerprinted under the *current* snapshot, and nothing else
is recomputed.

Runner options come from mrjob's configuration (``--mrjob-conf FILE``, else ``$MRJOB_CONF`` or
``~/.mrjob.conf``; see ``jobs/mrjob.conf.example``). Without ``--mrjob-conf``, the runners
that run on this machine get working defaults: ``local`` uses ``cores`` processes and this
Python; ``spark`` uses the ``local[cores]`` master of the installed pyspark, this Python for
the executors, no Spark UI and the loopback address.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from textrec.content.analyzer import Analyzer
from textrec.content.scheme import analyzer_for
from textrec.content.simhash import SCHEME, check_scheme, parse_fingerprint
from textrec.content.tfidf import DFSnapshot
from textrec.pipeline.build import BuildReport, refresh_index_file, run_build
from textrec.store.sql import NotBuiltError, Store, StoredDocument

__all__ = [
    "MRJOB_RUNNERS",
    "RUNNERS",
    "JobsError",
    "JobsReport",
    "build_with_runner",
    "export_documents",
    "fingerprint_new_with_runner",
    "iter_fingerprint_job",
    "job_args",
    "run_df_job",
    "run_fingerprint_job",
]

log = logging.getLogger(__name__)

MRJOB_RUNNERS = ("inline", "local", "spark", "hadoop", "emr")
RUNNERS = ("inprocess", *MRJOB_RUNNERS)


class JobsError(RuntimeError):
    """A job's output does not fit the store; the store was left as it was."""


@dataclass
class JobsReport(BuildReport):
    """A :class:`~textrec.pipeline.build.BuildReport` plus what the jobs rejected."""

    runner: str = "inline"
    bad_records: dict[str, int] = field(default_factory=dict)


def job_args(
    runner: str,
    *,
    conf_path: str | None = None,
    cores: int = 2,
    extra: Sequence[str] = (),
) -> list[str]:
    """The mrjob command-line switches for ``runner`` (see the module docstring)."""
    if runner not in MRJOB_RUNNERS:
        raise ValueError(f"unknown runner {runner!r}; expected one of {', '.join(RUNNERS)}")
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    args = ["-r", runner]
    if conf_path is not None:
        if not os.path.isfile(conf_path):
            raise FileNotFoundError(f"{conf_path}: no such mrjob configuration file")
        args += ["-c", conf_path]
    elif runner == "local":
        args += ["--num-cores", str(cores), "--python-bin", sys.executable]
    elif runner == "spark":
        args += [
            "--spark-master",
            f"local[{cores}]",
            "--python-bin",
            sys.executable,
            "--task-python-bin",
            sys.executable,
            "--jobconf",
            "spark.ui.enabled=false",
        ]
    return [*args, *extra]


def _environment(runner: str, conf_path: str | None) -> None:
    if runner == "spark" and conf_path is None:
        # A local master needs no network; without this Spark looks up the host name.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def _bad_records(counters: Iterable[dict[str, dict[str, int]]]) -> dict[str, int]:
    from textrec.jobs._documents import COUNTER_GROUP

    prefix = "bad records: "
    bad: dict[str, int] = {}
    for step in counters:
        for name, value in step.get(COUNTER_GROUP, {}).items():
            if name.startswith(prefix):
                kind = name[len(prefix) :]
                bad[kind] = bad.get(kind, 0) + int(value)
    return dict(sorted(bad.items()))


def _run(mr: Any, name: str, runner: str) -> None:
    from mrjob.step import StepFailedException

    try:
        mr.run()
    except StepFailedException as exc:
        raise JobsError(
            f"the {name} job failed on the {runner} runner: {exc} (run with -v to see the "
            f"runner's log)"
        ) from exc


def run_df_job(
    inputs: Sequence[str],
    runner: str = "inline",
    *,
    conf_path: str | None = None,
    cores: int = 2,
    scheme: str = SCHEME,
    extra_args: Sequence[str] = (),
) -> tuple[DFSnapshot, dict[str, int]]:
    """Run the DF job over JSONL files: ``(DF snapshot, bad records by kind)``.

    Empty input, or input without one valid document, gives the empty snapshot (N = 0).
    """
    from textrec.jobs.df import MRDocumentFrequency

    _environment(runner, conf_path)
    args = job_args(runner, conf_path=conf_path, cores=cores, extra=extra_args)
    job = MRDocumentFrequency(args=[*args, "--scheme", scheme, *inputs])
    with job.make_runner() as mr:
        _run(mr, "DF", runner)
        output = b"".join(mr.cat_output()).strip()
        bad = _bad_records(mr.counters())
    if not output:
        return DFSnapshot.from_counts(0, {}), bad
    return DFSnapshot.from_bytes(output, source=f"output of the DF job ({runner})"), bad


def run_fingerprint_job(
    inputs: Sequence[str],
    snapshot_path: str,
    runner: str = "inline",
    *,
    conf_path: str | None = None,
    cores: int = 2,
    scheme: str = SCHEME,
    extra_args: Sequence[str] = (),
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Run the fingerprint job: ``(one dict per valid document, bad records by kind)``.

    Each dict has ``id``, ``fingerprint`` (16 hex digits), ``scheme`` and ``snapshot``.
    """
    bad: dict[str, int] = {}
    options: dict[str, Any] = {
        "conf_path": conf_path,
        "cores": cores,
        "scheme": scheme,
        "extra_args": extra_args,
    }
    lines = list(iter_fingerprint_job(inputs, snapshot_path, runner, bad=bad, **options))
    return lines, bad


def iter_fingerprint_job(
    inputs: Sequence[str],
    snapshot_path: str,
    runner: str = "inline",
    *,
    bad: dict[str, int] | None = None,
    conf_path: str | None = None,
    cores: int = 2,
    scheme: str = SCHEME,
    extra_args: Sequence[str] = (),
) -> Iterator[dict[str, str]]:
    """Run the fingerprint job and stream its output, one dict per document, without
    holding it in memory; ``bad`` (when given) receives the bad records by kind."""
    from textrec.jobs.fingerprint import MRFingerprint

    _environment(runner, conf_path)
    args = job_args(runner, conf_path=conf_path, cores=cores, extra=extra_args)
    job = MRFingerprint(args=[*args, "--df-snapshot", snapshot_path, "--scheme", scheme, *inputs])
    with job.make_runner() as mr:
        _run(mr, "fingerprint", runner)
        if bad is not None:
            bad.update(_bad_records(mr.counters()))
        for _, value in job.parse_output(mr.cat_output()):
            yield value


def export_documents(documents: Iterable[StoredDocument], path: str) -> int:
    """Write documents as the JSONL the jobs read (``id``, ``title``, ``text``); returns
    how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for doc in documents:
            record = {"id": doc.external_id, "title": doc.title, "text": doc.text}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def _batches(items: Iterable[dict[str, str]], size: int) -> Iterator[list[dict[str, str]]]:
    iterator = iter(items)
    while batch := list(itertools.islice(iterator, size)):
        yield batch


def _store_fingerprints(
    store: Store,
    lines: Iterable[dict[str, str]],
    snapshot: DFSnapshot,
    scheme: str,
    *,
    removed_ok: bool,
    batch_size: int = 5000,
) -> int:
    """Put the job's fingerprints into the store under ``snapshot``; returns how many.

    ``removed_ok``: the input was exported from the store, so a document missing from it now
    was removed meanwhile and is skipped; otherwise (``--input`` files) it is an error."""
    written = 0
    for batch in _batches(lines, batch_size):
        for line in batch:
            check_scheme(scheme, line["scheme"], what=f"fingerprint of {line['id']!r}")
            if line["snapshot"] != snapshot.id:
                raise JobsError(
                    f"the fingerprint job used DF snapshot {line['snapshot']} for "
                    f"{line['id']!r}, expected {snapshot.id}"
                )
        external = [line["id"] for line in batch]
        if len(set(external)) != len(external):
            repeated = next(e for e in external if external.count(e) > 1)
            raise JobsError(
                f"the input holds document {repeated!r} more than once: --input must hold "
                f"exactly the stored documents, each once"
            )
        ids = store.internal_ids(external)
        missing = [line["id"] for line in batch if line["id"] not in ids]
        if missing and removed_ok:
            batch = [line for line in batch if line["id"] in ids]
        elif missing:
            raise JobsError(
                f"{len(missing)} fingerprinted document(s) are not in the store "
                f"(first: {missing[0]!r}); ingest them first, or build without --input"
            )
        pairs = [(ids[line["id"]], parse_fingerprint(line["fingerprint"])) for line in batch]
        written += store.put_fingerprints(snapshot.id, scheme, pairs)
    return written


class JobPasses:
    """The two passes of :func:`~textrec.pipeline.build.run_build` as the mrjob jobs.

    The stored documents are exported once to a temporary JSON Lines file for both jobs, or
    ``inputs`` (files that must hold exactly the stored documents) are read as they are. The
    store is only written once a job has succeeded and its output fits the store.
    """

    def __init__(
        self,
        runner: str,
        *,
        inputs: Sequence[str] | None = None,
        conf_path: str | None = None,
        cores: int = 2,
        extra_args: Sequence[str] = (),
    ) -> None:
        job_args(runner, conf_path=conf_path, cores=cores)  # refuses bad settings at once
        self.name = runner
        self.inputs = list(inputs) if inputs is not None else None
        self.options: dict[str, Any] = {
            "conf_path": conf_path,
            "cores": cores,
            "extra_args": extra_args,
        }
        self.bad_records: dict[str, int] = {}
        self.rederive = True  # the jobs derive every document's terms from its text
        self._tmp = ""
        self._files: list[str] = []
        self._expected = 0

    @contextlib.contextmanager
    def session(self, store: Store, analyzer: Analyzer) -> Iterator[None]:
        with tempfile.TemporaryDirectory(prefix="textrec-jobs-") as tmp:
            self._tmp = tmp
            if self.inputs is None:
                exported = os.path.join(tmp, "documents.jsonl")
                self._expected = export_documents(store.iter_documents(), exported)
                self._files = [exported]
            else:
                for path in self.inputs:
                    if "://" not in path and not os.path.isfile(path):
                        raise FileNotFoundError(f"{path}: no such input file")
                self._expected = store.count_documents()
                self._files = self.inputs
            yield

    def document_frequency(self, store: Store, analyzer: Analyzer) -> DFSnapshot:
        snapshot, bad = run_df_job(self._files, self.name, scheme=analyzer.scheme, **self.options)
        self.bad_records.update(bad)
        if snapshot.n_docs != self._expected:
            raise JobsError(
                f"the DF job counted {snapshot.n_docs:,} valid documents but {store.url} holds "
                f"{self._expected:,}: --input must hold exactly the stored documents "
                f"(bad records: {bad or 'none'})"
            )
        return snapshot

    def fingerprint(
        self, store: Store, analyzer: Analyzer, snapshot: DFSnapshot, todo: set[int]
    ) -> int:
        snapshot_path = os.path.join(self._tmp, "df-snapshot.json")
        snapshot.save(snapshot_path)
        # Streamed into the store; the snapshot only becomes current once all are in.
        lines = iter_fingerprint_job(
            self._files, snapshot_path, self.name, scheme=analyzer.scheme, **self.options
        )
        done = _store_fingerprints(
            store, lines, snapshot, analyzer.scheme, removed_ok=self.inputs is None
        )
        stored = store.count_fingerprints(snapshot.id)
        if self.inputs is not None and (done != self._expected or stored != self._expected):
            raise JobsError(
                f"the fingerprint job fingerprinted {done:,} documents ({stored:,} distinct "
                f"stored ones), expected each of the {self._expected:,} stored documents once: "
                f"--input must hold exactly the stored documents"
            )
        return done


def build_with_runner(
    store: Store,
    runner: str,
    *,
    inputs: Sequence[str] | None = None,
    index_path: str | None = None,
    conf_path: str | None = None,
    cores: int = 2,
    analyzer: Analyzer | None = None,
    extra_args: Sequence[str] = (),
    upgrade: bool = True,
    related_terms: int | None = None,
) -> JobsReport:
    """:func:`textrec.pipeline.build.build` with the DF and fingerprint passes run as mrjob
    jobs: the same sequence (:func:`~textrec.pipeline.build.run_build`), so documents
    ingested while it runs get fingerprints too.

    ``inputs`` are JSONL files holding exactly the stored documents (same ids, titles and
    texts); by default the stored documents are exported to a temporary file.
    """
    passes = JobPasses(
        runner, inputs=inputs, conf_path=conf_path, cores=cores, extra_args=extra_args
    )
    report = run_build(
        store,
        passes,
        analyzer=analyzer,
        index_path=index_path,
        upgrade=upgrade,
        related_terms=related_terms,
        workers=cores,  # the terms stored after an upgrade are derived on this machine
    )
    return JobsReport(**vars(report), runner=runner, bad_records=passes.bad_records)


def fingerprint_new_with_runner(
    store: Store,
    runner: str,
    *,
    index_path: str | None = None,
    conf_path: str | None = None,
    cores: int = 2,
    extra_args: Sequence[str] = (),
) -> JobsReport:
    """Fingerprint, with the fingerprint job, the stored documents that have no fingerprint
    under the current DF snapshot; old fingerprints and the snapshot are left as they are."""
    current = store.current_snapshot()
    if current is None:
        raise NotBuiltError(store.url)
    snapshot, scheme = current
    analyzer_for(scheme, where=store.url)  # a scheme the jobs can rebuild, or the reason
    done = 0
    bad: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="textrec-jobs-") as tmp:
        exported = os.path.join(tmp, "new-documents.jsonl")
        n_new = export_documents(store.documents_without_fingerprint(snapshot.id), exported)
        if n_new:
            snapshot_path = os.path.join(tmp, "df-snapshot.json")
            snapshot.save(snapshot_path)
            lines = iter_fingerprint_job(
                [exported],
                snapshot_path,
                runner,
                bad=bad,
                scheme=scheme,
                conf_path=conf_path,
                cores=cores,
                extra_args=extra_args,
            )
            done = _store_fingerprints(store, lines, snapshot, scheme, removed_ok=True)
    index_path = refresh_index_file(store, index_path, readers=True)
    return JobsReport(
        snapshot.id,
        snapshot.n_docs,
        len(snapshot),
        done,
        index_path,
        runner=runner,
        bad_records=bad,
    )

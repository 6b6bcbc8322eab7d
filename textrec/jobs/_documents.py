"""What both jobs do with one input line: validate it, count its terms, or count it as bad.

Kept apart from the job classes so the DF job and the fingerprint job reject exactly the same
records, with exactly the same counter names, as ``textrec ingest`` does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from textrec.content.analyzer import Analyzer
from textrec.content.simhash import SCHEME
from textrec.pipeline.records import RecordError, parse_record

__all__ = ["COUNTER_GROUP", "add_scheme_arg", "document_terms", "reason_kind"]

COUNTER_GROUP = "textrec"

# Specifics that vary from record to record and would make one counter per record.
_DETAIL = re.compile(r"(: |; |, got | at (byte|column) ).*$")
_LENGTH = re.compile(r" is [\d,]+ characters long")


def add_scheme_arg(job: Any) -> None:
    """The ``--scheme NAME`` switch of both jobs: the store's scheme, from which each task
    rebuilds its analyzer (:meth:`~textrec.content.analyzer.Analyzer.from_scheme`)."""
    job.add_passthru_arg(
        "--scheme",
        default=SCHEME,
        help=f"the fingerprint scheme of the store (default {SCHEME}); textrec build passes it",
    )


def reason_kind(reason: str) -> str:
    """The kind of a rejection reason, without the record's details.

    >>> reason_kind("invalid JSON: Expecting value at column 1")
    'invalid JSON'
    >>> reason_kind("field 'text' is 1,000,001 characters long; the limit is 1,000,000")
    "field 'text' is too long"
    """
    return _DETAIL.sub("", _LENGTH.sub(" is too long", reason))


def document_terms(
    analyzer: Analyzer, line: str | bytes, count_bad: Callable[[str], None]
) -> tuple[str, dict[str, int]] | None:
    """``(id, term counts)`` of a valid document line; None after counting a bad one.

    ``count_bad(kind)`` is called once per bad record (a job passes a function that
    increments the counter ``bad records: <kind>`` in group ``textrec``). A record with no
    terms is a document like any other (``textrec ingest`` stores it too): it counts in N,
    and its fingerprint is 0.
    """
    record = parse_record(line.strip())
    if isinstance(record, RecordError):
        count_bad(reason_kind(record.reason))
        return None
    return record.id, analyzer.term_counts(record.text, record.title)

"""Fingerprint job: JSONL documents + a DF snapshot file → one fingerprint line per document.

Input: the same JSON Lines documents as :mod:`textrec.jobs.df`, and ``--df-snapshot FILE``, a DF
snapshot file (the output of :mod:`textrec.jobs.df`, or
:meth:`textrec.content.tfidf.DFSnapshot.save`),
shipped to every task as a file and read once per task in ``mapper_init``. Bad records are
counted exactly as in :mod:`textrec.jobs.df` and get no fingerprint. Output: one UTF-8 JSON object
per valid document, Hangul kept as is::

    {"id": "petition-510", "fingerprint": "9f3a0c…", "scheme": "simhash64-v1", "snapshot": "…"}

``fingerprint`` is 16 lower-case hex digits (:func:`textrec.content.simhash.fingerprint_hex`).
The job is map-only: lines come out in input order within each input split.

    python jobs/fingerprint.py -r local --df-snapshot df.json docs.jsonl > fingerprints.jsonl
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from mrjob.job import MRJob
from mrjob.protocol import BytesValueProtocol
from mrjob.step import MRStep

from textrec.content.analyzer import Analyzer
from textrec.content.simhash import fingerprint_hex
from textrec.content.tfidf import DFSnapshot
from textrec.jobs._documents import COUNTER_GROUP, add_scheme_arg, document_terms

__all__ = ["MRFingerprint", "UnicodeJSONValueProtocol"]


class UnicodeJSONValueProtocol:
    """One JSON value a line, UTF-8 with non-ASCII characters unescaped; keys are dropped."""

    def read(self, line: bytes) -> tuple[None, Any]:
        return None, json.loads(line.decode("utf-8"))

    def write(self, key: Any, value: Any) -> bytes:
        return json.dumps(value, ensure_ascii=False, separators=(", ", ": ")).encode("utf-8")


class MRFingerprint(MRJob):  # type: ignore[misc]
    """The fingerprint of every valid document under one DF snapshot (map-only)."""

    INPUT_PROTOCOL = BytesValueProtocol
    OUTPUT_PROTOCOL = UnicodeJSONValueProtocol

    def configure_args(self) -> None:
        super().configure_args()
        self.add_file_arg(
            "--df-snapshot",
            help="DF snapshot file (the output of `python jobs/df.py`), required",
        )
        add_scheme_arg(self)

    def steps(self) -> list[MRStep]:
        return [MRStep(mapper_init=self.load_snapshot, mapper=self.fingerprint_document)]

    def load_snapshot(self) -> None:
        if not self.options.df_snapshot:
            raise ValueError("--df-snapshot FILE is required (the output of `python jobs/df.py`)")
        self.snapshot = DFSnapshot.load(self.options.df_snapshot)
        self.analyzer = Analyzer.from_scheme(self.options.scheme)

    def _count_bad(self, kind: str) -> None:
        self.increment_counter(COUNTER_GROUP, f"bad records: {kind}", 1)

    def fingerprint_document(self, _: None, line: bytes) -> Iterator[tuple[None, dict[str, str]]]:
        """Takes a JSONL line; emits ``(None, {"id", "fingerprint", "scheme", "snapshot"})``."""
        found = document_terms(self.analyzer, line, self._count_bad)
        if found is None:
            return
        doc_id, counts = found
        yield (
            None,
            {
                "id": doc_id,
                "fingerprint": fingerprint_hex(self.analyzer.fingerprint(counts, self.snapshot)),
                "scheme": self.analyzer.scheme,
                "snapshot": self.snapshot.id,
            },
        )


if __name__ == "__main__":
    MRFingerprint.run()

"""Document frequency job: JSONL documents → one textrec DF snapshot.

Input: JSON Lines documents (``{"id", "title", "text", ...}``), validated as ``textrec ingest``
validates them. Bad records, and records without any noun, are counted under
``textrec / bad records: <kind>`` and skipped. Output: a single line, the DF snapshot in its
canonical serialisation (:meth:`textrec.content.tfidf.DFSnapshot.to_bytes`), so the output file *is*
a DF snapshot file with the same id as the in-process build. Empty input (or only bad records)
gives empty output.

    python jobs/df.py -r inline docs.jsonl > df.json
    python jobs/df.py -r local docs.jsonl.gz --output-dir out/
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

from mrjob.job import MRJob
from mrjob.protocol import BytesValueProtocol, JSONProtocol, RawValueProtocol
from mrjob.step import MRStep

from textrec.content.analyzer import Analyzer
from textrec.content.tfidf import DFSnapshot
from textrec.jobs._documents import COUNTER_GROUP, add_scheme_arg, document_terms

__all__ = ["MRDocumentFrequency"]

# The key under which the number of documents travels; a term is never null.
N_DOCS = None
# In-mapper combining: flush the partial counts when this many distinct terms are held.
FLUSH_TERMS = 200_000


class MRDocumentFrequency(MRJob):  # type: ignore[misc]
    """N and df(term) over valid documents, as one canonical DF snapshot line."""

    INPUT_PROTOCOL = BytesValueProtocol
    INTERNAL_PROTOCOL = JSONProtocol
    OUTPUT_PROTOCOL = RawValueProtocol

    def configure_args(self) -> None:
        super().configure_args()
        add_scheme_arg(self)

    def steps(self) -> list[MRStep]:
        return [
            MRStep(
                mapper_init=self.init_counts,
                mapper=self.count_document,
                mapper_final=self.flush_counts,
                combiner=self.sum_counts,
                reducer=self.total_counts,
            ),
            MRStep(reducer=self.make_snapshot),
        ]

    def init_counts(self) -> None:
        self.analyzer = Analyzer.from_scheme(self.options.scheme)
        self.partial: Counter[str | None] = Counter()

    def _count_bad(self, kind: str) -> None:
        self.increment_counter(COUNTER_GROUP, f"bad records: {kind}", 1)

    def count_document(self, _: None, line: bytes) -> Iterator[tuple[str | None, int]]:
        """Takes a JSONL line; emits nothing until its partial counts are large (then
        ``(term, df)`` and ``(None, N)`` pairs)."""
        found = document_terms(self.analyzer, line, self._count_bad)
        if found is None:
            return
        self.partial[N_DOCS] += 1
        self.partial.update(found[1].keys())
        if len(self.partial) >= FLUSH_TERMS:
            yield from self.flush_counts()

    def flush_counts(self) -> Iterator[tuple[str | None, int]]:
        """Emits the partial ``(term, df)`` and ``(None, N)`` counts held by this mapper."""
        yield from sorted(self.partial.items(), key=lambda kv: (kv[0] is not None, kv[0]))
        self.partial.clear()

    def sum_counts(self, key: str | None, counts: Iterable[int]) -> Iterator[tuple[Any, int]]:
        """Takes ``(term or None, partial counts)``; emits ``(term or None, sum)``."""
        yield key, sum(counts)

    def total_counts(
        self, key: str | None, counts: Iterable[int]
    ) -> Iterator[tuple[None, tuple[str | None, int]]]:
        """Takes ``(term or None, partial counts)``; emits ``(None, (term or None, total))``
        so that one reducer sees every total."""
        yield None, (key, sum(counts))

    def make_snapshot(
        self, _: None, totals: Iterable[tuple[str | None, int]]
    ) -> Iterator[tuple[None, str]]:
        """Takes every ``(term or None, total)``; emits the canonical DF snapshot line."""
        n_docs = 0
        df: dict[str, int] = {}
        for key, total in totals:
            if key is None:
                n_docs += total
            else:
                df[key] = total
        yield None, DFSnapshot.from_counts(n_docs, df).to_bytes().decode("utf-8")


if __name__ == "__main__":
    MRDocumentFrequency.run()

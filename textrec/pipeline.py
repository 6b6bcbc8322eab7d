"""Per-document steps of the pipeline: terms, TF-IDF weights, fingerprint.

These functions are the whole algorithm; the in-process build (:mod:`textrec.build`), the
mrjob jobs (``jobs/``) and the query paths call them, so every runner computes the same terms,
weights and fingerprints. Each depends only on the document and, for weights and fingerprint,
on a DF snapshot.

A document's terms are the terms of its title followed by the terms of its text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .simhash import SCHEME, simhash, simhash_batch, simhash_counts
from .tfidf import DFSnapshot, Weighting, tfidf_weights
from .tokenize import Tokenizer, default_tokenizer

__all__ = ["Analyzer"]


@dataclass
class Analyzer:
    """Turns documents into term counts, weights and fingerprints.

    ``tokenizer`` defaults to the Mecab noun tokenizer (created on first use).
    ``title_weight`` counts each title term that many times (1: a title term counts like a
    body term). ``scheme`` names the fingerprint scheme that this combination produces; with
    non-default weighting or title weight it defaults to ``simhash64-v1+<choices>``, so
    fingerprints of different choices are never mixed. Pass your own ``scheme`` name with a
    custom tokenizer.
    """

    tokenizer: Tokenizer | None = None
    weighting: Weighting = field(default_factory=Weighting)
    title_weight: int = 1
    scheme: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.title_weight, int) or self.title_weight < 0:
            raise ValueError(f"title_weight must be a whole number >= 0, got {self.title_weight!r}")
        if not self.scheme:
            tag = self.weighting.tag
            if self.title_weight != 1:
                tag = ",".join(filter(None, [tag, f"title={self.title_weight}"]))
            self.scheme = f"{SCHEME}+{tag}" if tag else SCHEME

    def _tokenize(self, text: str) -> list[str]:
        if self.tokenizer is None:
            self.tokenizer = default_tokenizer()
        return self.tokenizer(text)

    def term_counts(self, text: str, title: str | None = None) -> dict[str, int]:
        """Term frequencies of a document (title and text), sorted by term."""
        if self.tokenizer is None:
            self.tokenizer = default_tokenizer()
        count_into = getattr(self.tokenizer, "count_into", None)
        if count_into is not None:  # the Mecab tokenizer counts without building lists
            found: dict[str, int] = {}
            count_into(text, found)
            if title and self.title_weight:
                count_into(title, found, self.title_weight)
            return dict(sorted(found.items()))
        counts = Counter(self._tokenize(text))
        if title and self.title_weight:
            for term in self._tokenize(title):
                counts[term] += self.title_weight
        return dict(sorted(counts.items()))

    def weights(self, counts: Mapping[str, int], snapshot: DFSnapshot) -> dict[str, float]:
        return tfidf_weights(counts, snapshot, self.weighting)

    def fingerprint(self, counts: Mapping[str, int], snapshot: DFSnapshot) -> int:
        """The 64-bit fingerprint of a document's term counts under a DF snapshot."""
        return simhash(self.weights(counts, snapshot))

    def fingerprints(
        self, counts_list: Sequence[Mapping[str, int]], snapshot: DFSnapshot
    ) -> list[int]:
        """:meth:`fingerprint` of many documents at once (faster for short texts)."""
        if self.weighting == Weighting():  # the default: weights and fingerprints fused
            return simhash_counts(counts_list, snapshot)
        return simhash_batch([self.weights(c, snapshot) for c in counts_list])

    def fingerprint_text(self, text: str, snapshot: DFSnapshot, title: str | None = None) -> int:
        return self.fingerprint(self.term_counts(text, title), snapshot)

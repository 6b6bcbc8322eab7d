"""Per-document steps of the pipeline: terms, TF-IDF weights, fingerprint.

These functions are the whole algorithm; the in-process build (:mod:`textrec.pipeline.build`), the
mrjob jobs (``jobs/``) and the query paths call them, so every runner computes the same terms,
weights and fingerprints. Each depends only on the document and, for weights and fingerprint,
on a DF snapshot.

A document's terms are the terms of its title followed by the terms of its text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from textrec.content.scheme import SchemeSettings, parse_scheme, scheme_name
from textrec.content.simhash import simhash, simhash_batch, simhash_counts
from textrec.content.tfidf import DFSnapshot, Weighting, tfidf_weights
from textrec.content.tokenize import (
    TERMS_VERSION,
    V2_TAGS,
    MecabNounTokenizer,
    Tokenizer,
    default_tokenizer,
    whitespace_tokenizer,
)

__all__ = ["Analyzer"]


def _version_of(tokenizer: Tokenizer | None) -> int | None:
    """The term scheme a Mecab tokenizer makes (None for another tokenizer or other tags)."""
    if not isinstance(tokenizer, MecabNounTokenizer):
        return None
    if tokenizer.tags is None:
        return 1
    return 2 if tokenizer.tags == V2_TAGS else None


@dataclass
class Analyzer:
    """Turns documents into term counts, weights and fingerprints.

    ``tokenizer`` defaults to the Mecab tokenizer of term scheme ``version`` (created on
    first use; the current term scheme by default, or the one a given
    :class:`~textrec.content.tokenize.MecabNounTokenizer`'s tags make).
    ``title_weight`` counts each title term that many times (1: a title term counts like a
    body term). ``scheme`` names the fingerprint scheme that this combination produces
    (:mod:`textrec.content.scheme`): by default it is derived from the settings, for example
    ``simhash64-v1+tf=log``, so fingerprints of different choices are never mixed, and
    :meth:`from_scheme` turns such a name back into the analyzer. A tokenizer of your own
    must be given a ``scheme`` name of your own.
    """

    tokenizer: Tokenizer | None = None
    weighting: Weighting = field(default_factory=Weighting)
    title_weight: int = 1
    scheme: str = ""
    version: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.title_weight, int) or self.title_weight < 0:
            raise ValueError(f"title_weight must be a whole number >= 0, got {self.title_weight!r}")
        made = _version_of(self.tokenizer)
        if self.version is None:
            self.version = made if made is not None else TERMS_VERSION
        elif self.version not in (1, 2):
            raise ValueError(f"version must be 1 or 2, got {self.version!r}")
        elif made is not None and made != self.version:
            raise ValueError(f"the tokenizer given makes term scheme v{made}, not v{self.version}")
        if not self.scheme:
            if isinstance(self.tokenizer, MecabNounTokenizer) and made is None:
                raise ValueError(
                    f"a Mecab tokenizer with tags {self.tokenizer.tags!r} makes other terms "
                    f"than a textrec term scheme: name its scheme, for example "
                    f"Analyzer(tokenizer=..., scheme='my-tags-v1')"
                )
            if self.tokenizer is None or isinstance(self.tokenizer, MecabNounTokenizer):
                name = "mecab"
            elif self.tokenizer is whitespace_tokenizer:
                name = "whitespace"
            else:
                raise ValueError(
                    f"a custom tokenizer ({self.tokenizer!r}) makes other terms and "
                    f"fingerprints than Mecab: name its scheme, for example "
                    f"Analyzer(tokenizer=..., scheme='my-tokenizer-v1')"
                )
            self.scheme = scheme_name(
                SchemeSettings(name, self.weighting, self.title_weight, self.version)
            )

    @classmethod
    def from_scheme(cls, scheme: str) -> Analyzer:
        """The analyzer that makes ``scheme``; raises
        :class:`~textrec.content.scheme.SchemeUnavailableError` for a name that
        :func:`~textrec.content.scheme.scheme_name` does not write (a custom tokenizer's)."""
        settings = parse_scheme(scheme)
        tokenizer = whitespace_tokenizer if settings.tokenizer == "whitespace" else None
        return cls(tokenizer, settings.weighting, settings.title_weight, version=settings.version)

    def _tokenize(self, text: str) -> list[str]:
        if self.tokenizer is None:
            self.tokenizer = default_tokenizer(self.version or TERMS_VERSION)
        return self.tokenizer(text)

    def shown_terms(self, text: str, title: str | None = None) -> set[str] | None:
        """The terms of a document that may be shown to a reader as shared terms: those that
        Mecab tagged as content words in it (not 것, 년, 우리: see
        :data:`~textrec.content.tokenize.FUNCTION_TAGS`); None (any term) for a tokenizer
        that has no tags."""
        if self.tokenizer is None:
            self.tokenizer = default_tokenizer(self.version or TERMS_VERSION)
        if not isinstance(self.tokenizer, MecabNounTokenizer):
            return None
        return self.tokenizer.content_terms(f"{title}\n{text}" if title else text)

    def term_counts(self, text: str, title: str | None = None) -> dict[str, int]:
        """Term frequencies of a document (title and text), sorted by term."""
        if self.tokenizer is None:
            self.tokenizer = default_tokenizer(self.version or TERMS_VERSION)
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

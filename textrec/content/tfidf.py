"""Document frequency snapshots and TF-IDF weights.

A :class:`DFSnapshot` is the corpus statistics that every per-document step needs: the number
of documents ``N`` and, for every term, the number of documents that contain it, ``df(t)``.
It is immutable and identified by :attr:`DFSnapshot.id`, the first 16 hex digits of the
SHA-256 of its canonical serialisation (:meth:`DFSnapshot.to_bytes`), so the same corpus gives
the same id on every machine and runner.

Formulas
--------
IDF, log-normalised as in the talk::

    idf(t) = ln(N / df(t))

A term that the snapshot has never seen (a document appended after the snapshot was taken)
counts as ``df(t) = 1``, the rarest possible, so new topics stay distinguishable until the
next snapshot. ``N`` below 1 counts as 1. A term present in every document gets weight 0.

TF, chosen by :class:`Weighting`:

- ``"raw"``: ``tf(t, d)`` = number of occurrences of ``t`` in ``d``;
- ``"log"``: ``1 + ln(tf(t, d))`` for ``tf >= 1``.

The weight of a term in a document is ``w(t, d) = tf(t, d) · idf(t)``; :class:`Weighting`
can also set to 0 the weight of short terms or of terms in too many documents.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice
from typing import Any, Literal

__all__ = [
    "DFSnapshot",
    "DFSnapshotError",
    "Weighting",
    "count_terms",
    "idf",
    "tfidf_weights",
]

_FORMAT = "textrec-df/1"


_batch: Any
try:
    from textrec import _batch
except ImportError:  # pragma: no cover - not built here; the Python loop counts the same
    _batch = None

# Collections whose items are distinct already: a document's term counts (a dict iterates over
# its terms) or their keys, sets.
_DISTINCT: tuple[type, ...] = (dict, set, frozenset, type({}.keys()))


def _distinct(terms: Iterable[str], position: int) -> Iterable[str]:
    """A document's distinct terms; a string in place of its terms is refused."""
    if type(terms) in _DISTINCT:
        return terms
    if isinstance(terms, str):
        raise TypeError(
            f"document {position} is a string ({terms[:20]!r}), not a collection of its "
            f"terms: its characters would be counted as terms. Pass its terms "
            f"(Analyzer().term_counts(text), or a list of words)"
        )
    return set(terms)


class DFSnapshotError(ValueError):
    """A DF snapshot file or payload is malformed."""


def count_terms(terms: Iterable[str]) -> Counter[str]:
    """Term frequencies of one document's terms."""
    return Counter(terms)


def idf(n_docs: int, df: int) -> float:
    """``ln(N / df)``, with ``df`` of an unseen term taken as 1 and ``N`` at least 1."""
    return math.log(max(n_docs, 1) / max(df, 1))


@dataclass(frozen=True)
class Weighting:
    """How term frequencies become weights. Part of the fingerprint scheme.

    - ``tf``: ``"raw"`` counts (the default) or ``"log"`` (``1 + ln tf``);
    - ``min_term_length``: terms shorter than this many characters get weight 0
      (2 drops one-syllable nouns such as 것, 수, 법, 집);
    - ``max_df_ratio``: terms in more than this share of the documents get weight 0.

    The defaults were chosen by measurement (``textrec eval``; see ``bench/README.md``):
    log TF ranks better by exact cosine but the related-posts index then recalls less of it,
    and dropping one-character or very frequent nouns lowered topic precision.
    """

    tf: Literal["raw", "log"] = "raw"
    min_term_length: int = 1
    max_df_ratio: float | None = None

    def __post_init__(self) -> None:
        if self.tf not in ("raw", "log"):
            raise ValueError(f"tf must be 'raw' or 'log', got {self.tf!r}")
        if not isinstance(self.min_term_length, int) or self.min_term_length < 1:
            raise ValueError(f"min_term_length must be >= 1, got {self.min_term_length!r}")
        if self.max_df_ratio is not None and not 0 < self.max_df_ratio <= 1:
            raise ValueError(f"max_df_ratio must be in (0, 1], got {self.max_df_ratio!r}")

    @property
    def tag(self) -> str:
        """A short name of the non-default choices ('' for the defaults), for scheme names."""
        parts = []
        if self.tf != "raw":
            parts.append(f"tf={self.tf}")
        if self.min_term_length != 1:
            parts.append(f"minlen={self.min_term_length}")
        if self.max_df_ratio is not None:
            parts.append(f"maxdf={self.max_df_ratio:g}")
        return ",".join(parts)

    def keeps(self, term: str, df: int, n_docs: int) -> bool:
        if len(term) < self.min_term_length:
            return False
        return self.max_df_ratio is None or df <= self.max_df_ratio * max(n_docs, 1)

    def tf_value(self, count: int) -> float:
        if self.tf == "raw":
            return float(count)
        return 1.0 + math.log(count)


@dataclass(frozen=True)
class DFSnapshot:
    """``N`` documents and ``df`` per term, with a content-derived :attr:`id`.

    Build one with :meth:`from_documents` (an iterable of per-document term collections) or
    :meth:`from_counts` (N and a df mapping, as a DF job emits them).
    """

    n_docs: int
    df: Mapping[str, int] = field(repr=False)
    id: str = field(init=False)

    def __post_init__(self) -> None:
        if self.n_docs < 0:
            raise ValueError(f"n_docs must be >= 0, got {self.n_docs}")
        for term, value in self.df.items():
            if not isinstance(term, str) or not term:
                raise ValueError(f"DF terms must be non-empty strings, got {term!r}")
            if not isinstance(value, int) or not 1 <= value <= self.n_docs:
                raise ValueError(
                    f"df({term!r}) = {value!r} is not an integer between 1 and N={self.n_docs}"
                )
        ordered = {term: self.df[term] for term in sorted(self.df)}
        object.__setattr__(self, "df", ordered)
        digest = hashlib.sha256(self._canonical_json()).hexdigest()
        object.__setattr__(self, "id", digest[:16])

    @classmethod
    def from_counts(cls, n_docs: int, df: Mapping[str, int]) -> DFSnapshot:
        return cls(n_docs=n_docs, df=dict(df))

    @classmethod
    def from_documents(cls, documents: Iterable[Iterable[str]]) -> DFSnapshot:
        """Count each document's distinct terms once.

        ``documents`` holds one collection of terms a document (a list of terms, or term
        counts such as :meth:`~textrec.content.analyzer.Analyzer.term_counts` returns); a
        string in their place is refused (TypeError), since its characters would be counted
        as terms.
        """
        if isinstance(documents, str):
            raise TypeError(
                "an iterable of documents' terms was expected, a string was received: pass "
                "[terms of document 1, terms of document 2, ...]"
            )
        df: dict[str, int] = {}
        n = 0
        it = iter(documents)
        while chunk := [_distinct(t, n + i) for i, t in enumerate(islice(it, 4096))]:
            if _batch is not None:  # the compiled loop, a few thousand documents a call
                n += _batch.count_df(chunk, df)
                continue
            get = df.get
            for terms in chunk:
                for term in terms:
                    df[term] = get(term, 0) + 1
            n += len(chunk)
        return cls(n_docs=n, df=df)

    def __len__(self) -> int:
        return len(self.df)

    def __contains__(self, term: object) -> bool:
        return term in self.df

    def idf(self, term: str) -> float:
        """``ln(N / df(t))`` (unseen terms count as df = 1)."""
        return self.idf_table().get(term, self.unseen_idf)

    @property
    def unseen_idf(self) -> float:
        """The idf of a term the snapshot never saw: ``ln(N / 1)``."""
        return idf(self.n_docs, 0)

    def idf_table(self) -> Mapping[str, float]:
        """``{term: idf}`` for the whole vocabulary, computed once per snapshot."""
        table: dict[str, float] | None = self.__dict__.get("_idf_table")
        if table is None:
            n = self.n_docs
            table = {t: idf(n, v) for t, v in self.df.items()}
            self.__dict__["_idf_table"] = table
        return table

    def items(self) -> Iterator[tuple[str, int]]:
        return iter(self.df.items())

    # serialisation ---------------------------------------------------------------------------

    def _canonical_json(self) -> bytes:
        payload = {"format": _FORMAT, "n_docs": self.n_docs, "df": list(self.df.items())}
        return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def to_bytes(self) -> bytes:
        """Canonical UTF-8 JSON: ``{"format", "n_docs", "df": [[term, df], ...]}``, sorted."""
        return self._canonical_json()

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "DF snapshot") -> DFSnapshot:
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
        try:
            payload = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DFSnapshotError(
                f"{source}: not a textrec DF snapshot (invalid JSON: {exc})"
            ) from exc
        if not isinstance(payload, dict) or payload.get("format") != _FORMAT:
            found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
            raise DFSnapshotError(f"{source}: expected format {_FORMAT!r}, found {found!r}")
        try:
            return cls(n_docs=int(payload["n_docs"]), df={t: int(v) for t, v in payload["df"]})
        except (KeyError, TypeError, ValueError) as exc:
            raise DFSnapshotError(f"{source}: malformed DF snapshot: {exc}") from exc

    def save(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(self.to_bytes())

    @classmethod
    def load(cls, path: str) -> DFSnapshot:
        with open(path, "rb") as f:
            return cls.from_bytes(f.read(), source=path)


def tfidf_weights(
    counts: Mapping[str, int], snapshot: DFSnapshot, weighting: Weighting | None = None
) -> dict[str, float]:
    """``w(t, d) = tf(t, d) · idf(t)`` for every term of one document, sorted by term."""
    weighting = weighting or Weighting()
    plain = weighting.min_term_length == 1 and weighting.max_df_ratio is None
    table, unseen = snapshot.idf_table(), snapshot.unseen_idf
    if plain and weighting.tf == "raw":  # the default: the common case, kept lean
        return {t: c * table.get(t, unseen) for t, c in sorted(counts.items()) if c > 0}
    n, df = snapshot.n_docs, snapshot.df
    return {
        term: weighting.tf_value(count) * snapshot.idf(term)
        if plain or weighting.keeps(term, df.get(term, 0), n)
        else 0.0
        for term, count in sorted(counts.items())
        if count > 0
    }

"""The related-posts score: BM25 with a length pivot that short posts cannot drag down.

TF-IDF cosine, the score of earlier versions, lets a two-line post that shares one or two
strong nouns with a long article outrank a truly related long article: normalising by the
vector's length rewards having few terms. Classic BM25 (Robertson; Lucene's
``BM25Similarity``) normalises each document's length by the corpus average, and in a corpus
of many one-line posts that average is a few words, so every long article is penalised as if
it were padded. The score here keeps BM25's saturating term frequency and divides by a
*pivot* that the long documents set:

    score(q, d) = Σ over terms t of both   q(t) · w(t, d)

    w(t, d) = idf(t) · tf·(k1 + 1) / (tf + k1 · norm(|d| / pivot))
    norm(x) = 1 + b · (x − 1)               for a document at least as long as the pivot
              1 − b_short + b_short · x     for a shorter one
    q(t)    = (1 + ln tf_q) · idf(t) ** query_idf_exponent

with ``tf`` the term's count in the document, ``|d|`` the document's total term count,
``idf = ln(N / df)`` from the DF snapshot, and ``pivot = max(pivot_scale · Σ|d|² / Σ|d|,
min_pivot)``: Σ|d|²/Σ|d| is the average length *of the document a random term occurrence
belongs to*, which long documents dominate even when short ones are most of the corpus.
Documents longer than the pivot are normalised hard (``b = 1``: long petitions compete on
density, not on length); shorter ones gain only a little for being short (``b_short``), and
the pivot never falls below ``min_pivot`` terms, so that among headlines and one-line reviews
a headline is not judged padded. Each query term counts by its own (log-damped) frequency in
the query and, slightly, by its rarity.

The index keeps each document's ``top_terms`` largest weights (512 by default, which serves
the score's exact top k). A document with more terms is weighed again as a document of only
the kept ones (``kept_length``), so that a long post cut short is not outranked by short
posts that lost nothing (:meth:`Ranking.index_weights`).

The parameters were chosen by measurement (topic precision@10 on petitions alone, petitions
with 712k short reviews added, and news headlines; ``bench/README.md``, "Choosing the
score"). They are recorded with the related-posts index, so an index is only ever queried
with the score it was built for; the pivot is fitted once per index build from the documents
it holds, and documents appended later use the same pivot (as they use the same DF snapshot).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace

from textrec.content.tfidf import DFSnapshot, Weighting

__all__ = ["DEFAULT_RANKING", "Ranking"]


@dataclass(frozen=True)
class Ranking:
    """The related-posts score's parameters (see the module docstring).

    ``pivot`` is fitted from the corpus by :meth:`fitted`; 0 means not fitted yet.
    ``kept_length``: 1 weighs a document cut to its top terms by the index as a document of
    those terms (:meth:`index_weights`), 0 by its whole length.
    """

    k1: float = 1.2
    b: float = 1.0
    b_short: float = 0.3
    pivot_scale: float = 0.3
    min_pivot: float = 15.0
    query_idf_exponent: float = 0.1
    kept_length: float = 1.0
    pivot: float = 0.0

    name = "bm25-pivot"

    def __post_init__(self) -> None:
        if not self.k1 > 0:
            raise ValueError(f"k1 must be > 0, got {self.k1!r}")
        if not 0 <= self.b <= 1:
            raise ValueError(f"b must be in [0, 1], got {self.b!r}")
        if not 0 <= self.b_short <= 1:
            raise ValueError(f"b_short must be in [0, 1], got {self.b_short!r}")
        if not self.min_pivot >= 0:
            raise ValueError(f"min_pivot must be >= 0, got {self.min_pivot!r}")
        if not self.pivot_scale > 0:
            raise ValueError(f"pivot_scale must be > 0, got {self.pivot_scale!r}")
        if not self.query_idf_exponent >= 0:
            raise ValueError(f"query_idf_exponent must be >= 0, got {self.query_idf_exponent!r}")
        if self.kept_length not in (0.0, 1.0):
            raise ValueError(f"kept_length must be 0 or 1, got {self.kept_length!r}")
        if not self.pivot >= 0:
            raise ValueError(f"pivot must be >= 0, got {self.pivot!r}")

    # the corpus statistic -------------------------------------------------------------------

    def fitted(self, lengths: Iterable[int]) -> Ranking:
        """This ranking with its pivot fitted to documents of these term counts
        (``max(pivot_scale · Σ|d|² / Σ|d|, min_pivot)``; ``min_pivot`` or 1 for an empty
        corpus)."""
        total = squares = 0
        for n in lengths:
            total += n
            squares += n * n
        pivot = self.pivot_scale * squares / total if total else 1.0
        return replace(self, pivot=max(pivot, self.min_pivot, 1e-9))

    def length_norm(self, length: int) -> float:
        """``norm(|d| / pivot)`` of the module docstring."""
        x = length / self.pivot
        if x >= 1.0:
            return 1.0 + self.b * (x - 1.0)
        return 1.0 - self.b_short + self.b_short * x

    @property
    def is_fitted(self) -> bool:
        return self.pivot > 0

    def same_scoring(self, other: Ranking) -> bool:
        """Whether two rankings differ at most in their fitted pivot."""
        return replace(self, pivot=0.0) == replace(other, pivot=0.0)

    # weights --------------------------------------------------------------------------------

    def document_weights(
        self,
        counts: Mapping[str, int],
        snapshot: DFSnapshot,
        weighting: Weighting | None = None,
    ) -> dict[str, float]:
        """``w(t, d)`` of every term of a document with a positive weight, sorted by term.
        ``weighting``: the scheme's weighting, whose ``min_term_length`` and ``max_df_ratio``
        leave terms out here too."""
        if not self.is_fitted:
            raise ValueError("the ranking's pivot is not fitted: call Ranking.fitted(lengths)")
        length = sum(c for c in counts.values() if c > 0)
        if not length:
            return {}
        table, unseen = snapshot.idf_table(), snapshot.unseen_idf
        norm = self.k1 * self.length_norm(length)
        scale = self.k1 + 1.0
        keep = _keeper(snapshot, weighting)
        out: dict[str, float] = {}
        for term, tf in sorted(counts.items()):
            if tf <= 0 or (keep is not None and not keep(term)):
                continue
            w = table.get(term, unseen) * tf * scale / (tf + norm)
            if w > 0:
                out[term] = w
        return out

    def index_weights(
        self,
        counts: Mapping[str, int],
        snapshot: DFSnapshot,
        weighting: Weighting | None = None,
        *,
        top_terms: int,
    ) -> dict[str, float]:
        """The weights the related-posts index keeps for a document: ``w(t, d)`` of its
        ``top_terms`` largest (ties: the first term in order), sorted by term. When some
        were left out and ``kept_length`` is 1, the kept terms are weighed again as a
        document of only those terms: a long post cut to its top terms then competes at the
        length it is stored with, instead of losing to short posts the score of the terms it
        no longer has (bench/README.md, "Fewer terms a document")."""
        w = self.document_weights(counts, snapshot, weighting)
        if len(w) <= top_terms:
            return w
        keep = sorted(sorted(w, key=lambda t: -w[t])[:top_terms])
        if not self.kept_length:
            return {t: w[t] for t in keep}
        return self.document_weights({t: counts[t] for t in keep}, snapshot, weighting)

    def query_weights(
        self,
        counts: Mapping[str, int],
        snapshot: DFSnapshot,
        weighting: Weighting | None = None,
    ) -> dict[str, float]:
        """``q(t)`` of every term of the query with a positive weight, sorted by term."""
        table, unseen = snapshot.idf_table(), snapshot.unseen_idf
        keep = _keeper(snapshot, weighting)
        a = self.query_idf_exponent
        out: dict[str, float] = {}
        for term, tf in sorted(counts.items()):
            if tf <= 0 or (keep is not None and not keep(term)):
                continue
            idf = table.get(term, unseen)
            if idf > 0:
                out[term] = (1.0 + math.log(tf)) * idf**a
        return out

    def max_impact(self, snapshot: DFSnapshot) -> float:
        """An upper bound of ``w(t, d)`` under a snapshot: ``(k1 + 1) · ln N`` (at least
        ``k1 + 1``), the top of the index's quantisation scale."""
        return (self.k1 + 1.0) * max(snapshot.unseen_idf, 1.0)

    # persistence ----------------------------------------------------------------------------

    def params(self) -> dict[str, object]:
        """The parameters as recorded in the index header."""
        return {"name": self.name, **asdict(self)}

    @classmethod
    def from_params(cls, params: Mapping[str, object], *, where: str = "index") -> Ranking:
        if params.get("name") != cls.name:
            raise ValueError(f"{where}: ranking {params.get('name')!r} is not {cls.name!r}")
        expected = {f.name for f in fields(cls)}
        if set(params) - {"name"} != expected:
            raise ValueError(
                f"{where}: ranking parameters {sorted(set(params) - {'name'})} are not "
                f"{sorted(expected)}"
            )
        try:
            return cls(**{k: float(v) for k, v in params.items() if k != "name"})  # type: ignore[arg-type]
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{where}: malformed ranking parameters {dict(params)}: {exc}"
            ) from exc


def _keeper(snapshot: DFSnapshot, weighting: Weighting | None) -> Callable[[str], bool] | None:
    if weighting is None or (weighting.min_term_length == 1 and weighting.max_df_ratio is None):
        return None
    df, n = snapshot.df, snapshot.n_docs
    return lambda term: weighting.keeps(term, df.get(term, 0), n)


DEFAULT_RANKING = Ranking()
"""The default score's parameters (not fitted: its pivot comes from each index's corpus)."""

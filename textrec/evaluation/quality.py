"""Quality evaluation: each retrieval mode against the exact TF-IDF cosine, at growing N.

`textrec eval CORPUS.jsonl [--distractors FILE ...] [--sizes N ...]` (and ``bench/quality.py``)
reports, for every mode and corpus size:

- **recall@k** against the exact cosine top k, computed with scipy sparse over the full
  TF-IDF vectors of the whole corpus (the query's own document excluded, ties by id);
- **topic precision@k**: the share of results whose label equals the query's (documents of
  the distractor files never count as right), for the modes and for exact cosine itself;
- **p50 / p99** query latency on one thread, from the query document's stored term counts;
- **bytes per document** that the mode keeps in memory (the 16-byte fingerprint entry apart
  for the related mode);

and, with ``--near-duplicates``, the precision and recall of fingerprint distance ≤ r
against pairs whose character 5-gram Jaccard similarity is at least 0.8.

Queries are ``numpy.random.default_rng(seed).choice`` of the main corpus; distractors are
appended in file order. The same pipeline as the rest of textrec is used (Analyzer, DF
snapshot, HammingIndex, RelatedIndex), directly rather than through a store.
"""

from __future__ import annotations

import gzip
import json
import re
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from textrec.content.analyzer import Analyzer
from textrec.content.tfidf import DFSnapshot
from textrec.sources import CONTENT_MODES, Query, sources_in_memory

__all__ = ["EvalCorpus", "ModeResult", "evaluate", "near_duplicate_quality"]


@dataclass
class EvalCorpus:
    """Documents as term counts, with labels (None: unlabelled), the title + text of each
    (for near-duplicate truth) and the text alone (to recognise identical texts)."""

    ids: list[str]
    counts: list[dict[str, int]]
    labels: list[str | None]
    texts: list[str]
    bodies: list[str]

    @classmethod
    def read(
        cls,
        path: str,
        analyzer: Analyzer,
        *,
        limit: int | None = None,
        labelled: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> EvalCorpus:
        """Read a JSONL corpus (``id``, ``title``, ``text``, ``label``; ``.gz`` too)."""
        opener = gzip.open if path.endswith(".gz") else open
        corpus = cls([], [], [], [], [])
        with opener(path, "rt", encoding="utf-8") as f:
            for line in f:
                if limit is not None and len(corpus.ids) >= limit:
                    break
                row = json.loads(line)
                title = row.get("title")
                text = row["text"]
                corpus.ids.append(str(row["id"]))
                corpus.counts.append(analyzer.term_counts(text, title))
                corpus.labels.append(row.get("label") if labelled else None)
                corpus.texts.append(f"{title}\n{text}" if title else text)
                corpus.bodies.append(text)
                if progress is not None and len(corpus.ids) % 10_000 == 0:
                    progress(len(corpus.ids))
        return corpus

    def __len__(self) -> int:
        return len(self.ids)

    def extend(self, other: EvalCorpus, n: int) -> EvalCorpus:
        return EvalCorpus(
            self.ids + other.ids[:n],
            self.counts + other.counts[:n],
            self.labels + [None] * min(n, len(other)),
            self.texts + other.texts[:n],
            self.bodies + other.bodies[:n],
        )


@dataclass
class ModeResult:
    mode: str
    n_docs: int
    recall: float
    topic_precision: float
    exact_topic_precision: float
    p50_ms: float
    p99_ms: float
    bytes_per_doc: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _weight_matrix(weights: Sequence[dict[str, float]], vocab: dict[str, int]) -> sp.csr_matrix:
    indptr = np.zeros(len(weights) + 1, np.int64)
    cols: list[int] = []
    vals: list[float] = []
    for i, w in enumerate(weights):
        for t, v in w.items():
            if v > 0:
                cols.append(vocab.setdefault(t, len(vocab)))
                vals.append(v)
        indptr[i + 1] = len(cols)
    m = sp.csr_matrix((np.array(vals), np.array(cols, np.int64), indptr))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (sp.diags(inv) @ m).tocsr()


def exact_top_k(
    unit: sp.csr_matrix, queries: npt.NDArray[np.int64], k: int, batch: int = 50
) -> npt.NDArray[np.int64]:
    """Rows of the exact cosine top k of each query row (itself excluded, ties by row);
    -1 pads rows with fewer than k positive cosines."""
    out = np.full((len(queries), k), -1, np.int64)
    transposed = unit.T.tocsr()
    for a in range(0, len(queries), batch):
        block = (unit[queries[a : a + batch]] @ transposed).toarray()
        for j, q in enumerate(queries[a : a + batch]):
            s = block[j]
            s[q] = 0.0
            cand = np.flatnonzero(s > 0)
            order = np.lexsort((cand, -s[cand]))[:k]
            out[a + j, : len(order)] = cand[order]
    return out


def evaluate(
    corpus: EvalCorpus,
    n_main: int,
    *,
    modes: Sequence[str] = ("related", "hamming"),
    n_queries: int = 400,
    seed: int = 0,
    k: int = 10,
    analyzer: Analyzer | None = None,
) -> list[ModeResult]:
    """Evaluate each mode on ``corpus``, whose first ``n_main`` documents are the labelled
    main corpus the queries come from."""
    analyzer = analyzer or Analyzer()
    snapshot = DFSnapshot.from_documents(corpus.counts)
    weights = [analyzer.weights(c, snapshot) for c in corpus.counts]
    vocab = {t: i for i, t in enumerate(snapshot.df)}
    unit = _weight_matrix(weights, vocab)
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n_main, size=min(n_queries, n_main), replace=False))
    truth = exact_top_k(unit, queries, k)
    labels = corpus.labels

    def topic(rows: Sequence[Sequence[int]]) -> float:
        hits = [
            sum(1 for r in row[:k] if r >= 0 and labels[r] is not None and labels[r] == labels[q])
            for q, row in zip(queries.tolist(), rows, strict=True)
        ]
        return sum(hits) / (k * len(queries))

    exact_topic = topic(truth.tolist())
    unknown = [m for m in modes if m not in CONTENT_MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r}; choose from {', '.join(CONTENT_MODES)}")
    codes = analyzer.fingerprints(corpus.counts, snapshot)
    sources = sources_in_memory(
        range(len(corpus)),
        codes,
        weights,
        vocabulary=snapshot.df.keys(),
        scheme=analyzer.scheme,
        snapshot_id=snapshot.id,
    )
    results: list[ModeResult] = []
    for mode in modes:
        source = sources[mode]
        rows: list[list[int]] = []
        times: list[float] = []
        for q in queries.tolist():
            t0 = time.perf_counter()
            found, _ = source.rank(Query(weights[q], codes[q]), k, q)
            rows.append(found.tolist())
            times.append(time.perf_counter() - t0)
        recall = statistics.fmean(
            len(set(r) & {t for t in truth[i] if t >= 0}) / k for i, r in enumerate(rows)
        )
        results.append(
            ModeResult(
                mode,
                len(corpus),
                round(recall, 4),
                round(topic(rows), 4),
                round(exact_topic, 4),
                round(float(np.percentile(times, 50)) * 1e3, 3),
                round(float(np.percentile(times, 99)) * 1e3, 3),
                round(source.bytes_per_document, 1),
            )
        )
    return results


def _shingle_matrix(texts: Sequence[str], n: int = 5) -> sp.csr_matrix:
    ids: dict[str, int] = {}
    indptr = [0]
    cols: list[int] = []
    for text in texts:
        s = re.sub(r"\s+", " ", text).strip()
        grams = {s[i : i + n] for i in range(max(len(s) - n + 1, 1))}
        cols.extend(ids.setdefault(g, len(ids)) for g in grams)
        indptr.append(len(cols))
    return sp.csr_matrix(
        (np.ones(len(cols), np.float32), np.array(cols, np.int64), np.array(indptr, np.int64))
    )


def near_duplicate_quality(
    corpus: EvalCorpus,
    radii: Sequence[int] = (0, 2, 3, 4, 6, 8),
    *,
    threshold: float = 0.8,
    analyzer: Analyzer | None = None,
) -> list[dict[str, float]]:
    """Precision and recall of "fingerprint distance ≤ r" against pairs whose character
    5-gram Jaccard similarity is ≥ ``threshold``. Documents with fingerprint 0 (no weighted
    terms) match only identical texts; identical texts are at distance 0, as in
    :meth:`~textrec.recommend.Recommender.near_duplicates`. Quadratic: meant for corpora of a
    few thousand."""
    analyzer = analyzer or Analyzer()
    snapshot = DFSnapshot.from_documents(corpus.counts)
    codes = np.array(analyzer.fingerprints(corpus.counts, snapshot), np.uint64)
    x = _shingle_matrix(corpus.texts)
    size = np.asarray(x.sum(axis=1)).ravel()
    inter = (x @ x.T).tocoo()
    upper = inter.row < inter.col
    i, j, v = inter.row[upper], inter.col[upper], inter.data[upper]
    jac = v / (size[i] + size[j] - v)
    truth = set(zip(i[jac >= threshold].tolist(), j[jac >= threshold].tolist(), strict=True))
    out = []
    iu, ju = np.triu_indices(len(codes), 1)
    dist = np.bitwise_count(codes[iu] ^ codes[ju])
    nonzero = (codes[iu] != 0) & (codes[ju] != 0)
    by_text: dict[str, list[int]] = {}
    for n, body in enumerate(corpus.bodies):
        by_text.setdefault(body, []).append(n)
    identical = {
        (a, b) for group in by_text.values() for x, a in enumerate(group) for b in group[x + 1 :]
    }
    for r in radii:
        hit = (dist <= r) & nonzero
        predicted = set(zip(iu[hit].tolist(), ju[hit].tolist(), strict=True)) | identical
        tp = len(predicted & truth)
        out.append(
            {
                "max_distance": r,
                "predicted": len(predicted),
                "true_pairs": len(truth),
                "precision": round(tp / len(predicted), 4) if predicted else 1.0,
                "recall": round(tp / len(truth), 4) if truth else 1.0,
            }
        )
    return out

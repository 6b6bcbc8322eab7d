"""Quality evaluation: the default ranking against peer rankings, at growing N.

`textrec eval CORPUS.jsonl [--distractors FILE ...] [--sizes N ...]` (and ``bench/quality.py``)
reports, for every corpus size (the main corpus plus the first N distractor documents):

- **topic precision@k** with its standard error over the queries: the share of results whose
  label equals the query's (documents of the distractor files never count as right), for
  each retrieval mode as served (``related`` through its impact index, ``hamming``) and for
  peer rankings scored exactly with scipy sparse over the whole corpus: TF-IDF cosine (the
  score of earlier versions), BM25 (k1 = 1.2, each query term once with its idf) at b = 0.75
  and b = 0.3, and the default score itself computed exactly (``related exact``);
- **recall@k** of each mode against the default score computed exactly (without quantisation
  or per-document pruning; the query's own document excluded, ties by id);
- **p50 / p99** query latency on one thread, from the query document's term counts;
- **bytes per document** that the mode keeps in memory (the 16-byte fingerprint entry apart
  for the related mode);

and, with ``--near-duplicates``, the precision and recall of fingerprint distance ≤ r
against pairs whose character 5-gram Jaccard similarity is at least 0.8.

Queries are ``numpy.random.default_rng(seed).choice`` of the main corpus; distractors are
appended in file order. The same pipeline as the rest of textrec is used (Analyzer, DF
snapshot, ranking, HammingIndex, RelatedIndex), directly rather than through a store.
"""

from __future__ import annotations

import gzip
import json
import re
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from textrec.content.analyzer import Analyzer
from textrec.content.ranking import DEFAULT_RANKING, Ranking
from textrec.content.tfidf import DFSnapshot
from textrec.sources import CONTENT_MODES, Query, RelatedSource, sources_in_memory

__all__ = ["PEERS", "EvalCorpus", "ModeResult", "evaluate", "near_duplicate_quality"]


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
    """One ranking at one corpus size. ``recall``, latency and bytes are None for the peer
    rankings, which are scored exactly rather than served."""

    mode: str
    n_docs: int
    topic_precision: float
    topic_se: float
    recall: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    bytes_per_doc: float | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


PEERS = ("tfidf-cosine", "bm25 b=0.75", "bm25 b=0.3")
"""The peer rankings ``textrec eval`` scores exactly beside the modes."""


def _counts_matrix(counts: Sequence[Mapping[str, float]], vocab: dict[str, int]) -> sp.csr_matrix:
    indptr = np.zeros(len(counts) + 1, np.int64)
    cols: list[int] = []
    vals: list[float] = []
    for i, c in enumerate(counts):
        for t, v in c.items():
            if v > 0:
                cols.append(vocab.setdefault(t, len(vocab)))
                vals.append(v)
        indptr[i + 1] = len(cols)
    return sp.csr_matrix(
        (np.array(vals, np.float64), np.array(cols, np.int64), indptr),
        shape=(len(counts), max(len(vocab), 1)),
    )


def _unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return (sp.diags(inv) @ m).tocsr()


def _peer_matrices(
    name: str, counts: sp.csr_matrix, idf: npt.NDArray[np.float64]
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """``(document matrix, query matrix)`` of a peer ranking: score = query row · document
    row."""
    if name == "tfidf-cosine":
        unit = _unit_rows((counts @ sp.diags(idf)).tocsr())
        return unit, unit
    b = float(name.split("b=")[1])
    k1 = 1.2
    n = counts.shape[0]
    df = np.bincount(counts.indices, minlength=counts.shape[1]).astype(np.float64)
    bm25_idf = np.log(1.0 + (n - df + 0.5) / (df + 0.5))
    length = np.asarray(counts.sum(axis=1)).ravel()
    norm = k1 * (1.0 - b + b * length / max(length.mean(), 1e-9))
    docs = counts.copy()
    docs.data = docs.data * (k1 + 1.0) / (docs.data + np.repeat(norm, np.diff(counts.indptr)))
    docs = (docs @ sp.diags(bm25_idf)).tocsr()
    once = counts.copy()
    once.data = np.ones_like(once.data)
    return docs, once


def exact_top_k(
    docs: sp.csr_matrix,
    queries: npt.NDArray[np.int64],
    k: int,
    query_rows: sp.csr_matrix | None = None,
    batch: int = 50,
) -> npt.NDArray[np.int64]:
    """Rows of the exact top k of ``query_rows · docs[r]`` for each query row (the query's
    own row excluded, ties by row); -1 pads rows with fewer than k positive scores.
    ``query_rows`` defaults to the queries' own rows of ``docs`` (a cosine)."""
    q_all = docs[queries] if query_rows is None else query_rows
    out = np.full((len(queries), k), -1, np.int64)
    transposed = docs.T.tocsr()
    for a in range(0, len(queries), batch):
        block = (q_all[a : a + batch] @ transposed).toarray()
        for j, q in enumerate(queries[a : a + batch]):
            s = block[j]
            s[q] = 0.0
            cand = np.flatnonzero(s > 0)
            if len(cand) > 4 * k:
                cut = np.partition(s[cand], len(cand) - k)[len(cand) - k]
                cand = cand[s[cand] >= cut]
            order = np.lexsort((cand, -s[cand]))[:k]
            out[a + j, : len(order)] = cand[order]
    return out


def evaluate(
    corpus: EvalCorpus,
    n_main: int,
    *,
    modes: Sequence[str] = ("related", "hamming"),
    peers: Sequence[str] = PEERS,
    n_queries: int = 400,
    seed: int = 0,
    k: int = 10,
    analyzer: Analyzer | None = None,
    ranking: Ranking = DEFAULT_RANKING,
    top_terms: int | None = None,
) -> list[ModeResult]:
    """Evaluate each mode and peer ranking on ``corpus``, whose first ``n_main`` documents
    are the labelled main corpus the queries come from."""
    analyzer = analyzer or Analyzer()
    unknown = [m for m in modes if m not in CONTENT_MODES]
    if unknown:
        raise ValueError(f"unknown mode {unknown[0]!r}; choose from {', '.join(CONTENT_MODES)}")
    unknown = [p for p in peers if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer {unknown[0]!r}; choose from {', '.join(PEERS)}")
    snapshot = DFSnapshot.from_documents(corpus.counts)
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(n_main, size=min(n_queries, n_main), replace=False))
    labels = corpus.labels

    def topic(rows: Sequence[Sequence[int]]) -> tuple[float, float]:
        hits = np.array(
            [
                sum(
                    1
                    for r in row[:k]
                    if r >= 0 and labels[r] is not None and labels[r] == labels[q]
                )
                / k
                for q, row in zip(queries.tolist(), rows, strict=True)
            ]
        )
        se = float(hits.std(ddof=1) / np.sqrt(len(hits))) if len(hits) > 1 else 0.0
        return round(float(hits.mean()), 4), round(se, 4)

    codes = analyzer.fingerprints(corpus.counts, snapshot)
    sources = sources_in_memory(
        range(len(corpus)),
        codes,
        corpus.counts,
        snapshot=snapshot,
        scheme=analyzer.scheme,
        weighting=analyzer.weighting,
        ranking=ranking,
        top_terms=top_terms,
    )
    related = sources["related"]
    assert isinstance(related, RelatedSource)
    # The default score, exactly: every term of every document, unquantised.
    vocab = {t: i for i, t in enumerate(snapshot.df)}
    doc_w = _counts_matrix([related.document_weights(c) for c in corpus.counts], vocab)
    query_w = _counts_matrix([related.query_weights(corpus.counts[q]) for q in queries], vocab)
    doc_w.resize((doc_w.shape[0], len(vocab)))
    query_w.resize((query_w.shape[0], len(vocab)))
    truth = exact_top_k(doc_w, queries, k, query_w)
    results: list[ModeResult] = []
    n = len(corpus)
    for mode in modes:
        source = sources[mode]
        rows: list[list[int]] = []
        times: list[float] = []
        for q in queries.tolist():
            t0 = time.perf_counter()
            weights = analyzer.weights(corpus.counts[q], snapshot) if mode == "hamming" else {}
            query = Query(weights, codes[q], q, corpus.counts[q])
            found, _ = source.rank(query, k, q)
            rows.append(found.tolist())
            times.append(time.perf_counter() - t0)
        recall = statistics.fmean(
            len(set(r) & {t for t in truth[i] if t >= 0}) / k for i, r in enumerate(rows)
        )
        p, se = topic(rows)
        results.append(
            ModeResult(
                mode,
                n,
                p,
                se,
                round(recall, 4),
                round(float(np.percentile(times, 50)) * 1e3, 3),
                round(float(np.percentile(times, 99)) * 1e3, 3),
                round(source.bytes_per_document, 1),
            )
        )
    p, se = topic(truth.tolist())
    results.append(ModeResult("related exact", n, p, se))
    counts = _counts_matrix(corpus.counts, dict(vocab))
    idf = np.array(
        [snapshot.idf(t) for t in vocab] + [snapshot.unseen_idf] * (counts.shape[1] - len(vocab))
    )
    for peer in peers:
        docs, qrows = _peer_matrices(peer, counts, idf)
        p, se = topic(exact_top_k(docs, queries, k, qrows[queries]).tolist())
        results.append(ModeResult(peer, n, p, se))
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

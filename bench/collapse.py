"""Collapsing copies in related lists: which fingerprint distance, measured on petitions.

A related list should not hold a re-post of the query, nor three copies of one article. The
collapse drops a result whose 64-bit fingerprint is within ``r`` bits of the query's or of a
higher-ranked result's, and takes the next one instead. This script measures, for each ``r``,
on the petitions' natural duplicates (pairs whose title + text character 5-gram Jaccard is at
least 0.8: 44 identical texts and the re-posts with small edits):

- **copies caught**: of the results in the uncollapsed top 10 that duplicate the query or a
  higher-ranked result (by that truth), the share the collapse drops;
- **wrongly dropped**: results dropped although they duplicate neither, per query and as a
  share of all drops;
- topic precision@10 of the lists before and after (standard errors over the queries).

Lists are the exact TF-IDF cosine top 40 of every petition (term scheme v2), each query's own
document excluded; the collapse then keeps the first 10 survivors.

Run: ``nice .venv/bin/python bench/collapse.py``.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textrec.content.analyzer import Analyzer
from textrec.content.tfidf import DFSnapshot
from textrec.evaluation.quality import EvalCorpus, _shingle_matrix, _weight_matrix

PETITIONS = Path(__file__).resolve().parents[2] / "shared" / "data" / "petitions_ko_17cat.jsonl"
DEPTH = 40
K = 10


def main() -> None:
    analyzer = Analyzer()
    corpus = EvalCorpus.read(str(PETITIONS), analyzer)
    n = len(corpus)
    snapshot = DFSnapshot.from_documents(corpus.counts)
    codes = np.array(analyzer.fingerprints(corpus.counts, snapshot), np.uint64)
    weights = [analyzer.weights(c, snapshot) for c in corpus.counts]
    vocab = {t: i for i, t in enumerate(snapshot.df)}
    w = _weight_matrix(weights, vocab)
    norms = np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel())
    w = w.multiply(1.0 / np.maximum(norms, 1e-12)[:, None]).tocsr()
    sims = (w @ w.T).toarray()
    np.fill_diagonal(sims, -1.0)
    lists = np.argsort(-sims, axis=1, kind="stable")[:, :DEPTH]

    x = _shingle_matrix(corpus.texts)
    size = np.asarray(x.sum(axis=1)).ravel()
    inter = (x @ x.T).tocoo()
    jac = inter.data / (size[inter.row] + size[inter.col] - inter.data)
    jaccard = {
        (a, b): v
        for a, b, v in zip(inter.row.tolist(), inter.col.tolist(), jac.tolist(), strict=True)
        if v >= 0.5 and a != b
    }
    keep = (jac >= 0.8) & (inter.row != inter.col)
    dup: set[tuple[int, int]] = set(
        zip(inter.row[keep].tolist(), inter.col[keep].tolist(), strict=True)
    )
    pairs = {(a, b) for a, b in dup if a < b}
    identical = sum(1 for a, b in pairs if corpus.bodies[a] == corpus.bodies[b])
    labels = np.array([str(x) for x in corpus.labels])
    print(
        f"petitions: {n:,} documents; {len(pairs)} duplicate pairs "
        f"({identical} with identical texts); lists: exact cosine top {DEPTH}, k = {K}"
    )
    dists = [int(np.bitwise_count(codes[a] ^ codes[b])) for a, b in pairs]
    print("distance of the duplicate pairs:", np.bincount(dists, minlength=12)[:12].tolist(),
          f"(max {max(dists)})")  # fmt: skip

    def topic(rows: list[list[int]]) -> tuple[float, float]:
        p = np.array([np.mean(labels[r] == labels[q]) if r else 0.0 for q, r in enumerate(rows)])
        return float(p.mean()), float(p.std(ddof=1) / math.sqrt(len(p)))

    base_rows = [lists[q, :K].tolist() for q in range(n)]
    copies_in_base = 0
    for q in range(n):
        seen = [q]
        for d in base_rows[q]:
            if any((d, s) in dup for s in seen):
                copies_in_base += 1
            seen.append(d)
    tp0, se0 = topic(base_rows)
    print(f"uncollapsed: topic precision@10 {tp0:.4f} ± {se0:.4f}; copies in the top 10: "
          f"{copies_in_base}")  # fmt: skip
    print()
    print("| r (bits) | copies caught | wrongly dropped (of them Jaccard ≥ 0.5) | of all drops | "
          "topic precision@10 | ± s.e. | lists short of 10 |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in (0, 1, 2, 3, 4, 5, 6, 8, 10, 12):
        rows: list[list[int]] = []
        caught = wrong = partial = drops = short = 0
        for q in range(n):
            kept: list[int] = []
            for d in lists[q].tolist():
                if len(kept) == K:
                    break
                near = [s for s in [q, *kept] if int(np.bitwise_count(codes[d] ^ codes[s])) <= r]
                if near and codes[d] != 0:
                    drops += 1
                    if any((d, s) in dup for s in near):
                        caught += 1 if d in base_rows[q] else 0
                    else:
                        wrong += 1
                        partial += any((d, s) in jaccard for s in near)
                    continue
                kept.append(d)
            short += len(kept) < K
            rows.append(kept)
        tp, se = topic(rows)
        print(
            f"| {r} | {caught}/{copies_in_base} ({caught / max(copies_in_base, 1):.2f}) | "
            f"{wrong} ({partial}) | {wrong / max(drops, 1):.3f} | {tp:.4f} | {se:.4f} | {short} |"
        )


if __name__ == "__main__":
    main()

"""Which morphemes should be terms: topic precision@10 of exact TF-IDF cosine per term choice.

Term scheme v2 adds Latin-script words (Mecab ``SL``) and asks whether dependent nouns,
counters, pronouns and numerals (``NNB``, ``NNBC``, ``NP``, ``NR``) help or hurt. This script
tags every document once with Mecab, derives each candidate's terms from the (surface, tag)
pairs, and scores each candidate the same way:

- weights ``tf · ln(N / df)`` (raw tf, title and text counted together), exact cosine by
  scipy sparse products, every document of the corpus a candidate;
- 1,000 queries drawn with a fixed seed from all documents (the same queries for every
  candidate), each query's own document excluded; a query with no terms scores 0;
- topic precision@10 = share of the 10 best results with the query's label (missing results
  count as misses), with its standard error, and the standard error of each candidate's
  difference from v1 over the same queries (paired).

Run: ``nice .venv/bin/python bench/term_scheme.py [--queries 1000] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from textrec.content.tokenize import default_tokenizer, normalize_term, normalize_text

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
CORPORA = {
    "petitions": DATA / "petitions_ko_17cat.jsonl",
    "ynat": DATA / "ynat_headlines_7cat.jsonl",
}
FUNCTION = {"NNB", "NNBC", "NP", "NR"}


def _v1(tag: str) -> bool:
    return tag.startswith("N")


KEEP_FUNCTION = "NNG NNP NNB NNBC NP NR SL (v2)"
CANDIDATES = {
    "v1 (KoNLPy nouns: every tag starting with N)": _v1,
    KEEP_FUNCTION: lambda tag: tag in FUNCTION or tag in ("NNG", "NNP", "SL"),
    "v1 + SL": lambda tag: _v1(tag) or tag == "SL",
    "NNG NNP SL": lambda tag: tag in ("NNG", "NNP", "SL"),
    "NNG NNP": lambda tag: tag in ("NNG", "NNP"),
}


def tagged(text: str, tagger: object) -> list[tuple[str, str]]:
    result = tagger.parse(normalize_text(text))  # type: ignore[attr-defined]
    pairs = []
    for line in result.splitlines()[:-1]:
        surface, tab, features = line.partition("\t")
        if tab:
            pairs.append((surface, features.split(",", 1)[0]))
    return pairs


def precision_at_10(docs: list[Counter[str]], labels: list[str], queries: list[int]) -> np.ndarray:
    vocab: dict[str, int] = {}
    rows, cols, vals = [], [], []
    for i, counts in enumerate(docs):
        for term, c in counts.items():
            rows.append(i)
            cols.append(vocab.setdefault(term, len(vocab)))
            vals.append(float(c))
    n = len(docs)
    tf = sp.csr_matrix((vals, (rows, cols)), shape=(n, max(len(vocab), 1)))
    df = np.bincount(tf.indices, minlength=tf.shape[1])
    idf = np.log(n / np.maximum(df, 1))
    w = (tf @ sp.diags(idf)).tocsr()
    norms = np.sqrt(np.asarray(w.multiply(w).sum(axis=1)).ravel())
    w = (sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ w).tocsr()
    label_arr = np.array(labels)
    out = np.zeros(len(queries))
    for start in range(0, len(queries), 200):
        chunk = queries[start : start + 200]
        scores = (w[chunk] @ w.T).toarray()
        for j, q in enumerate(chunk):
            s = scores[j]
            s[q] = 0.0
            top = np.argpartition(-s, 10)[:10]
            top = top[s[top] > 0]
            out[start + j] = float(np.sum(label_arr[top] == labels[q])) / 10.0
    return out


def _se(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x))) if x.any() else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    tagger = default_tokenizer(1)._tagger()
    for corpus, path in CORPORA.items():
        t0 = time.perf_counter()
        rows = [json.loads(line) for line in path.open(encoding="utf-8")]
        pairs = [tagged(f"{r.get('title') or ''}\n{r['text']}", tagger) for r in rows]
        labels = [str(r["label"]) for r in rows]
        queries = random.Random(args.seed).sample(range(len(rows)), args.queries)
        print(f"\n{corpus}: {len(rows):,} documents, {args.queries} queries, seed {args.seed}")
        print(
            "| terms | topic precision@10 | ± s.e. | Δ vs v1 | ± s.e. | "
            "Δ vs keeping NNB NNBC NP NR | ± s.e. | docs without terms |"
        )
        print("|---|---|---|---|---|---|---|---|")
        base: np.ndarray | None = None
        results: dict[str, np.ndarray] = {}
        for name, keep in CANDIDATES.items():
            docs = []
            for doc in pairs:
                terms = (normalize_term(s) for s, tag in doc if keep(tag))
                docs.append(Counter(t for t in terms if t))
            p = results[name] = precision_at_10(docs, labels, queries)
            base = p if base is None else base
            keep_fn = results.get(KEEP_FUNCTION)
            empty = sum(1 for c in docs if not c)
            vs_fn = (
                f"{(p - keep_fn).mean():+.4f} | {_se(p - keep_fn):.4f}"
                if keep_fn is not None and name != KEEP_FUNCTION
                else "— | —"
            )
            print(
                f"| {name} | {p.mean():.4f} | {_se(p):.4f} | {(p - base).mean():+.4f} | "
                f"{_se(p - base):.4f} | {vs_fn} | {empty} |"
            )
        print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()

"""The related-posts quality tables of bench/README.md: the default ranking and its peers.

Usage: python bench/quality.py [extra `textrec eval` options, e.g. --queries 400]

Runs `textrec eval` twice, on the petitions and on the news headlines of ../shared/data, each
queried on its own (1,000 queries, seed 0) with the movie reviews appended as unlabelled
distractors at 0, 100k, 300k and all 712,383, then the near-duplicate figures of the
petitions. Prints topic precision@10 ± standard error of the default (`related`, served by
its impact index), of the default scored exactly, and of the peers (TF-IDF cosine, BM25 at
b = 0.75 and 0.3), with the index's recall of its own exact score, p50/p99 and bytes/doc.
Takes about 25 minutes here (tokenising the reviews and the exact peer scores are most of it).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one core per query, as the targets say

from textrec.cli.main import main  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

if __name__ == "__main__":
    status = 0
    for corpus, extra in (
        ("petitions_ko_17cat.jsonl", ["--near-duplicates"]),
        ("ynat_headlines_7cat.jsonl", []),
    ):
        print(f"## {corpus}", flush=True)
        args = [
            "eval",
            str(DATA / corpus),
            "--distractors",
            str(DATA / "nsmc_raw_reviews.jsonl.gz"),
            "--sizes",
            "100000",
            "300000",
            "712383",
            *extra,
            *sys.argv[1:],
        ]
        status = status or main(args)
    sys.exit(status)

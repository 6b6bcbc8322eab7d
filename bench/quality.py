"""The related-posts quality table of bench/README.md: every mode at N = 3,668 … 766,051.

Usage: python bench/quality.py [extra `textrec eval` options, e.g. --tf log]

Runs `textrec eval` on the petitions (400 queries, seed 0) with the news headlines and then
the movie reviews of ../shared/data appended as unlabelled distractors, at 0, 100k, 300k and
all 762,383 distractors, plus the near-duplicate figures. Takes about 10 minutes here
(tokenising 766k documents is most of it).
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
    args = [
        "eval",
        str(DATA / "petitions_ko_17cat.jsonl"),
        "--distractors",
        str(DATA / "ynat_headlines_7cat.jsonl"),
        str(DATA / "nsmc_raw_reviews.jsonl.gz"),
        "--sizes",
        "100000",
        "300000",
        "762383",
        "--near-duplicates",
        *sys.argv[1:],
    ]
    sys.exit(main(args))

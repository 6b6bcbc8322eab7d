"""The hybrid against each single model, on a seeded click log over labelled Korean posts.

The posts are the petitions of ``../shared/data/petitions_ko_17cat.jsonl`` (17 categories;
see ``../shared/data/README.md`` for their source and license). The readers are made up by
:func:`textrec.collab.synthetic.click_log` with a fixed seed: each reads within one or two
categories, and now and then anywhere. Two protocols, each with three seeds:

The readers follow the site's related posts now and then (``--follow``: a read is a click on
one of the five related posts of the previous read), as on a site that shows them.

- ``random-80-20``: NDCG@10 etc. of popular, readers, content, ALS, BPR and the hybrid;
- cold start (``--new-items 0.2``): a fifth of the posts are held out of training entirely,
  and recall@10 on the reads of those posts says who finds a post nobody had read.

Goals (issue 18): the hybrid beats every single model on NDCG@10, and its cold-start recall is
at least 0.8 × content's.

    python bench/events_hybrid.py [--users 3000] [--seeds 0 1 2] [--rule blend|rrf] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from textrec.collab.synthetic import click_log
from textrec.content.analyzer import Analyzer
from textrec.content.tfidf import DFSnapshot
from textrec.evaluation import events as ev
from textrec.sources import Query, sources_in_memory

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "petitions_ko_17cat.jsonl"


def related_lists(terms: dict[str, dict[str, int]], analyzer: Analyzer) -> dict[str, list[str]]:
    """Each post's five related posts (textrec's default ranking): what the site shows."""
    names = sorted(terms)
    counts = [terms[n] for n in names]
    snapshot = DFSnapshot.from_documents(counts)
    codes = analyzer.fingerprints(counts, snapshot)
    sources = sources_in_memory(
        list(range(len(names))),
        codes,
        counts,
        snapshot=snapshot,
        scheme=analyzer.scheme,
        weighting=analyzer.weighting,
    )
    related = sources["related"]
    out = {}
    for i, name in enumerate(names):
        ids, _ = related.rank(Query({}, 0, i, counts[i]), 5, i)
        out[name] = [names[j] for j in ids.tolist()]
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default=str(DATA))
    p.add_argument("--users", type=int, default=3000)
    p.add_argument("--per-label", type=int, default=60, help="posts taken from each category")
    p.add_argument("--popularity", type=float, default=1.0, help="click_log's popularity skew")
    p.add_argument(
        "--follow", type=float, default=0.3, help="share of reads that click a related post"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--models", default="popular,readers,content,als,bpr,hybrid")
    p.add_argument("--rule", default=None, help="the hybrid's rule (default: textrec's)")
    p.add_argument("--weights", default=None, help='the hybrid\'s weights as JSON, {"als": 1}')
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    analyzer = Analyzer()
    started = time.perf_counter()
    groups: dict[str, list[str]] = defaultdict(list)
    terms: dict[str, dict[str, int]] = {}
    with open(args.corpus, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if len(groups[row["label"]]) >= args.per_label:
                continue
            groups[row["label"]].append(row["id"])
            terms[row["id"]] = analyzer.term_counts(row["text"], row.get("title"))
    print(
        f"{len(terms):,} posts in {len(groups)} categories, tagged in "
        f"{time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    related = related_lists(terms, analyzer)
    models = [m for m in args.models.split(",") if m in ev.MODELS]
    hybrid_options: dict[str, object] = {}
    if args.rule:
        hybrid_options["rule"] = args.rule
    if args.weights:
        hybrid_options["weights"] = json.loads(args.weights)
    rows = []
    for protocol in ("random-80-20", "new-items 0.2"):
        for seed in args.seeds:
            events = click_log(
                groups,
                users=args.users,
                seed=seed,
                popularity=args.popularity,
                follow=args.follow,
                related=related,
            )
            data = ev.Interactions.from_triples(
                [(e["user"], e["item"], float(n)) for n, e in enumerate(events)]
            )
            item_terms = [terms[i] for i in data.item_names]
            options: dict[str, dict[str, object]] = {
                "content": {"item_terms": item_terms, "analyzer": analyzer},
                "hybrid": {"item_terms": item_terms, "analyzer": analyzer, **hybrid_options},
            }
            scores = ev.evaluate_events(
                data,
                protocol="random-80-20",
                seed=seed,
                models=models,
                options=options,
                new_items=0.2 if protocol.startswith("new") else None,
            )
            for s in scores:
                row = {"protocol": protocol, "seed": seed, **s.as_dict()}
                rows.append(row)
                if args.json:
                    print(json.dumps(row))
    if not args.json:
        print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
        print("| protocol | model | NDCG@10 | recall@10 | precision@10 | coverage | fit s |")
        print("|---|---|---|---|---|---|---|")
        for protocol in ("random-80-20", "new-items 0.2"):
            for m in models:
                mine = [r for r in rows if r["protocol"] == protocol and r["model"] == m]
                mean = {
                    k: float(np.mean([float(r[k]) for r in mine]))  # type: ignore[arg-type]
                    for k in ("ndcg@10", "recall@10", "precision@10", "coverage", "fit_s")
                }
                print(
                    f"| {protocol} | {m} | {mean['ndcg@10']:.3f} | {mean['recall@10']:.3f} | "
                    f"{mean['precision@10']:.3f} | {mean['coverage']:.3f} | {mean['fit_s']:.1f} |"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Recommendations from events on MovieLens-100K: textrec's models against peers, one run.

MovieLens' license allows research use but not redistribution, so the data is never committed:
this script fetches the ``recbole`` 1.2.1 wheel from PyPI (``pip download --no-deps``; no
torch is installed) and reads ``recbole/dataset_example/ml-100k/ml-100k.inter`` out of it.
Every rating is an interaction; random 80/20 split per interaction; three seeds; NDCG@10,
precision@10, recall@10 and coverage over a full ranking of all items, the user's training
items excluded (:mod:`textrec.evaluation.events`).

textrec's reader models (``als``, ``bpr``: :mod:`textrec.collab.factors`) run with their
defaults and, as a reference, with implicit's own defaults. Peers in the same run: implicit's
``BM25Recommender`` (exact item-KNN with BM25 weights, K=200).

    python bench/events_ml100k.py [--seeds 0 1 2] [--cache DIR]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from textrec.collab.factors import DEFAULTS
from textrec.collab.readers import RERANKS
from textrec.evaluation import events as ev

WHEEL = "recbole==1.2.1"
MEMBER = "recbole/dataset_example/ml-100k/ml-100k.inter"


def ml100k(cache: Path) -> ev.Interactions:
    wheels = list(cache.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", WHEEL, "-d", str(cache)],
            check=True,
        )
        wheels = list(cache.glob("recbole-1.2.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        text = z.read(MEMBER).decode("utf-8")
    lines = text.splitlines()[1:]
    triples = []
    for line in io.StringIO("\n".join(lines)):
        user, item, _rating, stamp = line.rstrip("\n").split("\t")
        triples.append((user, item, float(stamp)))
    return ev.Interactions.from_triples(triples)


def _fit_implicit_bm25(train: sp.csr_matrix, **_: object) -> ev.Scorer:
    from implicit.nearest_neighbours import BM25Recommender
    from threadpoolctl import threadpool_limits

    model = BM25Recommender(K=200)
    with threadpool_limits(1):
        model.fit(train.astype(np.float32).tocsr(), show_progress=False)
    sim = model.similarity.tocsr()
    return lambda users: np.asarray((train[users] @ sim).todense())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--cache", default=os.path.join(tempfile.gettempdir(), "textrec-ml100k"))
    args = parser.parse_args()
    data = ml100k(Path(args.cache))
    print(
        f"# MovieLens-100K: {len(data.users):,} interactions, {len(data.user_names)} users, "
        f"{len(data.item_names)} items; {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    models: dict[str, tuple[str, dict[str, object]]] = {"popular": ("popular", {})}
    for rerank in RERANKS:
        models[f"readers ({rerank})"] = ("readers", {"rerank": rerank})
    als, bpr = DEFAULTS["als"], DEFAULTS["bpr"]
    models[f"ALS, textrec defaults {dict(als)}"] = ("als", {})
    models["ALS, implicit's defaults (100 factors, regularization 0.01)"] = (
        "als",
        {"factors": 100, "regularization": 0.01, "alpha": 1.0, "iterations": 15},
    )
    models[f"BPR, textrec defaults {dict(bpr)}"] = ("bpr", {})
    models["BPR, implicit's defaults (100 factors, learning rate 0.01, 100 iterations)"] = (
        "bpr",
        {"factors": 100, "learning_rate": 0.01, "regularization": 0.01, "iterations": 100},
    )
    try:
        import implicit  # noqa: F401

        ev.MODELS["implicit-bm25"] = _fit_implicit_bm25
        models["implicit BM25 item-KNN (K=200)"] = ("implicit-bm25", {})
    except ImportError:
        print("# implicit not installed: no item-KNN peer in this run")
    rows: dict[str, list[dict[str, object]]] = {label: [] for label in models}
    for seed in args.seeds:
        for label, (model, options) in models.items():
            [score] = ev.evaluate_events(
                data, protocol="random-80-20", seed=seed, models=[model], options={model: options}
            )
            rows[label].append(score.as_dict())
            print(json.dumps({"seed": seed, "label": label, **score.as_dict()}), flush=True)
    print("\n| model | NDCG@10 | precision@10 | recall@10 | coverage | fit s |")
    print("|---|---|---|---|---|---|")
    for label, scores in rows.items():
        mean = {k: float(np.mean([s[k] for s in scores])) for k in scores[0] if k not in ("model",)}
        spread = float(np.std([s["ndcg@10"] for s in scores]))  # type: ignore[arg-type]
        print(
            f"| {label} | {mean['ndcg@10']:.3f} ± {spread:.3f} | {mean['precision@10']:.3f} | "
            f"{mean['recall@10']:.3f} | {mean['coverage']:.3f} | {mean['fit_s']:.1f} |"
        )


if __name__ == "__main__":
    main()

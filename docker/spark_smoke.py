"""Smoke check of a Spark node: textrec's term counts and fingerprints computed on executors.

    spark-submit --master spark://HOST:7077 spark_smoke.py     # on the cluster
    python spark_smoke.py --local                               # the same, without Spark

Reads the first documents of the bundled demo corpus, computes term counts on the executors,
the DF snapshot from them on the driver, then every fingerprint on the executors under that
snapshot, and prints one JSON line: the number of documents, the snapshot id and a digest of
all fingerprints. docker/build-local.sh requires the line from a Spark cluster of the image to
equal the line computed with --local outside the image.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import textrec
from textrec import Analyzer, DFSnapshot, fingerprint_hex

N_DOCUMENTS = 64
PARTITIONS = 4


def read_documents() -> list[dict[str, Any]]:
    path = Path(textrec.__file__).parent / "data" / "wikinews_ko.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for _, line in zip(range(N_DOCUMENTS), lines, strict=False)]


def term_counts(docs: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, int]]]:
    analyzer = Analyzer()
    for doc in docs:
        yield doc["id"], analyzer.term_counts(doc["text"], doc.get("title"))


def fingerprints(
    pairs: Iterable[tuple[str, dict[str, int]]], snapshot: DFSnapshot
) -> Iterator[tuple[str, str]]:
    analyzer = Analyzer()
    for doc_id, counts in pairs:
        yield doc_id, fingerprint_hex(analyzer.fingerprint(counts, snapshot))


def summary(snapshot: DFSnapshot, fps: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256(json.dumps(sorted(fps)).encode()).hexdigest()[:16]
    return json.dumps({"documents": len(fps), "snapshot": snapshot.id, "fingerprints": digest})


def main() -> None:
    docs = read_documents()
    if sys.argv[1:] == ["--local"]:
        counts = list(term_counts(docs))
        snapshot = DFSnapshot.from_documents([c for _, c in counts])
        print(summary(snapshot, list(fingerprints(counts, snapshot))))
        return

    from pyspark import SparkContext

    sc = SparkContext(appName="textrec-spark-smoke")
    sc.setLogLevel("WARN")
    try:
        counts_rdd = sc.parallelize(docs, PARTITIONS).mapPartitions(term_counts).cache()
        snapshot = DFSnapshot.from_documents([c for _, c in counts_rdd.collect()])
        shared = sc.broadcast(snapshot)
        fps = counts_rdd.mapPartitions(lambda part: fingerprints(part, shared.value)).collect()
        executors = sc._jsc.sc().getExecutorMemoryStatus().size() - 1  # minus the driver
        print(f"spark {sc.version}, master {sc.master}, {executors} executor(s)", file=sys.stderr)
    finally:
        sc.stop()
    print(summary(snapshot, fps))


if __name__ == "__main__":
    main()

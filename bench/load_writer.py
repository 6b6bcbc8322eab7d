"""Load with a writer, longer than the CI test: one client appends documents over HTTP while
``--readers`` clients query a real ``textrec serve`` on 127.0.0.1, for ``--seconds``.

    python bench/load_writer.py --seconds 30 --readers 4

Prints one JSON line: queries/s, reader p50/p99, appended documents, writer p50/p99, errors
(any non-200 query, failed append, or appended document not findable by id and by its own
text afterwards). Exits 1 on any error. Uses tests/test_load_writer.py's run_load on a fresh
copy of the bundled Wikinews sample; figures are recorded in RELIABILITY.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_load_writer import CORPUS, run_load  # noqa: E402
from textrec import Store, build, ingest, read_records  # noqa: E402
from textrec.check import check  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--readers", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="load-writer-") as tmp:
        db = f"sqlite:///{Path(tmp) / 'wiki.db'}"
        store = Store(db)
        ingest(store, read_records(str(CORPUS)))
        build(store)
        store.close()
        result = run_load(db, args.seconds, args.readers)
        store = Store(db)
        report = check(store, sample=10_000)
        store.close()
    summary = {
        "machine": platform.node(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **result.summary(),
        "check_ok": report.ok,
    }
    print(json.dumps(summary))
    for error in result.errors[:20]:
        print("error:", error, file=sys.stderr)
    return 0 if report.ok and not result.errors else 1


if __name__ == "__main__":
    sys.exit(main())

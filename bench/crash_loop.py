"""Kill ``textrec`` with SIGKILL at random moments, many times, and verify after each kill.

    python bench/crash_loop.py --kills 25 --seed 0 [--corpus FILE --limit N]

Scenarios (see tests/crash_scenarios.py for exactly what is verified after each kill):
``ingest`` (acknowledged documents kept, whole batches only, a re-run stores exactly the
missing ones), ``build`` (old or new DF snapshot, the server restarts and serves, a re-run
completes), ``snapshot`` (index files rewritten in a loop are never torn). ``textrec check``
runs after every kill. Prints one JSON line of figures per scenario; exits 1 on any failure.
The figures of the last run are recorded in RELIABILITY.md. tests/test_crash.py runs the same
scenarios with 3 kills each in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.crash_scenarios import FIXTURE, SCENARIOS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=25, help="kills per scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--corpus", type=Path, default=FIXTURE)
    parser.add_argument("--limit", type=int, default=300, help="documents of the corpus")
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    print(f"# {platform.node()} {time.strftime('%Y-%m-%d %H:%M')} corpus={args.corpus} "
          f"limit={args.limit} kills={args.kills} seed={args.seed}", flush=True)  # fmt: skip
    failed = False
    for name in args.scenarios:
        with tempfile.TemporaryDirectory(prefix=f"crash-{name}-") as tmp:
            try:
                tally = SCENARIOS[name](
                    Path(tmp),
                    args.kills,
                    seed=args.seed,
                    corpus=args.corpus,
                    limit=args.limit,
                    log=(lambda _: None) if args.quiet else lambda m: print(m, flush=True),
                )
            except AssertionError as exc:
                print(f"FAILED {name}: {exc}", flush=True)
                failed = True
                continue
        print(json.dumps(dataclasses.asdict(tally)), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""What a burst of fake events from one client can do to "readers also read".

The bundled demo corpus (644 Korean Wikinews articles) with the demo's seeded synthetic click
log (400 readers following content clusters) is the honest signal. One attacker, from one
client address, then sends anonymous ``POST /events`` through the real HTTP app, as fast as
the server's bounds let it, to push one target article (one nobody has read) into every
article's readers-also-read list. The server's clock is simulated, so an hour of attack takes
seconds; everything else (the rate limit, the repeated-view window, the per-client cap on new
readers, the store, the real-time index) is the real code.

Attacks, each on a fresh copy of the same database:

- ``pairs``: every fake reader views the target and one other article, cycling through all;
- ``sweeps``: every fake reader views the target and 20 articles drawn with a fixed seed;
- ``one-reader``: a single fake reader views the target and then every article.

Printed at 1, 10 and 60 simulated minutes: events accepted, and the share of the articles with
readers whose top 10 readers-also-read list holds the target. Each attack runs against the
server's default bounds and with the per-client cap on new readers lifted
(``--no-reader-cap``), so the cap's effect is read from one run.

    python bench/events_spam.py [--minutes 60]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

from fastapi.testclient import TestClient

from textrec import Recommender, Store, build, ingest, read_records
from textrec.collab.synthetic import click_log
from textrec.serve.app import create_app
from textrec.serve.guard import EventGuard

CHECKPOINTS = (1, 10, 60)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def prepare(folder: Path) -> tuple[str, list[str], str]:
    """The demo store with its synthetic readers; the target is the first unread article."""
    url = f"sqlite:///{folder / 'demo.db'}"
    store = Store(url)
    corpus = resources.files("textrec") / "data" / "wikinews_ko.jsonl.gz"
    with resources.as_file(corpus) as path:
        ingest(store, read_records(str(path)))
    build(store)
    rec = Recommender(store)
    ids = [d.external_id for d in store.iter_documents()]
    clusters = {i: [i, *(m.id for m in rec.similar(i, k=8))] for i in ids[::8]}
    rec.add_events(click_log(clusters, users=400, seed=0))
    target = next(i for i in ids if rec.readers_of(i) == 0)
    rec.save()
    store.close()
    return url, ids, target


def attack_events(kind: str, ids: list[str], target: str) -> list[dict[str, str]]:
    """An endless supply of the attack's events (enough for any run)."""
    rng = random.Random(0)
    others = [i for i in ids if i != target]
    events: list[dict[str, str]] = []
    if kind == "one-reader":
        events.append({"user": "spam-0", "item": target})
        events += [{"user": "spam-0", "item": i} for i in others]
        return events
    for n in range(200_000):
        user = f"spam-{n}"
        events.append({"user": user, "item": target})
        if kind == "pairs":
            events.append({"user": user, "item": others[n % len(others)]})
        else:
            events += [{"user": user, "item": i} for i in rng.sample(others, 20)]
    return events


def reach(rec: Recommender, ids: list[str], target: str) -> tuple[float, int]:
    """The share of articles with readers whose top 10 holds the target, and how many have."""
    read = [i for i in ids if i != target and rec.readers_of(i) > 0]
    hit = sum(any(m.id == target for m in rec.similar(i, k=10, mode="readers")) for i in read)
    return hit / max(len(read), 1), len(read)


def run(kind: str, folder: Path, ids: list[str], target: str, minutes: int, cap: bool) -> None:
    clock = Clock()
    guard = EventGuard(clock=clock) if cap else EventGuard(clock=clock, new_readers=None)
    url = f"sqlite:///{folder / 'demo.db'}"
    app = create_app(url, guard=guard)
    events = attack_events(kind, ids, target)
    sent = accepted = 0
    with TestClient(app) as client:
        rec: Recommender = app.state.recommender
        for minute in range(1, minutes + 1):
            while clock.now < minute * 60 and sent < len(events):
                batch = events[sent : sent + 100]
                r = client.post("/events", json={"events": batch})
                if r.status_code == 202:
                    body = r.json()
                    accepted += body["accepted"]
                    # Events over the rate are sent again; the rest were taken or refused.
                    over = [x for x in body["rejected"] if "rate" in x["reason"]]
                    sent += len(batch) - len(over)
                clock.now += 1.0
            if minute in CHECKPOINTS:
                share, read = reach(rec, ids, target)
                print(json.dumps({
                    "attack": kind, "reader_cap": cap, "minute": minute, "sent": sent,
                    "accepted": accepted, "target_in_top10_share": round(share, 3),
                    "articles_with_readers": read,
                }), flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument(
        "--attacks", nargs="+", default=["pairs", "sweeps", "one-reader"],
        choices=["pairs", "sweeps", "one-reader"],
    )  # fmt: skip
    args = parser.parse_args()
    print(
        f"# {platform.machine()}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; guard defaults: "
        f"{EventGuard().describe()}"
    )
    with tempfile.TemporaryDirectory(prefix="textrec-spam-") as tmp:
        base = Path(tmp) / "base"
        base.mkdir()
        _, ids, target = prepare(base)
        print(f"# target {target}; {len(ids)} articles")
        for kind in args.attacks:
            for cap in (True, False):
                work = Path(tmp) / f"{kind}-{cap}"
                shutil.copytree(base, work)
                run(kind, work, ids, target, args.minutes, cap)
                shutil.rmtree(work)
    os.sync()


if __name__ == "__main__":
    main()

"""A seeded synthetic click log, for tests and the demo.

Real click logs are not ours to ship, so tests and the demo use readers made up with a fixed
seed: each reader has one or two interests and reads mostly within them.

- **Labelled corpora** (petitions, news sections): an interest is a label; a reader reads
  documents of their labels, and now and then (``noise``) any document.
- **Unlabelled corpora** (the bundled demo): an interest is a content cluster, a document and
  the documents most related to it by content (``related``: ``{id: [related ids]}``).

The same arguments give the same events, in the same order, everywhere.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

__all__ = ["click_log"]

_START = datetime(2026, 11, 1, tzinfo=UTC)


def click_log(
    groups: Mapping[str, Sequence[str]],
    *,
    users: int = 200,
    reads: tuple[int, int] = (4, 12),
    noise: float = 0.1,
    seed: int = 0,
    all_items: Sequence[str] | None = None,
    popularity: float = 0.0,
    follow: float = 0.0,
    related: Mapping[str, Sequence[str]] | None = None,
) -> list[dict[str, str]]:
    """Events ``{"user", "item", "kind", "time"}``: ``users`` readers, each with one or two of
    the ``groups`` (interest name → its documents) and between ``reads[0]`` and ``reads[1]``
    distinct documents read, a share ``noise`` of them from anywhere (``all_items``, by default
    every grouped document). One read in four of a document is followed by a click.

    ``popularity``: 0 draws a reader's documents uniformly from their interests; above 0,
    the ``r``-th document of an interest (in an order drawn once) is read with a chance in
    proportion to ``1 / r ** popularity``, as real readers crowd on a few posts.

    ``follow``: the chance that a read is a click on the related posts of the previous one
    (one of the first five of ``related[previous]``), as on a site that shows related posts
    beside each one."""
    if follow > 0 and related is None:
        raise ValueError("follow needs the related posts of each post: related={id: [ids]}")
    rng = random.Random(seed)
    chance: dict[str, list[float]] = {}
    if popularity > 0:
        order = random.Random(seed + 1)
        for name in sorted(groups):
            ranks = list(range(1, len(groups[name]) + 1))
            order.shuffle(ranks)
            chance[name] = [1.0 / r**popularity for r in ranks]
    names = sorted(groups)
    everything = sorted({d for docs in groups.values() for d in docs})
    if all_items is not None:
        everything = list(all_items)
    events: list[dict[str, str]] = []
    second = 0
    for u in range(users):
        interests = rng.sample(names, k=min(len(names), rng.choice((1, 1, 2))))
        pool = [d for name in interests for d in groups[name]]
        weights = [w for name in interests for w in chance.get(name, [])] or None
        wanted = rng.randint(*reads)
        seen: set[str] = set()
        previous: str | None = None
        for _ in range(wanted * 4):
            if len(seen) >= wanted:
                break
            nearby = related.get(previous, ())[:5] if related and previous else ()
            if follow > 0 and nearby and rng.random() < follow:
                item = rng.choice(list(nearby))
            elif rng.random() < noise:
                item = rng.choice(everything)
            elif weights is None:
                item = rng.choice(pool)
            else:
                item = rng.choices(pool, weights=weights)[0]
            if item in seen:
                continue
            seen.add(item)
            previous = item
            second += 60
            stamp = (_START + timedelta(seconds=second)).isoformat()
            user = f"reader-{u:04d}"
            events.append({"user": user, "item": item, "kind": "view", "time": stamp})
            if rng.random() < 0.25:
                events.append({"user": user, "item": item, "kind": "click", "time": stamp})
    return events

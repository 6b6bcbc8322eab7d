"""Bounds on anonymous events: a rate limit per client, one view per reader and window, and a
cap on the new readers one client brings.

``POST /events`` takes events without the token (the page has none), so what one client can
send is bounded: :class:`EventGuard` gives each client (its address) a token bucket of
``rate`` events a second up to ``burst``, counts a reader's repeated view of one document
within ``window`` seconds once, and lets one client bring at most ``new_readers`` distinct
reader ids in ``readers_window`` seconds. The last bound is what stops one client from
pushing a post into everyone's "readers also read" list: within the rate alone, fake readers
who each read the target and one other post put it into most lists within minutes
(``bench/events_spam.py``; figures in ``bench/README.md``). All of these live in the server's
memory: they bound a running server, and start afresh with it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

__all__ = ["EventGuard"]


class EventGuard:
    """Per-client token buckets and a window of recent views (see the module docstring)."""

    def __init__(
        self,
        *,
        rate: float = 5.0,
        burst: float = 50.0,
        window: float = 1800.0,
        new_readers: int | None = 30,
        readers_window: float = 3600.0,
        max_clients: int = 100_000,
        max_views: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if new_readers is not None and new_readers < 1:
            raise ValueError(
                f"new_readers must be at least 1, or None for no cap; got {new_readers}"
            )
        self.rate, self.burst, self.window = rate, burst, window
        self.new_readers, self.readers_window = new_readers, readers_window
        self._clock = clock
        self._readers: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._views: OrderedDict[tuple[str, str], float] = OrderedDict()
        self._max_clients, self._max_views = max_clients, max_views
        self._lock = threading.Lock()

    def allow(self, client: str, n: int) -> int:
        """How many of ``n`` events ``client`` may send now (the rest are over its rate)."""
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.pop(client, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            allowed = min(n, int(tokens))
            self._buckets[client] = (tokens - allowed, now)
            while len(self._buckets) > self._max_clients:
                self._buckets.popitem(last=False)
            return allowed

    def describe(self) -> str:
        """The bounds, in one line."""
        cap = (
            "no cap on new readers"
            if self.new_readers is None
            else f"{self.new_readers} new readers a client per {self.readers_window:g} s"
        )
        return (
            f"{self.rate:g} events/s a client, bursts of {self.burst:g}; "
            f"one view per reader and post per {self.window:g} s; {cap}"
        )

    def admit_reader(self, client: str, user: str) -> bool:
        """Whether ``client`` may send events of ``user``: a reader it sent within the readers
        window, or a new one while it has brought fewer than ``new_readers`` in that window."""
        if self.new_readers is None:
            return True
        with self._lock:
            now = self._clock()
            seen = self._readers.pop(client, None)
            if seen is None:
                seen = OrderedDict()
            while seen and now - next(iter(seen.values())) >= self.readers_window:
                seen.popitem(last=False)
            admitted = user in seen or len(seen) < self.new_readers
            if admitted and user not in seen:
                seen[user] = now
            self._readers[client] = seen
            while len(self._readers) > self._max_clients:
                self._readers.popitem(last=False)
            return admitted

    def first_view(self, user: str, item: str) -> bool:
        """Whether this view of ``item`` by ``user`` is the first within the window."""
        with self._lock:
            now = self._clock()
            key = (user, item)
            seen = self._views.pop(key, None)
            self._views[key] = now if seen is None or now - seen >= self.window else seen
            while len(self._views) > self._max_views:
                self._views.popitem(last=False)
            return seen is None or now - seen >= self.window

    def forget(self, user: str) -> None:
        """Drop every trace of reader ``user`` from memory (a reader erased): their recent
        views and their place among the readers a client brought. One pass over what is held
        (at most ``max_views`` views): an erasure is rare."""
        with self._lock:
            for key in [k for k in self._views if k[0] == user]:
                del self._views[key]
            for seen in self._readers.values():
                seen.pop(user, None)

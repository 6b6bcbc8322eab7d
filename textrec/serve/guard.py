"""Bounds on anonymous events: a rate limit per client and one view per reader and window.

``POST /events`` takes events without the token (the page has none), so what one client can
send is bounded: :class:`EventGuard` gives each client (its address) a token bucket of
``rate`` events a second up to ``burst``, and counts a reader's repeated view of one document
within ``window`` seconds once. Both live in the server's memory: they bound a running
server, and start afresh with it.
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
        max_clients: int = 100_000,
        max_views: int = 1_000_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate, self.burst, self.window = rate, burst, window
        self._clock = clock
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

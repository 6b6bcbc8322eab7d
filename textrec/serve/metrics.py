"""What an operator watches: ``GET /metrics`` in the Prometheus text format (0.0.4).

- ``textrec_http_requests_total{method, route, status}`` and
  ``textrec_http_request_duration_seconds{method, route}`` (a histogram), by route template
  (``/documents/{id}``, not each id, so the series stay few);
- ``textrec_documents``, ``textrec_index_bytes{index}``, ``textrec_store_generation`` (the
  store's) and ``textrec_index_generation`` (the one the indexes hold);
- ``textrec_catch_up_lag_generations`` (their difference: writes by other processes not yet
  applied) and ``textrec_catch_up_age_seconds`` (since the last look at the store);
- ``textrec_events_accepted_total`` and ``textrec_events_rejected_total``.

Written by hand (a few counters) rather than with a client library: no new dependency.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from textrec.recommend import Recommender

__all__ = ["BUCKETS", "Metrics", "MetricsMiddleware"]

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The server's counters (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str, int], int] = {}
        self._latency: dict[tuple[str, str], list[float]] = {}  # bucket counts, sum, count
        self.events_accepted = 0
        self.events_rejected = 0
        self.last_catch_up: float | None = None

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (method, route, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            h = self._latency.setdefault((method, route), [0.0] * (len(BUCKETS) + 2))
            i = bisect.bisect_left(BUCKETS, seconds)
            if i < len(BUCKETS):
                h[i] += 1
            h[-2] += seconds
            h[-1] += 1

    def events(self, accepted: int, rejected: int) -> None:
        with self._lock:
            self.events_accepted += accepted
            self.events_rejected += rejected

    def render(self, rec: Recommender) -> str:
        """The text exposition format."""
        out: list[str] = []

        def metric(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            requests = dict(self._requests)
            latency = {k: list(v) for k, v in self._latency.items()}
            accepted, rejected = self.events_accepted, self.events_rejected
            last = self.last_catch_up
        metric("textrec_http_requests_total", "counter", "HTTP requests answered")
        for (method, route, status), n in sorted(requests.items()):
            out.append(
                f'textrec_http_requests_total{{method="{method}",route="{_label(route)}",'
                f'status="{status}"}} {n}'
            )
        name = "textrec_http_request_duration_seconds"
        metric(name, "histogram", "time to answer an HTTP request")
        for (method, route), h in sorted(latency.items()):
            labels = f'method="{method}",route="{_label(route)}"'
            cumulative = 0.0
            for bound, count in zip(BUCKETS, h, strict=False):
                cumulative += count
                out.append(f'{name}_bucket{{{labels},le="{bound}"}} {cumulative:g}')
            out.append(f'{name}_bucket{{{labels},le="+Inf"}} {h[-1]:g}')
            out.append(f"{name}_sum{{{labels}}} {h[-2]:.6f}")
            out.append(f"{name}_count{{{labels}}} {h[-1]:g}")
        metric("textrec_documents", "gauge", "documents in the indexes")
        out.append(f"textrec_documents {len(rec)}")
        metric("textrec_index_bytes", "gauge", "bytes held by each index")
        out.append(f'textrec_index_bytes{{index="hamming"}} {rec.index.nbytes}')
        out.append(f'textrec_index_bytes{{index="related"}} {rec.related.nbytes}')
        held = rec.generation
        store = rec.store.stamp().generation
        metric("textrec_store_generation", "gauge", "the store's write generation")
        out.append(f"textrec_store_generation {store}")
        metric("textrec_index_generation", "gauge", "the store generation the indexes hold")
        out.append(f"textrec_index_generation {held}")
        metric(
            "textrec_catch_up_lag_generations",
            "gauge",
            "writes to the store (by other processes) not yet in the indexes",
        )
        out.append(f"textrec_catch_up_lag_generations {max(store - held, 0)}")
        metric("textrec_catch_up_age_seconds", "gauge", "seconds since the last catch-up")
        age = f"{time.monotonic() - last:.3f}" if last is not None else "NaN"
        out.append(f"textrec_catch_up_age_seconds {age}")
        metric("textrec_events_accepted_total", "counter", "readers' events stored")
        out.append(f"textrec_events_accepted_total {accepted}")
        metric("textrec_events_rejected_total", "counter", "readers' events refused")
        out.append(f"textrec_events_rejected_total {rejected}")
        return "\n".join(out) + "\n"


class MetricsMiddleware:
    """Times each HTTP request and counts it by method, route template and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def counting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, counting_send)
        finally:
            route = getattr(scope.get("route"), "path", None) or "(no route)"
            route = route.replace(":anyid}", "}")
            self.metrics.observe(
                str(scope.get("method", "")), route, status, time.perf_counter() - start
            )

"""Bounds on slow and idle clients, for ``textrec serve`` (uvicorn's HTTP/1.1 protocol).

uvicorn starts no timer until a connection's first response: a client that connects and sends
nothing, or sends its headers a byte at a time, holds its connection (a file descriptor and a
little memory) for as long as it likes, and a few hundred such clients exhaust the server.
:func:`guarded_protocol` gives uvicorn a protocol class that

- gives each request ``header_timeout`` seconds, from the moment the connection is ready
  for it, to send its whole request line and headers, and then ``body_timeout`` seconds to
  send its whole body; otherwise it answers ``408 Request Timeout`` (when nothing has been
  answered yet) and closes the connection. Trickling bytes does not extend either deadline.
  Between requests, uvicorn's keep-alive timeout (5 s) closes idle connections.
- accepts at most ``max_connections`` connections at once: the next one gets ``503`` and is
  closed at once, so the process never holds more than that many sockets for clients.

The time the application takes to answer is bounded elsewhere (the limits on one query).
"""

from __future__ import annotations

import asyncio
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = [
    "DEFAULT_BODY_TIMEOUT",
    "DEFAULT_HEADER_TIMEOUT",
    "DEFAULT_MAX_CONNECTIONS",
    "guarded_protocol",
]

DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 256


def _answer(status: bytes, detail: str) -> bytes:
    body = b'{"detail": "' + detail.encode() + b'"}'
    head = b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\nconnection: close\r\n"
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


_BUSY = _answer(b"503 Service Unavailable", "too many connections; try again in a while")
_TIMEOUT = _answer(b"408 Request Timeout", "the request took too long to arrive")


class _GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with read deadlines and a connection cap (module docstring)."""

    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._phase = ""
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.logger.warning("refused a connection: %d open", len(self.connections) - 1)
            transport.write(_BUSY)
            transport.close()
            return
        self._watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm("", 0.0)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._watch()

    def _watch(self) -> None:
        """Arm the deadline of the phase the connection is in (once per phase)."""
        cycle = self.cycle
        if self.transport.is_closing():
            self._arm("", 0.0)
        elif cycle is None or cycle.response_complete:
            self._arm("head", self.header_timeout)
        elif cycle.more_body:
            self._arm("body", self.body_timeout)
        else:  # the whole request is in: the application has it
            self._arm("app", 0.0)

    def _arm(self, phase: str, seconds: float) -> None:
        if phase == self._phase:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._phase = phase
        if seconds > 0:
            self._deadline = self.loop.call_later(seconds, self._too_slow, phase)

    def _too_slow(self, phase: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        self.logger.info("closed a connection: its request %s took too long", phase)
        if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE) and (
            self.cycle is None or not self.cycle.response_started
        ):
            self.transport.write(_TIMEOUT)
        self.transport.close()


def guarded_protocol(
    *,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
    body_timeout: float = DEFAULT_BODY_TIMEOUT,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
) -> type[H11Protocol]:
    """An HTTP protocol class for ``uvicorn.run(..., http=...)`` with these bounds."""
    if header_timeout <= 0 or body_timeout <= 0 or max_connections < 1:
        raise ValueError("timeouts must be > 0 and max_connections >= 1")
    return type(
        "GuardedH11Protocol",
        (_GuardedH11Protocol,),
        {
            "header_timeout": float(header_timeout),
            "body_timeout": float(body_timeout),
            "max_connections": int(max_connections),
        },
    )

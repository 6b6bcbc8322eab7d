"""Bounds on what requests cost the server: a deadline on each answer, and tokenizing slots.

A deadline on each request: the client gets ``503`` when the answer takes too long.

The limits on one query (its length, ``k``, MeCab's input per call) bound its work; the
deadline bounds what a client waits for, whatever the cause (a locked database, a machine
under load). The work already under way in a worker thread cannot be interrupted from
outside: it finishes, and its answer is dropped.

:class:`TokenizerSlots`: requests that tokenize a text (``POST /similar``, ``POST
/documents``) take one of a few slots, and release the thread's MeCab taggers afterwards, so
the memory MeCab holds for its lattices is bounded by the slots, not by the worker threads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from typing import Any

__all__ = ["DEFAULT_REQUEST_TIMEOUT", "DEFAULT_TOKENIZER_SLOTS", "RequestTimeout", "TokenizerSlots"]

log = logging.getLogger(__name__)

DEFAULT_REQUEST_TIMEOUT = 30.0
DEFAULT_TOKENIZER_SLOTS = 4

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestTimeout:
    """ASGI middleware: answer ``503 {"detail": ...}`` when ``app`` has not started its
    response within ``seconds``; what it sends afterwards is dropped."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        if not seconds > 0:
            raise ValueError(f"the request timeout must be > 0 seconds, got {seconds}")
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        given_up = False

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if given_up:
                return
            started = True
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, guarded_send))
        done, _ = await asyncio.wait({task}, timeout=self.seconds)
        if task in done:
            task.result()  # its exception, if any, is the server's to log
            return
        if started:  # the answer is under way (a large body): let it finish
            await task
            return
        given_up = True
        task.cancel()
        task.add_done_callback(_quiet)
        log.warning(
            "%s %s: no answer within %g s (503)",
            scope.get("method"),
            scope.get("path"),
            self.seconds,
        )
        body = b'{"detail": "the server took too long to answer this request; try again"}'
        await send(
            {
                "type": "http.response.start",
                "status": 503,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"5"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def _quiet(task: asyncio.Future[None]) -> None:
    """Collect the abandoned request's outcome, so that it is not reported as never read."""
    if not task.cancelled():
        task.exception()


class TokenizerSlots:
    """At most ``n`` requests tokenize at once; each releases its thread's taggers after."""

    def __init__(self, n: int = DEFAULT_TOKENIZER_SLOTS) -> None:
        if n < 1:
            raise ValueError(f"tokenizer slots must be >= 1, got {n}")
        self._slots = threading.BoundedSemaphore(n)

    @contextmanager
    def slot(self, tokenizer: object) -> Iterator[None]:
        with self._slots:
            try:
                yield
            finally:
                release = getattr(tokenizer, "release", None)
                if release is not None:
                    release()

"""Term extraction in worker processes, ahead of the process that writes.

MeCab is most of what an ingest or a scheme upgrade costs. :func:`terms_ahead` hands chunks
of texts to ``workers`` processes and returns each chunk's term counts in input order, a few
chunks ahead of the one the caller is writing: the same terms as in one process, only sooner.

The workers are started with ``spawn`` (a forked child would inherit the writer's database
connections and threads). They ignore SIGINT, since Ctrl-C reaches the whole process group
and the caller shuts them down; and each exits within a second when its parent is gone
(SIGKILL, out of memory), instead of waiting for work forever.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from textrec.content.analyzer import Analyzer

__all__ = ["TermWorkerError", "check_workers", "extract", "terms_ahead"]

P = TypeVar("P")
Texts = list[tuple[str, str | None]]
"""``(text, title)`` of each document of a chunk."""
Counts = list[dict[str, int]]


class TermWorkerError(RuntimeError):
    """A term worker process stopped (killed, out of memory); the message names the input it
    was reading. What the caller committed before is stored."""


def check_workers(analyzer: Analyzer | None, workers: int) -> None:
    """Refuse ``workers`` < 1, and ``workers`` > 1 with an ``analyzer`` that its scheme name
    does not rebuild in another process (a tokenizer of your own; None: none to check)."""
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers!r}")
    if workers == 1 or analyzer is None:
        return
    try:
        rebuilt: Analyzer | None = Analyzer.from_scheme(analyzer.scheme)
    except ValueError:
        rebuilt = None
    if rebuilt is None or rebuilt.scheme != analyzer.scheme:
        raise ValueError(
            f"workers={workers} needs an analyzer that its scheme name rebuilds in another "
            f"process; {analyzer.scheme!r} is not one: use workers=1"
        )


_analyzer: Analyzer | None = None


def _start(scheme: str, parent: int) -> None:
    # ``parent`` comes from the parent: one that died while this worker was starting (a
    # worker may start seconds after the others) would otherwise never be missed.
    def orphaned() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=orphaned, name="textrec-orphan-watch", daemon=True).start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    global _analyzer
    _analyzer = Analyzer.from_scheme(scheme)


def _extract(texts: Texts) -> Counts:
    assert _analyzer is not None
    return [_analyzer.term_counts(text, title) for text, title in texts]


def terms_ahead(
    chunks: Iterable[tuple[P, Texts]],
    scheme: str,
    workers: int,
    where: Callable[[P], str],
    after: str,
) -> Iterator[tuple[P, Counts]]:
    """``(payload, term counts of its texts under scheme)`` for each ``(payload, texts)`` of
    ``chunks``, in order, extracted by ``workers`` processes up to ``2 × workers`` chunks
    ahead. A worker that stops raises :class:`TermWorkerError` naming ``where(payload)`` of
    the first chunk not returned, then ``after`` (what became of the work); the chunks before
    it have been returned."""
    pending: deque[tuple[P, Future[Counts]]] = deque()

    def received(payload: P, job: Future[Counts]) -> tuple[P, Counts]:
        try:
            return payload, job.result()
        except BrokenProcessPool as exc:
            raise _stopped(where(payload), exc, after) from exc

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, context, _start, (scheme, os.getpid())) as pool:
        try:
            for payload, texts in chunks:
                try:
                    job = pool.submit(_extract, texts)
                except BrokenProcessPool as exc:  # the chunks ahead may have their terms
                    while pending:
                        yield received(*pending.popleft())
                    raise _stopped(where(payload), exc, after) from exc
                pending.append((payload, job))
                if len(pending) > 2 * workers:
                    yield received(*pending.popleft())
            while pending:
                yield received(*pending.popleft())
        finally:
            for _, job in pending:
                job.cancel()


def _stopped(where: str, exc: BrokenProcessPool, after: str) -> TermWorkerError:
    return TermWorkerError(f"a term worker process stopped while reading {where} ({exc}); {after}")


def extract(
    chunks: Iterable[tuple[P, Texts]],
    analyzer: Analyzer,
    workers: int,
    where: Callable[[P], str],
    after: str,
) -> Iterator[tuple[P, Counts]]:
    """:func:`terms_ahead` with ``workers`` > 1; in this process, one chunk at a time, with 1."""
    if workers > 1:
        yield from terms_ahead(chunks, analyzer.scheme, workers, where, after)
        return
    for payload, texts in chunks:
        yield payload, [analyzer.term_counts(text, title) for text, title in texts]

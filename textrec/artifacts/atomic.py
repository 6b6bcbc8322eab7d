"""Crash-safe file replacement, shared by every file textrec writes beside its database."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_fcntl: Any
try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - not POSIX: leftovers are only reported by `check`
    _fcntl = None

__all__ = ["atomic_write", "remove_stale_temporaries", "temporaries"]


def temporaries(target: Path) -> list[Path]:
    """The temporary files of writes of ``target``: ``.<name>.<random>.tmp`` beside it."""
    prefix = f".{target.name}."
    try:
        names = os.listdir(target.parent)
    except FileNotFoundError:
        return []
    return [
        target.parent / n
        for n in sorted(names)
        if n.startswith(prefix) and n.endswith(".tmp") and len(n) == len(prefix) + 20
    ]


def remove_stale_temporaries(target: Path, *, older_than: float | None = None) -> list[Path]:
    """Delete the temporary files that killed writers of ``target`` left: older than
    ``older_than`` seconds (default :data:`STALE_AFTER_SECONDS`) and not locked by a live
    writer. Returns the paths deleted. Does nothing where ``flock`` is not available."""
    if _fcntl is None:
        return []
    limit = STALE_AFTER_SECONDS if older_than is None else older_than
    removed = []
    now = time.time()
    for tmp in temporaries(target):
        try:
            fd = os.open(tmp, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if now - os.fstat(fd).st_mtime < limit:
                continue  # a writer may have just created it and not locked it yet
            try:
                _fcntl.flock(fd, _fcntl.LOCK_EX | _fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live writer holds it
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
                removed.append(tmp)
        finally:
            os.close(fd)
    return removed


# A temporary file is left behind only by a writer that died: it is older than this and no
# process holds its lock.
STALE_AFTER_SECONDS = 60.0


def atomic_write(path: str | os.PathLike[str], write: Callable[[BinaryIO], None]) -> None:
    """Replace ``path`` with what ``write`` writes, so that a crash at any moment leaves either
    the old file or the new one: write a temporary file in the same folder, flush and fsync
    it, rename it over ``path``, then fsync the folder (on POSIX) so the rename is durable.

    On POSIX the writer holds an exclusive lock (``flock``) on its temporary file, and first
    deletes the temporary files of ``path`` that earlier writers left when they were killed
    (unlocked, and older than a minute), so crashes do not fill the disk with copies of a
    large index."""
    target = Path(os.fspath(path))
    remove_stale_temporaries(target)
    tmp = target.parent / f".{target.name}.{secrets.token_hex(8)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    if _fcntl is not None:
        _fcntl.flock(fd, _fcntl.LOCK_EX)  # released when the file is closed (or the writer dies)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if os.name == "posix":
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

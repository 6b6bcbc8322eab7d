"""Crash-safe writes: temporary files left by killed writers are cleaned up by the next
write of the same file, never those of a live writer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from textrec.artifacts.atomic import atomic_write, remove_stale_temporaries, temporaries

pytestmark = pytest.mark.skipif(os.name != "posix", reason="flock is POSIX")


def _leftover(target: Path, tag: str, age: float) -> Path:
    tmp = target.parent / f".{target.name}.{tag * 16}.tmp"
    tmp.write_bytes(b"half a file")
    past = time.time() - age
    os.utime(tmp, (past, past))
    return tmp


def test_next_write_removes_what_killed_writers_left(tmp_path: Path) -> None:
    target = tmp_path / "blog.db.index"
    old = _leftover(target, "a", age=3600)
    young = _leftover(target, "b", age=1)  # perhaps a writer that has not locked it yet
    other = tmp_path / f".{target.name}.related.{'c' * 16}.tmp"  # another file's
    other.write_bytes(b"x")
    os.utime(other, (time.time() - 3600,) * 2)

    atomic_write(target, lambda f: f.write(b"new index"))

    assert target.read_bytes() == b"new index"
    assert not old.exists()
    assert young.exists() and other.exists()
    assert temporaries(target) == [young]


def test_a_live_writers_temporary_file_is_kept(tmp_path: Path) -> None:
    target = tmp_path / "blog.db.index"
    held = _leftover(target, "d", age=3600)
    # Another process holds the lock, as a writer in the middle of a long write does.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(held)!r}, os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        assert remove_stale_temporaries(target) == []
        atomic_write(target, lambda f: f.write(b"v2"))
        assert held.exists() and target.read_bytes() == b"v2"
    finally:
        holder.kill()
        holder.communicate()
    # The holder died: its file is now a leftover like any other.
    assert remove_stale_temporaries(target) == [held]
    assert not held.exists()

"""A real ``textrec serve`` process on 127.0.0.1 and a free port, for the browser and
concurrency tests (the API tests use the ASGI app in process)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(db_url: str, *extra: str, timeout: float = 60.0) -> Iterator[str]:
    """Run ``textrec --db URL serve --port P`` and yield its base URL once /health answers."""
    port = free_port()
    env = {**os.environ, "TEXTREC_TOKEN": ""}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "textrec",
            "-q",
            "--db",
            db_url,
            "serve",
            "--port",
            str(port),
            *extra,
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                raise RuntimeError(f"textrec serve exited with {proc.returncode}:\n{out}")
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"textrec serve did not answer on {base} in {timeout} s")
            time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()

"""Slow and idle clients are let go (issue 20, item 5): a real ``textrec serve`` with short
read deadlines and a small connection cap. Timing bounds are generous (slow tier)."""

from __future__ import annotations

import http.client
import socket
import time
from pathlib import Path

import pytest

from tests.helpers import copy_database
from tests.live_server import serve

pytestmark = pytest.mark.slow


def closed_within(sock: socket.socket, seconds: float) -> tuple[float, bytes]:
    """Seconds until the server closes ``sock`` (reading what it sent), or ``seconds``."""
    start = time.monotonic()
    got = b""
    sock.settimeout(0.5)
    while time.monotonic() - start < seconds:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        got += chunk
    return time.monotonic() - start, got


@pytest.fixture
def db(wikinews_db: Path, tmp_path: Path) -> str:
    return copy_database(wikinews_db, tmp_path)


def assert_still_answers(port: int) -> None:
    """The server on ``port`` still answers ``/health``."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/health")
    assert conn.getresponse().status == 200
    conn.close()


def test_silent_and_trickling_clients_are_closed(db: str) -> None:
    with serve(db, "--header-timeout", "2", "--body-timeout", "3") as base:
        port = int(base.rsplit(":", 1)[1])
        silent = socket.create_connection(("127.0.0.1", port), timeout=5)
        trickle = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow_body = socket.create_connection(("127.0.0.1", port), timeout=5)
        slow_body.sendall(
            b"POST /similar HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            b"content-length: 1000\r\n\r\n{"
        )
        start = time.monotonic()
        try:
            for byte in b"GET /health HTTP/1.1\r\nHost: 127.0.0":  # one byte every 0.2 s
                trickle.send(bytes([byte]))
                time.sleep(0.2)
        except OSError:  # closed by the server while trickling: what should happen
            pass
        try:
            took, answer = closed_within(silent, 30)
            assert took < 30 and b"408" in answer.split(b"\r\n")[0]
            took, answer = closed_within(trickle, 30)
            assert took < 30, "a client sending a byte at a time kept its connection"
            assert time.monotonic() - start < 15
            took, answer = closed_within(slow_body, 30)
            assert took < 30, "a client that never finishes its body kept its connection"
        finally:
            for s in (silent, trickle, slow_body):
                s.close()
        assert_still_answers(port)


def test_connections_over_the_cap_are_refused_and_the_cap_frees_up(db: str) -> None:
    with serve(db, "--max-connections", "5", "--header-timeout", "3") as base:
        port = int(base.rsplit(":", 1)[1])
        time.sleep(6)  # the start-up probes' keep-alive connections are gone
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(5)]
        try:
            time.sleep(0.5)
            with socket.create_connection(("127.0.0.1", port), timeout=5) as extra:
                _, answer = closed_within(extra, 10)
            assert b"503" in answer.split(b"\r\n")[0], answer
            for s in held:  # the header deadline lets them go
                assert closed_within(s, 30)[0] < 30
        finally:
            for s in held:
                s.close()
        assert_still_answers(port)


def test_two_hundred_idle_connections_do_not_outlive_the_deadline(db: str) -> None:
    with serve(db, "--header-timeout", "2") as base:
        port = int(base.rsplit(":", 1)[1])
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
        start = time.monotonic()
        try:
            for s in socks:
                closed_within(s, 60)
            assert time.monotonic() - start < 60
        finally:
            for s in socks:
                s.close()

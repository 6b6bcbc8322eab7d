"""``kill -9`` during ingest, build and an index file write: a few kills each (the long loops
are ``bench/crash_loop.py``; its last figures are in RELIABILITY.md). What is verified after
each kill is described in ``tests/crash_scenarios.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from .crash_scenarios import build_scenario, events_scenario, ingest_scenario, snapshot_scenario

KILLS = 3

pytestmark = pytest.mark.slow


def test_kill_during_ingest(tmp_path: Path) -> None:
    tally = ingest_scenario(tmp_path, KILLS, seed=1, limit=200, serve_every=KILLS)
    assert tally.kills == KILLS and tally.server_restarts >= 1
    assert (tally.lost, tally.partial_batches) == (0, 0)


def test_kill_during_ingest_with_term_workers(tmp_path: Path) -> None:
    # The workers hold the killed ingest's stderr: the scenario reads it to its end only once
    # they have noticed and exited too.
    tally = ingest_scenario(tmp_path, KILLS, seed=4, limit=200, serve_every=0, workers=2)
    assert tally.kills == KILLS
    assert (tally.lost, tally.partial_batches) == (0, 0)


def test_kill_during_build(tmp_path: Path) -> None:
    tally = build_scenario(tmp_path, KILLS, seed=2, limit=200, serve_every=KILLS)
    assert tally.kills == KILLS and tally.server_restarts >= 1
    assert tally.lost == 0


def test_kill_during_index_file_writes(tmp_path: Path) -> None:
    tally = snapshot_scenario(tmp_path, KILLS, seed=3, limit=120, big=500_000)
    assert tally.kills == KILLS and tally.torn_files == 0


def test_kill_during_events_import(tmp_path: Path) -> None:
    tally = events_scenario(tmp_path, KILLS, seed=4)
    assert tally.kills == KILLS and (tally.lost, tally.partial_batches) == (0, 0)

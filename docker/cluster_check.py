"""The host-side checks of docker/cluster-check.sh: HTTP and JSON that a shell does badly.

    python docker/cluster_check.py api CLUSTER_URL HOST_URL ID...
    python docker/cluster_check.py wait-workers UI_URL N [--timeout S]
    python docker/cluster_check.py apps UI_URL --seen FILE --workers N
    python docker/cluster_check.py wait-app UI_URL --seen FILE --nth K [--timeout S]
    python docker/cluster_check.py app-state UI_URL APP_ID
    python docker/cluster_check.py fingerprints SQLITE_FILE

``api`` compares the cluster's API with a textrec server on the host over the same sample:
the related posts of each id (``GET /documents/{id}/similar``) and of a free text
(``POST /similar``) must be identical, ``/health`` must count the same documents, and the
page must be the same. The Spark commands read the standalone master's web UI (its
``/json/`` view and an application's page, which lists the worker of every executor).
``fingerprints`` prints the current DF snapshot and fingerprint of every document of a
SQLite store, in the format the check reads from the cluster's PostgreSQL with psql.
Each command exits non-zero with a message saying what differed.
"""

from __future__ import annotations

import argparse
import json
import re
import sqlite3
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote

FREE_TEXT = (
    "서울시는 내년부터 시내버스 요금을 인상한다고 발표했다. 시민들은 버스 요금 인상에 반대했다."
)

# The same query as the check's psql one: "<snapshot> <external id> <fingerprint>" per document
# of the current snapshot (fingerprints are signed 64-bit integers in both databases).
FINGERPRINTS_SQL = (
    "SELECT m.value || ' ' || d.external_id || ' ' || f.fp FROM fingerprints f "
    "JOIN documents d ON d.id = f.document_id "
    "JOIN textrec_meta m ON m.key = 'current_snapshot' AND f.snapshot_id = m.value"
)


class CheckFailed(Exception):
    pass


def fetch(url: str, body: dict[str, Any] | None = None) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET, or of a POST of ``body`` as JSON."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def fetch_json(url: str, body: dict[str, Any] | None = None) -> Any:
    status, _, payload = fetch(url, body)
    if status != 200:
        raise CheckFailed(f"{url}: HTTP {status}: {payload[:300]!r}")
    return json.loads(payload)


def compare_api(cluster: str, host: str, ids: list[str]) -> str:
    health = fetch_json(f"{cluster}/health")
    host_health = fetch_json(f"{host}/health")
    if health.get("status") != "ok" or health.get("documents") != host_health.get("documents"):
        raise CheckFailed(f"/health: cluster {health}, host {host_health}")
    results = 0
    for doc_id in ids:
        path = f"/documents/{quote(doc_id, safe='')}/similar?k=10"
        mine, theirs = fetch_json(cluster + path), fetch_json(host + path)
        if mine != theirs:
            raise CheckFailed(
                f"GET {path}: the cluster's API answers\n{json.dumps(mine, ensure_ascii=False)}\n"
                f"the host's\n{json.dumps(theirs, ensure_ascii=False)}"
            )
        if not mine["results"]:
            raise CheckFailed(f"GET {path}: no related posts at all")
        results += len(mine["results"])
    body = {"text": FREE_TEXT, "k": 10}
    if fetch_json(f"{cluster}/similar", body) != fetch_json(f"{host}/similar", body):
        raise CheckFailed("POST /similar: the cluster's API and the host's differ")
    page = fetch(f"{cluster}/")
    host_page = fetch(f"{host}/")
    if page[0] != 200 or not page[1].startswith("text/html") or b"<title>textrec" not in page[2]:
        raise CheckFailed(f"GET /: HTTP {page[0]} {page[1]}: not the page")
    if page[2] != host_page[2]:
        raise CheckFailed("GET /: the cluster serves another page than the host")
    return (
        f"api: /health ok ({health['documents']} documents); GET similar of {len(ids)} "
        f"documents ({results} related posts) and POST /similar identical to the host's; "
        f"the page answers ({len(page[2])} bytes, identical)"
    )


def master(ui: str) -> dict[str, Any]:
    state = fetch_json(f"{ui}/json/")
    assert isinstance(state, dict)
    return state


def alive_workers(state: dict[str, Any]) -> list[str]:
    return sorted(w["id"] for w in state["workers"] if w["state"] == "ALIVE")


def wait_workers(ui: str, n: int, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            workers = alive_workers(master(ui))
        except (OSError, CheckFailed):
            workers = []
        if len(workers) == n:
            return f"spark: {n} workers alive: {', '.join(workers)}"
        if time.monotonic() > deadline:
            raise CheckFailed(f"after {timeout:.0f} s the master lists {len(workers)} workers")
        time.sleep(2)


def app_workers(ui: str, app_id: str) -> set[str]:
    """The workers that ran an executor of the application, from its page on the master."""
    status, _, page = fetch(f"{ui}/app/?appId={quote(app_id)}")
    if status != 200:
        raise CheckFailed(f"the master has no page for application {app_id} (HTTP {status})")
    return set(re.findall(r"worker-\d+-[0-9A-Za-z.:-]+?-\d+(?=[\"'<?&])", page.decode()))


def new_apps(state: dict[str, Any], seen: set[str]) -> list[dict[str, Any]]:
    apps = [*state["completedapps"], *state["activeapps"]]
    return sorted((a for a in apps if a["id"] not in seen), key=lambda a: a["starttime"])


def read_seen(path: Path) -> set[str]:
    return set(path.read_text().split()) if path.exists() else set()


def check_apps(ui: str, seen_file: Path, n_workers: int) -> str:
    """The applications since the last call (the DF and fingerprint jobs of one build) all
    finished, and each had executors on every one of the ``n_workers`` alive workers."""
    state = master(ui)
    workers = alive_workers(state)
    apps = new_apps(state, read_seen(seen_file))
    if len(apps) < 2:
        raise CheckFailed(f"the master lists {len(apps)} new application(s), expected 2 or more")
    lines = []
    for app in apps:
        if app["state"] != "FINISHED":
            raise CheckFailed(f"application {app['id']} is {app['state']}, not FINISHED")
        ran = app_workers(ui, app["id"])
        if len(workers) != n_workers or ran != set(workers):
            raise CheckFailed(
                f"application {app['id']} ran executors on {sorted(ran)}; the alive workers "
                f"are {workers} (expected {n_workers})"
            )
        lines.append(f"{app['id']} ({app['duration'] / 1000:.0f} s)")
    seen_file.write_text("\n".join(sorted(read_seen(seen_file) | {a["id"] for a in apps})))
    return (
        f"spark: the master's UI lists {len(apps)} finished applications, each with executors "
        f"on all {n_workers} workers: {', '.join(lines)}"
    )


def wait_app(ui: str, seen_file: Path, nth: int, timeout: float) -> str:
    """Wait for the ``nth`` application since the seen ones to be running with executors;
    print its id and the hosts of its workers."""
    deadline = time.monotonic() + timeout
    while True:
        state = master(ui)
        apps = new_apps(state, read_seen(seen_file))
        if len(apps) >= nth and apps[nth - 1]["state"] == "RUNNING":
            app = apps[nth - 1]
            ran = app_workers(ui, app["id"])
            hosts = sorted({w["host"] for w in state["workers"] if w["id"] in ran})
            if hosts:
                return " ".join([app["id"], *hosts])
        elif len(apps) >= nth:
            raise CheckFailed(f"application {apps[nth - 1]['id']} is {apps[nth - 1]['state']}")
        if time.monotonic() > deadline:
            raise CheckFailed(f"no application #{nth} running after {timeout:.0f} s")
        time.sleep(0.5)


def app_state(ui: str, app_id: str) -> str:
    state = master(ui)
    for app in [*state["activeapps"], *state["completedapps"]]:
        if app["id"] == app_id:
            return str(app["state"])
    return "UNKNOWN"


def sqlite_fingerprints(path: str) -> str:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        return "\n".join(sorted(row[0] for row in db.execute(FINGERPRINTS_SQL)))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("api")
    p.add_argument("cluster")
    p.add_argument("host")
    p.add_argument("ids", nargs="+")
    p = sub.add_parser("wait-workers")
    p.add_argument("ui")
    p.add_argument("n", type=int)
    p.add_argument("--timeout", type=float, default=120)
    p = sub.add_parser("apps")
    p.add_argument("ui")
    p.add_argument("--seen", type=Path, required=True)
    p.add_argument("--workers", type=int, required=True)
    p = sub.add_parser("wait-app")
    p.add_argument("ui")
    p.add_argument("--seen", type=Path, required=True)
    p.add_argument("--nth", type=int, required=True)
    p.add_argument("--timeout", type=float, default=300)
    p = sub.add_parser("app-state")
    p.add_argument("ui")
    p.add_argument("app_id")
    p = sub.add_parser("fingerprints")
    p.add_argument("sqlite_file")
    args = parser.parse_args(argv)
    try:
        if args.command == "api":
            print(compare_api(args.cluster, args.host, args.ids))
        elif args.command == "wait-workers":
            print(wait_workers(args.ui, args.n, args.timeout))
        elif args.command == "apps":
            print(check_apps(args.ui, args.seen, args.workers))
        elif args.command == "wait-app":
            print(wait_app(args.ui, args.seen, args.nth, args.timeout))
        elif args.command == "app-state":
            print(app_state(args.ui, args.app_id))
        else:
            print(sqlite_fingerprints(args.sqlite_file))
    except CheckFailed as exc:
        print(f"cluster_check.py {args.command}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/env bash
# Start the compose cluster (docker/compose.yml) with podman, run Spark builds on it, check the
# results against the host's, and tear it all down.
#
#   docker/cluster-check.sh [--preflight]
#
# Runs after docker/build-local.sh, whose images it uses (localhost/textrec:latest and its base);
# no registry is needed. The steps, each timed:
#  1. images: builds localhost/textrec-postgres:15 (docker/postgres/Dockerfile) from the local
#     base with buildah when missing or out of date, and copies both images into podman's store;
#  2. host: ingests the bundled Wikinews sample into a SQLite store on the host and builds it;
#  3. up: PostgreSQL and the Spark master, then two workers, with podman-compose; waits for each
#     healthcheck (podman runs them from systemd timers, absent here: the check runs them);
#  4. ingest: the same sample into the cluster's PostgreSQL, from a one-off container, as the
#     README shows; two copies of that database are made for steps 7 and 8;
#  5. build: `textrec build --runner spark` from the one-off driver container, as the README
#     shows; the fingerprints in PostgreSQL must equal the host's;
#  6. api: starts the API server; its related posts must equal those of a textrec server over
#     the host's store, /health and the page must answer; the Spark master's UI must list both
#     workers as having run both jobs;
#  7. scale: three workers (--scale spark-worker=3), a build on the first copy, the same
#     fingerprints, the jobs ran on all three;
#  8. fault: a build on the second copy; one worker container is killed (SIGKILL) while the
#     fingerprint job runs on it. The build must complete with the same fingerprints, or fail
#     with a clear error and leave the store as it was (no current snapshot, no fingerprints);
#  9. down: containers, pod, volumes and network removed; nothing of the project may be left.
#     A trap does this also when a step fails.
# --preflight stops after step 1, once a container of each image has run with these settings
# (tests/test_docker.py runs that, for the `cluster` part of TEXTREC_REQUIRE).
#
# Needs root, podman and runc (Debian: apt-get install podman runc netavark aardvark-dns
# buildah), podman-compose 1.1 or later ($PODMAN_COMPOSE, default: .venv/bin/podman-compose or
# on PATH; pip install podman-compose), and the host's textrec with its `serve` extra in
# $PYTHON (default .venv/bin/python).
# podman gets its settings from files made here: runc, default ulimits no higher than this
# host allows, the netavark network backend (DNS between containers), and its own overlay store
# at $CLUSTER_STORE (default /var/lib/containers/textrec-cluster), where the images are copied
# once and kept (buildah's vfs store would copy the whole 1.3 GB image for every container).
# Published ports are on 127.0.0.1 only; all other traffic stays on podman's bridge network.
set -euo pipefail
cd "$(dirname "$0")/.."

PROJECT=${CLUSTER_PROJECT:-textrec-check}
IMAGE=localhost/textrec:latest
BASE_IMAGE=localhost/textrec-base:bookworm
PG_IMAGE=localhost/textrec-postgres:15
BUILDAH_ROOT=${BUILDAH_ROOT:-/var/lib/containers/storage}
BUILDAH_RUNROOT=${BUILDAH_RUNROOT:-/run/containers/storage}
CLUSTER_STORE=${CLUSTER_STORE:-/var/lib/containers/textrec-cluster}
SAMPLE=textrec/data/wikinews_ko.jsonl.gz
DRIVER_CONF=/etc/textrec/mrjob.conf
PG_URL=postgresql+psycopg://textrec:${POSTGRES_PASSWORD:-textrec}@postgres:5432

say() { echo "cluster-check.sh: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

PREFLIGHT=0
for arg in "$@"; do
    case "$arg" in
        --preflight) PREFLIGHT=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d'; exit 0 ;;
        *) echo "cluster-check.sh: unknown argument '$arg' (expected --preflight)" >&2; exit 2 ;;
    esac
done

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3.11; fi
fi
if [ -z "${PODMAN_COMPOSE:-}" ]; then
    if [ -x .venv/bin/podman-compose ]; then PODMAN_COMPOSE=.venv/bin/podman-compose
    else PODMAN_COMPOSE=podman-compose; fi
fi
for tool in podman runc buildah "$PODMAN_COMPOSE"; do
    command -v "$tool" >/dev/null || fail "'$tool' is not installed (see the top of $0)"
done
[ "$(id -u)" -eq 0 ] || fail "run as root (podman with runc and netavark, buildah's store)"
compose_version=$("$PODMAN_COMPOSE" --version 2>/dev/null | sed -n 's/^podman-compose version //p')
if [ -z "$compose_version" ] || [ "$(printf '%s\n1.1.0\n' "$compose_version" | sort -V | head -n1)" != 1.1.0 ]; then
    fail "podman-compose ${compose_version:-?} is older than 1.1 (this check is run with 1.6.0): pip install podman-compose"
fi
# The host's reference: textrec with its API server, which the cluster's must answer like.
"$PYTHON" -c 'import textrec, fastapi, uvicorn' 2>/dev/null \
    || fail "$PYTHON lacks textrec or its server: pip install -e '.[serve]'"

WORK=$(mktemp -d /tmp/textrec-cluster.XXXXXX)
cat > "$WORK/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
runtime = "runc"
[network]
network_backend = "netavark"
CONF
cat > "$WORK/storage.conf" <<CONF
[storage]
driver = "overlay"
graphroot = "$CLUSTER_STORE"
runroot = "/run/containers/textrec-cluster"
CONF
export CONTAINERS_CONF=$WORK/containers.conf CONTAINERS_STORAGE_CONF=$WORK/storage.conf
export TEXTREC_POSTGRES_IMAGE=$PG_IMAGE
read -r TEXTREC_API_PORT SPARK_MASTER_UI_PORT HOST_PORT < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
export TEXTREC_API_PORT SPARK_MASTER_UI_PORT
API=http://127.0.0.1:$TEXTREC_API_PORT
UI=http://127.0.0.1:$SPARK_MASTER_UI_PORT
HOST=http://127.0.0.1:$HOST_PORT

# podman logs an error for every healthcheck it cannot schedule with systemd; they are
# expected here (the check runs the healthchecks itself).
# podman-compose warns that it cannot wait for `condition: service_healthy` with podman 4.3
# (this check starts the services in order instead), and podman that it has no syslog.
quiet() {
    grep -v -e 'systemd connection' -e 'systemd/private' -e 'condition check due to podman' \
        -e 'failed to connect to syslog' || true
}
compose() { "$PODMAN_COMPOSE" -p "$PROJECT" -f docker/compose.yml "$@" 2> >(quiet >&2); }
buildah() { command buildah --storage-driver vfs --root "$BUILDAH_ROOT" --runroot "$BUILDAH_RUNROOT" "$@"; }
project_containers() { podman ps -aq --filter "label=com.docker.compose.project=$PROJECT"; }
container_of() {  # the container of a service (the first, or number $2)
    podman ps -q --filter "label=com.docker.compose.project=$PROJECT" \
        --filter "label=com.docker.compose.service=$1" \
        --filter "label=com.docker.compose.container-number=${2:-1}" | head -n1
}
psql_on() {  # psql_on DATABASE SQL: one value per line, from the cluster's PostgreSQL
    podman exec "$(container_of postgres)" psql --username textrec --dbname "$1" \
        --no-align --tuples-only --set ON_ERROR_STOP=1 --command "$2"
}

# Everything of the project: `down --volumes`, then what podman-compose 1.6 leaves (containers
# of a scaled service, one-off containers that were running, the pod, the network).
remove_project() {
    compose down --volumes --timeout 5 >/dev/null 2>&1 || true
    project_containers | xargs -r podman rm --force --time 0 >/dev/null 2>&1 || true
    podman pod rm --force "pod_$PROJECT" >/dev/null 2>&1 || true
    podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT" \
        | xargs -r podman volume rm --force >/dev/null 2>&1 || true
    podman network rm --force "${PROJECT}_default" >/dev/null 2>&1 || true
}

HOST_SERVER=""
teardown() {
    local status=$?
    trap - EXIT INT TERM
    [ -z "$HOST_SERVER" ] || kill "$HOST_SERVER" 2>/dev/null || true
    if [ "$status" -ne 0 ]; then
        say "logs of the cluster's containers (last lines):"
        for c in $(project_containers); do
            echo "--- $(podman inspect --format '{{.Name}}' "$c" 2>/dev/null)" >&2
            podman logs --tail 15 "$c" 2>&1 | quiet >&2
        done
    fi
    remove_project
    rm -rf "$WORK"
    exit "$status"
}
trap teardown EXIT
trap 'exit 130' INT TERM

declare -a TIMES=()
t_step=$(date +%s)
t_start=$t_step
step_done() {
    local now
    now=$(date +%s)
    TIMES+=("$1 $((now - t_step)) s")
    say "-- $1: $((now - t_step)) s"
    t_step=$now
}

# A container's healthcheck, run until it passes (podman's own timers need systemd).
wait_healthy() {  # wait_healthy CONTAINER SECONDS
    local deadline=$((SECONDS + $2))
    until podman healthcheck run "$1" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] \
            || fail "$(podman inspect --format '{{.Name}}' "$1") not healthy after $2 s"
        sleep 2
    done
}

# The fingerprints of a cluster database, as cluster_check.py prints the host's.
cluster_fingerprints() {
    psql_on "$1" "$("$PYTHON" -c 'import sys; sys.path.insert(0, "docker"); import cluster_check; print(cluster_check.FINGERPRINTS_SQL)')" \
        | LC_ALL=C sort
}
same_fingerprints() {  # same_fingerprints DATABASE WHAT
    cluster_fingerprints "$1" > "$WORK/$1.fp"
    [ -s "$WORK/$1.fp" ] || fail "$2: the database $1 has no current fingerprints"
    if ! diff -q "$WORK/host.fp" "$WORK/$1.fp" >/dev/null; then
        diff "$WORK/host.fp" "$WORK/$1.fp" | head -n 10 >&2
        fail "$2: the fingerprints in $1 differ from the host's"
    fi
    say "$2: $(wc -l < "$WORK/$1.fp") fingerprints under DF snapshot $(head -n1 "$WORK/$1.fp" | cut -d' ' -f1), identical to the host's"
}

# The driver, as the README runs it: a one-off container of the api service on the compose
# network, with TMPDIR on the shared volume (the executors read the exported documents there).
driver_build() {  # driver_build DATABASE [textrec options...]
    local db=$1
    shift
    compose run -T --rm --no-deps --name textrec-driver -e TMPDIR=/shared api \
        --db "$PG_URL/$db" "$@" build --runner spark --mrjob-conf "$DRIVER_CONF"
}

# --- 1. images --------------------------------------------------------------------------------
buildah inspect --type image "$IMAGE" >/dev/null 2>&1 \
    || fail "$IMAGE is missing: run docker/build-local.sh first"
pg_source=$(cat docker/postgres/Dockerfile docker/postgres/entrypoint.sh | sha256sum | cut -c1-16)
if [ "$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "textrec.source"}}' "$PG_IMAGE" 2>/dev/null)" != "$pg_source" ]; then
    say "building $PG_IMAGE from $BASE_IMAGE"
    buildah build --isolation chroot --pull=never --format docker --layers=false \
        --label "textrec.source=$pg_source" --build-arg BASE_IMAGE="$BASE_IMAGE" \
        -f docker/postgres/Dockerfile -t "$PG_IMAGE" docker/postgres > "$WORK/pg-build.log" 2>&1 \
        || { tail -n 30 "$WORK/pg-build.log" >&2; fail "the PostgreSQL image did not build"; }
    buildah rmi --prune >/dev/null 2>&1 || true
fi
for image in "$IMAGE" "$PG_IMAGE"; do
    want=$(buildah inspect --type image --format '{{.FromImageID}}' "$image")
    have=$(podman image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
    if [ "$want" != "$have" ]; then
        say "copying $image into podman's store $CLUSTER_STORE"
        podman pull -q "containers-storage:[vfs@$BUILDAH_ROOT+$BUILDAH_RUNROOT]$image" >/dev/null
    fi
done
podman image prune --force >/dev/null 2>&1 || true
step_done images
if [ "$PREFLIGHT" -eq 1 ]; then
    inside=$(podman run --rm --network none "$IMAGE" --version 2> >(quiet >&2))
    outside=$("$PYTHON" -m textrec --version)
    [ "$inside" = "$outside" ] || fail "podman runs $IMAGE as '$inside', the host's textrec is '$outside'"
    pg_version=$(podman run --rm --network none --entrypoint postgres "$PG_IMAGE" --version 2> >(quiet >&2))
    say "preflight ok: $inside and $pg_version run in podman (runc, $(podman info --format '{{.Store.GraphDriverName}}') store, $(podman info --format '{{.Host.NetworkBackend}}'))"
    exit 0
fi

# --- 2. the host's reference ------------------------------------------------------------------
HOST_DB=$WORK/host.db
"$PYTHON" -m textrec -q --db "sqlite:///$HOST_DB" ingest "$SAMPLE" >/dev/null
"$PYTHON" -m textrec -q --db "sqlite:///$HOST_DB" build >/dev/null
"$PYTHON" docker/cluster_check.py fingerprints "$HOST_DB" | LC_ALL=C sort > "$WORK/host.fp"
n_docs=$(wc -l < "$WORK/host.fp")
say "host: $n_docs documents of $SAMPLE built into SQLite"
step_done host

# --- 3. up ------------------------------------------------------------------------------------
# podman 4.3 cannot wait for a healthy dependency (podman-compose skips `condition:
# service_healthy` with it), so the services start in the order of their dependencies.
compose up -d --no-build postgres spark-master >/dev/null
wait_healthy "$(container_of postgres)" 120
wait_healthy "$(container_of spark-master)" 120
compose up -d --no-build --scale spark-worker=2 spark-worker >/dev/null
for n in 1 2; do wait_healthy "$(container_of spark-worker "$n")" 120; done
say "$("$PYTHON" docker/cluster_check.py wait-workers "$UI" 2)"
step_done up

# --- 4. ingest --------------------------------------------------------------------------------
compose run -T --rm --no-deps -v "$PWD/$SAMPLE:/in/sample.jsonl.gz:ro" api \
    -q ingest /in/sample.jsonl.gz >&2
for copy in textrec_scaled textrec_fault; do
    psql_on postgres "CREATE DATABASE $copy TEMPLATE textrec" >/dev/null
done
step_done ingest

# --- 5. build on two workers ------------------------------------------------------------------
SEEN=$WORK/apps-seen
: > "$SEEN"
driver_build textrec >&2 || fail "the Spark build on two workers failed"
same_fingerprints textrec "build on 2 workers"
step_done "build (2 workers)"

# --- 6. the API and the master's UI -----------------------------------------------------------
compose up -d --no-build api >/dev/null
"$PYTHON" -m textrec -q --db "sqlite:///$HOST_DB" serve --host 127.0.0.1 --port "$HOST_PORT" \
    > "$WORK/host-serve.log" 2>&1 &
HOST_SERVER=$!
wait_healthy "$(container_of api)" 120
for _ in $(seq 60); do
    "$PYTHON" -c "import urllib.request; urllib.request.urlopen('$HOST/health', timeout=2)" \
        2>/dev/null && break
    sleep 1
done
ids=$(cut -d' ' -f2 "$WORK/host.fp" | awk 'NR % 50 == 1')
# shellcheck disable=SC2086
say "$("$PYTHON" docker/cluster_check.py api "$API" "$HOST" $ids)"
say "$("$PYTHON" docker/cluster_check.py apps "$UI" --seen "$SEEN" --workers 2)"
step_done "api and UI"

# --- 7. three workers -------------------------------------------------------------------------
compose up -d --no-build --scale spark-worker=3 spark-worker >/dev/null
wait_healthy "$(container_of spark-worker 3)" 120
say "$("$PYTHON" docker/cluster_check.py wait-workers "$UI" 3)"
driver_build textrec_scaled >&2 || fail "the Spark build on three workers failed"
same_fingerprints textrec_scaled "build on 3 workers"
say "$("$PYTHON" docker/cluster_check.py apps "$UI" --seen "$SEEN" --workers 3)"
step_done "scale and build (3 workers)"

# --- 8. a worker killed during the fingerprint job ----------------------------------------------
driver_build textrec_fault -v > "$WORK/fault.log" 2>&1 &
driver=$!
# The second application of the build is the fingerprint job. Kill a worker while a task of it
# runs there: its executor's log (in the worker's SPARK_WORKER_DIR) has started more tasks
# than it finished.
read -r app hosts < <("$PYTHON" docker/cluster_check.py wait-app "$UI" --seen "$SEEN" --nth 2) \
    || { wait "$driver" || true; tail -n 20 "$WORK/fault.log" >&2; fail "the fault build's fingerprint job never ran"; }
running_tasks() {  # running_tasks CONTAINER APP
    podman exec "$1" sh -c "cat \"\$SPARK_WORKER_DIR/$2\"/*/stderr 2>/dev/null" 2>/dev/null \
        | awk '/Executor: Running task/ { n++ } /Executor: Finished task/ { n-- } END { print n + 0 }'
}
victim=""
deadline=$((SECONDS + 120))
while [ -z "$victim" ] && [ "$SECONDS" -lt "$deadline" ]; do
    for n in 1 2 3; do
        c=$(container_of spark-worker "$n")
        ip=$(podman inspect --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$c")
        case " $hosts " in *" $ip "*) ;; *) continue ;; esac
        if [ "$(running_tasks "$c" "$app")" -gt 0 ]; then
            victim=$c
            break
        fi
    done
    [ -n "$victim" ] || sleep 0.5
done
[ -n "$victim" ] || fail "no task of application $app was seen running on a worker"
victim_name=$(podman inspect --format '{{.Name}}' "$victim")
podman kill --signal KILL "$victim" >/dev/null
state=$("$PYTHON" docker/cluster_check.py app-state "$UI" "$app")
[ "$state" = RUNNING ] || fail "application $app was $state when $victim_name was killed: too late"
say "fault: killed $victim_name (SIGKILL) while a task of application $app ran on it"
if wait "$driver"; then
    # What Spark did about it, from the driver's log: the executor and its running task were
    # lost, and a second attempt of that task (N.1) ran elsewhere.
    retried='(Starting|Finished) task [0-9]+\.[1-9]'
    grep -E "Lost executor|Lost task|its executor exited|$retried" "$WORK/fault.log" \
        | sed -E 's/^[A-Z]+ mrjob.logs.step: *//; s/\. Not counting .*//' >&2
    grep -qE "Finished task [0-9]+\.[1-9]" "$WORK/fault.log" || {
        grep -iE 'task|executor' "$WORK/fault.log" | tail -n 30 >&2
        fail "the driver's log shows no task of the killed worker run again"
    }
    same_fingerprints textrec_fault "build with a killed worker"
    FAULT="completed with the same fingerprints"
else
    grep '^textrec: error:' "$WORK/fault.log" >&2 \
        || { tail -n 30 "$WORK/fault.log" >&2; fail "the fault build failed without textrec's error message"; }
    current=$(psql_on textrec_fault "SELECT count(*) FROM textrec_meta WHERE key = 'current_snapshot'")
    fps=$(psql_on textrec_fault "SELECT count(*) FROM fingerprints")
    [ "$current" = 0 ] && [ "$fps" = 0 ] \
        || fail "the failed build left $current current snapshot(s) and $fps fingerprints"
    FAULT="failed with a clear error; the store has no current snapshot and no fingerprints, as before"
fi
say "fault: the build $FAULT"
step_done "fault (worker killed)"

# --- 9. down ----------------------------------------------------------------------------------
kill "$HOST_SERVER" 2>/dev/null || true
HOST_SERVER=""
remove_project
left="$(project_containers) $(podman volume ls -q --filter "label=com.docker.compose.project=$PROJECT")"
left="$left $(podman network ls -q --filter "name=^${PROJECT}_default\$") $(podman pod ls -q --filter "name=^pod_$PROJECT\$")"
[ -z "${left// /}" ] || fail "left behind after teardown: $left"
step_done down

say "ok: $(IFS=';'; echo "${TIMES[*]}" | sed 's/;/, /g'); total $(( $(date +%s) - t_start )) s"

#!/usr/bin/env bash
# Build the textrec cluster-node image without a registry or a Docker engine, and smoke-test it.
#
#   docker/build-local.sh [--rebuild-base | --smoke-only]
#
# 1. Base image: a minimal Debian bookworm made with debootstrap (python3 3.11, python3-venv,
#    ca-certificates), committed as localhost/textrec-base:bookworm, the name docker/Dockerfile's
#    FROM uses, with apt sources for bookworm, its updates and its security updates. Reused when
#    it already exists, unless --rebuild-base is given.
# 2. The image: `buildah build -f docker/Dockerfile .` from the repository root, with
#    --pull=never, tagged localhost/textrec:latest. pip inside the build gets the host's CA
#    bundle and a pip.conf that names it, and only PyPI as index.
# 3. Smoke run inside the image (`buildah run`): the nouns of a Korean sentence and its
#    fingerprint under a fixed DF snapshot must equal those computed outside the image with
#    $PYTHON (default: .venv/bin/python if present, else python3.11), and the image must run as
#    a non-root user, carry no compiler, and have Java, spark-class and the healthcheck; and
#    `textrec demo` must list the same related posts inside and outside. --smoke-only runs just
#    this step, on the image already built.
#
# Needs root and the Debian packages buildah and debootstrap. Storage: vfs, under
# $BUILDAH_ROOT (default /var/lib/containers/storage). Prints the timings and the image size.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE_IMAGE=localhost/textrec-base:bookworm
IMAGE=${IMAGE:-localhost/textrec:latest}
SUITE=bookworm
REBUILD_BASE=0
SMOKE_ONLY=0
for arg in "$@"; do
    case "$arg" in
        --rebuild-base) REBUILD_BASE=1 ;;
        --smoke-only) SMOKE_ONLY=1 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "build-local.sh: unknown argument '$arg' (expected --rebuild-base or --smoke-only)" >&2; exit 2 ;;
    esac
done

for tool in buildah debootstrap; do
    if ! command -v "$tool" >/dev/null; then
        echo "build-local.sh: '$tool' is not installed; run: apt-get install -y buildah debootstrap" >&2
        exit 2
    fi
done
if [ "$(id -u)" -ne 0 ]; then
    echo "build-local.sh: run as root (debootstrap and buildah with chroot isolation need it)" >&2
    exit 2
fi

buildah() { command buildah --storage-driver vfs ${BUILDAH_ROOT:+--root "$BUILDAH_ROOT"} "$@"; }

# The Debian mirror apt already uses on this machine (deb822 or one-line sources).
debian_mirror() {
    local uri
    uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' \
        | awk '{print $1}' | grep -E '/debian/?$' | head -n1 || true)
    echo "${uri:-http://deb.debian.org/debian}"
}

WORK=$(mktemp -d /tmp/textrec-image.XXXXXX)
CONTAINERS=()
PG_CTL=""
PG_DIR=""
cleanup() {
    for c in "${CONTAINERS[@]}"; do buildah rm "$c" >/dev/null 2>&1 || true; done
    if [ -n "$PG_DIR" ]; then
        runuser -u postgres -- "$PG_CTL" -D "$PG_DIR/data" -m fast -w stop >/dev/null 2>&1 || true
        rm -rf "$PG_DIR"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
t_start=$(date +%s)

# --- 1. base image --------------------------------------------------------------------------
if [ "$SMOKE_ONLY" -eq 1 ]; then
    :
elif [ "$REBUILD_BASE" -eq 0 ] && buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
    echo "== base image $BASE_IMAGE exists; reusing it (--rebuild-base to make it again)"
else
    mirror=$(debian_mirror)
    echo "== debootstrap $SUITE from $mirror"
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$SUITE" "$WORK/rootfs" "$mirror" > "$WORK/debootstrap.log" 2>&1 \
        || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
    # apt in the image: the release, its updates and its security updates (the base itself is
    # brought up to date here, so that the image starts from a patched system).
    cat > "$WORK/rootfs/etc/apt/sources.list" <<SOURCES
deb $mirror $SUITE main
deb $mirror $SUITE-updates main
deb ${mirror%/debian*}/debian-security $SUITE-security main
SOURCES
    chroot "$WORK/rootfs" /bin/sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq' \
        >> "$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; exit 1; }
    # What a base image does not need: downloaded packages, package lists, docs, logs, and the
    # host's name and resolver, which debootstrap copied in (the runtime provides its own).
    rm -f "$WORK/rootfs/etc/hostname" "$WORK/rootfs/etc/resolv.conf"
    rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/cache/apt/*.bin \
        "$WORK"/rootfs/var/lib/apt/lists/* \
        "$WORK"/rootfs/usr/share/doc/* "$WORK"/rootfs/usr/share/man/* "$WORK"/rootfs/var/log/*
    "$WORK/rootfs/usr/bin/python3" --version 2>/dev/null || chroot "$WORK/rootfs" python3 --version
    tar --numeric-owner --xattrs -C "$WORK/rootfs" -cf "$WORK/rootfs.tar" .
    rm -rf "$WORK/rootfs"
    ctr=$(buildah from scratch); CONTAINERS+=("$ctr")
    buildah add "$ctr" "$WORK/rootfs.tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --env LANG=C.UTF-8 --cmd /bin/bash \
        --label org.opencontainers.image.title="Debian $SUITE minbase with python3 (debootstrap)" \
        "$ctr"
    buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" >/dev/null
    CONTAINERS=()
    rm -f "$WORK/rootfs.tar"
fi
t_base=$(date +%s)

# --- 2. the image ---------------------------------------------------------------------------
# pip inside the build: the host's CA bundle (HTTPS may pass through a proxy that the base
# image's bundle does not know) and only PyPI, whatever this host's own pip configuration adds.
printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\nindex-url = https://pypi.org/simple\n' \
    > "$WORK/pip.conf"
if [ "$SMOKE_ONLY" -eq 0 ]; then
    echo "== buildah build -f docker/Dockerfile -t $IMAGE ."
    buildah build --isolation chroot --pull=never --format docker --layers=false \
        -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro \
        -v "$WORK/pip.conf:/etc/pip.conf:ro" \
        --build-arg BASE_IMAGE="$BASE_IMAGE" \
        -f docker/Dockerfile -t "$IMAGE" . > "$WORK/build.log" 2>&1 \
        || { tail -n 40 "$WORK/build.log" >&2; echo "build-local.sh: the build failed" >&2; exit 1; }
    # The images this one and the new base replaced, now untagged (vfs keeps full copies).
    buildah rmi --prune >/dev/null 2>&1 || true
fi
t_build=$(date +%s)

# --- 3. smoke run ---------------------------------------------------------------------------
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3.11; fi
fi
fail() { echo "build-local.sh: smoke check failed: $*" >&2; exit 1; }
run() { buildah run --isolation chroot "$ctr" -- "$@"; }

ctr=$(buildah from --pull-never "$IMAGE"); CONTAINERS+=("$ctr")
echo "== smoke run in $IMAGE"
inside=$(run python -c "$(cat docker/smoke.py)") || fail "docker/smoke.py did not run in the image"
outside=$("$PYTHON" docker/smoke.py) || fail "docker/smoke.py did not run with $PYTHON"
echo "inside:  $inside"
echo "outside: $outside"
[ "$inside" = "$outside" ] || fail "the image gives other nouns or another fingerprint than $PYTHON"

uid=$(run id -u)
[ "$uid" != 0 ] || fail "the image runs as root"
for cc in gcc cc c++ g++ clang make; do
    if run bash -c "command -v $cc" >/dev/null 2>&1; then fail "a compiler is left in the image: $cc"; fi
done
run java -version > "$WORK/java.txt" 2>&1 || fail "java does not run in the image"
grep -q 'version "17' "$WORK/java.txt" || fail "java is not 17: $(head -n1 "$WORK/java.txt")"
run bash -c 'command -v spark-class && command -v spark-submit' >/dev/null \
    || fail "spark-class or spark-submit is not on PATH"
run textrec --help >/dev/null || fail "'textrec --help' failed"
buildah inspect --type image "$IMAGE" > "$WORK/inspect.json"
"$PYTHON" - "$WORK/inspect.json" <<'CHECK' || fail "the image's configuration is not that of docker/Dockerfile"
import json, sys
config = json.load(open(sys.argv[1]))["Docker"]["config"]
problems = []
if "http://127.0.0.1:8000/health" not in " ".join((config.get("Healthcheck") or {}).get("Test", [])):
    problems.append(f"healthcheck {config.get('Healthcheck')}")
if config.get("Entrypoint") != ["textrec"] or config.get("Cmd") != ["serve", "--host", "0.0.0.0"]:
    problems.append(f"entrypoint {config.get('Entrypoint')} command {config.get('Cmd')}")
if config.get("User", "").split(":")[0] in ("", "0", "root"):
    problems.append(f"user {config.get('User')!r}")
for problem in problems:
    print("unexpected", problem, file=sys.stderr)
sys.exit(1 if problems else 0)
CHECK
# End to end, as the image's user: ingest, build and query the bundled demo corpus; the related
# posts listed must be those listed outside the image (the temporary database path aside).
demo_inside=$(run textrec demo 2>"$WORK/demo.err" | grep -v 'textrec-demo-') \
    || { tail -n 20 "$WORK/demo.err" >&2; fail "'textrec demo' failed in the image"; }
demo_outside=$("$PYTHON" -m textrec demo 2>/dev/null | grep -v 'textrec-demo-')
[ "$demo_inside" = "$demo_outside" ] || {
    diff <(echo "$demo_outside") <(echo "$demo_inside") >&2 || true
    fail "'textrec demo' lists other related posts in the image than with $PYTHON"
}
echo "textrec demo: $(echo "$demo_inside" | grep -c 'wikinews-') result lines, identical inside and outside"

corpus='import pathlib, textrec; print(pathlib.Path(textrec.__file__).parent / "data" / "wikinews_ko.jsonl.gz")'

# textrec's optional C extensions must be built in the image (the build stage has a compiler).
for source in textrec/_*.c; do
    [ -e "$source" ] || continue
    module="textrec.$(basename "$source" .c)"
    run python -c "import $module" || fail "$module (from $source) was not built into the image"
    echo "extension $module: built"
done

# The API server, when this textrec has `textrec serve`: started in the image on a free loopback
# port against a built SQLite store, and probed with the image's own healthcheck command.
if "$PYTHON" -m textrec serve --help >/dev/null 2>&1; then
    health_cmd=$("$PYTHON" -c '
import json, sys
test = json.load(open(sys.argv[1]))["Docker"]["config"]["Healthcheck"]["Test"]
print(test[-1])' "$WORK/inspect.json")
    serve_port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    run bash -c '
        set -e
        data=$(python -c "$1")
        textrec --db sqlite:////tmp/serve.db ingest "$data" >/dev/null 2>&1
        textrec --db sqlite:////tmp/serve.db build >/dev/null 2>&1
        textrec --db sqlite:////tmp/serve.db serve --host 127.0.0.1 --port "$2" > /tmp/serve.log 2>&1 &
        server=$!
        trap "kill $server 2>/dev/null; wait" EXIT
        for _ in $(seq 60); do
            if python -c "${3//:8000\//:$2/}" 2>/dev/null; then exit 0; fi
            sleep 1
        done
        tail -n 20 /tmp/serve.log
        exit 1
    ' serve "$corpus" "$serve_port" "$health_cmd" >&2 \
        || fail "textrec serve in the image did not pass its healthcheck"
    echo "textrec serve: healthy (the image's healthcheck, on port $serve_port)"
fi

# Spark: a standalone master and a worker of the image on 127.0.0.1 and a job submitted to them
# (docker/spark_smoke.py) that computes term counts and fingerprints on the executor; its result
# must equal the one $PYTHON computes without Spark. All three JVMs run in one container, so the
# shell that starts them stops them.
buildah copy "$ctr" docker/spark_smoke.py /tmp/spark_smoke.py >/dev/null
read -r spark_port master_ui worker_ui < <("$PYTHON" -c '
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))')
spark_inside=$(run bash -c '
    export SPARK_LOCAL_IP=127.0.0.1
    spark-class org.apache.spark.deploy.master.Master --host 127.0.0.1 --port "$1" \
        --webui-port "$2" > /tmp/spark-master.log 2>&1 &
    master=$!
    spark-class org.apache.spark.deploy.worker.Worker --host 127.0.0.1 --webui-port "$3" \
        --cores 1 --memory 1g "spark://127.0.0.1:$1" > /tmp/spark-worker.log 2>&1 &
    worker=$!
    trap "kill $worker $master 2>/dev/null; wait" EXIT
    python -c "
import time, urllib.request
deadline = time.monotonic() + 120
while True:
    try:
        urllib.request.urlopen(\"http://127.0.0.1:$2/\", timeout=2)
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(1)
"
    timeout 300 spark-submit --master "spark://127.0.0.1:$1" --conf spark.ui.enabled=false \
        /tmp/spark_smoke.py || { tail -n 20 /tmp/spark-master.log /tmp/spark-worker.log; exit 1; }
' spark "$spark_port" "$master_ui" "$worker_ui" 2>"$WORK/spark.log") \
    || { tail -n 40 "$WORK/spark.log" >&2; fail "the Spark job failed on a master and worker of the image"; }
spark_outside=$("$PYTHON" docker/spark_smoke.py --local) || fail "docker/spark_smoke.py --local failed"
# spark-submit passes the Python driver's stderr on to its stdout: the result is the last line.
echo "$spark_inside" | grep '^spark ' || true
spark_inside=$(echo "$spark_inside" | tail -n1)
echo "spark (inside):  $spark_inside"
echo "local (outside): $spark_outside"
[ "$spark_inside" = "$spark_outside" ] || fail "Spark executors in the image give other fingerprints than $PYTHON"

# The store on PostgreSQL, when the server binaries are installed (CI installs them): a server on
# 127.0.0.1 for this run; the image and $PYTHON each ingest and build the demo corpus into their
# own database, and must find the same related posts. The image's network is the host's.
PG_CTL=$(find /usr/lib/postgresql -path '*/bin/pg_ctl' 2>/dev/null | sort -V | tail -n1 || true)
if [ -n "$PG_CTL" ] && id postgres >/dev/null 2>&1; then
    PG_DIR=$(mktemp -d /tmp/textrec-image-pg.XXXXXX)
    chown postgres "$PG_DIR"
    pg_port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    pg() { runuser -u postgres -- "$(dirname "$PG_CTL")/$1" "${@:2}"; }
    pg initdb -D "$PG_DIR/data" --auth=trust --username=postgres > "$PG_DIR/initdb.log" 2>&1 \
        || { cat "$PG_DIR/initdb.log" >&2; fail "initdb failed"; }
    pg pg_ctl -D "$PG_DIR/data" -o "-h 127.0.0.1 -p $pg_port -k $PG_DIR" -l "$PG_DIR/server.log" \
        -w start >/dev/null || { cat "$PG_DIR/server.log" >&2; fail "PostgreSQL did not start"; }
    for db in inside outside; do pg createdb -h 127.0.0.1 -p "$pg_port" "textrec_$db"; done
    # $1: how to run Python ("run python" inside the image, or $PYTHON); $2: the database URL.
    store_session() {
        local py=$1 url=$2 data
        data=$($py -c "$corpus")
        $py -m textrec --db "$url" ingest "$data" >&2 \
            && $py -m textrec --db "$url" build >&2 \
            && $py -m textrec --db "$url" migrate >&2 \
            && $py -m textrec --db "$url" similar wikinews-0007 wikinews-0100 -k 5 --json
    }
    url="postgresql+psycopg://postgres@127.0.0.1:$pg_port"
    pg_inside=$(store_session "run python" "$url/textrec_inside" 2>"$WORK/pg-inside.log") \
        || { tail -n 20 "$WORK/pg-inside.log" >&2; fail "ingest/build/similar on PostgreSQL failed in the image"; }
    pg_outside=$(store_session "$PYTHON" "$url/textrec_outside" 2>"$WORK/pg-outside.log") \
        || { tail -n 20 "$WORK/pg-outside.log" >&2; fail "ingest/build/similar on PostgreSQL failed with $PYTHON"; }
    [ -n "$pg_inside" ] && [ "$pg_inside" = "$pg_outside" ] || {
        diff <(echo "$pg_outside") <(echo "$pg_inside") >&2 || true
        fail "on PostgreSQL the image finds other related posts than $PYTHON"
    }
    echo "PostgreSQL store: ingest, build, migrate, similar identical inside and outside"
else
    echo "PostgreSQL server binaries not installed: the store check on PostgreSQL is skipped"
fi
t_smoke=$(date +%s)

size=$(buildah images --format '{{.Size}}' "$IMAGE" | head -n1)
base_size=$(buildah images --format '{{.Size}}' "$BASE_IMAGE" | head -n1)
echo "== ok: $IMAGE, $size (base $BASE_IMAGE: $base_size);" \
    "base $((t_base - t_start)) s, build $((t_build - t_base)) s, smoke $((t_smoke - t_build)) s," \
    "total $((t_smoke - t_start)) s"

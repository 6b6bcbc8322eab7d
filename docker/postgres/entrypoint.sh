#!/usr/bin/env bash
# Start PostgreSQL in the foreground; on the first start (an empty PGDATA), create the cluster,
# the role POSTGRES_USER with POSTGRES_PASSWORD and the database POSTGRES_DB, as the official
# postgres image does. Clients outside the container authenticate with the password
# (scram-sha-256); inside it, over the Unix socket, the postgres user needs none.
set -euo pipefail
: "${PGDATA:=/var/lib/postgresql/data}"
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ]; then
        echo "textrec-postgres: POSTGRES_PASSWORD is not set; it is needed to create the database" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
    initdb --pgdata "$PGDATA" --username "$user" --pwfile "$pwfile" --encoding UTF8 \
        --locale C.UTF-8 --auth-local trust --auth-host scram-sha-256 >/dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE \"${db//\"/\"\"}\" OWNER \"${user//\"/\"\"}\"" \
            | postgres --single -D "$PGDATA" -j postgres >/dev/null
    fi
    echo "textrec-postgres: created the database '$db' owned by '$user' in $PGDATA"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' "$@"

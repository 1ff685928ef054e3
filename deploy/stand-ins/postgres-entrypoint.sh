#!/bin/sh
# The official postgres image's start, as far as the stack uses it: on an empty data
# directory, a cluster owned by POSTGRES_USER (password POSTGRES_PASSWORD, scram-sha-256 over
# TCP), the database POSTGRES_DB, and the SQL files of /docker-entrypoint-initdb.d; then the
# server on every address. Runs as the postgres user.
set -eu
data=${PGDATA:-/var/lib/postgresql/data}
if [ ! -s "$data/PG_VERSION" ]; then
  password=$(mktemp)
  printf '%s' "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}" > "$password"
  initdb --pgdata "$data" --username "$POSTGRES_USER" --pwfile "$password" \
    --auth-local trust --auth-host scram-sha-256 --encoding UTF8 >/dev/null
  rm "$password"
  echo "host all all all scram-sha-256" >> "$data/pg_hba.conf"
  pg_ctl --pgdata "$data" --options "-c listen_addresses=''" --wait --silent start
  psql="psql --username $POSTGRES_USER --no-psqlrc --quiet --set ON_ERROR_STOP=1"
  $psql --dbname postgres --command "CREATE DATABASE \"${POSTGRES_DB:-$POSTGRES_USER}\""
  for sql in /docker-entrypoint-initdb.d/*.sql; do
    [ -e "$sql" ] && $psql --dbname "${POSTGRES_DB:-$POSTGRES_USER}" --file "$sql"
  done
  pg_ctl --pgdata "$data" --mode fast --wait --silent stop
fi
exec postgres -D "$data" -c listen_addresses='*'

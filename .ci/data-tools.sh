#!/usr/bin/env bash
# Make sure the programs the database and Redis tests use are installed: the dump tools
# that db::backup and db::restore run (pg_dump, pg_restore, psql, mariadb-dump, mariadb),
# the PostgreSQL server binaries the replication test starts a primary and replica with
# (initdb, pg_ctl, pg_basebackup, pg_stat_statements), and redis-server / redis-cli for the
# Sentinel and Cluster tests, and Prometheus for the monitoring runbook's test. Installs only
# what is missing, so it is quick to run again.
set -euo pipefail

missing=()
need() { # need PACKAGE PATH...
  local package="$1"; shift
  for path in "$@"; do
    if [ ! -e "$path" ] && ! command -v "$path" >/dev/null 2>&1; then
      missing+=("$package")
      return
    fi
  done
}

need postgresql-client pg_dump pg_restore psql
need mariadb-client mariadb-dump mariadb
need postgresql-15 /usr/lib/postgresql/15/bin/initdb /usr/lib/postgresql/15/bin/pg_basebackup \
  /usr/lib/postgresql/15/lib/pg_stat_statements.so
need redis-server redis-server
need redis-tools redis-cli
need prometheus prometheus

if [ "${#missing[@]}" -gt 0 ]; then
  echo "data-tools: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

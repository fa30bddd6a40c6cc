#!/usr/bin/env bash
# Starts a throwaway PostgreSQL cluster on 127.0.0.1 (a free port) for the
# proxy's PostgreSQL tests, and prints the one line the caller evaluates:
#   eval "$(scripts/pg-start.sh)"      # -> export SIPEDGE_PG_URL=postgres://...
#   scripts/pg-start.sh stop           # stops it and removes its files
# As root, the cluster runs as `postgres` (or a created system user
# `sipedge-pg`), since postgres refuses to run as root. Missing binaries are
# installed with apt-get when we are root on Debian. Logs go to stderr.
# SIPEDGE_PG_DIR overrides the state folder (default: one per checkout in /tmp).
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
state="${SIPEDGE_PG_DIR:-/tmp/sipedge-pg.$(id -u).$(printf %s "$repo" | cksum | cut -d' ' -f1)}"
data="$state/data"
log() { echo "pg-start: $*" >&2; }

find_bin() {
  local d
  for d in /usr/lib/postgresql/*/bin /usr/local/bin /usr/bin; do
    if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
      echo "$d"
      return 0
    fi
  done
  return 1
}

bin="$(find_bin | sort -V | tail -n1 || true)"
if [ -z "$bin" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing postgresql (apt-get)"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
    bin="$(find_bin | sort -V | tail -n1 || true)"
  fi
  if [ -z "$bin" ]; then
    log "no PostgreSQL binaries (initdb, pg_ctl, postgres) found"
    exit 1
  fi
fi

# Who runs the server: ourselves, unless we are root.
run_as=""
if [ "$(id -u)" = 0 ]; then
  if id postgres >/dev/null 2>&1; then
    run_as=postgres
  else
    if ! id sipedge-pg >/dev/null 2>&1; then
      log "creating system user sipedge-pg"
      useradd --system --no-create-home --shell /usr/sbin/nologin sipedge-pg
    fi
    run_as=sipedge-pg
  fi
fi
as_pg() {
  if [ -z "$run_as" ]; then
    "$@"
  elif command -v runuser >/dev/null 2>&1; then
    runuser -u "$run_as" -- "$@"
  else
    su -s /bin/sh "$run_as" -c "$(printf '%q ' "$@")"
  fi
}

if [ "${1:-start}" = stop ]; then
  if [ -f "$data/postmaster.pid" ]; then
    as_pg "$bin/pg_ctl" -D "$data" -m fast -w stop >&2 || true
  fi
  rm -rf "$state"
  log "stopped ($state removed)"
  exit 0
fi
if [ "${1:-start}" != start ]; then
  echo "usage: $0 [start|stop]" >&2
  exit 2
fi

# Already running for this checkout: hand out the same URL.
if [ -f "$state/url" ] && [ -f "$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
  echo "export SIPEDGE_PG_URL=$(cat "$state/url")"
  exit 0
fi

rm -rf "$state"
mkdir -p "$state"
chmod 0755 "$state"
[ -n "$run_as" ] && chown "$run_as" "$state"
as_pg "$bin/initdb" -D "$data" -U sipedge --auth=trust --no-locale --encoding=UTF8 >"$state/initdb.log" 2>&1 \
  || { cat "$state/initdb.log" >&2; exit 1; }

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
started=""
for _ in 1 2 3 4 5 6 7 8 9 10; do
  port=$(( 20000 + RANDOM % 40000 ))
  port_in_use "$port" && continue
  # Loopback only, trust auth: a throwaway cluster for tests, never for data.
  if as_pg "$bin/pg_ctl" -D "$data" -l "$state/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$state -c fsync=off" \
      start >&2; then
    started=1
    break
  fi
  log "port $port failed, trying another"
done
if [ -z "$started" ]; then
  log "could not start PostgreSQL; see $state/server.log"
  tail -n 20 "$state/server.log" >&2 || true
  exit 1
fi

url="postgres://sipedge@127.0.0.1:$port/postgres"
psql_bin="$bin/psql"
[ -x "$psql_bin" ] || psql_bin="$(command -v psql || true)"
if [ -n "$psql_bin" ] && "$psql_bin" -q -h 127.0.0.1 -p "$port" -U sipedge -d postgres \
    -c 'CREATE DATABASE sipedge' >&2; then
  url="postgres://sipedge@127.0.0.1:$port/sipedge"
fi
echo "$url" >"$state/url"
log "$("$bin/postgres" --version) on 127.0.0.1:$port as ${run_as:-$(id -un)} ($state)"
echo "export SIPEDGE_PG_URL=$url"

#!/usr/bin/env bash
# Ingest benchmark across journal stores, in one run on one machine: the durable phases of
# bench/ingest.sh (single events, batches of BENCH_BATCH) against
#   sqlite     one server on a fresh SQLite file
#   postgres   one server on a fresh PostgreSQL database
#   postgres2  two servers on one fresh PostgreSQL database, wrk split between them
#              (BENCH_CONNECTIONS/2 connections each, run at the same time; events/s summed)
# and prints events/s, p50/p99 and the ratio to SQLite's same phase.
#
#   bench/ingest-stores.sh                 build --release, then run
#   BENCH_NO_BUILD=1 bench/ingest-stores.sh
#
# Environment: as bench/ingest.sh (BENCH_DURATION 15s, BENCH_CONNECTIONS 64, BENCH_THREADS 2,
# BENCH_BATCH 100, BENCH_TIMEOUT 10s, BENCH_NO_BUILD, BENCH_KEEP), plus BENCH_PG_SERVER
# (postgres://postgres@127.0.0.1:5432, a role that may create databases). Needs wrk, curl,
# psql, python3. Each run creates its databases and drops them at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${BENCH_DURATION:-15s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
BATCH="${BENCH_BATCH:-100}"
TIMEOUT="${BENCH_TIMEOUT:-10s}"
PG_SERVER="${BENCH_PG_SERVER:-postgres://postgres@127.0.0.1:5432}"
LUA="$ROOT/bench/ingest.lua"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tenant-gateway"

die() { echo "ingest-stores.sh: $*" >&2; exit 1; }
for tool in wrk curl psql python3; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is required"
done
if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --release) >&2 || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "no binary at $BIN"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/tg-bench-stores.XXXXXX")"
PIDS=()
DATABASES=()
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    local rc=$? db
    stop_servers
    for db in "${DATABASES[@]}"; do
        psql -q "$PG_SERVER/postgres" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then echo "ingest-stores.sh: kept $TMP" >&2; else rm -rf "$TMP"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# start_server NAME STORE: starts one server, waits for readiness, sets URL to its base URL.
# Not called as "$(...)", for the same reason as new_database: the pid must reach PIDS here,
# or stop_servers would leave the server running through the next configurations.
start_server() {
    local name="$1" store="$2" port admin
    port="$(free_port)"; admin="$(free_port)"
    "$BIN" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" --store "$store" \
        --log-format json --shutdown-grace 0s >"$TMP/server-$name.log" 2>&1 &
    PIDS+=($!)
    for _ in $(seq 300); do
        curl -fsS -o /dev/null "http://127.0.0.1:$admin/readyz" 2>/dev/null && break
        sleep 0.1
    done
    curl -fsS -o /dev/null "http://127.0.0.1:$admin/readyz" \
        || { tail -20 "$TMP/server-$name.log" >&2; die "server $name not ready"; }
    URL="http://127.0.0.1:$port"
}

# new_database: creates a fresh database and sets PG to its URL. Not called as "$(...)": the
# name must reach DATABASES in this shell, or the cleanup would leave the database behind.
new_database() {
    local db="tg_bench_$(date +%s)_$RANDOM"
    psql -q "$PG_SERVER/postgres" -c "CREATE DATABASE $db" >/dev/null || die "cannot create $db"
    DATABASES+=("$db")
    PG="$PG_SERVER/$db"
}

declare -A R  # R[config.phase.key]
# wrk_run OUT URL CONNECTIONS SALT MODE...: one wrk run in the background.
wrk_run() {
    local out="$1" url="$2" connections="$3" salt="$4"; shift 4
    wrk -t"$THREADS" -c"$connections" -d"$DURATION" --timeout "$TIMEOUT" --latency \
        -s "$LUA" "$url/events" -- "$@" "$salt" >"$out" 2>&1
}
# collect CONFIG PHASE OUT...: sums events/s over the wrk runs, keeps the worst p50/p99.
collect() {
    local config="$1" phase="$2"; shift 2
    local out line kv eps=0 p50=0 p99=0 non2xx=0 per
    per=1; [ "$phase" = batch ] && per="$BATCH"
    for out in "$@"; do
        line="$(grep '^BENCH_RESULT ' "$out")" || { cat "$out" >&2; die "no result from wrk ($config $phase)"; }
        declare -A W=()
        for kv in ${line#BENCH_RESULT }; do W["${kv%%=*}"]="${kv#*=}"; done
        eps=$(awk -v a="$eps" -v ok="${W[ok]}" -v s="${W[seconds]}" -v n="$per" 'BEGIN {printf "%.0f", a + ok * n / s}')
        p50=$(awk -v a="$p50" -v b="${W[p50_ms]}" 'BEGIN {print (b > a ? b : a)}')
        p99=$(awk -v a="$p99" -v b="${W[p99_ms]}" 'BEGIN {print (b > a ? b : a)}')
        non2xx=$(( non2xx + W[non2xx] ))
        unset W
    done
    R["$config.$phase.eps"]=$eps; R["$config.$phase.p50"]=$p50
    R["$config.$phase.p99"]=$p99; R["$config.$phase.non2xx"]=$non2xx
}

# bench CONFIG URL...: both phases, the connections split over the URLs, run concurrently.
bench() {
    local config="$1"; shift
    local phase url i outs pids
    local share=$(( CONNECTIONS / $# ))
    for phase in single batch; do
        echo "ingest-stores.sh: $config: $phase over $# server(s), $share connections each" >&2
        outs=(); pids=(); i=0
        for url in "$@"; do
            i=$((i + 1))
            outs+=("$TMP/wrk-$config-$phase-$i.txt")
            if [ "$phase" = batch ]; then
                wrk_run "${outs[-1]}" "$url" "$share" "r$i" batch "$BATCH" & pids+=($!)
            else
                wrk_run "${outs[-1]}" "$url" "$share" "r$i" single 1 & pids+=($!)
            fi
        done
        for i in "${pids[@]}"; do wait "$i" || die "wrk failed ($config $phase)"; done
        collect "$config" "$phase" "${outs[@]}"
    done
}

LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
start_server sqlite "sqlite://$TMP/gw.db"; bench sqlite "$URL"; stop_servers
new_database
start_server postgres "$PG"; bench postgres "$URL"; stop_servers
new_database
start_server postgres2-a "$PG"; URL1="$URL"; start_server postgres2-b "$PG"; URL2="$URL"
bench postgres2 "$URL1" "$URL2"; stop_servers
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

echo
echo "## tenant-gateway ingest by store"
echo
echo "$(nproc) cores, wrk -t$THREADS -c$CONNECTIONS -d$DURATION (split over the servers), batches of $BATCH; $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'no commit'); load average before $LOAD_BEFORE, after $LOAD_AFTER"
echo
echo "| store | phase | events/s | p50 ms | p99 ms | non-2xx | vs SQLite |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for config in sqlite postgres postgres2; do
    for phase in single batch; do
        ratio=$(awk -v a="${R[$config.$phase.eps]}" -v b="${R[sqlite.$phase.eps]}" 'BEGIN {printf "%.0f %%", (b > 0 ? 100 * a / b : 0)}')
        echo "| $config | $phase | ${R[$config.$phase.eps]} | ${R[$config.$phase.p50]} | ${R[$config.$phase.p99]} | ${R[$config.$phase.non2xx]} | $ratio |"
    done
done

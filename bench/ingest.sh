#!/usr/bin/env bash
# Ingest benchmark: drives `tenant-gateway serve` on loopback with wrk and prints a table.
#
#   bench/ingest.sh                       build --release, then run the three phases
#   BENCH_DURATION=30s bench/ingest.sh    longer phases (default 15s each)
#   BENCH_NO_BUILD=1 bench/ingest.sh      use the existing target/release binary
#
# Phases, in one server run on a fresh temporary store:
#   null    POST /_bench/null, one binary-mode event per request (decode, validate,
#           normalize, store nothing: the baseline; needs --bench-null-endpoint)
#   single  POST /events, one binary-mode event per request (durable: group commit + fsync)
#   batch   POST /events, application/cloudevents-batch+json arrays of BENCH_BATCH events
#   nginx   the null phase's wrk run against nginx answering 202 to everything: the HTTP
#           ceiling of this machine and load generator (only when nginx is installed)
# Then, unless BENCH_STORED=0, the journal is grown to BENCH_STORED events:
#   fill    batches from BENCH_FILL_CONNECTIONS connections until the journal holds
#           BENCH_STORED events, then BENCH_IDLE seconds with no traffic
#   single-full, batch-full   the single and batch phases again, on the full journal
# A sampler records the server's RSS and the SQLite WAL's size twice a second throughout.
# Every event has a unique id (bench/ingest.lua), tenants cycle over 1000 names.
#
# Environment: BENCH_DURATION (15s), BENCH_CONNECTIONS (64), BENCH_THREADS (2),
# BENCH_BATCH (100), BENCH_TIMEOUT (10s, wrk's per-request timeout), BENCH_NO_BUILD,
# BENCH_STORED (1000000), BENCH_FILL_CONNECTIONS (8), BENCH_IDLE (20, seconds),
# BENCH_KEEP=1 keeps the temp dir (server log, store) for inspection.
#
# Threads: this is a 2-core machine and wrk shares it with the server. Default 2 wrk threads:
# on the null baseline one wrk thread is itself the bottleneck (about 90% of a core; 67-75k
# req/s against 77-89k with two), while on the durable phases wrk needs 0.1-0.2 core and
# 1 and 2 threads measured the same within run-to-run noise (three interleaved A/B runs).
# Both wrk and the server are CPU-bound on the baseline, so it is a floor for the server
# alone. Run on an otherwise idle machine: the report records the load average.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DURATION="${BENCH_DURATION:-15s}"
CONNECTIONS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-2}"
BATCH="${BENCH_BATCH:-100}"
TIMEOUT="${BENCH_TIMEOUT:-10s}"
LUA="$ROOT/bench/ingest.lua"
STORED="${BENCH_STORED:-1000000}"
FILL_CONNECTIONS="${BENCH_FILL_CONNECTIONS:-8}"
IDLE="${BENCH_IDLE:-20}"
NGINX="$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)"
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/tenant-gateway"

die() { echo "ingest.sh: $*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------------------------
if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "ingest.sh: installing wrk (apt-get install -y wrk)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null 2>&1 || {
            apt-get update -qq >/dev/null 2>&1
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
        } || die "could not install wrk with apt-get"
    else
        die "wrk is not installed: run 'apt-get install -y wrk' (Debian package wrk) as root"
    fi
fi
command -v curl >/dev/null 2>&1 || die "curl is required (readiness probe)"
command -v python3 >/dev/null 2>&1 || die "python3 is required (free port lookup)"

if [ "${BENCH_NO_BUILD:-0}" != 1 ]; then
    echo "ingest.sh: cargo build --release" >&2
    (cd "$ROOT" && cargo build --release) >&2 || die "cargo build --release failed"
fi
[ -x "$BIN" ] || die "no binary at $BIN (build first, or unset BENCH_NO_BUILD)"

# --- server ----------------------------------------------------------------------------------
TMP="$(mktemp -d "${TMPDIR:-/tmp}/tg-bench.XXXXXX")"
SERVER_PID=""
SAMPLER_PID=""
NGINX_PID=""
cleanup() {
    local rc=$?
    for pid in "$SAMPLER_PID" "$NGINX_PID"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$SERVER_PID" 2>/dev/null || true
    fi
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "ingest.sh: kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
PORT="$(free_port)"
ADMIN_PORT="$(free_port)"
BASE="http://127.0.0.1:$PORT"

"$BIN" serve --listen "127.0.0.1:$PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
    --store "sqlite://$TMP/gw.db" --log-format json \
    --shutdown-grace 0s --bench-null-endpoint ${BENCH_SERVER_ARGS:-} >"$TMP/server.log" 2>&1 &
SERVER_PID=$!

for _ in $(seq 300); do
    curl -fsS -o /dev/null "$BASE/readyz" 2>/dev/null && break
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$TMP/server.log" >&2; die "server exited during startup"; }
    sleep 0.1
done
curl -fsS -o /dev/null "$BASE/readyz" || { tail -20 "$TMP/server.log" >&2; die "server not ready after 30s"; }

echo "ingest.sh: server pid $SERVER_PID on $BASE; wrk -t$THREADS -c$CONNECTIONS -d$DURATION" >&2
# The numbers are only meaningful on an otherwise idle machine: record the load around the run.
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN {exit !(l > 0.5)}'; then
    echo "ingest.sh: warning: load average $LOAD_BEFORE before the run: other work competes for the cores" >&2
fi

# --- phases ----------------------------------------------------------------------------------
# Twice a second: phase, server RSS (kB), WAL bytes. The phase file names what is running.
set_phase() { echo "$1" >"$TMP/phase.new"; mv "$TMP/phase.new" "$TMP/phase"; }
set_phase start
( while kill -0 "$SERVER_PID" 2>/dev/null; do
      rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status" 2>/dev/null || echo 0)
      wal=$(stat -c %s "$TMP/gw.db-wal" 2>/dev/null || echo 0)
      echo "$(cat "$TMP/phase") ${rss:-0} $wal"
      sleep 0.5
  done >"$TMP/samples" ) &
SAMPLER_PID=$!

declare -A R  # R[phase.key] = value
run_phase() {  # name url connections duration lua-args...
    local name="$1" url="$2" conns="$3" duration="$4"; shift 4
    local out="$TMP/wrk-$name.txt"
    set_phase "$name"
    echo "ingest.sh: phase $name: POST $url -c$conns -d$duration $*" >&2
    wrk -t"$THREADS" -c"$conns" -d"$duration" --timeout "$TIMEOUT" --latency \
        -s "$LUA" "$url" -- "$@" >"$out" 2>&1 &
    local wrk_pid=$!
    if [ -n "${STOP_MARKER:-}" ]; then
        # wrk sleeps out its whole -d even when every thread has stopped (ingest.lua's stop
        # count); SIGINT ends that sleep, and wrk reports as after a full run.
        while kill -0 "$wrk_pid" 2>/dev/null; do
            if [ "$(find "$TMP" -maxdepth 1 -name "${STOP_MARKER##*/}.*" | wc -l)" -ge "$THREADS" ]; then
                kill -INT "$wrk_pid" 2>/dev/null || true
                break
            fi
            sleep 0.2
        done
    fi
    wait "$wrk_pid" || { cat "$out" >&2; die "wrk failed in phase $name"; }
    sed 's/^/    /' "$out" | grep -v '^    BENCH_' >&2
    local line kv
    line="$(grep '^BENCH_RESULT ' "$out")" || { cat "$out" >&2; die "no result line from wrk in phase $name"; }
    for kv in ${line#BENCH_RESULT }; do R["$name.${kv%%=*}"]="${kv#*=}"; done
    if grep -q '^BENCH_FIRST_ERROR ' "$out"; then
        echo "ingest.sh: phase $name: first non-2xx response: $(grep '^BENCH_FIRST_ERROR ' "$out" | cut -d' ' -f2-)" >&2
    fi
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$TMP/server.log" >&2; die "server died during phase $name"; }
}
# The largest RSS (kB) and WAL (bytes) sampled during the named phases.
peak() {  # column(2=rss,3=wal) phase...
    local col="$1"; shift
    awk -v c="$col" -v names="$*" 'BEGIN {n = split(names, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1}
        ($1 in want) && $c + 0 > m {m = $c + 0} END {print m + 0}' "$TMP/samples"
}
mib() { awk -v b="$1" -v u="$2" 'BEGIN {printf "%.0f", b * u / 1048576}'; }
# Seconds of one scrape of the admin /metrics (as Prometheus makes it) and of the first page of
# the tenants list: both read the journal, so their cost shows here as the journal grows.
# Sampled as phase "admin", so what a long read does to the WAL and RSS shows apart.
admin_seconds() {
    local path
    set_phase admin
    for path in /metrics /admin/v1/tenants; do
        curl -fsS -o /dev/null -w '%{time_total}s ' "http://127.0.0.1:$ADMIN_PORT$path" 2>/dev/null || printf 'failed '
    done
}

DURABLE_PHASES=(single batch)
run_phase null "$BASE/_bench/null" "$CONNECTIONS" "$DURATION" single
run_phase single "$BASE/events" "$CONNECTIONS" "$DURATION" single
run_phase batch "$BASE/events" "$CONNECTIONS" "$DURATION" batch "$BATCH"
# Right after the batch phase the dispatcher is still working off its backlog.
SCRAPE_BUSY="$(admin_seconds)"

if [ -n "$NGINX" ]; then
    # nginx answers 202 without reading more than it must: the cost of HTTP alone, from the
    # same wrk script, so the gateway's phases have a ceiling that is not the gateway itself.
    NGINX_PORT="$(free_port)"
    mkdir -p "$TMP/nginx"
    cat >"$TMP/nginx/nginx.conf" <<CONF
daemon off;
worker_processes $(nproc);
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { default_type application/json; return 202 '{"accepted":1}'; }
    }
}
CONF
    "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" >"$TMP/nginx/stdout" 2>&1 &
    NGINX_PID=$!
    for _ in $(seq 100); do
        curl -fsS -o /dev/null -X POST "http://127.0.0.1:$NGINX_PORT/" 2>/dev/null && break
        sleep 0.1
    done
    run_phase nginx "http://127.0.0.1:$NGINX_PORT/" "$CONNECTIONS" "$DURATION" single
    kill "$NGINX_PID" 2>/dev/null || true
    wait "$NGINX_PID" 2>/dev/null || true
    NGINX_PID=""
fi

FILLED=""
if [ "$STORED" -gt 0 ]; then
    HAVE=$(( ${R[single.accepted]} + ${R[batch.accepted]} ))
    if [ "$HAVE" -lt "$STORED" ]; then
        # Each wrk thread stops after its share of requests; the last batch may overshoot.
        PER_THREAD=$(( (STORED - HAVE + BATCH * THREADS - 1) / (BATCH * THREADS) ))
        STOP_MARKER="$TMP/fill-stopped"
        run_phase fill "$BASE/events" "$FILL_CONNECTIONS" 3600s batch "$BATCH" "" "$PER_THREAD" "$STOP_MARKER"
        STOP_MARKER=""
        DURABLE_PHASES+=(fill)
    fi
    set_phase idle
    echo "ingest.sh: idle ${IDLE}s" >&2
    sleep "$IDLE"
    IDLE_RSS_KB="$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")"
    IDLE_WAL="$(stat -c %s "$TMP/gw.db-wal" 2>/dev/null || echo 0)"
    FILLED="$(sqlite3 "file:$TMP/gw.db?mode=ro" 'SELECT count(*) FROM events;' 2>/dev/null || echo '?')"
    SCRAPE_FULL="$(admin_seconds)"
    run_phase single-full "$BASE/events" "$CONNECTIONS" "$DURATION" single
    run_phase batch-full "$BASE/events" "$CONNECTIONS" "$DURATION" batch "$BATCH"
    SCRAPE_FULL_BUSY="$(admin_seconds)"
    DURABLE_PHASES+=(single-full batch-full)
fi
set_phase end

# --- peak memory, shutdown, store check ------------------------------------------------------
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"
HWM_KB="$(awk '/^VmHWM:/ {print $2}' "/proc/$SERVER_PID/status")"
RSS_KB="$(awk '/^VmRSS:/ {print $2}' "/proc/$SERVER_PID/status")"
kill -TERM "$SERVER_PID"
STOP_START=$(date +%s.%N)
for _ in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$SERVER_PID" 2>/dev/null; then
    echo "ingest.sh: server still running 30s after SIGTERM; killing it" >&2
    kill -KILL "$SERVER_PID" 2>/dev/null || true
fi
wait "$SERVER_PID" 2>/dev/null && SERVER_RC=0 || SERVER_RC=$?
STOP_S=$(awk -v a="$STOP_START" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}')
SERVER_PID=""

EXPECTED=0; SLACK=0
for p in "${DURABLE_PHASES[@]}"; do
    EXPECTED=$(( EXPECTED + ${R[$p.accepted]} ))
    # wrk stops with requests in flight (one per connection); the server still commits them,
    # so rows may exceed the acknowledged count by that much, never fall below it.
    case "$p" in fill) SLACK=$(( SLACK + FILL_CONNECTIONS * BATCH )) ;; batch*) SLACK=$(( SLACK + CONNECTIONS * BATCH )) ;; *) SLACK=$(( SLACK + CONNECTIONS )) ;; esac
done
DB_BYTES="$(stat -c %s "$TMP/gw.db")"
WAL_END="$(stat -c %s "$TMP/gw.db-wal" 2>/dev/null || echo 0)"
if command -v sqlite3 >/dev/null 2>&1; then
    ROWS="$(sqlite3 "$TMP/gw.db" 'SELECT count(*) FROM events;')"
    if [ "$ROWS" -ge "$EXPECTED" ] && [ "$ROWS" -le $(( EXPECTED + SLACK )) ]; then
        VERDICT="ok"
    elif [ "$ROWS" -lt "$EXPECTED" ]; then
        VERDICT="MISMATCH: fewer rows than acknowledged events"
    else
        VERDICT="MISMATCH: more rows than acknowledged + in-flight"
    fi
    STORE_CHECK="$ROWS rows in the journal, $EXPECTED events acknowledged by 202 responses, up to $SLACK more in flight when wrk stopped: $VERDICT"
    DISK="database $(mib "$DB_BYTES" 1) MiB for $ROWS events: $(mib "$DB_BYTES" "$(awk -v r="$ROWS" 'BEGIN {print 1e6 / r}')") MiB per million events; WAL after shutdown $WAL_END bytes"
else
    ROWS="?"
    STORE_CHECK="sqlite3 not installed: row count not checked ($EXPECTED accepted per responses)"
    DISK="database $(mib "$DB_BYTES" 1) MiB; WAL after shutdown $WAL_END bytes"
fi

# --- report ----------------------------------------------------------------------------------
events_per_req() { case "$1" in batch* | fill) echo "$BATCH" ;; *) echo 1 ;; esac; }
row() {  # phase label
    local p="$1" label="$2" epr eps errs
    epr=$(events_per_req "$p")
    eps=$(awk -v ok="${R[$p.ok]}" -v s="${R[$p.seconds]}" -v n="$epr" 'BEGIN {printf "%.0f", ok * n / s}')
    errs=$(( ${R[$p.sock_connect]} + ${R[$p.sock_read]} + ${R[$p.sock_write]} + ${R[$p.sock_timeout]} ))
    printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$label" "${R[$p.requests]}" \
        "${R[$p.rps]}" "$eps" "${R[$p.p50_ms]}" "${R[$p.p99_ms]}" "${R[$p.max_ms]}" \
        "${R[$p.non2xx]}" "$errs (c${R[$p.sock_connect]}/r${R[$p.sock_read]}/w${R[$p.sock_write]}/t${R[$p.sock_timeout]})"
}

echo
echo "## tenant-gateway ingest benchmark"
echo
echo "$(nproc) cores, wrk -t$THREADS -c$CONNECTIONS -d$DURATION --timeout $TIMEOUT, binary-mode single events, batches of $BATCH; $(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo 'no commit')"
echo
echo "| phase | requests | requests/s | events/s | p50 ms | p99 ms | max ms | non-2xx | socket errors (connect/read/write/timeout) |"
echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
row null "baseline POST /_bench/null (single)"
[ -n "${R[nginx.ok]:-}" ] && row nginx "ceiling: nginx answering 202 (single)"
row single "POST /events single (durable)"
row batch "POST /events batch of $BATCH (durable)"
if [ -n "${R[fill.ok]:-}" ]; then
    row fill "fill to $STORED events: batches of $BATCH, -c$FILL_CONNECTIONS"
fi
if [ -n "${R[single-full.ok]:-}" ]; then
    row single-full "POST /events single, $FILLED stored"
    row batch-full "POST /events batch of $BATCH, $FILLED stored"
fi
echo
echo "- 200 (all-duplicate) responses: null ${R[null.s200]}, single ${R[single.s200]}, batch ${R[batch.s200]}; duplicates reported: ${R[single.duplicates]} + ${R[batch.duplicates]}"
echo "- server peak RSS (VmHWM): $(( HWM_KB / 1024 )) MiB ($HWM_KB kB); RSS at end: $(( RSS_KB / 1024 )) MiB"
echo "- sampled RSS peak / WAL peak (MiB): empty journal $(mib "$(peak 2 null single batch nginx)" 1024) / $(mib "$(peak 3 null single batch nginx)" 1)"\
"${R[fill.ok]:+, fill $(mib "$(peak 2 fill)" 1024) / $(mib "$(peak 3 fill)" 1)}"\
"${FILLED:+, full journal $(mib "$(peak 2 single-full batch-full)" 1024) / $(mib "$(peak 3 single-full batch-full)" 1)}"
if [ "$(peak 2 admin)" -gt 0 ]; then
    echo "- sampled RSS peak / WAL peak (MiB) during the admin reads: $(mib "$(peak 2 admin)" 1024) / $(mib "$(peak 3 admin)" 1)"
else
    echo "- the admin reads ended between two samples (0.5 s apart): no RSS or WAL sample of their own"
fi
if [ -n "$FILLED" ]; then
    echo "- after ${IDLE}s idle at $FILLED events: RSS $(( IDLE_RSS_KB / 1024 )) MiB, WAL $(mib "$IDLE_WAL" 1) MiB ($IDLE_WAL bytes)"
fi
echo "- admin reads (/metrics scrape, first page of /admin/v1/tenants): ${SCRAPE_BUSY}after the batch phase${FILLED:+; ${SCRAPE_FULL}idle at $FILLED events; ${SCRAPE_FULL_BUSY}after the batch phase there}"
echo "- disk: $DISK"
echo "- store: $STORE_CHECK"
echo "- shutdown: SIGTERM to exit ${STOP_S}s, exit status $SERVER_RC"
echo "- load average (1/5/15 min) before: $LOAD_BEFORE, after: $LOAD_AFTER (the run itself adds about 2)"
# Last line: the ratios the targets are stated in (docs/benchmarks.md), from this run's rows.
eps_of() {
    if [ -z "${R[$1.ok]:-}" ]; then echo 0; return; fi
    awk -v ok="${R[$1.ok]}" -v s="${R[$1.seconds]}" -v n="$(events_per_req "$1")" \
        'BEGIN {printf "%.0f", ok * n / s}'
}
NON2XX=0
for p in "${DURABLE_PHASES[@]}"; do NON2XX=$(( NON2XX + ${R[$p.non2xx]} )); done
awk -v n="$(eps_of null)" -v x="$(eps_of nginx)" -v s="$(eps_of single)" -v b="$(eps_of batch)" \
    -v sf="$(eps_of single-full)" -v bf="$(eps_of batch-full)" -v stored="${FILLED:-0}" \
    -v rss="$(( HWM_KB / 1024 ))" -v wal="$(mib "$(peak 3 "${DURABLE_PHASES[@]}")" 1)" -v nx="$NON2XX" 'BEGIN {
    printf "ratios: single/null %.1f %% (target >= 40 %%)", (n > 0 ? 100 * s / n : 0)
    if (x > 0) printf ", single/nginx %.1f %%", 100 * s / x
    printf ", batch/single %.1fx (target >= 4x), batch %d events/s (target >= 200000)", (s > 0 ? b / s : 0), b
    if (sf > 0) printf ", at %d stored single %.0f %% batch %.0f %% of empty (target >= 80 %%)", stored, (s > 0 ? 100 * sf / s : 0), (b > 0 ? 100 * bf / b : 0)
    printf ", peak RSS %d MiB (target <= 100), peak WAL %d MiB, non-2xx %d (target 0)\n", rss, wal, nx
}'

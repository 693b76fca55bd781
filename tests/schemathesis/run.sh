#!/usr/bin/env bash
# Fuzzes the admin API against the OpenAPI document it serves (schemathesis), in both auth
# modes: a loopback listener without admin tokens (calls need none) and one with an admin token
# (every /admin/v1 call needs it). Exits non-zero on any failure; always stops the gateway.
#
#   tests/schemathesis/run.sh                      # builds the debug binary
#   TENANT_GATEWAY_BIN=path/to/tenant-gateway tests/schemathesis/run.sh
#   SCHEMATHESIS_MAX_EXAMPLES=200 SCHEMATHESIS_SEED=7 tests/schemathesis/run.sh
#
# Needs: python3 -m pip install -r tests/schemathesis/requirements.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT="$(pwd)"

# Bounded and reproducible: the same seed generates the same requests.
MAX_EXAMPLES="${SCHEMATHESIS_MAX_EXAMPLES:-25}"
SEED="${SCHEMATHESIS_SEED:-20261202}"

if [ -z "${TENANT_GATEWAY_BIN:-}" ]; then
    cargo build --quiet --bin tenant-gateway
    TENANT_GATEWAY_BIN="${CARGO_TARGET_DIR:-target}/debug/tenant-gateway"
fi

WORK="$(mktemp -d)"
GATEWAY_PID=""
stop_gateway() {
    if [ -n "$GATEWAY_PID" ] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
        kill -TERM "$GATEWAY_PID" 2>/dev/null || true
        wait "$GATEWAY_PID" 2>/dev/null || true
    fi
    GATEWAY_PID=""
}
cleanup() {
    stop_gateway
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# Two free loopback ports (ingest, admin), chosen by the kernel.
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts the gateway on fresh ports with a fresh SQLite journal; extra flags in "$@".
start_gateway() {
    local name="$1"
    shift
    INGEST_PORT="$(free_port)"
    ADMIN_PORT="$(free_port)"
    "$TENANT_GATEWAY_BIN" serve \
        --listen "127.0.0.1:$INGEST_PORT" \
        --admin-listen "127.0.0.1:$ADMIN_PORT" \
        --store "sqlite://$WORK/$name/journal.db" \
        --shutdown-grace 0s \
        "$@" >"$WORK/$name.log" 2>&1 &
    GATEWAY_PID=$!
    # Up to 60 s for the first start of a cold binary on a busy machine.
    for _ in $(seq 1 600); do
        if curl -fsS "http://127.0.0.1:$ADMIN_PORT/healthz" >/dev/null 2>&1; then
            return 0
        fi
        if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
            echo "the gateway exited during startup:" >&2
            cat "$WORK/$name.log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "the gateway did not answer /healthz within 60 s" >&2
    return 1
}

# A few events, so the event, tenant and replay routes also answer with data.
seed_events() {
    for n in 1 2 3; do
        curl -fsS -o /dev/null "http://127.0.0.1:$INGEST_PORT/events" \
            -H 'ce-specversion: 1.0' -H "ce-id: fuzz-$n" -H 'ce-source: //fuzz.example.com' \
            -H 'ce-type: com.acme.tenant.lifecycle.upsert' -H "ce-tenant: tenant-$n" \
            -H 'content-type: application/json' -d '{"plan":"gold"}' \
            || echo "seeding event $n failed (the fuzzing runs anyway)" >&2
    done
}

# Through the interpreter that pip installed it into, not a `schemathesis` on PATH: a version
# manager's shim directory (pyenv) only gains the console script after a rehash, so a fresh
# machine can have the package and still no command.
schemathesis() {
    python3 -c 'import sys; from schemathesis.cli import schemathesis as cli; sys.argv[0] = "schemathesis"; sys.exit(cli())' "$@"
}

run_schemathesis() {
    local name="$1"
    shift
    echo "--- schemathesis: $name (at most $MAX_EXAMPLES examples per operation, seed $SEED)"
    # From the temporary directory: schemathesis keeps a `.schemathesis/` cache in its working
    # directory, which does not belong in the checkout.
    (cd "$WORK" && schemathesis --config-file "$ROOT/tests/schemathesis/schemathesis.toml" \
        run "http://127.0.0.1:$ADMIN_PORT/admin/openapi.json" \
        --url "http://127.0.0.1:$ADMIN_PORT" \
        --checks all \
        --max-examples "$MAX_EXAMPLES" \
        --seed "$SEED" \
        --generation-database none \
        --workers 1 \
        --no-color \
        "$@")
}

status=0

mkdir -p "$WORK/open"
start_gateway open
seed_events
run_schemathesis "loopback, no admin tokens" || status=1
stop_gateway

mkdir -p "$WORK/token"
ADMIN_TOKEN="$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')"
printf '%s' "$ADMIN_TOKEN" >"$WORK/fuzzer"
start_gateway token --admin-token-file "$WORK/fuzzer"
seed_events
run_schemathesis "admin token configured" -H "Authorization: Bearer $ADMIN_TOKEN" || status=1
stop_gateway

if [ "$status" != 0 ]; then
    echo "schemathesis found failures (gateway logs were in the temporary directory)" >&2
fi
exit "$status"

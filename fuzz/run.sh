#!/usr/bin/env bash
# Runs one fuzz target for a bounded time: fuzz/run.sh TARGET [SECONDS]  (default 60).
# Seeds the corpus from the CloudEvents conformance cases and the example rules on every run,
# keeps what libFuzzer found in fuzz/corpus/TARGET (not committed), and fails on a crash, whose
# input libFuzzer writes to fuzz/artifacts/TARGET/.
#
# cargo-fuzz needs a nightly compiler for its sanitizer flags; on a stable toolchain it runs with
# `--sanitizer none` and RUSTC_BOOTSTRAP=1 (the coverage instrumentation itself is stable). Run
# longer by passing more seconds, or `cargo fuzz run TARGET` for as long as you like.
set -euo pipefail
cd "$(dirname "$0")"
TARGET="${1:?usage: fuzz/run.sh http_binding|rules|signature [SECONDS]}"
SECONDS_TO_RUN="${2:-60}"
CORPUS="corpus/$TARGET"
mkdir -p "$CORPUS"
python3 seed.py "$TARGET" "$CORPUS"
export RUSTC_BOOTSTRAP=1
cargo fuzz run --sanitizer none "$TARGET" "$CORPUS" -- \
    -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10 -rss_limit_mb=2048

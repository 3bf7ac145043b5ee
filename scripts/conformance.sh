#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (../shared/tools/autobahn) against the
# release halley's /echo endpoint and fails on any FAILED case.
set -euo pipefail
cd "$(dirname "$0")/.."

AUTOBAHN="${AUTOBAHN:-../shared/tools/autobahn/run.sh}"
BIN="${HALLEY_BIN:-target/release/halley}"
[ -x "$BIN" ] || cargo build --release --bin halley
log=$(mktemp)
# 9.* sends messages of up to 16 MiB; the cap must let them through.
"$BIN" serve --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --echo --stats false \
  --max-message-size 20000000 --ping-interval 0 --idle-timeout 0 >"$log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/^halley listening: clients=\([^ ]*\) .*/\1/p' "$log")
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$log"; echo "halley did not start" >&2; exit 1; }
CONFORMANCE_EXCLUDE="${CONFORMANCE_EXCLUDE:-12.*,13.*}" "$AUTOBAHN" "ws://$addr/echo"

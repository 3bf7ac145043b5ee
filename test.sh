#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust:
#   1. style gates (rustfmt, clippy)
#   2. cargo test: unit tests and the integration tests against the real binary
#   3. WebSocket conformance: Autobahn|Testsuite against the release binary (--echo)
#   4. tsung smoke scenario from a client network namespace
# It first installs what a fresh machine lacks (tsung/install.sh: apt-get).
# Every step stops the run on failure. Set SKIP_TSUNG=1 or SKIP_CONFORMANCE=1 to
# leave a step out on a machine that cannot run it (CI never does).
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n=== %s ===\n' "$*"; }

if [ "${SKIP_TSUNG:-0}" != 1 ]; then
  step "set-up: tsung, iproute2, python3 (apt-get, only what is missing)"
  tsung/install.sh
fi

step "style: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test

step "release build"
cargo build --release --bins

if [ "${SKIP_CONFORMANCE:-0}" != 1 ]; then
  step "conformance: Autobahn|Testsuite cases 1-7, 9, 10"
  scripts/conformance.sh
fi

if [ "${SKIP_TSUNG:-0}" != 1 ]; then
  step "tsung smoke (client and server in their own network namespaces)"
  tsung/run.sh tsung/smoke.xml
fi

step "all tests passed"

#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine with Rust:
#   1. style gates (rustfmt, clippy)
#   2. cargo test: unit tests and the integration tests against the real binary
#   3. WebSocket conformance: Autobahn|Testsuite against the release binary (--echo),
#      installed by scripts/autobahn-install.sh on the machine's CPython 2.7
#   4. the browser test: the demo page and halley.js in headless Chromium
#   5. tsung smoke and long-polling scenarios from a client network namespace
# It first installs what a fresh machine lacks (tsung/install.sh: apt-get;
# scripts/clients-install.sh: Node.js and tests/clients' npm packages).
# Every step stops the run on failure. Set SKIP_TSUNG=1, SKIP_CONFORMANCE=1 or
# SKIP_BROWSER=1 to leave a step out on a machine that cannot run it (CI never does).
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n=== %s ===\n' "$*"; }

if [ "${SKIP_TSUNG:-0}" != 1 ]; then
  step "set-up: tsung, iproute2, python3 (apt-get, only what is missing)"
  tsung/install.sh
fi

step "set-up: Node.js and the Node Redis clients for tests/resp.rs (apt-get, npm ci)"
scripts/clients-install.sh

step "style: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings

step "cargo test"
cargo test

step "release build"
cargo build --release --bins

if [ "${SKIP_CONFORMANCE:-0}" != 1 ]; then
  step "conformance: Autobahn|Testsuite cases 1-7, 9, 10, 12, 13 (permessage-deflate)"
  scripts/conformance.sh
fi

if [ "${SKIP_BROWSER:-0}" != 1 ]; then
  step "browser test: halley.js and /demo in headless Chromium (WebSocket, resume, SSE, long-polling, gzip, a token refreshed)"
  HALLEY_BIN=target/release/halley scripts/browser-test.sh
fi

if [ "${SKIP_TSUNG:-0}" != 1 ]; then
  step "tsung smoke (client and server in their own network namespaces)"
  tsung/run.sh tsung/smoke.xml
  step "tsung long-polling: 200 pollers, since-based, no loss (client and server namespaces)"
  tsung/run.sh tsung/longpoll.xml --users 200
fi

step "all tests passed"

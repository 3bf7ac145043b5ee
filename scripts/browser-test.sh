#!/usr/bin/env bash
# Browser test: www/halley.js and the /demo page in Debian's headless Chromium,
# driven by playwright-core (tests/browser), against the real release binary.
#   scripts/browser-test.sh
# It installs only what is missing: Debian's chromium, chromium-driver, nodejs and npm
# (apt-get, as root), then tests/browser/node_modules (npm ci). No browser download.
# Env: HALLEY_BIN=path to use a built binary as is (default: cargo build --release
# --bin halley, then target/release/halley); CHROMIUM=path (default /usr/bin/chromium).
# Exit: 0 all checks passed, 1 a check failed, 2 a tool is missing and cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

chromium_bin=${CHROMIUM:-/usr/bin/chromium}

missing=()
[ -x "$chromium_bin" ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "browser-test: installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || true
    apt-get install -y -qq "${missing[@]}" || true
  fi
fi
if [ ! -x "$chromium_bin" ]; then
  echo "browser-test: Chromium is missing: install it with 'apt-get install -y chromium chromium-driver'" >&2
  exit 2
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "browser-test: Node.js is missing: install it with 'apt-get install -y nodejs npm'" >&2
  exit 2
fi

if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --no-audit --no-fund)
fi

if [ -z "${HALLEY_BIN:-}" ]; then
  cargo build --release --bin halley
  HALLEY_BIN=$PWD/target/release/halley
fi
export HALLEY_BIN CHROMIUM=$chromium_bin

exec node tests/browser/browser.test.mjs

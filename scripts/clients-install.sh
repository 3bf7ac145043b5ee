#!/usr/bin/env bash
# Installs what tests/resp.rs runs the Node Redis clients with: Debian's nodejs and
# npm when missing (apt-get, as root), then tests/clients/node_modules (npm ci, from
# the committed package-lock.json: node-redis and ioredis at fixed versions).
#   scripts/clients-install.sh
# Exit: 0 ready, 2 Node.js or the packages could not be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "clients-install: installing ${missing[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  timeout 900 apt-get -o DPkg::Lock::Timeout=300 update -qq || true
  timeout 1200 apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" || true
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "clients-install: Node.js is missing: install it with 'apt-get install -y nodejs npm'" >&2
  exit 2
fi

if [ ! -d tests/clients/node_modules/redis ] || [ ! -d tests/clients/node_modules/ioredis ]; then
  # One retry: a registry hiccup should not fail the whole suite.
  (cd tests/clients && { timeout 600 npm ci --no-audit --no-fund ||
    { sleep 10; timeout 600 npm ci --no-audit --no-fund; }; }) ||
    { echo "clients-install: npm ci failed in tests/clients" >&2; exit 2; }
fi
echo "clients-install: node $(node --version), tests/clients ready"

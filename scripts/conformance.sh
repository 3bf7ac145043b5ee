#!/usr/bin/env bash
# WebSocket conformance: runs Autobahn|Testsuite (wstest -m fuzzingclient, cases
# 1-7, 9, 10, and 12-13 for permessage-deflate) against the release halley's /echo
# on loopback, with compression on, and fails on any FAILED or UNIMPLEMENTED case. Self-contained: it installs the suite itself (scripts/autobahn-install.sh,
# cached in $HALLEY_AUTOBAHN_DIR, default /tmp/halley-autobahn) on a CPython 2.7
# ($PYTHON2, python2.7 on PATH, or pyenv), else uses Docker image
# crossbario/autobahn-testsuite. Last line:
#   conformance: N passed, M failed, K non-strict/informational, U unimplemented
# Exit: 0 no FAILED or UNIMPLEMENTED case, 1 some, 2 set-up error or timeout.
# Knobs: CONFORMANCE_CASES, CONFORMANCE_EXCLUDE (default none),
# CONFORMANCE_TIMEOUT (wstest bound, default 3600 s: 12.* and 13.* alone take
# several minutes), HALLEY_BIN.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${HALLEY_AUTOBAHN_DIR:-/tmp/halley-autobahn}"
CASES="${CONFORMANCE_CASES:-1.*,2.*,3.*,4.*,5.*,6.*,7.*,9.*,10.*,12.*,13.*}"
EXCLUDE="${CONFORMANCE_EXCLUDE-}"
TIMEOUT_S="${CONFORMANCE_TIMEOUT:-3600}"
IMAGE=crossbario/autobahn-testsuite
BIN="${HALLEY_BIN:-target/release/halley}"
die() { echo "conformance: $*" >&2; exit 2; }
mkdir -p "$CACHE" && CACHE=$(cd "$CACHE" && pwd)
command -v python3 >/dev/null || die "needs python3 (apt-get install python3 python3-venv)"

is_py27() { [ -n "$1" ] && "$1" -c 'import sys, ssl, zlib; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; }
find_python2() {
  if [ -n "${PYTHON2:-}" ]; then is_py27 "$PYTHON2" && echo "$PYTHON2"; return; fi
  local c
  for c in "$(command -v python2.7 || true)" "${PYENV_ROOT:-$HOME/.pyenv}"/versions/2.7*/bin/python2.7; do
    is_py27 "$c" && { echo "$c"; return 0; }
  done
  return 1
}

# --- the test runner: a cached wstest on CPython 2.7, else Docker ------------
if py2=$(find_python2); then
  WSTEST=$(scripts/autobahn-install.sh "$CACHE" "$py2") || die "installing Autobahn|Testsuite into $CACHE failed (see above)"
elif [ -z "${PYTHON2:-}" ] && timeout 20 docker info >/dev/null 2>&1; then
  WSTEST=docker
  timeout 600 docker pull -q "$IMAGE" >/dev/null || die "docker pull $IMAGE failed"
else
  die "needs CPython 2.7 (pyenv install 2.7.18, or PYTHON2=/path/to/python2.7) or a working Docker${PYTHON2:+; PYTHON2=$PYTHON2 is not a CPython 2.7}"
fi

# --- halley --echo on 127.0.0.1:0 ---------------------------------------------
[ -x "$BIN" ] || cargo build --release --bin halley
log=$(mktemp)
# 9.* sends messages of up to 16 MiB; the cap must let them through. Every other
# limit (queued bytes, command rate, ping and idle timeouts...) stays at its default.
# 12.* and 13.* need permessage-deflate, which --compression on offers.
"$BIN" serve --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --echo --stats false \
  --compression on --max-message-size 20000000 >"$log" 2>&1 &
pid=$!
container="halley-autobahn-$$"
cleanup() {
  kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$log"
  [ "$WSTEST" != docker ] || docker rm -f "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT
addr=""
for _ in $(seq 1 100); do
  addr=$(sed -n 's/^halley listening: clients=\([^ ]*\) .*/\1/p' "$log")
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$log" >&2; die "halley did not start"; }

# --- wstest -m fuzzingclient ----------------------------------------------------
reports="$CACHE/reports/$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$reports"
outdir="$reports"
[ "$WSTEST" != docker ] || outdir=/reports
jlist() { printf '%s' "$1" | sed 's/[^,][^,]*/"&"/g; s/,/, /g'; }
cat >"$reports/spec.json" <<EOF
{"outdir": "$outdir", "servers": [{"agent": "halley", "url": "ws://$addr/echo"}],
 "cases": [$(jlist "$CASES")], "exclude-cases": [$(jlist "$EXCLUDE")], "exclude-agent-cases": {}}
EOF
echo "conformance: wstest against ws://$addr/echo (cases $CASES; exclude ${EXCLUDE:-none}; bound ${TIMEOUT_S} s)" >&2
if [ "$WSTEST" = docker ]; then
  run=(docker run --rm --name "$container" --network host -v "$reports:/reports" -w /reports
       "$IMAGE" wstest -m fuzzingclient -s /reports/spec.json)
else
  run=("$WSTEST" -m fuzzingclient -s spec.json)
fi
rc=0
(cd "$reports" && timeout --kill-after=10 "$TIMEOUT_S" "${run[@]}") >"$reports/wstest.log" 2>&1 || rc=$?
if [ $rc -ne 0 ] || [ ! -f "$reports/index.json" ]; then
  tail -20 "$reports/wstest.log" >&2
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || die "wstest exceeded ${TIMEOUT_S} s (log: $reports/wstest.log)"
  die "wstest exited $rc without a report (log: $reports/wstest.log)"
fi

# --- summary: list every case that is not OK, then the counts ------------------
python3 - "$reports/index.json" <<'EOF'
import json, os, sys
index = json.load(open(sys.argv[1]))
def reason(c):  # the per-case JSON next to index.json says why a case failed
    try:
        d = json.load(open(os.path.join(os.path.dirname(sys.argv[1]), c["reportfile"][:-5] + ".json")))
        return " :: %s | %s" % (d.get("result"), d.get("resultClose"))
    except Exception:
        return ""
count = {"passed": 0, "failed": 0, "nonstrict": 0, "unimplemented": 0}
unimpl = []
for cases in index.values():
    for cid in sorted(cases, key=lambda c: [int(p) for p in c.split(".")]):
        c = cases[cid]
        b = c["behavior"]
        kind = {"OK": "passed", "NON-STRICT": "nonstrict", "INFORMATIONAL": "nonstrict",
                "UNIMPLEMENTED": "unimplemented"}.get(b, "failed")
        count[kind] += 1
        if kind == "unimplemented":
            unimpl.append(cid)
        elif kind != "passed":
            print("  %-13s %-8s close=%s%s" % (b, cid, c.get("behaviorClose"),
                                               reason(c) if kind == "failed" else ""))
        elif c.get("behaviorClose") not in ("OK", "INFORMATIONAL", None):
            print("  close-note    %-8s close=%s" % (cid, c["behaviorClose"]))
if unimpl:
    print("  UNIMPLEMENTED %d cases (%s .. %s)" % (len(unimpl), unimpl[0], unimpl[-1]))
print("report: %s" % sys.argv[1].replace("index.json", "index.html"))
print("conformance: %(passed)d passed, %(failed)d failed, "
      "%(nonstrict)d non-strict/informational, %(unimplemented)d unimplemented" % count)
sys.exit(1 if count["failed"] or count["unimplemented"] else 0)
EOF

#!/usr/bin/env bash
# Runs the halley-bench scenarios behind docs/benchmarks.md against a fresh release
# server on 127.0.0.1 and prints one line per scenario: the verdict's key figures,
# and the CPU seconds the server and the client each used (which side bounds it).
#
#   scripts/bench-suite.sh            # every scenario
#   scripts/bench-suite.sh hold       # scenarios whose name contains "hold"
set -euo pipefail
cd "$(dirname "$0")/.."
filter="${1:-}"
cargo build --release --bins >/dev/null 2>&1 || cargo build --release --bins

clock_ticks=$(getconf CLK_TCK)
cpu_seconds() { # utime + stime of a process (children included), in seconds
  awk -v hz="$clock_ticks" '{ printf "%.2f", ($14 + $15 + $16 + $17) / hz }' "/proc/$1/stat"
}

log=$(mktemp)
target/release/halley serve --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 \
  --ping-interval 0 --idle-timeout 0 --stats false >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -f "$log"' EXIT
for _ in $(seq 1 100); do grep -q "^halley listening" "$log" && break; sleep 0.1; done
clients=$(sed -n 's/^halley listening: clients=\([^ ]*\) .*/\1/p' "$log")
api=$(sed -n 's/.* api=\([^ ]*\) .*/\1/p' "$log")

# Polls /api/stats until killed; prints the server's RSS per connection at the
# highest online count it saw (total RSS / online, fixed costs included).
sample_peak() {
  python3 - "$api" <<'PY'
import json, sys, time, urllib.request
peak = (0, 0)
for _ in range(600):  # at most 60 s
    try:
        s = json.load(urllib.request.urlopen(f"http://{sys.argv[1]}/api/stats", timeout=2))
        if s["online"] > peak[0]:
            peak = (s["online"], s["rss_bytes"])
        elif peak[0] and s["online"] < peak[0] // 2:
            break
    except OSError:
        pass
    time.sleep(0.1)
online, rss = peak
print(f"peak online {online}, rss {rss / 1048576:.1f} MiB = {rss / max(online, 1):.0f} B/connection")
PY
}

run() { # name, then halley-bench arguments
  local name=$1; shift
  case "$name" in *"$filter"*) ;; *) return 0 ;; esac
  local before after json client_cpu sampler=""
  # Started a second late so that its own start-up does not compete with the ramp.
  case "$name" in hold*) (sleep 1; sample_peak) >/tmp/halley-peak.$$ & sampler=$! ;; esac
  before=$(cpu_seconds "$server")
  json=$( { /usr/bin/time -f "%U %S" -o /tmp/halley-bench-time.$$ \
    target/release/halley-bench "$@" --url "ws://$clients" --api "http://$api" --json --quiet || true; } | tail -n 1)
  after=$(cpu_seconds "$server")
  client_cpu=$(awk '{ printf "%.2f", $1 + $2 }' /tmp/halley-bench-time.$$)
  rm -f /tmp/halley-bench-time.$$
  python3 - "$name" "$json" "$before" "$after" "$client_cpu" <<'PY'
import json, sys
name, raw, before, after, client = sys.argv[1:]
v = json.loads(raw)
lat = {k: (x or 0) for k, x in v.get("latency_ms", {}).items()}
cycles = v.get("cycles", 0) / max(v.get("duration_s", 0) or 1e-9, 1e-9)
print(f"{name:<18} ok={v['ok']} connected={v['connected']} failed={v['failed']['total']} "
      f"conn/s={v['connections_per_s']:.0f} cycles/s={cycles:.0f} deliveries/s={v['deliveries_per_s']:.0f} "
      f"lost={v['lost']} dup={v['duplicated']} ooo={v['out_of_order']} "
      f"p50={lat.get('p50', 0):.1f} p99={lat.get('p99', 0):.1f} max={lat.get('max', 0):.1f} ms "
      f"cpu server={float(after) - float(before):.2f}s client={client}s")
PY
  if [ -n "$sampler" ]; then wait "$sampler"; echo "  $(cat /tmp/halley-peak.$$)"; rm -f /tmp/halley-peak.$$; fi
}

run hold-10k            hold --connections 10000 --duration 2
run hold-10k-procs2     hold --connections 10000 --duration 2 --procs 2
run fanout-100mps-200   fanout --connections 10000 --channels 1 --messages 200 --publish-rate 100
run fanout-max-200      fanout --connections 10000 --channels 1 --messages 200 --publish-rate 0
run fanout-max-1000     fanout --connections 10000 --channels 1 --messages 1000 --publish-rate 0
run fanout-5mps-50      fanout --connections 10000 --channels 1 --messages 50 --publish-rate 5
run churn-10s           churn --connections 100 --duration 10

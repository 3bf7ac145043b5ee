#!/usr/bin/env bash
# What permessage-deflate costs (docs/benchmarks.md, "Compression"): N WebSocket
# subscribers of one channel, all offering permessage-deflate (server --compression
# on) or none (--compression off), against a fresh release server each. Per case:
#   - RSS per idle connection: VmRSS with N connections held (2 s after the last
#     one opened) minus VmRSS before, over N (halley-bench hold);
#   - fan-out of MESSAGES messages of about SIZE bytes of JSON at RATE/s: the
#     server's CPU (utime+stime) over the deliveries; the hold run's CPU (connect,
#     subscribe, close of the same N) is subtracted to leave the publishing part
#     ("net"). Bytes on the wire per delivery: what one more subscriber (a probe,
#     offering the extension like the others) reads per push, frame header included
#     (the kernel here does not account socket writes in /proc/PID/io).
# With NODE=1 it then runs the same against Node's `ws` with and without
# perMessageDeflate (scripts/node-ws-fanout.mjs; `ws` is npm-installed into
# $NODE_WS_DIR, default /tmp/halley-node-ws), a server that compresses per connection.
# It takes the measurement lock (/tmp/halley-measure.lock) for the whole run.
#   scripts/compression-bench.sh            # N=10000 MESSAGES=300 RATE=100 SIZE=1024
#   NODE=1 MESSAGES=20 RATE=2 scripts/compression-bench.sh   # with Node, at a rate it keeps up with
# SKIP_HALLEY=1 and SKIP_NODE_OFF=1 leave those cases out.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${N:-10000}"
MESSAGES="${MESSAGES:-300}"
RATE="${RATE:-100}"
SIZE="${SIZE:-1024}"
cargo build --release --bins >/dev/null 2>&1 || cargo build --release --bins
exec 9>/tmp/halley-measure.lock
flock 9

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# One more subscriber of bench-0: prints "BYTES PUSHES" read (frame headers included).
probe() {
  python3 - "$1" "$2" "$MESSAGES" <<'PY'
import socket, sys, time
host, port = sys.argv[1].rsplit(":", 1)
offer = ("Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
         "client_max_window_bits\r\n") if sys.argv[2] == "on" else ""
want = int(sys.argv[3])
s = socket.create_connection((host, int(port)), timeout=60)
s.sendall(("GET /ws?subscribe=bench-0 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           "Sec-WebSocket-Version: 13\r\n" + offer + "\r\n").encode())
buf = b""
while b"\r\n\r\n" not in buf:
    buf += s.recv(4096)
buf = buf.split(b"\r\n\r\n", 1)[1]
total = pushes = 0
deadline = time.time() + 120

def frame_end(b):
    """Header plus payload length of the first frame in b, or None if incomplete."""
    if len(b) < 2:
        return None
    n, head = b[1] & 0x7F, 2
    if n == 126:
        n, head = (int.from_bytes(b[2:4], "big"), 4) if len(b) >= 4 else (None, 4)
    elif n == 127:
        n, head = (int.from_bytes(b[2:10], "big"), 10) if len(b) >= 10 else (None, 10)
    if n is None or len(b) < head + n:
        return None
    return head + n

while pushes < want and time.time() < deadline:
    end = frame_end(buf)
    if end is None:
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
        continue
    if (buf[0] & 0x0F) in (1, 2):
        total += end
        pushes += 1
    buf = buf[end:]
print(total, pushes)
PY
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
stat_of() { python3 -c 'import json,sys,urllib.request; print(json.load(urllib.request.urlopen(sys.argv[1])).get(sys.argv[2], "-"))' "http://$api/api/stats" "$1"; }

server=""
log=$(mktemp)
trap '[ -z "$server" ] || { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; }; rm -f "$log"' EXIT

node_dir="${NODE_WS_DIR:-/tmp/halley-node-ws}"
run_case() { # $1 = halley|node, $2 = on|off
  local kind=$1 mode=$2 offer=()
  [ "$mode" = on ] && offer=(--deflate)
  if [ "$kind" = halley ]; then
    target/release/halley serve --listen 127.0.0.1:0 --api-listen 127.0.0.1:0 --stats false \
      --ping-interval 0 --idle-timeout 0 --compression "$mode" >"$log" 2>&1 &
  else
    cp scripts/node-ws-fanout.mjs "$node_dir/"
    node "$node_dir/node-ws-fanout.mjs" 29311 29312 "$mode" >"$log" 2>&1 &
  fi
  server=$!
  for _ in $(seq 1 100); do grep -q "listening: clients=" "$log" && break; sleep 0.1; done
  local clients api
  clients=$(sed -n 's/^.* listening: clients=\([^ ]*\) .*/\1/p' "$log")
  api=$(sed -n 's/.* api=\([^ ]*\).*/\1/p' "$log" | cut -d' ' -f1)
  local bench=(target/release/halley-bench --url "ws://$clients" --api "http://$api"
               --connections "$N" --procs 2 --quiet --json "${offer[@]}")
  sleep 1
  local rss0 cpu0 rss1=0
  rss0=$(rss_kib "$server"); cpu0=$(cpu_ticks "$server")
  "${bench[@]}" hold --duration 6 >/dev/null &
  local holder=$!
  for _ in $(seq 1 300); do
    [ "$(stat_of online 2>/dev/null || echo 0)" -ge "$N" ] && break
    sleep 0.1
  done
  sleep 2
  rss1=$(rss_kib "$server")
  wait "$holder"
  local cpu1 w1 verdict cpu2 w2
  local probe_out
  probe_out=$(mktemp)
  probe "$clients" "$mode" >"$probe_out" &
  local prober=$!
  sleep 0.5
  cpu1=$(cpu_ticks "$server")
  verdict=$("${bench[@]}" fanout --messages "$MESSAGES" --publish-rate "$RATE" \
            --payload-size "$SIZE" | tail -1) || true  # a failed verdict is reported too
  cpu2=$(cpu_ticks "$server")
  wait "$prober" || true
  w1=$(cut -d' ' -f1 "$probe_out"); w2=$(cut -d' ' -f2 "$probe_out"); rm -f "$probe_out"
  local deflated negotiated
  deflated=$(stat_of frames_deflated_total); negotiated=$(stat_of deflate_negotiated_total)
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  python3 - "$kind $mode" "$N" "$rss0" "$rss1" "$hz" "$cpu0" "$cpu1" "$cpu2" "$w1" "$w2" \
    "$deflated" "$negotiated" "$verdict" <<'PY'
import json, sys
mode, n, rss0, rss1, hz, c0, c1, c2, w1, w2, deflated, negotiated = sys.argv[1:13]
v = json.loads(sys.argv[13])
n, hz = int(n), int(hz)
hold_cpu = (int(c1) - int(c0)) / hz
fan_cpu = (int(c2) - int(c1)) / hz
d = v["deliveries"]
print(f"{mode}: rss/idle conn {(int(rss1) - int(rss0)) * 1024 / n:.0f} B | "
      f"fanout {d} deliveries ok={v['ok']} lost={v['lost']} {v['deliveries_per_s']:.0f}/s "
      f"p50/p99 {v['latency_ms']['p50']:.1f}/{v['latency_ms']['p99']:.1f} ms | server cpu "
      f"{fan_cpu:.2f} s gross, {fan_cpu - hold_cpu:.2f} s net (hold run {hold_cpu:.2f} s): "
      f"{fan_cpu * 1e9 / d:.0f} ns gross, {(fan_cpu - hold_cpu) * 1e9 / d:.0f} ns net per delivery | "
      f"wire {int(w1) / max(int(w2), 1):.0f} B per push ({w2} pushes probed) | frames_deflated_total {deflated}, "
      f"deflate_negotiated_total {negotiated}")
PY
}

echo "N=$N MESSAGES=$MESSAGES RATE=$RATE SIZE=$SIZE"
[ "${SKIP_HALLEY:-0}" = 1 ] || run_case halley off
[ "${SKIP_HALLEY:-0}" = 1 ] || run_case halley on
if [ "${NODE:-0}" = 1 ]; then
  [ -d "$node_dir/node_modules/ws" ] || npm install --silent --prefix "$node_dir" ws@8 >/dev/null
  [ "${SKIP_NODE_OFF:-0}" = 1 ] || run_case node off
  run_case node on
fi

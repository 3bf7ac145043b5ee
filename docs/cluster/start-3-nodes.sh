#!/usr/bin/env bash
# Three Halley nodes sharing channels through one Redis, all on this machine
# (docs/cluster.md). Run from the repository root after `cargo build --release`:
#
#   docs/cluster/start-3-nodes.sh         # Redis on 6379, nodes on 8080/8090/8100
#   docs/cluster/start-3-nodes.sh stop    # stops what the last start started
#
# Node N listens for clients on 127.0.0.1:80N0 and for publishers on 127.0.0.1:80N1.
# Logs (start-up line, console line every second, broker messages) and pid files go
# to $DIR (default /tmp/halley-cluster). HALLEY names the binary
# (default ./target/release/halley).
set -euo pipefail

HALLEY=${HALLEY:-./target/release/halley}
DIR=${DIR:-/tmp/halley-cluster}
REDIS_PORT=6379
PORTS=(8080 8090 8100)

stop() {
    local pid_file pid
    for pid_file in "$DIR"/node*.pid "$DIR"/redis.pid; do
        [ -e "$pid_file" ] || continue
        pid=$(cat "$pid_file")
        kill "$pid" 2>/dev/null && echo "stopped $(basename "$pid_file" .pid) (pid $pid)"
        rm -f "$pid_file"
    done
}

if [ "${1:-}" = stop ]; then
    stop
    exit 0
fi

command -v redis-cli >/dev/null || { echo "redis-cli not found (apt-get install redis-server)" >&2; exit 1; }
[ -x "$HALLEY" ] || { echo "$HALLEY not found: cargo build --release --bin halley" >&2; exit 1; }
mkdir -p "$DIR"
if ls "$DIR"/*.pid >/dev/null 2>&1; then
    echo "$DIR has pid files: run '$0 stop' first" >&2
    exit 1
fi

# One machine, three nodes: each gets a third of the cores as workers, unpinned, so
# that the nodes do not pin their workers to the same cores (docs/cluster.md).
cores=$(nproc)
workers=$(( cores / 3 > 0 ? cores / 3 : 1 ))

# A Redis already on the port (Debian's redis-server service starts one) is used
# as it is, and left running by `stop`. Otherwise one without persistence: a
# restart loses its state, which the nodes restore for the channels they hold
# (docs/cluster.md, Faults).
redis_up() { [ "$(redis-cli -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
if redis_up; then
    echo "redis: already running on 127.0.0.1:$REDIS_PORT, using it"
else
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        >"$DIR/redis.log" 2>&1 &
    echo $! >"$DIR/redis.pid"
    for _ in $(seq 50); do
        redis_up && break
        sleep 0.1
    done
    redis_up || { echo "redis-server did not start: $DIR/redis.log" >&2; stop; exit 1; }
fi

n=0
for port in "${PORTS[@]}"; do
    n=$((n + 1))
    "$HALLEY" serve \
        --listen "127.0.0.1:$port" \
        --api-listen "127.0.0.1:$((port + 1))" \
        --broker "redis://127.0.0.1:$REDIS_PORT" \
        --workers "$workers" --pin false \
        --stats true \
        >"$DIR/node$n.log" 2>&1 &
    echo $! >"$DIR/node$n.pid"
done

for n in 1 2 3; do
    for _ in $(seq 50); do
        grep -qs '^halley listening:' "$DIR/node$n.log" && break
        sleep 0.1
    done
    line=$(grep -s -m1 '^halley listening:' "$DIR/node$n.log") || { echo "node$n did not start: $DIR/node$n.log" >&2; stop; exit 1; }
    echo "node$n: $line"
done
echo "redis: 127.0.0.1:$REDIS_PORT; logs in $DIR; stop with: $0 stop"

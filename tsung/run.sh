#!/usr/bin/env bash
# tsung/run.sh: run one tsung scenario against Halley and decide pass/fail.
#
# usage: tsung/run.sh SCENARIO.xml [options]
#
# Default ("one machine, two hosts"): creates two network namespaces joined by a veth
# pair, a server host (10.200.0.1) running halley and a client host (10.200.0.2..)
# running tsung with several source addresses, so traffic crosses a real interface.
# With --server the kit targets an already running server instead (the real
# two-machine case): tsung runs in this machine's own network namespace.
#
# options:
#   --users N            set the scenario's users knob (its <!ENTITY users>)
#   --rate R             set the arrival rate knob (users/s)
#   --hold S             set the hold knob (seconds, connect_hold/smoke)
#   --set NAME=VALUE     set any other knob (repeatable), e.g. --set pushes=20
#   --halley PATH        server binary (default: REPO/target/release/halley; built with
#                        `cargo build --release --bin halley` when it is the default
#                        and missing)
#   --halley-args "ARGS" extra arguments for `halley serve` (e.g. "--workers 2")
#                        A scenario with a poll_timeout knob (longpoll.xml) gets
#                        `--poll-timeout KNOB` added; a --poll-timeout given here sets
#                        the knob instead, so that server and verdict agree.
#   --ips N              client source addresses in the client namespace (default 3)
#   --server HOST:PORT   use a running server (no namespaces, no halley started)
#   --api HOST:PORT      its API listener (default HOST:8081); must be reachable from
#                        here for the publishers and the /api/stats sampler
#   --api-key-file FILE  the API key (halley's --api-key-file): sent as
#                        `Authorization: Bearer KEY` by the publishers and the sampler.
#                        In the namespace mode the API listens on 10.200.0.1, not
#                        loopback, so without this a random key is made for the run
#   --client-ips "A B"   source addresses on this machine for --server mode (default:
#                        none, the kernel picks); each adds ~64k ports per server address
#   --maxusers N         users per tsung VM (default: open-file hard limit - 1000)
#   --timeout S          wall-clock bound on tsung (default: max_duration knob + 120)
#   --logdir DIR         parent of the run directories (default: tsung/logs)
#   --no-report          skip tsung_stats.pl (report.html)
#   --quiet-server       do not echo halley's console lines
#
# Every run gets its own directory: tsung/logs/<scenario>-<YYYYmmdd-HHMMSS>-<pid>/
# holding the substituted scenario, halley.log (console), api-stats.log (GET
# /api/stats once a second), tsung/<YYYYMMDD-HHMM>/ (tsung.log, report.html, ...),
# verdict.txt. Exit status: 0 all checks passed, 1 a check failed, 2 setup/usage error,
# 130 interrupted. Requires root in the default mode (ip netns).
set -Eeuo pipefail

KIT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$KIT_DIR/.." && pwd)
TSUNG_STATS=/usr/lib/x86_64-linux-gnu/tsung/bin/tsung_stats.pl
PY=$(command -v /usr/bin/python3 || command -v python3 || true)

die() { echo "run.sh: $*" >&2; exit 2; }
log() { echo "[run] $*"; }

# ---------------------------------------------------------------- arguments
SCENARIO=""
declare -a KNOBS=()
HALLEY="" HALLEY_ARGS="" NIPS=3 SERVER="" API="" API_KEY_FILE="" CLIENT_IPS="" MAXUSERS="" TIMEOUT=""
LOGROOT="$KIT_DIR/logs" REPORT=1 ECHO_SERVER=1
while [ $# -gt 0 ]; do
    case "$1" in
        --users) KNOBS+=("users=${2:?}"); shift 2 ;;
        --rate) KNOBS+=("rate=${2:?}"); shift 2 ;;
        --hold) KNOBS+=("hold=${2:?}"); shift 2 ;;
        --set) KNOBS+=("${2:?}"); shift 2 ;;
        --halley) HALLEY=${2:?}; shift 2 ;;
        --halley-args) HALLEY_ARGS=${2?}; shift 2 ;;
        --ips) NIPS=${2:?}; shift 2 ;;
        --server) SERVER=${2:?}; shift 2 ;;
        --api) API=${2:?}; shift 2 ;;
        --api-key-file) API_KEY_FILE=${2:?}; shift 2 ;;
        --client-ips) CLIENT_IPS=${2?}; shift 2 ;;
        --maxusers) MAXUSERS=${2:?}; shift 2 ;;
        --timeout) TIMEOUT=${2:?}; shift 2 ;;
        --logdir) LOGROOT=${2:?}; shift 2 ;;
        --no-report) REPORT=0; shift ;;
        --quiet-server) ECHO_SERVER=0; shift ;;
        -h|--help) sed -n '2,/^set -E/{/^set -E/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
        -*) die "unknown option $1 (see --help)" ;;
        *) [ -z "$SCENARIO" ] || die "one scenario only"; SCENARIO=$1; shift ;;
    esac
done
[ -n "$SCENARIO" ] || die "usage: tsung/run.sh SCENARIO.xml [options] (see --help)"
[ -f "$SCENARIO" ] || die "no such scenario: $SCENARIO"
[ -n "$PY" ] || die "python3 is needed for the verdict (tsung/check.py)"
command -v tsung >/dev/null || die "tsung is not installed (tsung/install.sh)"
[[ "$NIPS" =~ ^[0-9]+$ ]] && [ "$NIPS" -ge 1 ] && [ "$NIPS" -le 200 ] || die "--ips: 1..200"

MODE=netns
if [ -n "$SERVER" ]; then
    MODE=remote
    [[ "$SERVER" =~ ^[^:]+:[0-9]+$ ]] || die "--server HOST:PORT"
    [ -n "$API" ] || API="${SERVER%:*}:8081"
else
    [ "$(id -u)" = 0 ] || die "the namespace mode needs root (or use --server HOST:PORT)"
    command -v ip >/dev/null || die "iproute2 (ip) is needed"
fi
[ -z "$API" ] || [[ "$API" =~ ^[^:]+:[0-9]+$ ]] || die "--api HOST:PORT"

knob_names() { grep -Eo '<!ENTITY[[:space:]]+[A-Za-z_][A-Za-z0-9_]*' "$1" | awk '{print $2}' | tr '\n' ' '; }
for kv in "${KNOBS[@]}"; do   # fail before creating anything
    [[ "$kv" == *=* ]] || die "--set NAME=VALUE (got '$kv')"
    case " $(knob_names "$SCENARIO") " in
        *" ${kv%%=*} "*) ;;
        *) die "$(basename "$SCENARIO") has no knob '${kv%%=*}' (knobs: $(knob_names "$SCENARIO"))" ;;
    esac
    [[ "${kv#*=}" =~ ^[A-Za-z0-9._:/-]*$ ]] || die "bad value in '$kv'"
done

# long-polling scenarios: the server's --poll-timeout and the scenario's poll_timeout
# knob (the hold time its verdict expects) must be the same number
POLL_TIMEOUT=""
if [[ " $(knob_names "$SCENARIO") " == *" poll_timeout "* ]]; then
    POLL_TIMEOUT=$(sed -n "s/.*<!ENTITY[[:space:]]\+poll_timeout[[:space:]]\+[\"']\([^\"']*\)[\"'].*/\1/p" "$SCENARIO" | head -1)
    PT_SET=""
    for kv in "${KNOBS[@]}"; do [ "${kv%%=*}" = poll_timeout ] && PT_SET=${kv#*=}; done
    PT_ARG=$(sed -n 's/.*--poll-timeout[= ]\([^ ]*\).*/\1/p' <<<"$HALLEY_ARGS")
    if [ -n "$PT_ARG" ]; then
        [ -z "$PT_SET" ] || [ "$PT_SET" = "$PT_ARG" ] \
            || die "--set poll_timeout=$PT_SET disagrees with --halley-args --poll-timeout $PT_ARG"
        [ -n "$PT_SET" ] || KNOBS+=("poll_timeout=$PT_ARG")
        POLL_TIMEOUT=$PT_ARG
    elif [ -n "$PT_SET" ]; then
        POLL_TIMEOUT=$PT_SET
    fi
    [[ "$POLL_TIMEOUT" =~ ^[0-9]+$ ]] || die "poll_timeout must be whole seconds (got '$POLL_TIMEOUT')"
    [ -n "$PT_ARG" ] || HALLEY_ARGS="--poll-timeout $POLL_TIMEOUT $HALLEY_ARGS"
fi

NAME=$(basename "$SCENARIO" .xml)
mkdir -p "$LOGROOT"
RUN=$(cd "$LOGROOT" && pwd)/$NAME-$(date +%Y%m%d-%H%M%S)-$$
mkdir -p "$RUN/tsung"
: > "$RUN/meta"
meta() { echo "$1=$2" >> "$RUN/meta"; }
meta scenario "$NAME"
meta mode "$MODE"
if [ -n "$POLL_TIMEOUT" ]; then
    meta poll_timeout "$POLL_TIMEOUT"
    [ "$MODE" = netns ] || log "note: the server must run with --poll-timeout $POLL_TIMEOUT (the scenario's poll_timeout)"
fi

# ---------------------------------------------------------------- cleanup
NS_SRV="" NS_CLI="" VS="" SRV_PID="" SAMPLER_PID="" TSUNG_PID="" EPMD_BEFORE=""
CLEANED=0
kill_wait() {  # kill_wait PID...: TERM, wait up to 5 s, then KILL
    local p i
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for i in $(seq 50); do
        local alive=0
        for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ $alive = 0 ] && return 0
        sleep 0.1
    done
    for p in "$@"; do kill -KILL "$p" 2>/dev/null || true; done
}
cleanup() {
    [ $CLEANED = 1 ] && return 0
    CLEANED=1
    set +e
    [ -n "$SAMPLER_PID" ] && kill_wait "$SAMPLER_PID"
    [ -n "$TSUNG_PID" ] && kill -0 "$TSUNG_PID" 2>/dev/null && kill_wait "$TSUNG_PID"
    if [ -n "$SRV_PID" ] && kill -0 "$SRV_PID" 2>/dev/null; then
        kill_wait "$SRV_PID"
    fi
    local ns p
    for ns in $NS_CLI $NS_SRV; do
        # whatever is left in our own namespaces is ours: tsung VMs, epmd, halley
        p=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        [ -n "$p" ] && kill_wait $p
        ip netns del "$ns" 2>/dev/null
    done
    # a veth pair still in this namespace (set-up failed half way); the name is ours
    [ -n "$VS" ] && ip link show "$VS" >/dev/null 2>&1 && ip link del "$VS" 2>/dev/null
    if [ "$MODE" = remote ]; then
        # epmd is started by tsung (erl) and outlives it; stop it only if this run
        # started it (it was not running before)
        for p in $(ps -C epmd -o pid= 2>/dev/null); do
            case " $EPMD_BEFORE " in *" $p "*) ;; *) kill "$p" 2>/dev/null ;; esac
        done
    fi
    wait 2>/dev/null
    return 0
}
trap cleanup EXIT
trap 'echo "[run] interrupted, cleaning up" >&2; exit 130' INT TERM HUP

# ---------------------------------------------------------------- limits
HARD=$(ulimit -Hn)
[ "$HARD" = unlimited ] && HARD=1048576
ulimit -n "$HARD" || true
[ -n "$MAXUSERS" ] || MAXUSERS=$(( HARD > 2000 ? HARD - 1000 : HARD / 2 ))
[ "$MAXUSERS" -lt "$HARD" ] || die "--maxusers must be below the open-file limit ($HARD)"

# ---------------------------------------------------------------- API key
if [ -n "$API_KEY_FILE" ]; then
    [ -r "$API_KEY_FILE" ] || die "--api-key-file $API_KEY_FILE: not readable"
    API_KEY=$(tr -d '[:space:]' < "$API_KEY_FILE")
    [ -n "$API_KEY" ] || die "--api-key-file $API_KEY_FILE: empty"
elif [ "$MODE" = netns ]; then
    API_KEY=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
    API_KEY_FILE=$RUN/api.key
    (umask 077; echo "$API_KEY" > "$API_KEY_FILE")
else
    API_KEY=""
fi
[[ "$API_KEY" =~ ^[!-~]*$ ]] || die "the API key must be printable ASCII"
export HALLEY_API_KEY=$API_KEY   # for the python sampler below

# ---------------------------------------------------------------- hosts
if command -v curl >/dev/null; then
    HTTP_GET=(curl -s -m 2)
    [ -z "$API_KEY" ] || HTTP_GET+=(-H "Authorization: Bearer $API_KEY")
else
    HTTP_GET=("$PY" -c 'import os, sys, urllib.request as u
k = os.environ.get("HALLEY_API_KEY")
r = u.Request(sys.argv[1], headers={"Authorization": "Bearer " + k} if k else {})
sys.stdout.write(u.urlopen(r, timeout=2).read().decode())')
fi
if [ "$MODE" = netns ]; then
    SUBNET=10.200.0
    SRV_IP=$SUBNET.1
    NS_SRV=halley-srv-$$
    NS_CLI=halley-cli-$$
    VS=hlys$$ VC=hlyc$$
    ip netns add "$NS_SRV"
    ip netns add "$NS_CLI"
    ip link add "$VS" type veth peer name "$VC"
    ip link set "$VS" netns "$NS_SRV"
    ip link set "$VC" netns "$NS_CLI"
    ip -n "$NS_SRV" addr add "$SRV_IP/24" dev "$VS"
    CLI_IPS=()
    for i in $(seq 2 $((NIPS + 1))); do
        ip -n "$NS_CLI" addr add "$SUBNET.$i/24" dev "$VC"
        CLI_IPS+=("$SUBNET.$i")
    done
    # lo is required in the client namespace: epmd and the Erlang node name (hostname)
    ip -n "$NS_SRV" link set lo up
    ip -n "$NS_CLI" link set lo up
    ip -n "$NS_SRV" link set "$VS" up
    ip -n "$NS_CLI" link set "$VC" up
    # these sysctls are per network namespace: nothing changes on the host itself
    ip netns exec "$NS_SRV" sysctl -qw net.core.somaxconn=8192
    ip netns exec "$NS_SRV" sysctl -qw net.ipv4.tcp_max_syn_backlog=8192
    ip netns exec "$NS_CLI" sysctl -qw net.ipv4.ip_local_port_range="1024 65000"
    ip netns exec "$NS_CLI" sysctl -qw net.ipv4.tcp_tw_reuse=1
    ip netns exec "$NS_CLI" ip route get "$SRV_IP" | grep -q "dev $VC" \
        || die "route to $SRV_IP does not use $VC"
    log "namespaces $NS_SRV ($SRV_IP) and $NS_CLI (${CLI_IPS[*]}), veth $VS/$VC"
    IN_SRV=(ip netns exec "$NS_SRV")
    IN_CLI=(ip netns exec "$NS_CLI")

    # -------------------------------------------------------- halley
    if [ -z "$HALLEY" ]; then
        HALLEY=$REPO/target/release/halley
        if [ ! -x "$HALLEY" ]; then
            log "building $HALLEY (cargo build --release --bin halley)"
            (cd "$REPO" && timeout 1800 cargo build --release --bin halley) \
                || die "cargo build failed"
        fi
    fi
    [ -x "$HALLEY" ] || die "no server binary at $HALLEY"
    # shellcheck disable=SC2086  # HALLEY_ARGS is a list of words on purpose
    set -- serve --listen "$SRV_IP:8080" --api-listen "$SRV_IP:8081" \
        --api-key-file "$API_KEY_FILE" \
        --ping-interval 0 --idle-timeout 0 --stats true $HALLEY_ARGS
    log "server: $HALLEY $*"
    meta server_cmd "$HALLEY $*"
    # stdout+stderr -> halley.log; a pipeline so that the console shows live, prefixed
    # (ip netns exec and sh both exec: the PID written is halley's own)
    (
        trap - EXIT INT TERM HUP
        set +e
        "${IN_SRV[@]}" sh -c 'echo $$ > "$0"; exec "$@"' "$RUN/halley.pid" "$HALLEY" "$@" 2>&1 \
            | tee "$RUN/halley.log" \
            | if [ $ECHO_SERVER = 1 ]; then sed -u 's/^/[halley] /'; else cat > /dev/null; fi
        echo "${PIPESTATUS[0]}" > "$RUN/halley.rc"
    ) &
    for i in $(seq 100); do   # 10 s for the start-up line
        grep -q '^halley listening:' "$RUN/halley.log" 2>/dev/null && break
        [ -s "$RUN/halley.pid" ] && ! kill -0 "$(cat "$RUN/halley.pid")" 2>/dev/null && break
        sleep 0.1
    done
    SRV_PID=$(cat "$RUN/halley.pid" 2>/dev/null || true)
    STARTUP=$(grep -m1 '^halley listening:' "$RUN/halley.log" || true)
    [ -n "$STARTUP" ] || { cat "$RUN/halley.log" >&2; die "halley did not print its start-up line"; }
    CLIENTS_ADDR=$(sed -n 's/.*clients=\([^ ]*\).*/\1/p' <<<"$STARTUP")
    API=$(sed -n 's/.*api=\([^ ]*\).*/\1/p' <<<"$STARTUP")
    SERVER_HOST=${CLIENTS_ADDR%:*} SERVER_PORT=${CLIENTS_ADDR##*:}
    STATS_CMD=("${IN_SRV[@]}" "${HTTP_GET[@]}" "http://$API/api/stats")
else
    SERVER_HOST=${SERVER%:*} SERVER_PORT=${SERVER##*:}
    CLI_IPS=()
    for a in ${CLIENT_IPS//,/ }; do CLI_IPS+=("$a"); done
    IN_SRV=() IN_CLI=()
    STATS_CMD=("${HTTP_GET[@]}" "http://$API/api/stats")
    EPMD_BEFORE=$(ps -C epmd -o pid= 2>/dev/null | tr '\n' ' ' || true)
    log "remote server $SERVER_HOST:$SERVER_PORT, api $API, source addresses: ${CLI_IPS[*]:-default}"
    if [ "$(sed 's/\s\+/ /' /proc/sys/net/ipv4/ip_local_port_range)" = "32768 60999" ]; then
        log "note: ip_local_port_range is the default 32768-60999 (28k ports per source address)"
    fi
fi
meta api "$API"
meta api_expected "$([ "$MODE" = netns ] && echo yes || echo no)"

# ---------------------------------------------------------------- scenario copy
XML=$RUN/$NAME.xml
cp "$SCENARIO" "$XML"
set_knob() {  # set_knob NAME VALUE: rewrite <!ENTITY NAME "..."> in the copy
    local k=$1 v=$2
    [[ "$k" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || die "bad knob name '$k'"
    case " $(knob_names "$XML") " in
        *" $k "*) ;;
        *) die "$NAME has no knob '$k' (knobs: $(knob_names "$XML"))" ;;
    esac
    if [ "$k" != client_ips ]; then
        [[ "$v" =~ ^[A-Za-z0-9._:/-]*$ ]] || die "bad value for $k: '$v'"
    fi
    local q="'" ; [[ "$v" == *"'"* ]] && q='"'
    local tmp="$XML.tmp"
    K="$k" V="$v" Q="$q" "$PY" - "$XML" > "$tmp" <<'EOF'
import os, re, sys
k, v, q = os.environ["K"], os.environ["V"], os.environ["Q"]
text = open(sys.argv[1]).read()
pat = re.compile(r"(<!ENTITY\s+" + re.escape(k) + r"\s+)(\"[^\"]*\"|'[^']*')(\s*>)")
new, n = pat.subn(lambda m: m.group(1) + q + v + q + m.group(3), text, count=1)
if n != 1:
    sys.exit("knob %s not found" % k)
sys.stdout.write(new)
EOF
    mv "$tmp" "$XML"
}
IPS_XML=""
for a in "${CLI_IPS[@]}"; do IPS_XML+="<ip value=\"$a\"/>"; done
set_knob client_host "$(uname -n | cut -d. -f1)"   # erl -sname's host part
set_knob client_ips "$IPS_XML"
set_knob maxusers "$MAXUSERS"
set_knob server_host "$SERVER_HOST"
set_knob server_port "$SERVER_PORT"
set_knob api "$API"
for kv in "${KNOBS[@]}"; do set_knob "${kv%%=*}" "${kv#*=}"; done
if [ -n "$API_KEY" ]; then   # every request to the API carries the key
    KEY="$API_KEY" "$PY" - "$XML" > "$XML.tmp" <<'EOF'
import os, re, sys
auth = '<http_header name="Authorization" value="Bearer %s"/>' % os.environ["KEY"]
text = open(sys.argv[1]).read()
text = re.sub(r'(<http\s+url="http://&api;[^>]*?)/>', lambda m: m.group(1) + ">" + auth + "</http>", text)
sys.stdout.write(text)
EOF
    mv "$XML.tmp" "$XML"
fi
knob() { sed -n "s/.*<!ENTITY[[:space:]]\+$1[[:space:]]\+[\"']\([^\"']*\)[\"'].*/\1/p" "$XML" | head -1; }
USERS=$(knob users)
MAXDUR=$(knob max_duration)
[ -n "$TIMEOUT" ] || TIMEOUT=$(( ${MAXDUR:-3600} + 120 ))
log "scenario $XML: users=$USERS rate=$(knob rate) maxusers/VM=$MAXUSERS max_duration=${MAXDUR:-none} timeout=${TIMEOUT}s"
if [ -n "$USERS" ] && [ "$USERS" -gt "$MAXUSERS" ]; then
    log "more users than maxusers: tsung will start $(( (USERS + MAXUSERS - 1) / MAXUSERS )) client VMs"
fi

# ---------------------------------------------------------------- /api/stats sampler
(
    trap - EXIT INT HUP
    trap 'exit 0' TERM
    n=0
    end=$(( $(date +%s) + TIMEOUT + 60 ))
    while [ "$(date +%s)" -lt "$end" ]; do
        if s=$("${STATS_CMD[@]}" 2>/dev/null) && [ -n "$s" ]; then
            echo "$(date +%s%3N) $(tr -d '\n' <<<"$s")" >> "$RUN/api-stats.log"
            if [ "$MODE" = remote ] && [ $((n % 5)) = 0 ]; then
                echo "[api] $(grep -oE '"(uptime_s|online|connections_total|delivered_total|rss_bytes)":[0-9]+' <<<"$s" | tr -d '"' | tr '\n' ' ')"
            fi
        fi
        n=$((n + 1))
        sleep 1
    done
) &
SAMPLER_PID=$!

# ---------------------------------------------------------------- tsung
log "tsung starting (log dir $RUN/tsung)"
START=$(date +%s)
(
    trap - EXIT INT TERM HUP
    cd "$RUN"   # tsung drops erl_crash.dump in its cwd on a fatal error
    exec timeout -k 15 "$TIMEOUT" "${IN_CLI[@]}" tsung -n -r "$KIT_DIR/localrsh" \
        -l "$RUN/tsung" -f "$XML" start
) > "$RUN/tsung.out" 2>&1 &
TSUNG_PID=$!
set +e
wait "$TSUNG_PID"
TSUNG_RC=$?
set -e
TSUNG_PID=""
END=$(date +%s)
log "tsung finished: exit $TSUNG_RC after $((END - START)) s (exit code is not the verdict)"
meta tsung_exit "$TSUNG_RC"
meta tsung_wall_s "$((END - START))"
[ "$TSUNG_RC" = 124 ] && meta tsung_note "killed by timeout ${TIMEOUT}s"
sed 's/^/[tsung] /' "$RUN/tsung.out" | grep -v 'os_mon\|^\[tsung\] $' || true

if [ "$MODE" = netns ]; then
    if kill -0 "$SRV_PID" 2>/dev/null; then meta server_alive yes; else meta server_alive no; fi
fi
kill_wait "$SAMPLER_PID"; SAMPLER_PID=""
if [ "$MODE" = netns ]; then
    # the epmd started by tsung in the client namespace, and any leftover VM
    p=$(ip netns pids "$NS_CLI" 2>/dev/null | tr '\n' ' ')
    [ -n "$p" ] && kill_wait $p
    if kill -0 "$SRV_PID" 2>/dev/null; then
        kill -TERM "$SRV_PID"
        for i in $(seq 100); do kill -0 "$SRV_PID" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$SRV_PID" 2>/dev/null; then
            meta server_exit "still running 10 s after SIGTERM"; kill -KILL "$SRV_PID"
        fi
    fi
    wait 2>/dev/null || true   # the halley pipeline; it writes halley's exit status
    grep -q '^server_exit=' "$RUN/meta" || meta server_exit "$(cat "$RUN/halley.rc" 2>/dev/null || echo unknown)"
else
    meta server_exit none
fi

# ---------------------------------------------------------------- report + verdict
TDIR=$(ls -d "$RUN"/tsung/*/ 2>/dev/null | tail -1)
if [ -n "$TDIR" ] && [ $REPORT = 1 ]; then
    if (cd "$TDIR" && timeout 300 "$TSUNG_STATS" > "$RUN/tsung_stats.out" 2>&1); then
        log "report: ${TDIR}report.html (graphs: ${TDIR}graph.html)"
    else
        log "tsung_stats.pl failed, see $RUN/tsung_stats.out"
    fi
fi
set +e
"$PY" "$KIT_DIR/check.py" "$RUN" | tee "$RUN/verdict.txt"
RC=${PIPESTATUS[0]}
set -e
log "run directory: $RUN"
exit "$RC"

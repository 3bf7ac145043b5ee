#!/bin/sh
# Install tsung 1.7.0 (Debian bookworm package) if it is not already there, with
# what tsung/run.sh needs beside it: iproute2 (ip netns) and python3 (the verdict),
# the Debian python3-prometheus-client that tests/metrics.rs parses /metrics with, and
# redis-server and redis-tools for tests/broker.rs (a real Redis and a 3-shard cluster).
# Usage: tsung/install.sh        (as root; used by CI before tsung/run.sh)
#
# The package pulls ~650 MB (erlang, gnuplot, libtemplate-perl, matplotlib) and takes
# about a minute. A concurrent apt run on the machine can make the first attempt fail
# ("dpkg: cannot access archive"), hence the lock timeout and one retry.
set -u

packages=""
command -v tsung >/dev/null 2>&1 && [ -x /usr/lib/x86_64-linux-gnu/tsung/bin/tsung_stats.pl ] ||
    packages="tsung"
command -v ip >/dev/null 2>&1 || packages="$packages iproute2"
command -v python3 >/dev/null 2>&1 || packages="$packages python3"
/usr/bin/python3 -c 'import prometheus_client' 2>/dev/null || packages="$packages python3-prometheus-client"  # tests/metrics.rs
command -v redis-server >/dev/null 2>&1 || packages="$packages redis-server"  # tests/broker.rs
command -v redis-cli >/dev/null 2>&1 || packages="$packages redis-tools"  # tests/broker.rs (cluster create), tests/resp.rs, RESP bench
/usr/bin/python3 -c 'import redis' 2>/dev/null || packages="$packages python3-redis"  # tests/resp.rs
if [ -z "$packages" ]; then
    echo "tsung already installed: $(tsung -v 2>/dev/null)"
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
install_once() {
    timeout 900 apt-get -o DPkg::Lock::Timeout=300 update &&
    # shellcheck disable=SC2086 # the package list is meant to split
    timeout 1200 apt-get -o DPkg::Lock::Timeout=300 install -y $packages
}

if ! install_once; then
    echo "tsung install failed once; retrying in 10 s" >&2
    sleep 10
    install_once || { echo "tsung install failed" >&2; exit 1; }
fi
command -v tsung >/dev/null 2>&1 || { echo "tsung not on PATH after install" >&2; exit 1; }
echo "installed: $(tsung -v 2>/dev/null)"

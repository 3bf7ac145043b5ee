#!/usr/bin/env python3
"""Publish throughput into one channel with a WebSocket subscriber counting, by way of
the HTTP API (h2load), RESP (redis-benchmark) or API batches (h2load, B messages a
request). Starts its own release server; prints one JSON line per run.

Usage (from the repository, after `cargo build --release`):
  flock /tmp/halley-measure.lock scripts/publish-bench.py resp  --clients 100 --requests 200000
  flock /tmp/halley-measure.lock scripts/publish-bench.py http  --clients 100 --requests 200000
  flock /tmp/halley-measure.lock scripts/publish-bench.py batch --clients 10 --requests 2000 --batch 100
  flock /tmp/halley-measure.lock scripts/publish-bench.py resp  --clients 100 --requests 200000 --pipeline 16

Needs redis-benchmark (Debian redis-tools) and h2load (Debian nghttp2-client).
'lost' is what the subscriber did not get of what the load tool says it published.
"""

import argparse
import base64
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time

CHANNEL = "bench"
DATA = "hello"


def start_server(binary, workers):
    proc = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
         "--resp-listen", "127.0.0.1:0", "--stats", "false", "--workers", str(workers)],
        stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    deadline = time.time() + 10
    while time.time() < deadline:
        line = proc.stdout.readline()
        m = re.match(r"halley listening: clients=(\S+) api=(\S+) workers=\d+ resp=(\S+)", line)
        if m:
            return proc, m.group(1), m.group(2), m.group(3)
    proc.kill()
    sys.exit("no start-up line from halley")


def split(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


class Subscriber(threading.Thread):
    """One WebSocket subscribed to CHANNEL; counts the pushes it reads (each carries
    `"seq":` once) without decoding frames, so it costs the server's cores little."""

    def __init__(self, clients):
        super().__init__(daemon=True)
        self.sock = socket.create_connection(split(clients))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((
            "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101"), head
        rest = head.split(b"\r\n\r\n", 1)[1]
        text = json.dumps({"op": "subscribe", "channel": CHANNEL}).encode()
        mask = os.urandom(4)
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(text))
        self.sock.sendall(bytes([0x81, 0x80 | len(text)]) + mask + masked)
        while b"subscribed" not in rest:
            rest += self.sock.recv(4096)
        self.count = rest.count(b'"seq":') - 1  # the reply has a seq too
        self.tail = b""
        self.stop = False

    def run(self):
        self.sock.settimeout(0.5)
        while not self.stop:
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                continue
            if not chunk:
                return
            # A marker split across reads is counted once, from the joined edge.
            joined = self.tail + chunk
            self.count += joined.count(b'"seq":') - self.tail.count(b'"seq":')
            self.tail = joined[-5:]
            # Let pushes gather in the socket: fewer, larger reads leave the shared
            # cores to the server and the load tool (4 MiB may queue per client).
            time.sleep(0.002)


def run_load(args, api, resp, workdir):
    if args.mode == "resp":
        host, port = split(resp)
        cmd = ["redis-benchmark", "-h", host, "-p", str(port), "-c", str(args.clients),
               "-n", str(args.requests), "-P", str(args.pipeline), "-q",
               "PUBLISH", CHANNEL, DATA]
        start = time.time()
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
        elapsed = time.time() - start
        rps = float(re.findall(r"([\d.]+) requests per second", out)[-1])
        return cmd, rps, args.requests, elapsed, out
    per_request = args.batch if args.mode == "batch" else 1
    if args.mode == "batch":
        body = json.dumps([{"channel": CHANNEL, "data": DATA}] * per_request)
    else:
        body = json.dumps({"channel": CHANNEL, "data": DATA})
    path = os.path.join(workdir, "body.json")
    with open(path, "w") as f:
        f.write(body)
    cmd = ["h2load", "--h1", "-c", str(args.clients), "-n", str(args.requests),
           "-m", str(args.pipeline), "-d", path, "-H", "Content-Type: application/json",
           f"http://{api}/api/publish"]
    start = time.time()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600).stdout
    elapsed = time.time() - start
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    ok = int(re.search(r"status codes: (\d+) 2xx", out).group(1))
    return cmd, rps, ok * per_request, elapsed, out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["resp", "http", "batch"])
    p.add_argument("--clients", type=int, default=100)
    p.add_argument("--requests", type=int, default=200000)
    p.add_argument("--pipeline", type=int, default=1)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--binary", default="target/release/halley")
    args = p.parse_args()
    server, clients, api, resp = start_server(args.binary, args.workers)
    try:
        sub = Subscriber(clients)
        sub.start()
        cpu_before = server_cpu(server.pid)
        load_before = os.times()
        load_avg = os.getloadavg()[0]
        with tempfile.TemporaryDirectory() as workdir:
            cmd, rps, published, elapsed, out = run_load(args, api, resp, workdir)
        cpu = server_cpu(server.pid) - cpu_before
        after = os.times()
        load_cpu = (after.children_user - load_before.children_user
                    + after.children_system - load_before.children_system)
        deadline = time.time() + 30
        while sub.count < published and time.time() < deadline:
            time.sleep(0.05)
        sub.stop = True
        per_request = args.batch if args.mode == "batch" else 1
        print(json.dumps({
            "mode": args.mode, "clients": args.clients, "requests": args.requests,
            "pipeline": args.pipeline, "batch": per_request if args.mode == "batch" else None,
            "requests_per_s": rps, "publishes_per_s": round(rps * per_request),
            "published": published, "received": sub.count, "lost": published - sub.count,
            "server_cpu_s": round(cpu, 2), "load_tool_cpu_s": round(load_cpu, 2),
            "load_wall_s": round(elapsed, 2), "loadavg_1m_before": load_avg,
            "command": " ".join(cmd),
        }))
    finally:
        server.kill()
        server.wait()


def server_cpu(pid):
    """User + system seconds of the server so far (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Halley nodes sharing channels through Redis, measured on loopback (issue 9's targets).

    scripts/cluster-bench.py fanout  [--connections 10000] [--messages 200] [--rate 100]
    scripts/cluster-bench.py hold    [--connections 10000]
    scripts/cluster-bench.py restart [--seconds 8]

fanout:  a redis-server and 3 nodes with --broker; one halley-bench fanout per node
         (N/3 subscribers each, channel prefix per node), all publishing through node
         0's API, so 2/3 of the deliveries cross Redis. Then the same N on one
         standalone node. Prints each verdict's deliveries/s, p50/p99, lost/dup/order.
hold:    idle server -> N idle subscribed WebSockets (halley-bench hold), RSS per
         connection, standalone and with --broker.
restart: 2 nodes, a subscriber on each; a publisher on node 0 at 200 msg/s; Redis is
         killed after 2 s and started again 2 s later. Prints what each subscriber got
         and how long after the restart node 1 received again.
Every process it starts is stopped by its PID; every wait is bounded.
"""
import argparse, base64, json, os, re, socket, subprocess, sys, threading, time, urllib.request

SERVER, BENCH = "target/release/halley", "target/release/halley-bench"


def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


class Redis:
    def __init__(self, port=None):
        self.port = port or free_port(); self.start()

    def start(self):
        self.proc = subprocess.Popen(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                      "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close(); return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("redis-server did not start")

    def stop(self):
        self.proc.kill(); self.proc.wait()

    url = property(lambda self: f"redis://127.0.0.1:{self.port}")


class Node:
    def __init__(self, *args):
        self.proc = subprocess.Popen([SERVER, "serve", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                                      "--stats", "false", "--ping-interval", "0", "--idle-timeout", "0", *args],
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        m = re.search(r"clients=(\S+) api=(\S+)", line)
        if not m:
            raise SystemExit(f"no start-up line: {line!r}")
        self.client, self.api = m.group(1), m.group(2)
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def stats(self):
        with urllib.request.urlopen(f"http://{self.api}/api/stats", timeout=5) as r:
            return json.load(r)

    def stop(self):
        self.proc.kill(); self.proc.wait()


def bench(node_client, api, *args):
    return subprocess.Popen([BENCH, "--url", f"ws://{node_client}", "--api", f"http://{api}", "--json", "--quiet",
                             *args], stdout=subprocess.PIPE, text=True)


def verdict(proc):
    out, _ = proc.communicate(timeout=300)
    return json.loads(out.strip().splitlines()[-1])


def show(label, v):
    lat = v.get("latency_ms") or {}
    print(f"  {label}: {v.get('deliveries_per_s')} deliveries/s, p50 {lat.get('p50')} ms, p99 {lat.get('p99')} ms, "
          f"lost {v.get('lost')}, duplicated {v.get('duplicated')}, out of order {v.get('out_of_order')}, ok {v.get('ok')}")


def fanout(a):
    per = a.connections // 3
    common = ["fanout", "--messages", str(a.messages), "--publish-rate", str(a.rate)]
    redis = Redis(); nodes = [Node("--broker", redis.url) for _ in range(3)]
    try:
        runs = [bench(n.client, nodes[0].api, "--connections", str(per), "--channel-prefix", f"n{i}", *common)
                for i, n in enumerate(nodes)]
        print(f"3 nodes, {per} subscribers each, publishing through node 0 ({redis.url}):")
        for i, r in enumerate(runs):
            show(f"node {i}", verdict(r))
    finally:
        for n in nodes: n.stop()
        redis.stop()
    node = Node()
    try:
        print(f"1 standalone node, {per * 3} subscribers:")
        show("node", verdict(bench(node.client, node.api, "--connections", str(per * 3), "--procs", "2", *common)))
    finally:
        node.stop()


def hold(a):
    redis = Redis()
    try:
        for label, args in (("standalone", []), ("with --broker", ["--broker", redis.url])):
            node = Node(*args)
            try:
                time.sleep(1.5); idle = rss_kib(node.proc.pid)
                b = bench(node.client, node.api, "hold", "--connections", str(a.connections), "--procs", "2",
                          "--duration", "5")
                deadline = time.time() + 60
                while time.time() < deadline and node.stats()["online"] < a.connections:
                    time.sleep(0.1)
                time.sleep(1); held = rss_kib(node.proc.pid)
                v = verdict(b)
                print(f"  {label}: idle {idle} KiB -> {held} KiB with {v.get('connected')} connections: "
                      f"{(held - idle) * 1024 / a.connections:.1f} B per connection")
            finally:
                node.stop()
    finally:
        redis.stop()


def ws_subscribe(client, channel):
    host, port = client.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), 5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    p = json.dumps({"op": "subscribe", "channel": channel}).encode(); m = os.urandom(4)
    s.sendall(bytes([0x81, 0x80 | len(p)]) + m + bytes(b ^ m[i % 4] for i, b in enumerate(p)))
    return s, buf.split(b"\r\n\r\n", 1)[1]


def collect(sock, buf, got, stop):
    """Appends (arrival time, seq) of every push until stop is set."""
    sock.settimeout(0.2)
    while not stop.is_set():
        while len(buf) >= 2:
            n, off = buf[1] & 127, 2
            if n == 126: n, off = int.from_bytes(buf[2:4], "big"), 4
            if len(buf) < off + n: break
            msg = json.loads(buf[off:off + n]); buf = buf[off + n:]
            if "seq" in msg and "op" not in msg: got.append((time.time(), msg["seq"]))
        try:
            d = sock.recv(65536)
        except socket.timeout:
            continue
        if not d: return
        buf += d


def restart(a):
    redis = Redis(); nodes = [Node("--broker", redis.url) for _ in range(2)]
    stop = threading.Event(); got = [[], []]; threads = []
    try:
        for i, n in enumerate(nodes):
            s, buf = ws_subscribe(n.client, "live")
            t = threading.Thread(target=collect, args=(s, buf, got[i], stop)); t.start(); threads.append(t)
        time.sleep(0.5)
        sent = []; down_at = up_at = None; began = time.time()
        conn = socket.create_connection(tuple(nodes[0].api.rsplit(":", 1)), 5)
        n = 0
        while time.time() - began < a.seconds:
            n += 1
            body = json.dumps({"channel": "live", "data": {"n": n}}).encode()
            conn.sendall(b"POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            reply = conn.recv(4096)
            sent.append(json.loads(reply.split(b"\r\n\r\n", 1)[1])["seq"])
            t = time.time() - began
            if down_at is None and t > 2:
                redis.stop(); down_at = time.time()
            if up_at is None and down_at and time.time() - down_at > 2:
                redis.start(); up_at = time.time()
            time.sleep(1 / 200)
        time.sleep(1)
    finally:
        stop.set()
        for t in threads: t.join(5)
        for n in nodes: n.stop()
        redis.stop()
    local = [s for _, s in got[0]]
    print(f"  published {len(sent)} through node 0 (Redis down from 2.0 s to 4.0 s)")
    print(f"  node 0's subscriber got {len(local)}: {'all, in order' if local == sent else 'NOT all / in order'}")
    gap = [b - a_ for (_, a_), (_, b) in zip(got[1], got[1][1:])]
    after = [t for t, _ in got[1] if t > up_at]
    print(f"  node 1's subscriber got {len(got[1])}; first after the restart "
          f"{(after[0] - up_at) * 1000:.0f} ms after redis-server started" if after else "  node 1 got nothing after the restart")
    print(f"  node 1 seqs increasing: {all(g > 0 for g in gap)}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["fanout", "hold", "restart"])
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=200)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--seconds", type=float, default=8)
    a = ap.parse_args()
    {"fanout": fanout, "hold": hold, "restart": restart}[a.what](a)

#!/usr/bin/env python3
"""Slow consumers at the cap: N clients subscribe to one channel and never read,
F fast clients on the same channel read everything, and M messages of S bytes are
published. Prints the server's RSS (idle, with everyone connected, peak while
publishing, after), the bound 100 x cap + 10 MiB, slow_consumer_closes_total and
whether any fast subscriber lost or reordered a message.

  flock /tmp/halley-measure.lock scripts/slow-consumers.py [--bin target/release/halley]
      [--slow 100] [--fast 10] [--messages 3000] [--size 16384] [--window 64]

The publisher stays within --window messages of the slowest fast subscriber (a fast
client keeps up with real traffic; a Python reader cannot keep up with a tight
publish loop). Loopback only; the server is started here and stopped by its PID.
"""
import argparse
import base64
import http.client
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def upgrade(addr, rcvbuf=None):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(addr)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("EOF during the upgrade")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s, bytearray(rest)


def send_text(s, text):
    payload = text.encode()
    mask = os.urandom(4)
    assert len(payload) < 126
    s.sendall(bytes([0x81, 0x80 | len(payload)]) + mask +
              bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))


def frames(s, buf):
    """Yields (opcode, payload) from the socket, forever."""
    while True:
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            hdr = 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, hdr = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, hdr = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < hdr + n:
                break
            op, payload = buf[0] & 0x0F, bytes(buf[hdr:hdr + n])
            del buf[:hdr + n]
            yield op, payload
        chunk = s.recv(1 << 20)
        if not chunk:
            return
        buf += chunk


def subscribe(s, buf, channel):
    send_text(s, json.dumps({"op": "subscribe", "channel": channel}))
    it = frames(s, buf)
    op, payload = next(it)
    assert op == 1 and json.loads(payload)["op"] == "subscribed", payload
    return it


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/halley")
    ap.add_argument("--slow", type=int, default=100)
    ap.add_argument("--fast", type=int, default=10)
    ap.add_argument("--messages", type=int, default=3000)
    ap.add_argument("--size", type=int, default=16384)
    ap.add_argument("--window", type=int, default=64)
    ap.add_argument("--cap", type=int, default=4 << 20, help="the server's default cap")
    args = ap.parse_args()

    server = subprocess.Popen([args.bin, "serve", "--listen", "127.0.0.1:0", "--api-listen",
                               "127.0.0.1:0", "--stats", "false"],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        m = re.search(r"clients=(\S+):(\d+) api=(\S+):(\d+)", line)
        assert m, line
        client = (m.group(1), int(m.group(2)))
        api = (m.group(3), int(m.group(4)))
        time.sleep(0.5)
        idle = rss_kib(server.pid)

        slow = []
        for _ in range(args.slow):
            s, buf = upgrade(client, rcvbuf=4096)
            subscribe(s, buf, "slow")
            slow.append(s)  # never read again
        received = [0] * args.fast
        lost = [0] * args.fast
        readers = []
        for k in range(args.fast):
            s, buf = upgrade(client)
            it = subscribe(s, buf, "slow")

            def read(k=k, it=it):
                for op, payload in it:
                    if op != 1:
                        continue
                    seq = json.loads(payload)["seq"]
                    if seq != received[k] + 1:
                        lost[k] += 1
                    received[k] = seq
                    if seq == args.messages:
                        return
            t = threading.Thread(target=read, daemon=True)
            t.start()
            readers.append(t)
        connected = rss_kib(server.pid)

        api_conn = http.client.HTTPConnection(*api)
        pad = "s" * args.size
        peak = connected
        started = time.time()
        for i in range(1, args.messages + 1):
            deadline = time.time() + 30
            while min(received) < i - args.window:
                if time.time() > deadline:
                    raise RuntimeError(f"fast subscribers stalled at {min(received)} of {i}")
                time.sleep(0.0005)
            body = json.dumps({"channel": "slow", "data": {"i": i, "pad": pad}})
            api_conn.request("POST", "/api/publish", body=body)
            r = api_conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            if i % 50 == 0:
                peak = max(peak, rss_kib(server.pid))
        for t in readers:
            t.join(30)
        elapsed = time.time() - started
        time.sleep(1.5)  # one sweep: closing slow consumers are dropped
        after = rss_kib(server.pid)
        api_conn.request("GET", "/api/stats")
        stats = json.loads(api_conn.getresponse().read())
        bound = (args.slow * args.cap + (10 << 20)) // 1024
        print(f"slow={args.slow} fast={args.fast} messages={args.messages} size={args.size} "
              f"cap={args.cap} elapsed={elapsed:.1f}s")
        print(f"rss KiB: idle {idle}, connected {connected}, peak {peak}, after {after}; "
              f"bound (slow x cap + 10 MiB) {bound}")
        print(f"slow_consumer_closes_total {stats['slow_consumer_closes_total']}, "
              f"online {stats['online']}")
        print(f"fast subscribers: received {min(received)}..{max(received)} of {args.messages}, "
              f"gaps {sum(lost)}")
        ok = peak <= bound and sum(lost) == 0 and min(received) == args.messages
        print("result:", "ok" if ok else "FAILED")
        return 0 if ok else 1
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    sys.exit(main())

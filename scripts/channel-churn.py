#!/usr/bin/env python3
"""Channel churn benchmark: one anonymous WebSocket connection sends N pairs of
subscribe+unsubscribe of distinct channel names; reports the server's channel
count and RSS before, right after, and once the history TTL has passed.

    scripts/channel-churn.py [--pairs 100000] [--bin target/release/halley] [--ttl 2]

It starts its own halley on 127.0.0.1 ephemeral ports (loopback only), stops it by
PID at the end, and bounds every wait.
"""
import argparse, json, os, re, socket, subprocess, sys, time, urllib.request

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

API_KEY = None  # --api-key-file's key, sent as Authorization: Bearer on every API call

def stats(api):
    headers = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
    req = urllib.request.Request(f"http://{api}/api/stats", headers=headers)
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)

def frame(text):
    # A masked client text frame (RFC 6455 5.3); a zero mask keeps the bytes as is.
    data = text.encode()
    n = len(data)
    head = bytes([0x81]) + (bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big"))
    return head + b"\0\0\0\0" + data

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--bin", default="target/release/halley")
    ap.add_argument("--ttl", type=int, default=2,
                    help="--history-ttl and --poll-timeout (how long an idle channel lingers)")
    ap.add_argument("--settle", type=float, default=1, help="seconds to wait once channels reach 0")
    ap.add_argument("--api-key-file", help="pass this API key file to the server and send its key")
    a = ap.parse_args()
    global API_KEY
    key_args = []
    if a.api_key_file:
        with open(a.api_key_file) as f:
            API_KEY = f.read().strip()
        key_args = ["--api-key-file", a.api_key_file]
    server = subprocess.Popen([a.bin, "serve", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                               "--stats", "false", "--history-ttl", str(a.ttl),
                               "--poll-timeout", str(a.ttl), *key_args,
                               # one client churning 100,000s of channels: past the command rate on purpose
                               "--max-commands-per-second", "0"],
                              stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        m = re.match(r"halley listening: clients=(\S+) api=(\S+)", line)
        if not m:
            sys.exit(f"no start-up line: {line!r}")
        client, api = m.group(1), m.group(2)
        time.sleep(0.5)
        idle = rss_kib(server.pid)
        host, port = client.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += s.recv(4096)
        rest = head.split(b"\r\n\r\n", 1)[1]
        replies, batch, pattern = 0, 1000, b'"op":"'
        carry = rest
        started = time.time()
        for start in range(0, a.pairs, batch):
            out = bytearray()
            for n in range(start, min(start + batch, a.pairs)):
                out += frame('{"op":"subscribe","channel":"churn-%d"}' % n)
                out += frame('{"op":"unsubscribe","channel":"churn-%d"}' % n)
            s.sendall(out)
            # Every reply carries one `"op":"`; the carry finds one split across reads.
            want = 2 * min(start + batch, a.pairs)
            while replies < want:
                chunk = s.recv(1 << 16)
                if not chunk:
                    sys.exit("server closed the connection")
                seen = carry + chunk
                replies += seen.count(pattern)
                carry = seen[-(len(pattern) - 1):]
        took = time.time() - started
        after = stats(api)
        rss_after = rss_kib(server.pid)
        s.close()
        deadline = time.time() + a.ttl + 60
        settled = stats(api)
        while settled["channels"] and time.time() < deadline:
            time.sleep(0.5)
            settled = stats(api)
        time.sleep(a.settle)
        settled = stats(api)
        rss_settled = rss_kib(server.pid)
        print(f"pairs={a.pairs} in {took:.1f}s; replies={replies}")
        print(f"idle RSS {idle} KiB; after churn {rss_after} KiB (channels={after['channels']}); "
              f"once idle channels went {rss_settled} KiB (channels={settled['channels']}); "
              f"growth {(rss_settled - idle) / 1024:.2f} MiB")
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()

if __name__ == "__main__":
    main()

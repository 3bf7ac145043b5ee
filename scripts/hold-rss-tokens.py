#!/usr/bin/env python3
"""Server RSS (and jemalloc heap) per idle WebSocket held on one shared channel,
without and with tokens (--require-token, a distinct sub per connection), as an
outside client sees it: idle VmRSS, then VmRSS once N are held (101 read), divided
by N. A Python holder, written before halley-bench had a token option; for any
transport, `scripts/hold-rss.py --token-secret-file F` does the same with halley-bench.

    scripts/hold-rss-tokens.py [N]      # default 10000; run from the repo root after
                                        # cargo build --release; 2 runs of each

Uses ports 28380/28381 and a secret file in /tmp; stops the server by its PID.
Every wait is bounded."""
import base64, hashlib, hmac, json, re, socket, subprocess, sys, time, urllib.request

SECRET = b"measure-secret"
SECRET_FILE = "/tmp/halley-hold-rss-tokens-secret"
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
def mint(sub):
    h = b64(b'{"alg":"HS256","typ":"JWT"}')
    p = b64(json.dumps({"sub": sub, "exp": int(time.time()) + 3600}, separators=(",", ":")).encode())
    return f"{h}.{p}." + b64(hmac.new(SECRET, f"{h}.{p}".encode(), hashlib.sha256).digest())
def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
def stats(api):
    with urllib.request.urlopen(f"http://{api}/api/stats", timeout=5) as r:
        return json.load(r)

def one_run(tokens, n, port):
    client, api = ("127.0.0.1", port), f"127.0.0.1:{port + 1}"
    extra = ["--token-secret-file", SECRET_FILE, "--require-token"] if tokens else []
    server = subprocess.Popen(["target/release/halley", "serve", "--listen", f"127.0.0.1:{port}", "--api-listen", api,
                               "--ping-interval", "0", "--idle-timeout", "0", "--stats", "false"] + extra,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socks = []
    try:
        requests = []
        for i in range(n):
            q = f"subscribe=bench&token={mint(f'user-{i:05d}')}" if tokens else "subscribe=bench"
            requests.append((f"GET /ws?{q} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        time.sleep(1.5)
        idle = rss_kib(server.pid)
        idle_alloc = stats(api)["allocated_bytes"]
        for req in requests:
            s = socket.create_connection(client, timeout=10)
            s.sendall(req)
            socks.append(s)
        for s in socks:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    sys.exit(f"closed: {head!r}")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101") or len(head) > head.index(b"\r\n\r\n") + 4:
                sys.exit(f"not a quiet 101: {head!r}")
        deadline = time.time() + 30
        while stats(api)["online"] < n:
            if time.time() > deadline:
                sys.exit("never all online")
            time.sleep(0.2)
        time.sleep(1)
        held = rss_kib(server.pid)
        s = stats(api)
        return idle, held, s["auth_failures_total"], s["channels"], (s["allocated_bytes"] - idle_alloc) / n
    finally:
        for s in socks:
            s.close()
        server.terminate()
        server.wait(timeout=15)

with open(SECRET_FILE, "wb") as f:
    f.write(SECRET + b"\n")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
for run in range(2):
    for tokens in (False, True):
        idle, held, fails, chans, heap = one_run(tokens, n, 28380)
        print(f"tokens={tokens} run {run + 1}: idle {idle} KiB, {n} held {held} KiB: "
              f"{(held - idle) * 1024 / n:.1f} B/conn (heap {heap:.1f} B/conn, auth failures {fails}, channels {chans})", flush=True)
        time.sleep(1)

#!/usr/bin/env python3
"""A publisher that outruns the fan-out: N subscribers of one channel (halley-bench
`hold`), and one keep-alive HTTP publisher posting batches of --per-batch messages
of --size bytes to it, --rate batches a second, for --seconds. Every 2 s it prints
the server's VmRSS, the publishes answered, the stats (connections open,
deliveries, publishes held, slow-consumer closes), the slowest answer of the last
50, and how long a new WebSocket took to be upgraded and answered a subscribe; at
the end, one summary line.

    scripts/publish-flood.py [--server target/release/halley]
        [--bench target/release/halley-bench] [--connections 10000]
        [--per-batch 50] [--rate 100] [--size 1000] [--seconds 20] [--port 28580]

What a server that does not pace its publishers does here: answers at once, queues
without bound (RSS grows), then sheds its subscribers as slow consumers. Starts its
own server on 127.0.0.1 and stops it by its PID; every wait is bounded.
"""
import argparse, json, socket, subprocess, sys, threading, time, urllib.request


def median(values):
    values = sorted(values)
    return values[len(values) // 2] if values else 0.0


def vmrss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    return 0.0


def stats(api):
    with urllib.request.urlopen(f"http://{api[0]}:{api[1]}/api/stats", timeout=5) as r:
        return json.load(r)


def read_answer(sock, buf):
    """One HTTP answer: (status line, rest of the buffer)."""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(1 << 20)
        if not data:
            raise EOFError("the API closed the connection")
        buf += data
    head, rest = buf.split(b"\r\n\r\n", 1)
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = sock.recv(1 << 20)
        if not data:
            raise EOFError("the API closed the connection")
        rest += data
    return head.split(b"\r\n")[0].decode(), rest[length:]


def probe(client):
    """Seconds for a new WebSocket to be upgraded and answered a subscribe: how long
    a worker busy with the flood keeps a newcomer waiting (at most 30 s)."""
    host, port = client.split(":")
    began = time.time()
    sock = socket.create_connection((host, int(port)), timeout=30)
    try:
        sock.sendall(b"GET /ws HTTP/1.1\r\nHost: flood\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     b"Sec-WebSocket-Version: 13\r\n\r\n")
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(4096) or b"!"
            if buf.endswith(b"!"):
                return float("nan")
        command = b'{"op":"subscribe","channel":"probe"}'
        mask = b"\x01\x02\x03\x04"
        masked = bytes(c ^ mask[i % 4] for i, c in enumerate(command))
        sock.sendall(bytes([0x81, 0x80 | len(command)]) + mask + masked)
        buf = buf.split(b"\r\n\r\n", 1)[1]
        while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F):
            data = sock.recv(4096)
            if not data:
                return float("nan")
            buf += data
        return time.time() - began
    finally:
        sock.close()


def publish(a, api, stop, tally):
    body = json.dumps([{"channel": "bench-0", "data": "x" * a.size}] * a.per_batch).encode()
    request = (f"POST /api/publish HTTP/1.1\r\nHost: flood\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    sock = socket.create_connection(api, timeout=30)
    buf = b""
    while time.time() < stop:
        began = time.time()
        sock.sendall(request)
        status, buf = read_answer(sock, buf)
        if not status.startswith("HTTP/1.1 200"):
            tally["refused"] += 1
        else:
            tally["published"] += a.per_batch
        tally["answers"].append(time.time() - began)
        time.sleep(max(0.0, began + 1.0 / a.rate - time.time()))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="target/release/halley")
    ap.add_argument("--bench", default="target/release/halley-bench")
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--per-batch", type=int, default=50)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--size", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--port", type=int, default=28580)
    a = ap.parse_args()
    client, api = f"127.0.0.1:{a.port}", ("127.0.0.1", a.port + 1)
    server = subprocess.Popen([a.server, "serve", "--listen", client, "--api-listen",
                               f"{api[0]}:{api[1]}", "--stats", "false"],
                              stdout=subprocess.DEVNULL)
    bench = None
    try:
        time.sleep(1)
        bench = subprocess.Popen([a.bench, "--url", f"ws://{client}", "--api",
                                  f"http://{api[0]}:{api[1]}", "--quiet", "--channels", "1",
                                  "--channel-prefix", "bench", "hold", "--connections",
                                  str(a.connections), "--procs", "2", "--duration",
                                  str(int(a.seconds) + 30)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while stats(api)["connections_open"] < a.connections:
            if time.time() > deadline or bench.poll() is not None:
                sys.exit("the subscribers never were all open")
            time.sleep(0.2)
        tally = {"published": 0, "refused": 0, "answers": []}
        stop = time.time() + a.seconds
        thread = threading.Thread(target=publish, args=(a, api, stop, tally), daemon=True)
        thread.start()
        began, peak, probes = time.time(), 0.0, []
        while time.time() < stop + 6:
            if time.time() < stop:
                probes.append(probe(client))
            rss, s = vmrss_mib(server.pid), stats(api)
            peak = max(peak, rss)
            slowest = max(tally["answers"][-50:] or [0]) * 1000
            print(f"{time.time() - began:5.1f}s published {tally['published']:>8} "
                  f"VmRSS {rss:7.1f} MiB open {s['connections_open']} "
                  f"delivered {s['delivered_total']} held {s.get('publishes_held_total', '-')} "
                  f"shed {s['slow_consumer_closes_total']} slowest answer {slowest:.0f} ms "
                  f"newcomer {probes[-1] * 1000 if probes else 0:.0f} ms", flush=True)
            time.sleep(2)
        thread.join(timeout=35)
        # What was published is delivered after the flood: wait (at most 60 s) until
        # every delivery is counted or the count stops moving.
        expected = tally["published"] * a.connections
        s, settle = stats(api), time.time() + 60
        while s["delivered_total"] < expected and time.time() < settle:
            time.sleep(2)
            before, s = s["delivered_total"], stats(api)
            if s["delivered_total"] == before:
                break
        answers = sorted(tally["answers"]) or [0]
        print(f"summary: {tally['published']} published ({tally['refused']} batches refused), "
              f"{s['delivered_total']} of {expected} deliveries, peak VmRSS {peak:.1f} MiB, "
              f"{s['slow_consumer_closes_total']} subscribers shed, "
              f"{s.get('publishes_held_total', '-')} publishes held, answer p50 "
              f"{answers[len(answers) // 2] * 1000:.0f} ms max {answers[-1] * 1000:.0f} ms, "
              f"a newcomer's upgrade and subscribe p50 {median(probes) * 1000:.0f} ms "
              f"max {max(probes or [0]) * 1000:.0f} ms ({len(probes)} tried)")
    finally:
        if bench is not None and bench.poll() is None:
            bench.terminate()
            bench.wait(timeout=15)
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""gzip for SSE and long-polling (docs/benchmarks.md, "gzip for SSE and long-polling").

    flock /tmp/halley-measure.lock scripts/gzip-bench.py [--server target/release/halley]
        [--messages 20] [--subscribers 2000] [--fanout-messages 100] [--rate 20]

1. Bytes on the wire per delivery of a 1 KB JSON message (halley-bench's
   --payload-size 1024 shape), plain and with `Accept-Encoding: gzip`:
   - SSE: what one stream reads per event, once it is open (one message at a time);
   - long-poll: one whole answer (head and body) of a held keep-alive poll.
2. Server CPU per delivery of an SSE fan-out: N streams on one channel, all plain
   or all gzip, a fresh server each; the server's utime+stime from just before the
   first publish to the last delivery (delivered_total in /api/stats), over the
   deliveries. halley-bench cannot ask for gzip, so this script reads the streams
   itself (selectors, no inflating: the server's CPU is what is measured).
Starts its servers on 127.0.0.1 port 0, stops them by PID. Every wait is bounded.
"""
import argparse, http.client, json, os, re, selectors, socket, subprocess, sys, time, zlib

TIMEOUT = 30.0


def payload(i):
    items = ",".join(
        f'{{"id":{k},"name":"item {k}","price":{i}.{k},"tags":["a","b"]}}' for k in range(18)
    )
    return f'{{"t":{time.time():.6f},"i":{i},"items":[{items}]}}'


class Server:
    def __init__(self, binary, extra=()):
        args = [binary, "serve", "--listen", "127.0.0.1:0", "--api-listen", "127.0.0.1:0",
                "--stats", "false", "--ping-interval", "0", *extra]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        deadline = time.time() + 10
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            m = re.search(r"clients=(\S+) api=(\S+)", line)
            if m:
                self.client = m.group(1)
                self.api = m.group(2)
                break
        else:
            self.stop()
            sys.exit("no start-up line")
        host, port = self.api.rsplit(":", 1)
        self.http = http.client.HTTPConnection(host, int(port), timeout=TIMEOUT)

    def publish(self, channel, data):
        self.http.request("POST", f"/api/publish?channel={channel}", body=data)
        r = self.http.getresponse()
        body = r.read()
        assert r.status == 200, body

    def stats(self):
        self.http.request("GET", "/api/stats")
        return json.loads(self.http.getresponse().read())

    def cpu_s(self):
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def connect(addr):
    host, port = addr.rsplit(":", 1)
    s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def request(path, gzip, keep_alive=True):
    enc = "Accept-Encoding: gzip, deflate, br\r\n" if gzip else ""
    conn = "" if keep_alive else "Connection: close\r\n"
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{enc}{conn}\r\n".encode()


class Stream:
    """One SSE stream; `text` is what it carried, inflated when gzip'd."""

    def __init__(self, addr, channel, gzip):
        self.sock = connect(addr)
        self.sock.sendall(request(f"/sse?channel={channel}", gzip))
        self.gzip = gzip
        self.inflater = zlib.decompressobj(-15)
        self.text = b""
        buf = b""
        while b"\r\n\r\n" not in buf:
            buf += self.sock.recv(65536)
        head, rest = buf.split(b"\r\n\r\n", 1)
        assert (b"Content-Encoding: gzip" in head) == gzip, head
        if gzip:
            while len(rest) < 10:
                rest += self.sock.recv(65536)
            rest = rest[10:]
        self.feed(rest)
        self.until_events(0)  # the subscribed event

    def feed(self, raw):
        self.text += self.inflater.decompress(raw) if self.gzip else raw

    def until_events(self, n):
        """Reads until `n` id events (and the subscribed one) are complete; returns the raw bytes read."""
        raw = 0
        deadline = time.time() + TIMEOUT
        while not (self.text.count(b"\n\n") >= n + 2 and self.text.endswith(b"\n\n")):
            assert time.time() < deadline, "stream stalled"
            chunk = self.sock.recv(65536)
            assert chunk, "stream ended"
            raw += len(chunk)
            self.feed(chunk)
        return raw


def read_answer(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"Content-Length: (\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head, body


def wire_bytes(binary, messages):
    server = Server(binary)
    try:
        plain, gz = Stream(server.client, "w", False), Stream(server.client, "w", True)
        sse = {False: 0, True: 0}
        poll = {False: 0, True: 0}
        push = 0
        pollers = {g: connect(server.client) for g in (False, True)}
        for i in range(1, messages + 1):
            for g, s in pollers.items():
                s.sendall(request(f"/poll?channel=w&since={i - 1}", g))
            deadline = time.time() + TIMEOUT
            while server.stats()["polls_held"] < 2:
                assert time.time() < deadline
                time.sleep(0.01)
            data = payload(i)
            server.publish("w", data)
            for g, s in ((False, plain), (True, gz)):
                sse[g] += s.until_events(i)
            for g, s in pollers.items():
                head, body = read_answer(s)
                assert (b"Content-Encoding: gzip" in head) == g, head
                json.loads(zlib.decompress(body, 31) if g else body)
                poll[g] += len(head) + 4 + len(body)
            push += len(f'{{"channel":"w","seq":{i},"data":{data}}}')
        assert gz.text == plain.text, "the gzip stream inflates to the plain one"
        n = messages
        print(f"push JSON: {push / n:.0f} B per message ({n} messages)")
        print(f"SSE bytes per event:        plain {sse[False] / n:.0f}  gzip {sse[True] / n:.0f}"
              f"  ({sse[False] / sse[True]:.2f}x smaller)")
        print(f"long-poll bytes per answer: plain {poll[False] / n:.0f}  gzip {poll[True] / n:.0f}"
              f"  ({poll[False] / poll[True]:.2f}x smaller, head included)")
    finally:
        server.stop()


def fanout_cpu(binary, subscribers, messages, rate, gzip):
    server = Server(binary, ["--workers", "2"])
    socks = []
    try:
        sel = selectors.DefaultSelector()
        for _ in range(subscribers):
            s = connect(server.client)
            s.sendall(request("/sse?channel=f", gzip))
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
            socks.append(s)
        received = 0

        def drain(until):
            nonlocal received
            while True:
                left = until - time.time()
                if left <= 0:
                    return
                for key, _ in sel.select(min(left, 0.05)):
                    try:
                        chunk = key.fileobj.recv(262144)
                    except BlockingIOError:
                        continue
                    received += len(chunk)

        deadline = time.time() + TIMEOUT
        while server.stats()["sse_online"] < subscribers:
            assert time.time() < deadline, "streams did not open"
            drain(time.time() + 0.1)
        drain(time.time() + 0.5)
        received = 0
        before_stats = server.stats()["delivered_total"]
        cpu0 = server.cpu_s()
        t0 = time.time()
        for i in range(messages):
            server.publish("f", payload(i))
            drain(t0 + (i + 1) / rate)
        want = before_stats + subscribers * messages
        deadline = time.time() + TIMEOUT
        while server.stats()["delivered_total"] < want:
            assert time.time() < deadline, "deliveries missing"
            drain(time.time() + 0.05)
        cpu1 = server.cpu_s()
        drain(time.time() + 0.5)
        stats = server.stats()
        deliveries = subscribers * messages
        label = "gzip " if gzip else "plain"
        print(f"SSE fan-out {label}: {subscribers} streams x {messages} msgs at {rate}/s: "
              f"server CPU {(cpu1 - cpu0) * 1e9 / deliveries:,.0f} ns per delivery, "
              f"{received / deliveries:.0f} B read per delivery, "
              f"gzip_compressed_total {stats['gzip_compressed_total']}")
    finally:
        for s in socks:
            s.close()
        server.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", default="target/release/halley")
    ap.add_argument("--messages", type=int, default=20)
    ap.add_argument("--subscribers", type=int, default=2000)
    ap.add_argument("--fanout-messages", type=int, default=100)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--runs", type=int, default=2)
    a = ap.parse_args()
    wire_bytes(a.server, a.messages)
    for _ in range(a.runs):
        for gzip in (False, True):
            fanout_cpu(a.server, a.subscribers, a.fanout_messages, a.rate, gzip)


if __name__ == "__main__":
    main()

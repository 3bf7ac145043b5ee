#!/usr/bin/env python3
"""A fan-out under attack: the same `halley-bench fanout` run twice against one
server, first clean, then while an attacker holds garbage senders, slowloris
handshakes and a ping flood. Prints both verdicts side by side.

    scripts/abuse.py [--garbage 1000] [--slowloris 1000] [--ping-flood 50]
                     [--connections 10000] [--messages 50] [--publish-rate 5]
                     [--server target/release/halley] [--bench target/release/halley-bench]
                     [--port 28280] [-- extra server flags]

The attacker (this script with --attack) speaks only to 127.0.0.1, runs for a
bounded time, and is stopped by its PID. Every loop is bounded in count and time.
  - garbage: N sockets, each sending one of: random bytes, a malformed request
    line, a good upgrade followed by an invalid frame; reconnecting when closed.
  - slowloris: N sockets, each trickling a request head one byte a second.
  - ping flood: N upgraded WebSockets sending masked pings as fast as the socket
    takes them, never reading a pong.
"""
import argparse, json, os, random, re, selectors, signal, socket, struct, subprocess
import sys, time, urllib.request

UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
SLOW_HEAD = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nX-Pad: " + b"a" * 4000


def masked(opcode, payload):
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + body


def garbage_payload(rng):
    kind = rng.randrange(3)
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 2048))
    if kind == 1:
        return b"\x00GARBAGE / HTTP/9.9\r\n\r\n"
    # A good upgrade, then a frame with reserved bits and no mask.
    return UPGRADE + bytes([0xF1, 0x05]) + b"hello"


def attack(a):
    """Runs until --attack-seconds pass or SIGTERM; reports what it did as JSON."""
    rng = random.Random(7)
    sel = selectors.DefaultSelector()
    deadline = time.time() + a.attack_seconds
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    done = {"garbage_sent": 0, "garbage_reconnects": 0, "slow_bytes": 0,
            "slow_reconnects": 0, "pings_sent": 0, "connect_errors": 0}
    addr = ("127.0.0.1", a.port)

    def open_one(role):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect_ex(addr)
        except OSError:
            done["connect_errors"] += 1
            s.close()
            return
        state = {"role": role, "sock": s, "at": 0, "next": time.time()}
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE, state)

    def reopen(state, counter):
        sel.unregister(state["sock"])
        state["sock"].close()
        done[counter] += 1
        open_one(state["role"])

    for _ in range(a.garbage):
        open_one("garbage")
    for _ in range(a.slowloris):
        open_one("slow")
    for _ in range(a.ping_flood):
        open_one("flood")
    ping = masked(0x9, b"p" * 16) * 64
    while time.time() < deadline and not stop:
        now = time.time()
        for key, events in sel.select(timeout=0.05):
            state, s = key.data, key.fileobj
            if events & selectors.EVENT_READ:
                try:
                    data = s.recv(65536)
                except OSError:
                    data = b""
                if state["role"] == "flood" and data:
                    continue  # a flooder never reads on purpose; this drains the 101 only
                if not data:
                    reopen(state, "garbage_reconnects" if state["role"] != "slow"
                           else "slow_reconnects")
                    continue
            if not events & selectors.EVENT_WRITE or now < state["next"]:
                continue
            try:
                if state["role"] == "garbage":
                    s.send(garbage_payload(rng))
                    done["garbage_sent"] += 1
                    state["next"] = now + 0.5
                elif state["role"] == "slow":
                    if state["at"] < len(SLOW_HEAD):
                        s.send(SLOW_HEAD[state["at"]:state["at"] + 1])
                        state["at"] += 1
                        done["slow_bytes"] += 1
                    state["next"] = now + 1.0
                else:
                    if state["at"] == 0:
                        s.send(UPGRADE)
                        state["at"] = 1
                        # Stop reading: the pongs pile up on the server's side.
                        sel.modify(s, selectors.EVENT_WRITE, state)
                    else:
                        done["pings_sent"] += s.send(ping) // 24
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                reopen(state, "garbage_reconnects" if state["role"] != "slow"
                       else "slow_reconnects")
    print(json.dumps(done), flush=True)


def stats(api):
    with urllib.request.urlopen(f"http://{api}/api/stats", timeout=5) as r:
        return json.load(r)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def fanout(a, client, api):
    out = subprocess.run([a.bench, "--url", f"ws://{client}", "--api", f"http://{api}",
                          "--json", "--quiet", "fanout", "--connections", str(a.connections),
                          "--procs", "2", "--messages", str(a.messages),
                          "--publish-rate", str(a.publish_rate)],
                         capture_output=True, text=True, timeout=300)
    return json.loads(out.stdout.strip().splitlines()[-1])


def summary(label, v):
    q = v["latency_ms"]
    return (f"{label}: ok={v['ok']} connected={v['connected']} lost={v['lost']} "
            f"duplicated={v['duplicated']} out_of_order={v['out_of_order']} "
            f"p50={q['p50']} p99={q['p99']} max={q['max']} ms")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--garbage", type=int, default=1000)
    ap.add_argument("--slowloris", type=int, default=1000)
    ap.add_argument("--ping-flood", type=int, default=50)
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--messages", type=int, default=50)
    ap.add_argument("--publish-rate", type=int, default=5)
    ap.add_argument("--server", default="target/release/halley")
    ap.add_argument("--bench", default="target/release/halley-bench")
    ap.add_argument("--port", type=int, default=28280)
    ap.add_argument("--attack", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--attack-seconds", type=float, default=120)
    a, extra = ap.parse_known_args()
    if a.attack:
        return attack(a)
    extra = [x for x in extra if x != "--"]
    client, api = f"127.0.0.1:{a.port}", f"127.0.0.1:{a.port + 1}"
    server = subprocess.Popen([a.server, "serve", "--listen", client, "--api-listen", api,
                               "--stats", "false", *extra], stdout=subprocess.DEVNULL)
    attacker = None
    try:
        time.sleep(1.0)
        clean = fanout(a, client, api)
        print(summary("clean   ", clean), flush=True)
        attacker = subprocess.Popen([sys.executable, __file__, "--attack", "--port", str(a.port),
                                     "--garbage", str(a.garbage), "--slowloris",
                                     str(a.slowloris), "--ping-flood", str(a.ping_flood),
                                     "--attack-seconds", "240"],
                                    stdout=subprocess.PIPE, text=True)
        time.sleep(5)  # let the attack reach its full size
        rss_attacked = rss_kib(server.pid)
        attacked = fanout(a, client, api)
        print(summary("attacked", attacked), flush=True)
        attacker.send_signal(signal.SIGTERM)
        report, _ = attacker.communicate(timeout=30)
        print("attacker:", report.strip())
        s = stats(api)
        counted = {k: v for k, v in s.items() if k.endswith("_total") and v and
                   k not in ("published_total", "delivered_total", "connections_total")}
        print("server:", counted,
              f"rss_during_attack={rss_attacked} KiB rss_after={rss_kib(server.pid)} KiB")
        ok = clean["ok"] and attacked["ok"] and attacked["lost"] == 0
        print("PASS" if ok else "FAIL")
        sys.exit(0 if ok else 1)
    finally:
        if attacker and attacker.poll() is None:
            attacker.kill()
        server.terminate()
        server.wait(timeout=15)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""A burst of channels, and what stays once they are gone: N connections each on a
channel of its own, then all closed. Prints the server's RssAnon idle, with the N
held, and once `/api/stats` shows no channel left (the sweep removes a channel
`--poll-timeout` seconds after its last leave; this starts the server with 3).

    scripts/channel-burst.py [--connections 18000] [--server target/release/halley]
                             [--bench target/release/halley-bench] [--port 28180]

Starts its own server on 127.0.0.1 and stops it by its PID; every wait is bounded.
"""
import argparse, importlib.util, os, subprocess, sys, time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("hold_rss", os.path.join(HERE, "hold-rss.py"))
hold_rss = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hold_rss)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connections", type=int, default=18_000)
    ap.add_argument("--server", default="target/release/halley")
    ap.add_argument("--bench", default="target/release/halley-bench")
    ap.add_argument("--port", type=int, default=28180)
    a = ap.parse_args()
    # What hold-rss.py's start_bench reads: a channel of its own each, WebSockets.
    a.case, a.transport, a.token_secret_file = "own", "ws", None
    client, api = f"127.0.0.1:{a.port}", f"127.0.0.1:{a.port + 1}"
    server = subprocess.Popen([a.server, "serve", "--listen", client, "--api-listen", api,
                               "--ping-interval", "0", "--idle-timeout", "0", "--stats", "false",
                               "--poll-timeout", "3"], stdout=subprocess.DEVNULL)
    bench = None
    try:
        time.sleep(1.5)
        hold_rss.stats(api)
        idle = hold_rss.rss_kib(server.pid)[1]
        bench = hold_rss.start_bench(a, client, api, [], a.connections, "burst", 4)
        hold_rss.wait_open(api, a.connections, bench)
        time.sleep(2)
        held, channels = hold_rss.rss_kib(server.pid)[1], hold_rss.stats(api).get("channels")
        failed = hold_rss.failures(bench)
        deadline = time.time() + 30
        while hold_rss.stats(api).get("channels", 0) > 0:
            if time.time() > deadline:
                sys.exit("the channels were never all removed")
            time.sleep(0.5)
        time.sleep(3)
        gone = hold_rss.rss_kib(server.pid)[1]
        print(f"RssAnon idle {idle} KiB, {a.connections} held {held} KiB ({channels} channels), "
              f"all removed {gone} KiB (bench failed: {failed})")
    finally:
        if bench and bench.poll() is None:
            bench.kill()
            bench.wait(timeout=15)
        server.terminate()
        server.wait(timeout=15)

if __name__ == "__main__":
    main()

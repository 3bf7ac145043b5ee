#!/usr/bin/env python3
"""Server RSS per held connection, as an outside client sees it: the idle server's
VmRSS, then VmRSS once N connections are held by halley-bench, divided by N.

    scripts/hold-rss.py [--transport ws|sse|poll] [--connections 10000] [--runs 3]
                        [--server target/release/halley] [--bench target/release/halley-bench]

Starts its own server on 127.0.0.1 (fixed ports 28180/28181, or --port), reads
VmRSS from /proc 1.5 s after start-up and 1 s after /api/stats shows all N
connections, stops the server by its PID. Every wait is bounded.
"""
import argparse, json, re, subprocess, sys, time, urllib.request

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

API_KEY = None  # --api-key-file's key, sent as Authorization: Bearer on every API call

def stats(api):
    headers = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
    req = urllib.request.Request(f"http://{api}/api/stats", headers=headers)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)

def one_run(a, port, key_args):
    client, api = f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"
    server = subprocess.Popen([a.server, "serve", "--listen", client, "--api-listen", api,
                               "--ping-interval", "0", "--idle-timeout", "0", "--stats", "false",
                               *key_args],
                              stdout=subprocess.DEVNULL)
    bench = None
    try:
        time.sleep(1.5)
        idle = rss_kib(server.pid)
        bench = subprocess.Popen([a.bench, "--url", f"ws://{client}", "--api", f"http://{api}",
                                  "--json", "--quiet", "--transport", a.transport, *key_args, "hold",
                                  "--connections", str(a.connections), "--procs", "2",
                                  "--duration", "5"], stdout=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while stats(api)["connections_open"] < a.connections:
            if time.time() > deadline or bench.poll() is not None:
                sys.exit("the connections never were all open")
            time.sleep(0.2)
        time.sleep(1)
        held = rss_kib(server.pid)
        out, _ = bench.communicate(timeout=60)
        verdict = json.loads(out.strip().splitlines()[-1])
        failed = verdict.get("failed", {})
        failed = failed.get("total", failed) if isinstance(failed, dict) else failed
        return idle, held, failed
    finally:
        if bench and bench.poll() is None:
            bench.kill()
        server.terminate()
        server.wait(timeout=15)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", default="ws")
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--server", default="target/release/halley")
    ap.add_argument("--bench", default="target/release/halley-bench")
    ap.add_argument("--port", type=int, default=28180)
    ap.add_argument("--api-key-file", help="pass this API key file to the server and send its key")
    a = ap.parse_args()
    global API_KEY
    key_args = []
    if a.api_key_file:
        with open(a.api_key_file) as f:
            API_KEY = f.read().strip()
        key_args = ["--api-key-file", a.api_key_file]
    for run in range(a.runs):
        idle, held, failed = one_run(a, a.port, key_args)
        per = (held - idle) * 1024 / a.connections
        print(f"{a.transport} run {run + 1}: idle {idle} KiB, {a.connections} held {held} KiB: "
              f"{per:.1f} B/conn (bench failed: {failed})", flush=True)
        time.sleep(1)

if __name__ == "__main__":
    main()

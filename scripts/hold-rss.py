#!/usr/bin/env python3
"""Server RSS per held connection, as an outside client sees it: the idle server's
VmRSS, then VmRSS once N connections are held by halley-bench, divided by N.

    scripts/hold-rss.py [--transport ws|sse|poll] [--connections 10000] [--runs 3]
                        [--case shared|own|pairs|none] [--base 0] [--wait 1]
                        [--env NAME=VALUE] [--server target/release/halley]
                        [--bench target/release/halley-bench] [--token-secret-file F]

--case: every connection on one shared channel (default), each on a channel of its
own, two on each channel (a user with two tabs; connection i and i + N/2 share one),
or none subscribed (WebSocket only). --base B first opens and holds B
connections and measures from there (the growth method: B -> B + N). --env sets a
variable for the server only (e.g. _RJEM_MALLOC_CONF=...). --warm serves 10
short-lived connections before the idle reading. Each run prints VmRSS and RssAnon
per connection (the latter without the binary's code pages). --token-secret-file F
starts the server with --require-token and that secret, and every connection of
halley-bench carries a token signed with it (sub bench-N, one per connection).

Starts its own server on 127.0.0.1 (fixed ports 28180/28181, or --port), reads
VmRSS from /proc (and jemalloc's allocated bytes from /api/stats) 1.5 s after start-up (or --wait s after the base is all open) and
--wait s after /api/stats shows all connections, stops the server by its PID.
Every wait is bounded.
"""
import argparse, json, os, re, subprocess, sys, time, urllib.request

def rss_kib(pid):
    """VmRSS and RssAnon: the second leaves out the binary's code pages (file-backed,
    shared with the page cache), which the first connections fault in."""
    with open(f"/proc/{pid}/status") as f:
        status = f.read()
    return tuple(int(re.search(rf"{name}:\s+(\d+)", status).group(1))
                 for name in ("VmRSS", "RssAnon"))

API_KEY = None  # --api-key-file's key, sent as Authorization: Bearer on every API call

def stats(api):
    headers = {"Authorization": f"Bearer {API_KEY}"} if API_KEY else {}
    req = urllib.request.Request(f"http://{api}/api/stats", headers=headers)
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)

def start_bench(a, client, api, key_args, count, prefix, duration):
    key_args = key_args + (["--token-secret-file", a.token_secret_file] if a.token_secret_file else [])
    channels = {"own": count, "pairs": max(count // 2, 1)}.get(a.case, 1)
    case_args = ["--no-subscribe"] if a.case == "none" else []
    return subprocess.Popen([a.bench, "--url", f"ws://{client}", "--api", f"http://{api}",
                             "--json", "--quiet", "--transport", a.transport, *key_args,
                             "--channels", str(channels), "--channel-prefix", prefix, "hold",
                             "--connections", str(count), "--procs", "2",
                             "--duration", str(duration), *case_args],
                            stdout=subprocess.PIPE, text=True)

def wait_open(api, count, bench):
    deadline = time.time() + 60
    while stats(api)["connections_open"] < count:
        if time.time() > deadline or bench.poll() is not None:
            sys.exit("the connections never were all open")
        time.sleep(0.2)

def failures(bench):
    out, _ = bench.communicate(timeout=90)
    verdict = json.loads(out.strip().splitlines()[-1])
    failed = verdict.get("failed", {})
    return failed.get("total", failed) if isinstance(failed, dict) else failed

def token_args(a):
    """The server's side of --token-secret-file: every channel needs a token."""
    return ["--require-token", "--token-secret-file", a.token_secret_file] if a.token_secret_file else []

def one_run(a, port, key_args):
    client, api = f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"
    env = dict(os.environ)
    for item in a.env:
        name, _, value = item.partition("=")
        env[name] = value
    server = subprocess.Popen([a.server, "serve", "--listen", client, "--api-listen", api,
                               "--ping-interval", "0", "--idle-timeout", "0", "--stats", "false",
                               *key_args, *token_args(a)],
                              stdout=subprocess.DEVNULL, env=env)
    benches = []
    try:
        time.sleep(1.5)
        hold_s = 5 + a.wait
        # The first /api/stats call allocates the API thread's buffers: paid here,
        # before the idle reading, since the bench's progress is read through it.
        stats(api)
        if a.warm:
            # One short-lived client first, so one-time costs (code pages, the
            # threads' first buffers) fall before the idle reading.
            warm = start_bench(a, client, api, key_args, 10, "warm", 1)
            failures(warm)
            time.sleep(1.5)
        if a.base:
            benches.append(start_bench(a, client, api, key_args, a.base, "base", hold_s + 15))
            wait_open(api, a.base, benches[-1])
            time.sleep(a.wait)
        idle, idle_heap = rss_kib(server.pid), stats(api)["allocated_bytes"]
        benches.append(start_bench(a, client, api, key_args, a.connections, "bench", hold_s))
        wait_open(api, a.base + a.connections, benches[-1])
        time.sleep(a.wait)
        held, held_heap = rss_kib(server.pid), stats(api)["allocated_bytes"]
        failed = failures(benches[-1])
        return idle, held, (held_heap - idle_heap) / a.connections, failed
    finally:
        for bench in benches:
            if bench.poll() is None:
                bench.kill()
                bench.wait(timeout=15)
        server.terminate()
        server.wait(timeout=15)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--transport", default="ws")
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--case", choices=["shared", "own", "pairs", "none"], default="shared")
    ap.add_argument("--base", type=int, default=0)
    ap.add_argument("--wait", type=float, default=1.0)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--server", default="target/release/halley")
    ap.add_argument("--bench", default="target/release/halley-bench")
    ap.add_argument("--port", type=int, default=28180)
    ap.add_argument("--warm", action="store_true",
                    help="serve 10 short-lived connections before the idle reading")
    ap.add_argument("--api-key-file", help="pass this API key file to the server and send its key")
    ap.add_argument("--token-secret-file",
                    help="server: --require-token with this secret; halley-bench: a token per connection")
    a = ap.parse_args()
    global API_KEY
    key_args = []
    if a.api_key_file:
        with open(a.api_key_file) as f:
            API_KEY = f.read().strip()
        key_args = ["--api-key-file", a.api_key_file]
    for run in range(a.runs):
        idle, held, heap, failed = one_run(a, a.port, key_args)
        per = (held[0] - idle[0]) * 1024 / a.connections
        anon = (held[1] - idle[1]) * 1024 / a.connections
        print(f"{a.transport} {a.case}{' tokens' if a.token_secret_file else ''}"
              f"{' warm' if a.warm else ''} run {run + 1}: "
              f"{'idle' if not a.base else f'{a.base} held'} {idle[0]} KiB, "
              f"+{a.connections} held {held[0]} KiB: {per:.1f} B/conn (RssAnon {anon:.1f} B/conn), "
              f"heap {heap:.1f} B/conn (bench failed: {failed})", flush=True)
        time.sleep(1)

if __name__ == "__main__":
    main()

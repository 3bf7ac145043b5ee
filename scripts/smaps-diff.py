#!/usr/bin/env python3
"""Where a server's RSS goes when it takes N idle connections: /proc/PID/smaps of
the idle server (after one /api/stats call) against the same with N connections
held by halley-bench, mapping by mapping.

    scripts/smaps-diff.py [--case shared|own|none] [--connections 10000]
                          [--server target/release/halley]
                          [--bench target/release/halley-bench] [--port 28380]

Prints the total RSS and jemalloc-allocated growth per connection, then every
mapping whose RSS changed: the binary's own mapping is its code pages (file-backed),
the anonymous ones jemalloc's arenas and the threads' stacks. Starts its own server
on 127.0.0.1 and stops it by its PID; every wait is bounded.
"""
import argparse, json, re, subprocess, sys, time, urllib.request


def smaps(pid):
    out, current = {}, None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split()
                current = parts[0] + " " + (parts[5] if len(parts) > 5 else "[anon]")
                out[current] = {}
            else:
                m = re.match(r"^(\w+):\s+(\d+) kB", line)
                if m and current:
                    out[current][m.group(1)] = int(m.group(2))
    return out


def stats(api):
    with urllib.request.urlopen(f"http://{api}/api/stats", timeout=5) as r:
        return json.load(r)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=["shared", "own", "none"], default="shared")
    ap.add_argument("--connections", type=int, default=10_000)
    ap.add_argument("--server", default="target/release/halley")
    ap.add_argument("--bench", default="target/release/halley-bench")
    ap.add_argument("--port", type=int, default=28380)
    a = ap.parse_args()
    client, api = f"127.0.0.1:{a.port}", f"127.0.0.1:{a.port + 1}"
    server = subprocess.Popen([a.server, "serve", "--listen", client, "--api-listen", api,
                               "--ping-interval", "0", "--idle-timeout", "0", "--stats", "false"],
                              stdout=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        stats(api)  # the API thread's first buffers, before the idle reading
        time.sleep(1.5)
        idle, idle_heap = smaps(server.pid), stats(api)["allocated_bytes"]
        channels = a.connections if a.case == "own" else 1
        extra = ["--no-subscribe"] if a.case == "none" else []
        bench = subprocess.Popen([a.bench, "--url", f"ws://{client}", "--api", f"http://{api}",
                                  "--json", "--quiet", "--channels", str(channels),
                                  "--channel-prefix", "bench", "hold", "--connections",
                                  str(a.connections), "--procs", "2", "--duration", "12", *extra],
                                 stdout=subprocess.DEVNULL)
        deadline = time.time() + 60
        while stats(api)["connections_open"] < a.connections:
            if time.time() > deadline or bench.poll() is not None:
                sys.exit("the connections never were all open")
            time.sleep(0.2)
        time.sleep(2)
        held, held_heap = smaps(server.pid), stats(api)["allocated_bytes"]
        bench.wait(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=15)
    total = lambda maps: sum(m.get("Rss", 0) for m in maps.values())
    grown = total(held) - total(idle)
    print(f"{a.case}: RSS +{grown} KiB = {grown * 1024 / a.connections:.1f} B/conn, "
          f"allocated +{(held_heap - idle_heap) / 1024:.0f} KiB = "
          f"{(held_heap - idle_heap) / a.connections:.1f} B/conn")
    for name in sorted(set(idle) | set(held)):
        before = idle.get(name, {}).get("Rss", 0)
        after = held.get(name, {}).get("Rss", 0)
        if before != after:
            size = held.get(name, idle.get(name, {})).get("Size", 0)
            print(f"  {after - before:+6d} KiB  (mapping {size} KiB, RSS {before} -> {after})  {name}")


if __name__ == "__main__":
    main()

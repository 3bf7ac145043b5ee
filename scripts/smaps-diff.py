#!/usr/bin/env python3
"""Where a server's RSS goes when it takes N idle connections: /proc/PID/smaps of
the idle server (after one /api/stats call) against the same with N connections
held by halley-bench, mapping by mapping.

    scripts/smaps-diff.py [--case shared|own|none] [--connections 10000]
                          [--server target/release/halley]
                          [--bench target/release/halley-bench] [--port 28380]

Prints the total RSS and jemalloc-allocated growth per connection; then that growth
split by the server's own memory figures (/api/stats): code pages (file-backed),
and of the anonymous pages what the server has allocated, jemalloc's metadata, and
the rest (touched pages of partly used slabs, the threads' stacks); then every
mapping whose RSS changed. Starts its own server
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
        idle, idle_stats = smaps(server.pid), stats(api)
        idle_heap = idle_stats["allocated_bytes"]
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
        held, held_stats = smaps(server.pid), stats(api)
        held_heap = held_stats["allocated_bytes"]
        bench.wait(timeout=60)
    finally:
        server.terminate()
        server.wait(timeout=15)
    total = lambda maps: sum(m.get("Rss", 0) for m in maps.values())
    grown = total(held) - total(idle)
    print(f"{a.case}: RSS +{grown} KiB = {grown * 1024 / a.connections:.1f} B/conn, "
          f"allocated +{(held_heap - idle_heap) / 1024:.0f} KiB = "
          f"{(held_heap - idle_heap) / a.connections:.1f} B/conn")
    print_split(idle_stats, held_stats, a.connections)
    for name in sorted(set(idle) | set(held)):
        before = idle.get(name, {}).get("Rss", 0)
        after = held.get(name, {}).get("Rss", 0)
        if before != after:
            size = held.get(name, idle.get(name, {})).get("Size", 0)
            print(f"  {after - before:+6d} KiB  (mapping {size} KiB, RSS {before} -> {after})  {name}")


def print_split(idle, held, n):
    """The growth in RSS, part by part, from the server's memory figures. jemalloc's
    active and resident count whole slabs and extents, touched or not, so they are
    printed beside the kernel's figures, not subtracted from them."""
    def grew(key):
        return held[key] - idle[key]
    rss, file = grew("rss_bytes"), grew("rss_file_bytes")
    anon, allocated = rss - file, grew("allocated_bytes")
    metadata = grew("allocator_metadata_bytes")
    rest = anon - allocated - metadata
    slots = grew("allocator_active_bytes") - allocated
    row = lambda b: f"{b / 1024:+8.0f} KiB = {b / n:+6.1f} B/conn"
    print(f"  split of RSS {row(rss)}:")
    print(f"    {row(file)}  code and libraries (file-backed)")
    print(f"    {row(anon)}  anonymous (RssAnon), of which")
    print(f"      {row(allocated)}  allocated by the server (jemalloc)")
    print(f"      {row(metadata)}  jemalloc's metadata")
    print(f"      {row(rest)}  the rest: touched pages of partly used slabs, "
          f"the threads' stacks")
    print(f"    ({row(slots)}  what jemalloc counts as free slots in its slabs, "
          f"touched or not)")


if __name__ == "__main__":
    main()

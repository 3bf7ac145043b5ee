#!/usr/bin/env python3
"""Server CPU per delivery under a halley-bench scenario, as an outside client sees it.

    scripts/cpu-per-delivery.py [--runs 2] [--env NAME=VALUE] [--server target/release/halley]
        [--bench target/release/halley-bench] [--perf FILE] [--syscalls] [--server-arg ARG]
        -- SCENARIO ARGS...
    e.g. scripts/cpu-per-delivery.py -- own-channels --connections 10000 --messages 500000
         scripts/cpu-per-delivery.py -- --connections 10000 fanout --messages 200 --publish-rate 0

Starts its own server on 127.0.0.1 (ports 28280/28281, RESP on 28282; --server-arg
adds arguments to `halley serve`), runs halley-bench with --url/--api/--resp/--json/
--quiet/--procs 2 added (so `own-channels --via resp` works), and reads the server's
utime + stime from /proc/PID/stat right before and after the bench (the
subscribers' opening phase included: the figure is an upper bound), the same per
server thread, and the bench's own CPU (its process tree, from getrusage). With
--syscalls it also counts each server thread's socket, epoll and waker syscalls
(`perf stat`). Prints the bench's deliveries/s, latency p50/p99, lost and failed,
and the CPU µs per delivery. --perf FILE records the server with `perf record -g`
during the run. Stops what it started by PID.
"""
import argparse, json, os, resource, subprocess, sys, time

def cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)

SYSCALLS = ["recvfrom", "sendto", "writev", "epoll_wait", "write", "read"]

def threads(pid):
    """{thread name: cpu ticks}, summed over the threads of a name."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            out[name] = out.get(name, 0) + cpu_ticks(f"{pid}/task/{tid}")
        except OSError:
            continue
    return out

def syscall_counts(path):
    """{thread name: {syscall: count}} from `perf stat --per-thread -x,` output."""
    out = {}
    with open(path) as f:
        for line in f:
            parts = line.strip().split(",")
            if len(parts) < 4 or not parts[0] or parts[0].startswith("#"):
                continue
            name = parts[0].rsplit("-", 1)[0]
            event = parts[3].split("sys_enter_")[-1]
            try:
                count = int(parts[1])
            except ValueError:
                continue
            row = out.setdefault(name, {})
            row[event] = row.get(event, 0) + count
    return out

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--server", default="target/release/halley")
    ap.add_argument("--bench", default="target/release/halley-bench")
    ap.add_argument("--port", type=int, default=28280)
    ap.add_argument("--perf")
    ap.add_argument("--syscalls", action="store_true",
                    help="count each server thread's socket and epoll syscalls (perf stat)")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="one more argument for `halley serve` (repeat it)")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    env = dict(os.environ)
    for item in a.env:
        name, _, value = item.partition("=")
        env[name] = value
    hz = os.sysconf("SC_CLK_TCK")
    client, api = f"127.0.0.1:{a.port}", f"127.0.0.1:{a.port + 1}"
    resp = f"127.0.0.1:{a.port + 2}"
    for run in range(a.runs):
        server = subprocess.Popen([a.server, "serve", "--listen", client, "--api-listen", api,
                                   "--ping-interval", "0", "--idle-timeout", "0",
                                   "--stats", "false", "--resp-listen", resp,
                                   *a.server_arg], stdout=subprocess.DEVNULL, env=env)
        perf = None
        counter = None
        counts_file = f"/tmp/cpu-per-delivery-syscalls.{os.getpid()}"
        try:
            time.sleep(1.5)
            if a.perf:
                perf = subprocess.Popen(["perf", "record", "-g", "-o", f"{a.perf}.{run + 1}",
                                         "-p", str(server.pid)], stderr=subprocess.DEVNULL)
            if a.syscalls:
                events = ",".join(f"syscalls:sys_enter_{c}" for c in SYSCALLS)
                counter = subprocess.Popen(["perf", "stat", "--per-thread", "-x,", "-e", events,
                                            "-o", counts_file, "-p", str(server.pid)],
                                           stderr=subprocess.DEVNULL)
            before, tasks_before = cpu_ticks(server.pid), threads(server.pid)
            bench_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            out = subprocess.run([a.bench, "--url", f"ws://{client}", "--api", f"http://{api}",
                                  "--resp", resp,
                                  "--json", "--quiet", "--procs", "2", *args],
                                 stdout=subprocess.PIPE, text=True, timeout=300).stdout
            after, tasks_after = cpu_ticks(server.pid), threads(server.pid)
            bench_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        finally:
            for tool in (perf, counter):
                if tool:
                    tool.send_signal(2)
                    tool.wait(timeout=60)
            server.terminate()
            server.wait(timeout=15)
        v = json.loads(out.strip().splitlines()[-1])
        deliveries = v.get("deliveries", 0)
        cpu_s = (after - before) / hz
        per = cpu_s * 1e6 / deliveries if deliveries else float("nan")
        lat = v.get("latency_ms", {})
        # The bench and its children, reaped by now (the server is not yet).
        bench_s = sum(getattr(bench_after, f) - getattr(bench_before, f)
                      for f in ("ru_utime", "ru_stime"))
        bench_per = bench_s * 1e6 / deliveries if deliveries else float("nan")
        print(f"run {run + 1}: {deliveries} deliveries, {v.get('deliveries_per_s')}/s, "
              f"latency p50 {lat.get('p50')} p99 {lat.get('p99')} ms, lost {v.get('lost')}, "
              f"failed {v.get('failed', {}).get('total')}; server CPU {cpu_s:.2f} s = {per:.2f} µs/delivery; "
              f"bench CPU {bench_s:.2f} s = {bench_per:.2f} µs/delivery", flush=True)
        counts = syscall_counts(counts_file) if counter else {}
        for name, ticks in sorted(tasks_after.items()):
            cpu = ticks - tasks_before.get(name, 0)
            if cpu == 0 or not deliveries:
                continue
            calls = ", ".join(f"{c} {n / deliveries:.3f}"
                              for c, n in sorted(counts.get(name, {}).items()) if n)
            print(f"  {name}: {cpu / hz:.2f} s = {cpu / hz * 1e6 / deliveries:.2f} µs/delivery"
                  + (f"; per delivery: {calls}" if calls else ""), flush=True)
        time.sleep(1)

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Verdict for a tsung 1.7.0 run against Halley (tsung itself exits 0 even when every
connection failed, so the pass/fail decision is made here).

Usage:
    tsung/check.py RUN_DIR [--expect-users N]

RUN_DIR is a directory made by tsung/run.sh (tsung/logs/<scenario>-<date>-<pid>/) or a
plain tsung log directory (the YYYYMMDD-HHMM directory holding tsung.log). Files read:

    tsung.log                   stats dumped every 10 s, ends with EndMonitor
    tsung_controller@*.log      EMERG lines, ERROR REPORTs
    tsung<N>@*.log              per client VM: ERROR/CRASH REPORTs (user crashes)
    match.log                   one line per <match do="log"> hit
    <scenario>.xml              run.sh's substituted copy (knobs, kit-checks, expected
                                users); else the expanded copy tsung keeps
    api-stats.log   (run.sh)    "EPOCH_MS {GET /api/stats JSON}" lines sampled each second
    halley.log      (run.sh)    the server's console (panics)
    meta            (run.sh)    key=value facts about the run (server alive, exit code)

Checks (each one counts in the final "N passed, N failed" line):
    tsung.log complete (EndMonitor), every error_* counter 0, nomatch 0, websocket_fail 0,
    no HTTP 4xx/5xx, no ERROR/CRASH REPORT, no "Maximum number of concurrent users",
    no abort / max duration hit, users_count == expected, finish_users_count ==
    users_count, the server survived the run (run.sh), and every
    <!-- kit-check: EXPR --> comment found in the scenario (see below).

kit-check expressions are Python expressions over: the scenario's knobs (its
<!ENTITY name "value"> declarations, numbers when numeric), count(name) / mean(name) /
max(name) / min(name) of a tsung sample (e.g. tr_push_latency, connect), counter(name)
(final total of a counter, e.g. websocket_succ, or one a scenario's eval adds with
ts_mon_cache:add({count, Name})), http_total (all HTTP status counters added up), users
(the users knob), peak_online (largest "online" seen in api-stats.log), api_delta(key)
/ api_peak(key) (growth over the run / largest value of a /api/stats field),
has_api_stats.

Exit status: 0 all checks passed, 1 a check failed, 2 no usable tsung.log.
"""
import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET


def find_tsung_dir(run_dir):
    if os.path.isfile(os.path.join(run_dir, "tsung.log")):
        return run_dir
    cands = sorted(glob.glob(os.path.join(run_dir, "tsung", "*", "tsung.log")))
    cands += sorted(glob.glob(os.path.join(run_dir, "*", "tsung.log")))
    if not cands:
        return None
    return os.path.dirname(cands[-1])


def parse_tsung_log(path):
    """Return (counters, samples, blocks, complete).

    counters: name -> final total (last 'stats: NAME interval total' line)
    samples:  name -> dict(n, mean, max, min) over the whole run
    blocks:   list of (dump_time_s, {counter: interval_count}) for rate figures
    """
    counters, samples, blocks = {}, {}, []
    complete = False
    cur_time, cur = None, {}
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if line.startswith("# stats: dump at "):
                if cur_time is not None:
                    blocks.append((cur_time, cur))
                cur_time, cur = int(line.split()[-1]), {}
                continue
            if line.startswith("EndMonitor"):
                complete = True
                continue
            if not line.startswith("stats: ") or line.startswith("stats: {"):
                continue  # os_mon {cpu,...}/{freemem,...}/{load,...} lines
            parts = line.split()
            name, vals = parts[1], parts[2:]
            try:
                nums = [float(v) for v in vals]
            except ValueError:
                continue
            if len(nums) == 2:
                counters[name] = nums[1]
                cur[name] = nums[0]
            elif len(nums) == 7:
                n, mean, _sd, mx, mn, mean_before, n_before = nums
                total = n + n_before
                tmean = (n * mean + n_before * mean_before) / total if total else 0.0
                samples[name] = {"n": int(total), "mean": tmean, "max": mx, "min": mn}
    if cur_time is not None:
        blocks.append((cur_time, cur))
    return counters, samples, blocks, complete


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def scenario_info(tdir, run_dir):
    """Expected users, knobs and kit-checks from the scenario copy."""
    # run.sh's own copy first: the copy tsung writes into its log dir has the entities
    # expanded and the comments (kit-checks) stripped.
    xmls = sorted(glob.glob(os.path.join(run_dir, "*.xml"))) if run_dir else []
    if not xmls:
        xmls = sorted(glob.glob(os.path.join(tdir, "*.xml")))
    if not xmls:
        return None, {}, [], None
    path = xmls[0]
    text = read(path)
    knobs = {}
    for m in re.finditer(r"<!ENTITY\s+(\w+)\s+(?:\"([^\"]*)\"|'([^']*)')\s*>", text):
        v = m.group(2) if m.group(2) is not None else m.group(3)
        try:
            v = int(v)
        except ValueError:
            try:
                v = float(v)
            except ValueError:
                pass
        knobs[m.group(1)] = v
    checks = re.findall(r"<!--\s*kit-check:\s*(.*?)\s*-->", text)
    expected = None
    try:
        root = ET.parse(path).getroot()
        random_users = sum(int(u.get("maxnumber", "0")) for u in root.iter("users"))
        static_users = len(list(root.iter("user")))
        expected = random_users + static_users
    except (ET.ParseError, ValueError) as e:
        print(f"warning: cannot parse {path}: {e}")
    return expected, knobs, checks, os.path.basename(path)


def api_samples(path):
    out = []
    for line in read(path).splitlines():
        ts, _, js = line.partition(" ")
        try:
            out.append((int(ts), json.loads(js)))
        except (ValueError, json.JSONDecodeError):
            continue
    return out


def fmt_ms(v):
    return f"{v:.1f} ms" if v is not None else "-"


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 2
    run_dir = argv[1]
    expect_users = None
    if "--expect-users" in argv:
        expect_users = int(argv[argv.index("--expect-users") + 1])
    tdir = find_tsung_dir(run_dir)
    if not tdir:
        print(f"FAIL: no tsung.log under {run_dir}")
        print("0 passed, 1 failed")
        return 2
    owns_run_dir = os.path.abspath(tdir) != os.path.abspath(run_dir)
    counters, samples, blocks, complete = parse_tsung_log(os.path.join(tdir, "tsung.log"))
    expected, knobs, kit_checks, xml_name = scenario_info(tdir, run_dir if owns_run_dir else None)
    if expect_users is not None:
        expected = expect_users

    meta = {}
    if owns_run_dir:
        for line in read(os.path.join(run_dir, "meta")).splitlines():
            k, _, v = line.partition("=")
            meta[k.strip()] = v.strip()

    ctrl_logs = glob.glob(os.path.join(tdir, "tsung_controller@*.log"))
    vm_logs = [p for p in glob.glob(os.path.join(tdir, "tsung*@*.log")) if p not in ctrl_logs]
    ctrl_text = "".join(read(p) for p in ctrl_logs)
    all_logs = {os.path.basename(p): read(p) for p in ctrl_logs + vm_logs}
    stats = api_samples(os.path.join(run_dir, "api-stats.log")) if owns_run_dir else []

    results = []  # (ok, label, detail)

    def check(ok, label, detail=""):
        results.append((bool(ok), label, detail))

    def counter(name):
        return counters.get(name, 0)

    # --- checks -------------------------------------------------------------------
    check(complete, "tsung.log complete (EndMonitor)")
    errs = {k: int(v) for k, v in counters.items() if k.startswith("error_") and v > 0}
    check(not errs, "no error_* counters", ", ".join(f"{k}={v}" for k, v in sorted(errs.items())))
    check(counter("nomatch") == 0, "nomatch == 0", f"nomatch={int(counter('nomatch'))}"
          + (" (see match.log)" if counter("nomatch") else ""))
    check(counter("websocket_fail") == 0, "websocket_fail == 0",
          f"websocket_fail={int(counter('websocket_fail'))}")
    bad_http = {k: int(v) for k, v in counters.items() if re.fullmatch(r"[45]\d\d", k) and v > 0}
    check(not bad_http, "no HTTP 4xx/5xx", ", ".join(f"{k}={v}" for k, v in sorted(bad_http.items())))
    reports = []
    for name, text in all_logs.items():
        for kind in ("ERROR REPORT", "CRASH REPORT"):
            c = text.count(kind)
            if c:
                reports.append(f"{name}: {c} {kind}")
    check(not reports, "no ERROR/CRASH REPORT in tsung logs", "; ".join(reports))
    check("Maximum number of concurrent users" not in ctrl_text,
          "no 'Maximum number of concurrent users' (maxusers/use_controller_vm)")
    aborts = [s for s in ("Aborting by request", "max duration reached", "aborted by request",
                          "Abort !", "Aborting!") if s in ctrl_text]
    check(not aborts, "no abort / max duration hit", ", ".join(aborts))
    users_count = int(counter("users_count"))
    finish = int(counter("finish_users_count"))
    if expected is not None:
        check(users_count == expected, "users_count == expected",
              f"users_count={users_count} expected={expected}")
    else:
        check(False, "users_count == expected", "expected unknown (no scenario copy)")
    check(finish == users_count and users_count > 0, "finish_users_count == users_count",
          f"finish_users_count={finish} users_count={users_count}")
    if "server_alive" in meta:
        check(meta["server_alive"] == "yes", "server alive until tsung finished",
              meta.get("server_note", ""))
    if "server_exit" in meta:
        check(meta["server_exit"] in ("0", "none"), "server exited cleanly on SIGTERM",
              f"exit={meta['server_exit']}")
    hlog = read(os.path.join(run_dir, "halley.log")) if owns_run_dir else ""
    if hlog:
        panics = [l for l in hlog.splitlines() if "panicked" in l]
        check(not panics, "no panic in halley.log", panics[0] if panics else "")

    if meta.get("api_expected") == "yes":
        check(bool(stats), "GET /api/stats sampled during the run",
              f"{len(stats)} samples in api-stats.log")
    if len(stats) >= 2:
        # server-side error counters (Halley's /api/stats); deltas over the run so that a
        # long-running server's history does not count
        first, last = stats[0][1], stats[-1][1]
        # (poll_timeouts_total is not an error: a long-poll held to --poll-timeout and
        # answered empty, which longpoll.xml checks for on purpose)
        grew = {k: last[k] - first.get(k, 0) for k in last
                if isinstance(last[k], int) and re.search(
                    r"(errors|drops|rejected|timeouts)_total$", k)
                and k != "poll_timeouts_total"
                and last[k] - first.get(k, 0) > 0}
        check(not grew, "server error counters did not move (/api/stats)",
              ", ".join(f"{k}+={v}" for k, v in sorted(grew.items())))
    peak_online, peak_sample, base_sample = 0, None, None
    if stats:
        base_sample = stats[0][1]
        for _ts, s in stats:
            if s.get("online", 0) >= peak_online:
                peak_online, peak_sample = s.get("online", 0), s

    env = dict(knobs)
    env.update({
        "count": lambda n: samples.get(n, {}).get("n", 0),
        "mean": lambda n: samples.get(n, {}).get("mean", 0.0),
        "max": lambda n: samples.get(n, {}).get("max", 0.0),
        "min": lambda n: samples.get(n, {}).get("min", 0.0),
        "counter": counter,
        "http_total": sum(v for k, v in counters.items() if re.fullmatch(r"\d\d\d", k)),
        "peak_online": peak_online,
        "has_api_stats": bool(stats),
        # a /api/stats field over the run: growth of a counter, largest value of a gauge
        "api_delta": lambda k: (stats[-1][1].get(k, 0) - stats[0][1].get(k, 0)) if stats else 0,
        "api_peak": lambda k: max((s.get(k, 0) for _t, s in stats), default=0),
    })
    for expr in kit_checks:
        try:
            ok = eval(expr, {"__builtins__": {}}, env)  # trusted: comes from our own scenario
            detail = ""
            if not ok:
                names = set(re.findall(r"[A-Za-z_]\w*\s*\(\s*\"?(\w+)\"?\s*\)", expr))
                detail = "; ".join(
                    f"{n}: count={samples[n]['n']} mean={samples[n]['mean']:.1f}"
                    f" min={samples[n]['min']:.1f} max={samples[n]['max']:.1f}"
                    for n in names if n in samples)
                if "peak_online" in expr:
                    detail += f" peak_online={peak_online}"
                if "counter(" in expr:
                    detail += " " + " ".join(f"{n}={int(counter(n))}" for n in names if n in counters)
        except Exception as e:  # a broken expression is a failed check, not a crash
            ok, detail = False, f"cannot evaluate: {e}"
        check(ok, f"kit-check: {expr}", detail.strip())

    # --- summary ------------------------------------------------------------------
    print(f"== tsung verdict: {run_dir}")
    if xml_name:
        print(f"scenario      {xml_name}  knobs: " + " ".join(
            f"{k}={v}" for k, v in knobs.items() if k not in ("client_ips",)))
    print(f"users         started {users_count} / expected {expected}, finished {finish}, "
          f"max concurrent (tsung) {int(counters.get('users', 0))}")
    print(f"websocket     handshakes ok {int(counter('websocket_succ'))}, "
          f"failed {int(counter('websocket_fail'))}")
    for name, label in (("connect", "connect"), ("tr_push_latency", "push latency"),
                        ("request", "request"), ("session", "session")):
        s = samples.get(name)
        if s:
            print(f"{label:13} n={s['n']} mean {fmt_ms(s['mean'])} max {fmt_ms(s['max'])} "
                  f"min {fmt_ms(s['min'])}")
    for name, s in sorted(samples.items()):
        if name.startswith("tr_") and name != "tr_push_latency":
            print(f"{name:13} n={s['n']} mean {fmt_ms(s['mean'])} max {fmt_ms(s['max'])}")
    http = {k: int(v) for k, v in counters.items() if re.fullmatch(r"\d\d\d", k)}
    if http:
        print("http          " + " ".join(f"{k}={v}" for k, v in sorted(http.items())))
    lp = {k: int(v) for k, v in counters.items() if k.startswith("lp_")}
    if lp:  # longpoll.xml's own counters (its evals check every poll answer)
        print("long-poll     " + " ".join(f"{k[3:]}={v}" for k, v in sorted(lp.items())))
    print(f"pushes        dropped during thinktime (async_unknown_data_rcv) "
          f"{int(counter('async_unknown_data_rcv'))}, match {int(counter('match'))}, "
          f"nomatch {int(counter('nomatch'))}")
    rates = [c.get("users_count", 0) / 10.0 for _t, c in blocks if c.get("users_count", 0) > 0]
    if rates:
        print(f"arrivals      {len(rates)} x 10 s blocks with arrivals: mean "
              f"{sum(rates) / len(rates):.1f} users/s, peak {max(rates):.1f} users/s")
    errs_all = {k: int(v) for k, v in counters.items() if k.startswith("error_")}
    print("errors        " + (", ".join(f"{k}={v}" for k, v in sorted(errs_all.items()))
                              if errs_all else "none"))
    if stats:
        last = stats[-1][1]
        rss = peak_sample.get("rss_bytes", 0)
        line = (f"server        peak online {peak_online}, rss at peak {rss / 1048576:.1f} MiB")
        if peak_online >= 1000:
            line += f" = {rss / peak_online / 1024:.2f} KiB/connection"
            base_rss = base_sample.get("rss_bytes", 0)
            if base_rss and base_sample.get("online", 0) == 0:
                line += (f" (idle rss {base_rss / 1048576:.1f} MiB; "
                         f"{(rss - base_rss) / peak_online / 1024:.2f} KiB/connection above idle)")
        print(line)
        # server-side connection rate over 1 s samples
        best = 0.0
        for (t0, a), (t1, b) in zip(stats, stats[1:]):
            if t1 > t0:
                best = max(best, (b.get("connections_total", 0) - a.get("connections_total", 0))
                           * 1000.0 / (t1 - t0))
        grow = [(t, s.get("connections_total", 0)) for t, s in stats]
        moving = [i for i in range(1, len(grow)) if grow[i][1] > grow[i - 1][1]]
        if moving:
            i0, i1 = moving[0] - 1, moving[-1]
            span = (grow[i1][0] - grow[i0][0]) / 1000.0
            if span > 0:
                print(f"server        new connections: {grow[i1][1] - grow[i0][1]} in {span:.0f} s"
                      f" = {(grow[i1][1] - grow[i0][1]) / span:.0f}/s mean over the arrival window")
        print(f"server        connections_total {last.get('connections_total')}, "
              f"published_total {last.get('published_total')}, delivered_total "
              f"{last.get('delivered_total')}, peak new connections {best:.0f}/s")
    print("checks:")
    for ok, label, detail in results:
        print(f"  {'ok  ' if ok else 'FAIL'} {label}" + (f"  [{detail}]" if detail else ""))
    passed = sum(1 for r in results if r[0])
    failed = len(results) - passed
    print(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))

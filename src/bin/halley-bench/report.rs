//! The verdict: derived figures, the human report, the JSON line and the pass/fail.

use crate::client::Transport;
use crate::reactor::Kind;
use crate::stats::Outcome;
use hdrhistogram::Histogram;
use serde_json::{json, Value};

pub struct Verdict {
    pub json: Value,
    pub human: String,
    pub ok: bool,
}

/// Microseconds as milliseconds (the histogram has 3 significant digits anyway).
fn ms(v: u64) -> f64 {
    v as f64 / 1000.0
}

fn quantiles(h: &Histogram<u64>) -> Value {
    if h.is_empty() {
        return json!({"p50": null, "p95": null, "p99": null, "p999": null, "max": null});
    }
    json!({
        "p50": ms(h.value_at_quantile(0.50)),
        "p95": ms(h.value_at_quantile(0.95)),
        "p99": ms(h.value_at_quantile(0.99)),
        "p999": ms(h.value_at_quantile(0.999)),
        "max": ms(h.max()),
    })
}

fn secs(from_us: u64, to_us: u64) -> f64 {
    to_us.saturating_sub(from_us) as f64 / 1e6
}

fn per_s(n: u64, s: f64) -> f64 {
    if s > 0.0 {
        (n as f64 / s * 10.0).round() / 10.0
    } else {
        0.0
    }
}

fn fmt_q(v: &Value) -> String {
    let g = |k: &str| v[k].as_f64().map_or("-".to_string(), |x| format!("{x:.2}"));
    format!(
        "p50 {}  p95 {}  p99 {}  p99.9 {}  max {} (ms)",
        g("p50"),
        g("p95"),
        g("p99"),
        g("p999"),
        g("max")
    )
}

pub fn verdict(
    name: &str,
    kind: Kind,
    transport: Transport,
    o: &Outcome,
    procs: usize,
    min_success: f64,
) -> Verdict {
    let f = &o.failed;
    let lost = o.expected.saturating_sub(o.deliveries);
    let (connections_per_s, success_pct) = if kind == Kind::Churn {
        let attempts = o.cycles + f.total();
        let pct = if attempts == 0 {
            0.0
        } else {
            o.cycles as f64 * 100.0 / attempts as f64
        };
        (per_s(o.cycles, secs(o.start_us, o.end_us)), pct)
    } else if kind == Kind::Reconnect {
        let pct = if o.target == 0 {
            100.0
        } else {
            o.resumed as f64 * 100.0 / o.target as f64
        };
        (per_s(o.connected, secs(o.start_us, o.last_connect_us)), pct)
    } else {
        let held = o.connected.saturating_sub(f.dropped);
        let pct = if o.target == 0 {
            100.0
        } else {
            held as f64 * 100.0 / o.target as f64
        };
        (per_s(o.connected, secs(o.start_us, o.last_connect_us)), pct)
    };
    let time_to_target = (kind != Kind::Churn && o.target > 0 && o.connected == o.target)
        .then(|| (secs(o.start_us, o.last_connect_us) * 1000.0).round() / 1000.0);
    let deliveries_per_s = per_s(o.deliveries, secs(o.first_publish_us, o.last_delivery_us));
    let latency = if matches!(kind, Kind::Fanout | Kind::Churn | Kind::Reconnect) {
        &o.latency
    } else {
        &o.handshake
    };
    let mut problems = Vec::new();
    if success_pct < min_success {
        problems.push(format!(
            "success {success_pct:.2}% is below --min-success {min_success}%"
        ));
    }
    if kind == Kind::Churn && o.cycles == 0 {
        problems.push("no churn cycle completed".to_string());
    }
    if kind.checks_deliveries() {
        for (n, what) in [
            (lost, "lost"),
            (o.duplicated, "duplicated"),
            (o.out_of_order, "out of order"),
            (o.publish_errors, "failed to publish"),
            (o.bad_ids, "with an SSE id: other than their seq"),
        ] {
            if n > 0 {
                problems.push(format!("{n} messages {what}"));
            }
        }
    }
    if o.not_recovered > 0 {
        problems.push(format!(
            "{} resumes answered recovered:false",
            o.not_recovered
        ));
    }
    if o.polls_not_recovered > 0 {
        problems.push(format!(
            "{} polls after the first answered recovered:false (more than the \
             history arrived within a poll round trip)",
            o.polls_not_recovered
        ));
    }
    if kind == Kind::Reconnect {
        if o.dropped_subs == 0 {
            problems.push("no subscriber was dropped".to_string());
        }
        if o.resumed < o.dropped_subs {
            problems.push(format!(
                "{} of {} dropped subscribers did not resume",
                o.dropped_subs - o.resumed,
                o.dropped_subs
            ));
        }
        if o.no_recovered_field > 0 {
            problems.push(format!(
                "{} resumes answered without a recovered field",
                o.no_recovered_field
            ));
        }
    }
    let ok = problems.is_empty();
    let mut json = json!({
        "scenario": name,
        "transport": transport.name(),
        "ok": ok,
        "procs": procs,
        "target": o.target,
        "connected": o.connected,
        "failed": {
            "refused": f.refused, "timeout": f.timeout, "http_503": f.http_503,
            "handshake": f.handshake, "other": f.other, "dropped": f.dropped,
            "total": f.total(),
        },
        "errors": f.total(),
        "success_pct": (success_pct * 100.0).round() / 100.0,
        "connections_per_s": connections_per_s,
        "time_to_target_s": time_to_target,
        "cycles": o.cycles,
        "close_timeouts": o.close_timeouts,
        "handshake_ms": quantiles(&o.handshake),
        "latency_ms": quantiles(latency),
        "messages": o.messages,
        "published": o.published,
        "publish_errors": o.publish_errors,
        "expected_deliveries": o.expected,
        "deliveries": o.deliveries,
        "deliveries_per_s": deliveries_per_s,
        "lost": lost,
        "duplicated": o.duplicated,
        "out_of_order": o.out_of_order,
        "foreign": o.foreign,
        "duration_s": (secs(o.start_us, o.end_us) * 1000.0).round() / 1000.0,
        "error_samples": o.errors,
        "problems": problems,
    });
    if kind == Kind::Reconnect {
        json["dropped_subscribers"] = json!(o.dropped_subs);
        json["resumed"] = json!(o.resumed);
        json["no_recovered_field"] = json!(o.no_recovered_field);
        json["caught_up"] = json!(o.caught_up);
        json["resync_ms"] = quantiles(&o.resync);
    }
    json["not_recovered"] = json!(o.not_recovered);
    json["polls_not_recovered"] = json!(o.polls_not_recovered);
    if kind.checks_deliveries() {
        json["bad_ids"] = json!(o.bad_ids);
    }
    let human = human(name, kind, o, &json);
    Verdict { json, human, ok }
}

fn human(name: &str, kind: Kind, o: &Outcome, j: &Value) -> String {
    let f = &j["failed"];
    let verdict = if j["ok"] == true { "PASS" } else { "FAIL" };
    let mut s = format!(
        "halley-bench {name} over {}: {verdict} in {} s\n",
        j["transport"].as_str().unwrap_or("?"),
        j["duration_s"]
    );
    s += &if kind == Kind::Churn {
        format!(
            "  loops: {}, handshakes {}, cycles {} ({}% of attempts)\n",
            o.target, o.connected, o.cycles, j["success_pct"]
        )
    } else {
        let held = if kind == Kind::Reconnect {
            "resumed"
        } else {
            "held"
        };
        format!(
            "  connections: {} of {} connected ({}% {held}), {} per s, time to target {} s\n",
            o.connected, o.target, j["success_pct"], j["connections_per_s"], j["time_to_target_s"],
        )
    };
    s += &format!(
        "  failed: {} (refused {}, timeout {}, http_503 {}, handshake {}, other {}, \
         dropped {})\n  handshake: {}\n",
        f["total"],
        f["refused"],
        f["timeout"],
        f["http_503"],
        f["handshake"],
        f["other"],
        f["dropped"],
        fmt_q(&j["handshake_ms"]),
    );
    match kind {
        Kind::Fanout => {
            s += &format!(
                "  published {} of {} ({} errors); deliveries {} of {} expected, {} per s\n  \
             lost {}, duplicated {}, out of order {}\n  publish→deliver: {}\n",
                o.published,
                o.messages,
                o.publish_errors,
                o.deliveries,
                o.expected,
                j["deliveries_per_s"],
                j["lost"],
                o.duplicated,
                o.out_of_order,
                fmt_q(&j["latency_ms"]),
            )
        }
        Kind::Churn => {
            s += &format!(
                "  cycles {} ({} per s)\n  connect→subscribed: {}\n",
                o.cycles,
                j["connections_per_s"],
                fmt_q(&j["latency_ms"]),
            )
        }
        Kind::Reconnect => {
            s += &format!(
                "  dropped {} subscribers at once; resumed {}, recovered:false {}, \
                 without recovered {}\n  resync (drop → live again): {}\n  \
                 published {} of {} ({} errors); deliveries {} of {} expected ({} as \
                 catch-up), {} per s\n  lost {}, duplicated {}, out of order {}\n  \
                 publish→deliver: {}\n",
                o.dropped_subs,
                o.resumed,
                o.not_recovered,
                o.no_recovered_field,
                fmt_q(&j["resync_ms"]),
                o.published,
                o.messages,
                o.publish_errors,
                o.deliveries,
                o.expected,
                o.caught_up,
                j["deliveries_per_s"],
                j["lost"],
                o.duplicated,
                o.out_of_order,
                fmt_q(&j["latency_ms"]),
            )
        }
        Kind::Hold | Kind::Burst => {}
    }
    if o.close_timeouts > 0 {
        s += &format!("  close handshakes not answered: {}\n", o.close_timeouts);
    }
    for e in &o.errors {
        s += &format!("  error: {e}\n");
    }
    for p in j["problems"].as_array().into_iter().flatten() {
        s += &format!("  problem: {}\n", p.as_str().unwrap_or(""));
    }
    s
}

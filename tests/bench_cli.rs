//! End-to-end tests of `halley-bench` against the real `halley` server, at small
//! scale. They assert on the JSON verdict (counts, causes), never on speed.

mod common;
#[path = "common/tokens.rs"]
mod tokens;

use serde_json::Value;
use std::io::Read;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// A server with pings and idle timeouts off (the bench never answers pings).
fn start(extra: &[&str]) -> common::Server {
    let mut args = vec!["--ping-interval", "0", "--idle-timeout", "0"];
    args.extend_from_slice(extra);
    common::Server::start(&args)
}

trait Urls {
    fn url(&self) -> String;
    fn api_url(&self) -> String;
}

impl Urls for common::Server {
    fn url(&self) -> String {
        format!("ws://{}", self.client_addr)
    }

    fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }
}

/// Runs halley-bench with --json (bounded: killed after 120 s); returns the exit
/// status and the JSON object on the last stdout line.
fn bench(url: &str, api: &str, args: &[&str]) -> (i32, Value) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_halley-bench"))
        .args(args)
        .args([
            "--url",
            url,
            "--api",
            api,
            "--json",
            "--quiet",
            "--threads",
            "2",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn halley-bench");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let reader = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for halley-bench") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("halley-bench {args:?} did not finish within 120 s");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let out = reader.join().expect("stdout reader");
    let last = out.lines().last().unwrap_or("");
    let json: Value =
        serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {out}"));
    (status.code().unwrap_or(-1), json)
}

fn n(v: &Value, path: &[&str]) -> u64 {
    let mut cur = v;
    for k in path {
        cur = &cur[*k];
    }
    cur.as_u64()
        .unwrap_or_else(|| panic!("{path:?} is not a number in {v}"))
}

#[test]
fn hold_200_all_connect() {
    let s = start(&[]);
    let (code, v) = bench(
        &s.url(),
        &s.api_url(),
        &["hold", "--connections", "200", "--duration", "1"],
    );
    assert_eq!(v["scenario"], "hold");
    assert_eq!(n(&v, &["connected"]), 200, "{v}");
    assert_eq!(n(&v, &["failed", "total"]), 0, "{v}");
    assert_eq!(code, 0, "{v}");
}

#[test]
fn fanout_200_by_50_delivers_everything_once_in_order() {
    let s = start(&[]);
    let (code, v) = bench(
        &s.url(),
        &s.api_url(),
        &[
            "fanout",
            "--connections",
            "200",
            "--messages",
            "50",
            "--publish-rate",
            "0",
        ],
    );
    assert_eq!(n(&v, &["connected"]), 200, "{v}");
    assert_eq!(n(&v, &["deliveries"]), 10_000, "{v}");
    assert_eq!(n(&v, &["lost"]), 0, "{v}");
    assert_eq!(n(&v, &["duplicated"]), 0, "{v}");
    assert_eq!(n(&v, &["out_of_order"]), 0, "{v}");
    assert!(v["latency_ms"]["p99"].is_number(), "{v}");
    assert_eq!(code, 0, "{v}");
}

#[test]
fn fanout_over_channels_with_two_procs() {
    let s = start(&[]);
    let (code, v) = bench(
        &s.url(),
        &s.api_url(),
        &[
            "fanout",
            "--connections",
            "100",
            "--channels",
            "4",
            "--messages",
            "40",
            "--publish-rate",
            "200",
            "--procs",
            "2",
        ],
    );
    // 4 channels of 25 subscribers, 10 messages each: 100 × 10.
    assert_eq!(n(&v, &["deliveries"]), 1_000, "{v}");
    assert_eq!(
        n(&v, &["lost"]) + n(&v, &["duplicated"]) + n(&v, &["out_of_order"]),
        0
    );
    assert_eq!(code, 0, "{v}");
}

#[test]
fn churn_2s_completes_cycles_without_errors() {
    let s = start(&[]);
    let (code, v) = bench(
        &s.url(),
        &s.api_url(),
        &["churn", "--connections", "20", "--duration", "2"],
    );
    assert!(n(&v, &["cycles"]) > 0, "{v}");
    assert_eq!(n(&v, &["errors"]), 0, "{v}");
    assert_eq!(code, 0, "{v}");
}

#[test]
fn burst_200_all_connect() {
    let s = start(&[]);
    let (code, v) = bench(&s.url(), &s.api_url(), &["burst", "--connections", "200"]);
    assert_eq!(n(&v, &["connected"]), 200, "{v}");
    assert_eq!(n(&v, &["failed", "total"]), 0, "{v}");
    assert!(v["handshake_ms"]["max"].is_number(), "{v}");
    assert_eq!(code, 0, "{v}");
}

#[test]
fn server_not_running_fails_with_refused() {
    // A port that was just free: nothing listens on it.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    let url = format!("ws://127.0.0.1:{port}");
    let api = format!("http://127.0.0.1:{port}");
    let (code, v) = bench(
        &url,
        &api,
        &["hold", "--connections", "10", "--duration", "1"],
    );
    assert_ne!(code, 0, "{v}");
    assert_eq!(n(&v, &["connected"]), 0, "{v}");
    assert_eq!(n(&v, &["failed", "refused"]), 10, "{v}");
}

#[test]
fn past_max_connections_fails_with_503() {
    let s = start(&["--max-connections", "50"]);
    let (code, v) = bench(
        &s.url(),
        &s.api_url(),
        &["hold", "--connections", "100", "--duration", "1"],
    );
    assert_ne!(code, 0, "{v}");
    assert!(n(&v, &["connected"]) <= 50, "{v}");
    assert!(n(&v, &["failed", "http_503"]) >= 50, "{v}");
}

// ------------------------------------------------------------ SSE, long-polling, resume

#[test]
fn hold_200_over_sse_and_poll_all_subscribe() {
    let s = start(&[]);
    for transport in ["sse", "poll"] {
        let (code, v) = bench(
            &s.url(),
            &s.api_url(),
            &[
                "hold",
                "--transport",
                transport,
                "--connections",
                "200",
                "--duration",
                "1",
            ],
        );
        assert_eq!(v["transport"], transport, "{v}");
        assert_eq!(n(&v, &["connected"]), 200, "{v}");
        assert_eq!(n(&v, &["failed", "total"]), 0, "{v}");
        assert_eq!(code, 0, "{v}");
    }
}

#[test]
fn fanout_over_sse_delivers_everything_once_in_order() {
    let s = start(&[]);
    let (code, v) = bench(
        &s.url(),
        &s.api_url(),
        &[
            "fanout",
            "--transport",
            "sse",
            "--connections",
            "200",
            "--channels",
            "2",
            "--messages",
            "50",
            "--publish-rate",
            "0",
            "--procs",
            "2",
        ],
    );
    // 2 channels of 100 subscribers, 25 messages each.
    assert_eq!(n(&v, &["connected"]), 200, "{v}");
    assert_eq!(n(&v, &["deliveries"]), 5_000, "{v}");
    for k in ["lost", "duplicated", "out_of_order", "bad_ids", "foreign"] {
        assert_eq!(n(&v, &[k]), 0, "{k}: {v}");
    }
    assert_eq!(code, 0, "{v}");
}

#[test]
fn fanout_over_poll_delivers_everything_once_in_order() {
    let s = start(&[]);
    let (code, v) = bench(
        &s.url(),
        &s.api_url(),
        &[
            "fanout",
            "--transport",
            "poll",
            "--connections",
            "200",
            "--messages",
            "50",
            "--publish-rate",
            "200",
        ],
    );
    assert_eq!(n(&v, &["connected"]), 200, "{v}");
    assert_eq!(n(&v, &["deliveries"]), 10_000, "{v}");
    for k in [
        "lost",
        "duplicated",
        "out_of_order",
        "foreign",
        "polls_not_recovered",
    ] {
        assert_eq!(n(&v, &[k]), 0, "{k}: {v}");
    }
    assert_eq!(code, 0, "{v}");
}

/// A reconnect run: (exit status, verdict).
fn reconnect(s: &common::Server, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["reconnect", "--timeout", "10"];
    args.extend_from_slice(extra);
    bench(&s.url(), &s.api_url(), &args)
}

#[test]
fn reconnect_resumes_every_subscriber_without_loss_on_each_transport() {
    let s = start(&[]);
    for transport in ["ws", "sse", "poll"] {
        let (code, v) = reconnect(
            &s,
            &[
                "--transport",
                transport,
                "--channel-prefix",
                transport,
                "--connections",
                "100",
                "--channels",
                "2",
                "--messages",
                "60",
                "--publish-rate",
                "30",
                "--drop-after",
                "1",
            ],
        );
        assert_eq!(v["transport"], transport, "{v}");
        assert_eq!(n(&v, &["connected"]), 100, "{v}");
        assert_eq!(n(&v, &["dropped_subscribers"]), 100, "{v}");
        assert_eq!(n(&v, &["resumed"]), 100, "{v}");
        assert_eq!(n(&v, &["not_recovered"]), 0, "{v}");
        // History (100) holds all 30 messages of a channel: no poll can miss any.
        assert_eq!(n(&v, &["polls_not_recovered"]), 0, "{v}");
        assert_eq!(n(&v, &["published"]), 60, "{v}");
        // 2 channels of 50 subscribers, 30 messages each, each exactly once.
        assert_eq!(n(&v, &["deliveries"]), 3_000, "{v}");
        for k in ["lost", "duplicated", "out_of_order"] {
            assert_eq!(n(&v, &[k]), 0, "{transport} {k}: {v}");
        }
        assert!(v["resync_ms"]["max"].is_number(), "{v}");
        assert_eq!(code, 0, "{v}");
    }
}

#[test]
fn reconnect_after_an_absence_catches_up_from_history_over_two_procs() {
    let s = start(&[]);
    let (code, v) = reconnect(
        &s,
        &[
            "--connections",
            "100",
            "--procs",
            "2",
            "--messages",
            "60",
            "--publish-rate",
            "20",
            "--drop-after",
            "1",
            "--away",
            "0.5",
        ],
    );
    assert_eq!(n(&v, &["resumed"]), 100, "{v}");
    assert_eq!(n(&v, &["not_recovered"]), 0, "{v}");
    assert_eq!(n(&v, &["deliveries"]), 6_000, "{v}");
    // Messages were published while every subscriber was away.
    assert!(n(&v, &["caught_up"]) > 0, "{v}");
    assert_eq!(n(&v, &["lost"]) + n(&v, &["duplicated"]), 0, "{v}");
    assert_eq!(code, 0, "{v}");
}

#[test]
fn reconnect_past_the_history_counts_every_resume_not_recovered() {
    // History keeps 2 messages; the subscribers miss about 20.
    let s = start(&["--history-size", "2"]);
    for transport in ["ws", "sse", "poll"] {
        let (code, v) = reconnect(
            &s,
            &[
                "--transport",
                transport,
                "--channel-prefix",
                transport,
                "--connections",
                "20",
                "--messages",
                "60",
                "--publish-rate",
                "20",
                "--drop-after",
                "0.5",
                "--away",
                "1",
            ],
        );
        assert_eq!(n(&v, &["resumed"]), 20, "{v}");
        // One per resume. A poll that comes back after more than 2 newer messages
        // were published (a slow round trip under load) also answers recovered:false,
        // but that is counted apart, in polls_not_recovered.
        assert_eq!(n(&v, &["not_recovered"]), 20, "{transport}: {v}");
        let later_polls = n(&v, &["polls_not_recovered"]);
        if transport != "poll" {
            assert_eq!(later_polls, 0, "{v}");
        }
        assert!(n(&v, &["lost"]) > 0, "{v}");
        assert_eq!(code, 1, "{v}");
    }
}

#[test]
fn own_channels_gives_each_subscriber_exactly_its_channels_messages() {
    let s = start(&[]);
    let (code, v) = bench(
        &s.url(),
        &s.api_url(),
        &["own-channels", "--connections", "50", "--messages", "120"],
    );
    assert_eq!(v["scenario"], "own-channels");
    assert_eq!(n(&v, &["connected"]), 50, "{v}");
    // 120 rounded up to 3 per channel; each subscriber checks its channel's own.
    assert_eq!(n(&v, &["deliveries"]), 150, "{v}");
    assert_eq!(
        n(&v, &["lost"]) + n(&v, &["duplicated"]) + n(&v, &["out_of_order"]),
        0,
        "{v}"
    );
    assert_eq!(
        n(&s.stats(), &["channels"]),
        50,
        "one channel per subscriber"
    );
    assert_eq!(code, 0, "{v}");
}

#[test]
fn own_channels_publishes_over_resp_and_in_batches_too() {
    let s = start(&["--resp-listen", "127.0.0.1:0"]);
    let resp = s.resp_addr.expect("resp= on the start-up line").to_string();
    let ways: [&[&str]; 2] = [&["--via", "resp", "--resp", &resp], &["--batch", "7"]];
    for way in ways {
        let mut args = vec![
            "own-channels",
            "--connections",
            "40",
            "--messages",
            "200",
            "--channel-prefix",
        ];
        let prefix = format!("way{}", way.len());
        args.push(&prefix);
        args.extend_from_slice(way);
        let (code, v) = bench(&s.url(), &s.api_url(), &args);
        assert_eq!(n(&v, &["published"]), 200, "{way:?}: {v}");
        assert_eq!(n(&v, &["deliveries"]), 200, "{way:?}: {v}");
        assert_eq!(
            n(&v, &["lost"]) + n(&v, &["duplicated"]) + n(&v, &["out_of_order"]),
            0,
            "{way:?}: {v}"
        );
        assert_eq!(code, 0, "{way:?}: {v}");
    }
    // Without --resp the run does not start (and would be short if it did).
    let small = ["own-channels", "--connections", "1", "--messages", "1"];
    let (code, stderr) = bench_status(&s, &[&small[..], &["--via", "resp"]].concat());
    assert!(stderr.contains("--resp"), "{stderr}");
    assert_eq!(code, 2, "{stderr}");
}

/// Runs halley-bench and returns only its exit status (for runs refused at set-up,
/// which print no verdict).
fn bench_status(s: &common::Server, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_halley-bench"))
        .args(args)
        .args([
            "--url",
            &s.url(),
            "--api",
            &s.api_url(),
            "--json",
            "--quiet",
        ])
        .output()
        .expect("run halley-bench");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn hold_no_subscribe_holds_websockets_on_no_channel() {
    let s = start(&[]);
    let (url, api) = (s.url(), s.api_url());
    let holder = thread::spawn(move || {
        bench(
            &url,
            &api,
            &[
                "hold",
                "--connections",
                "40",
                "--duration",
                "2",
                "--no-subscribe",
            ],
        )
    });
    let held = s.stats_when(|v| v["online"].as_u64() == Some(40));
    assert_eq!(n(&held, &["online"]), 40, "{held}");
    assert_eq!(n(&held, &["channels"]), 0, "{held}");
    let (code, v) = holder.join().expect("bench thread");
    assert_eq!(n(&v, &["connected"]), 40, "{v}");
    assert_eq!(code, 0, "{v}");
}

// ------------------------------------------------------------------ connection tokens

/// A server that requires a token on every channel, and its secret file.
fn start_requiring_tokens() -> (common::Server, String) {
    let secret = tokens::secret_file()
        .to_str()
        .expect("UTF-8 path")
        .to_owned();
    let s = start(&["--require-token", "--token-secret-file", &secret]);
    (s, secret)
}

#[test]
fn with_the_secret_hold_and_fanout_pass_a_server_requiring_tokens_on_every_transport() {
    let (s, secret) = start_requiring_tokens();
    for transport in ["ws", "sse", "poll"] {
        let common = [
            "--transport",
            transport,
            "--token-secret-file",
            &secret,
            "--channel-prefix",
            transport,
            "--connections",
            "50",
        ];
        let hold = [&common[..], &["hold", "--duration", "1"]].concat();
        let (code, v) = bench(&s.url(), &s.api_url(), &hold);
        assert_eq!(n(&v, &["connected"]), 50, "{transport}: {v}");
        assert_eq!(n(&v, &["failed", "total"]), 0, "{transport}: {v}");
        assert_eq!(code, 0, "{transport}: {v}");
        let fanout = [
            &common[..],
            &["fanout", "--messages", "20", "--publish-rate", "0"],
        ]
        .concat();
        let (code, v) = bench(&s.url(), &s.api_url(), &fanout);
        assert_eq!(n(&v, &["connected"]), 50, "{transport}: {v}");
        assert_eq!(n(&v, &["deliveries"]), 1_000, "{transport}: {v}");
        for k in ["lost", "duplicated", "out_of_order", "polls_not_recovered"] {
            assert_eq!(n(&v, &[k]), 0, "{transport} {k}: {v}");
        }
        assert_eq!(code, 0, "{transport}: {v}");
    }
    let stats = s.stats();
    assert_eq!(n(&stats, &["auth_failures_total"]), 0, "{stats}");
}

#[test]
fn tokens_follow_the_channel_rules_in_every_scenario_that_subscribes() {
    let (s, secret) = start_requiring_tokens();
    let with = |args: &[&str]| {
        let all = [&["--token-secret-file", secret.as_str()][..], args].concat();
        bench(&s.url(), &s.api_url(), &all)
    };
    // user:ID channels open to sub ID only, private: ones to a grant: one each.
    for prefix in ["user:u", "private:p"] {
        let args = [
            "own-channels",
            "--connections",
            "20",
            "--messages",
            "40",
            "--channel-prefix",
            prefix,
        ];
        let (code, v) = with(&args);
        assert_eq!(n(&v, &["deliveries"]), 40, "{prefix}: {v}");
        assert_eq!(n(&v, &["lost"]) + n(&v, &["failed", "total"]), 0, "{v}");
        assert_eq!(code, 0, "{prefix}: {v}");
    }
    // Two processes each read the secret; a resume carries a new token (on a
    // WebSocket after a subscribe command first, on every poll request).
    for transport in ["ws", "poll"] {
        let prefix = format!("private:r{transport}");
        let (code, v) = with(&[
            "--transport",
            transport,
            "--channel-prefix",
            &prefix,
            "reconnect",
            "--connections",
            "20",
            "--procs",
            "2",
            "--messages",
            "20",
            "--publish-rate",
            "20",
            "--drop-after",
            "0.3",
            "--timeout",
            "10",
        ]);
        assert_eq!(n(&v, &["resumed"]), 20, "{transport}: {v}");
        assert_eq!(n(&v, &["deliveries"]), 400, "{transport}: {v}");
        assert_eq!(n(&v, &["failed", "total"]), 0, "{transport}: {v}");
        assert_eq!(code, 0, "{transport}: {v}");
    }
    let (code, v) = with(&["churn", "--connections", "5", "--duration", "1"]);
    assert!(n(&v, &["cycles"]) > 0, "{v}");
    assert_eq!((n(&v, &["errors"]), code), (0, 0), "{v}");
    let (code, v) = with(&["burst", "--connections", "50"]);
    assert_eq!(n(&v, &["connected"]), 50, "{v}");
    assert_eq!((n(&v, &["failed", "total"]), code), (0, 0), "{v}");
    let (code, v) = with(&[
        "hold",
        "--connections",
        "20",
        "--duration",
        "1",
        "--no-subscribe",
    ]);
    assert_eq!(n(&v, &["connected"]), 20, "{v}");
    assert_eq!((n(&v, &["failed", "total"]), code), (0, 0), "{v}");
    let stats = s.stats();
    assert_eq!(n(&stats, &["auth_failures_total"]), 0, "{stats}");
}

/// The error samples of a verdict, as one string.
fn error_samples(v: &Value) -> String {
    v["error_samples"].to_string()
}

#[test]
fn without_a_token_every_connection_is_refused_and_reported() {
    let (s, _secret) = start_requiring_tokens();
    for (transport, why) in [("ws", "3000"), ("sse", "HTTP 401"), ("poll", "HTTP 401")] {
        let (code, v) = bench(
            &s.url(),
            &s.api_url(),
            &[
                "--transport",
                transport,
                "hold",
                "--connections",
                "20",
                "--duration",
                "1",
            ],
        );
        assert_eq!(n(&v, &["failed", "total"]), 20, "{transport}: {v}");
        assert!(error_samples(&v).contains(why), "{transport}: {v}");
        assert_eq!(code, 1, "{transport}: {v}");
    }
}

#[test]
fn a_token_signed_with_another_secret_is_refused() {
    let (s, _secret) = start_requiring_tokens();
    let wrong = std::env::temp_dir().join(format!("halley-bench-wrong-{}", std::process::id()));
    std::fs::write(&wrong, "not the server's secret\n").expect("write the secret file");
    let wrong = wrong.to_str().expect("UTF-8 path");
    for (transport, why) in [
        ("ws", "invalid token signature"),
        ("sse", "HTTP 401"),
        ("poll", "HTTP 401"),
    ] {
        let (code, v) = bench(
            &s.url(),
            &s.api_url(),
            &[
                "--transport",
                transport,
                "--token-secret-file",
                wrong,
                "fanout",
                "--connections",
                "20",
                "--messages",
                "5",
            ],
        );
        assert_eq!(n(&v, &["failed", "total"]), 20, "{transport}: {v}");
        assert!(error_samples(&v).contains(why), "{transport}: {v}");
        assert_eq!(code, 1, "{transport}: {v}");
    }
    assert!(n(&s.stats(), &["auth_failures_total"]) >= 60);
}

//! halley-bench: the load generator of Halley. See `halley-bench --help`.
//!
//! Layout: `cli` (options) → `main` (set-up, one process or `procs` children) →
//! `engine` (phases of a run) → `reactor` (mio threads) → `client` (one connection)
//! → `ws`, `comet` (wire formats: WebSocket; SSE and long-polling); `check` verifies
//! deliveries, `resume` keeps a reconnecting subscriber's position, `tokens` signs each
//! connection's token (`--token-secret-file`), `publisher` posts to the API,
//! `progress` prints the live line and `report` the verdict.

mod check;
mod cli;
mod client;
mod comet;
mod engine;
mod procs;
mod progress;
mod publisher;
mod reactor;
mod report;
mod resume;
mod stats;
mod sys;
mod target;
mod tokens;
mod wire;
mod ws;

use clap::Parser;
use cli::{Cli, Scenario};
use client::Transport;
use engine::{Gate, Share};
use progress::{Emit, Progress, Snapshot};
use publisher::PubCfg;
use reactor::{Kind, Plan};
use stats::{Live, Outcome};
use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};
use target::Endpoint;

/// Exit status when the run could not start (bad options, no child processes).
const EXIT_SETUP: i32 = 2;
/// Exit status when the verdict is a failure.
const EXIT_FAIL: i32 = 1;

fn main() {
    std::process::exit(real_main());
}

fn positive_secs(v: f64, name: &str) -> Result<Duration, String> {
    Duration::try_from_secs_f64(v).map_err(|_| format!("{name} {v}: not a valid duration"))
}

/// Everything derived from the command line, checked before any traffic.
struct Setup {
    kind: Kind,
    plan_rate: f64,
    messages: u64,
    hold: Duration,
    churn: Duration,
    publish: Option<PubCfg>,
    drop_after: Duration,
    away: Duration,
    subscribe: bool,
    /// Channels the connections are spread over (own-channels: one each).
    channels: usize,
    /// --token-secret-file: what signs each connection's token.
    tokens: Option<Arc<tokens::Minter>>,
}

/// The client listener: `ws://` or `http://`, whatever the transport.
fn client_endpoint(url: &str) -> Result<Endpoint, String> {
    target::parse_endpoint(url, "ws")
        .or_else(|e| target::parse_endpoint(url, "http").map_err(|_| e))
}

fn setup(cli: &Cli) -> Result<Setup, String> {
    let c = &cli.common;
    if c.connections == 0 || c.channels == 0 || c.procs == 0 {
        return Err("--connections, --channels and --procs must be at least 1".into());
    }
    if c.threads == Some(0) {
        return Err("--threads must be at least 1".into());
    }
    let channels = match cli.scenario {
        Scenario::OwnChannels(_) => c.connections,
        _ => c.channels,
    };
    let last = format!("{}-{}", c.channel_prefix, channels - 1);
    // The server's own rule, so the bench never names a channel it would refuse.
    if !halley::proto::command::valid_channel(&last) {
        return Err(format!(
            "channel {last:?}: names are 1-128 bytes of [A-Za-z0-9_.:-]"
        ));
    }
    positive_secs(c.connect_timeout, "--connect-timeout")?;
    positive_secs(c.timeout, "--timeout")?;
    client_endpoint(&c.url)?;
    let api = target::parse_endpoint(&c.api, "http")?;
    let api_key = match &c.api_key_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| format!("--api-key-file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let api_auth = api_key.as_ref().map_or(String::new(), |key| {
        format!("Authorization: Bearer {key}\r\n")
    });
    let tokens = match &c.token_secret_file {
        Some(path) => Some(Arc::new(tokens::Minter::from_file(path, c.token_ttl)?)),
        None => None,
    };
    let resp = match &c.resp {
        Some(addr) => Some(target::parse_endpoint(&format!("redis://{addr}"), "redis")?),
        None => None,
    };
    if c.transport != Transport::Ws
        && matches!(cli.scenario, Scenario::Churn(_) | Scenario::Burst(_))
    {
        return Err(format!(
            "--transport {}: {} speaks WebSocket only",
            c.transport.name(),
            cli.scenario.name()
        ));
    }
    let none = Duration::ZERO;
    let pub_cfg = |messages: u64, rate: f64, publishers: usize, pipeline: usize| PubCfg {
        api: api.clone(),
        auth: api_auth.clone(),
        prefix: c.channel_prefix.clone(),
        channels,
        messages,
        order: 1,
        rate: rate.max(0.0),
        publishers: publishers.max(1),
        pipeline: pipeline.max(1),
        pad: crate::publisher::padding(c.payload_size),
        via: wire::Via::Http { batch: 1 },
        resp: resp.clone(),
        key: api_key.clone(),
    };
    Ok(match &cli.scenario {
        Scenario::OwnChannels(a) => {
            let messages = a.messages.max(1).div_ceil(channels as u64) * channels as u64;
            let mut publish = pub_cfg(messages, a.publish_rate, a.publishers, a.pipeline);
            publish.order = publisher::scrambler(messages);
            publish.via = match a.via {
                cli::PublishVia::Http => wire::Via::Http { batch: a.batch },
                cli::PublishVia::Resp if resp.is_none() => {
                    return Err("own-channels --via resp needs --resp HOST:PORT".into())
                }
                cli::PublishVia::Resp if a.batch > 1 => {
                    return Err("--batch is for --via http; RESP pipelines single publishes".into())
                }
                cli::PublishVia::Resp => wire::Via::Resp,
            };
            Setup {
                kind: Kind::Fanout,
                plan_rate: 0.0,
                messages,
                hold: none,
                churn: none,
                publish: Some(publish),
                drop_after: none,
                away: none,
                subscribe: true,
                channels,
                tokens: tokens.clone(),
            }
        }
        Scenario::Hold(a) => Setup {
            kind: Kind::Hold,
            plan_rate: a.rate,
            messages: 0,
            hold: positive_secs(a.duration, "--duration")?,
            churn: none,
            publish: None,
            drop_after: none,
            away: none,
            subscribe: !a.no_subscribe,
            channels,
            tokens: tokens.clone(),
        },
        Scenario::Fanout(a) => Setup {
            kind: Kind::Fanout,
            plan_rate: a.rate,
            messages: a.messages,
            hold: none,
            churn: none,
            publish: Some(pub_cfg(
                a.messages,
                a.publish_rate,
                a.publishers,
                a.pipeline,
            )),
            drop_after: none,
            away: none,
            subscribe: true,
            channels,
            tokens: tokens.clone(),
        },
        Scenario::Reconnect(a) => Setup {
            kind: Kind::Reconnect,
            plan_rate: a.rate,
            messages: a.messages,
            hold: none,
            churn: none,
            publish: Some(pub_cfg(
                a.messages,
                a.publish_rate,
                a.publishers,
                a.pipeline,
            )),
            drop_after: positive_secs(a.drop_after, "--drop-after")?,
            away: positive_secs(a.away, "--away")?,
            subscribe: true,
            channels,
            tokens: tokens.clone(),
        },
        Scenario::Churn(a) => Setup {
            kind: Kind::Churn,
            plan_rate: 0.0,
            messages: 0,
            hold: none,
            churn: positive_secs(a.duration, "--duration")?,
            publish: None,
            drop_after: none,
            away: none,
            subscribe: true,
            channels,
            tokens: tokens.clone(),
        },
        Scenario::Burst(_) => Setup {
            kind: Kind::Burst,
            plan_rate: 0.0,
            messages: 0,
            hold: none,
            churn: none,
            publish: None,
            drop_after: none,
            away: none,
            subscribe: true,
            channels,
            tokens: tokens.clone(),
        },
    })
}

fn real_main() -> i32 {
    let cli = Cli::parse();
    let c = &cli.common;
    if let Err(e) = sys::raise_nofile() {
        eprintln!("halley-bench: warning: {e}");
    }
    let s = match setup(&cli) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("halley-bench: {e}");
            return EXIT_SETUP;
        }
    };
    let name = cli.scenario.name();
    let child = c.child_index;
    let outcome = if c.procs > 1 && child.is_none() {
        let cfg = procs::ParentCfg {
            procs: c.procs,
            total: c.connections,
            gated: s.kind.gated(),
            publish: s.publish.clone(),
            publish_after_go: s.kind == Kind::Reconnect,
            progress: (!c.quiet).then_some(Emit::Stderr {
                scenario: name,
                target: c.connections as u64,
            }),
        };
        match procs::run(cfg) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("halley-bench: {e}");
                return EXIT_SETUP;
            }
        }
    } else {
        match run_here(&cli, &s) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("halley-bench: {e}");
                return EXIT_SETUP;
            }
        }
    };
    if child.is_some() {
        let line = serde_json::json!({"type": "result", "outcome": outcome});
        print_line(&line.to_string());
        return 0;
    }
    let v = report::verdict(name, s.kind, c.transport, &outcome, c.procs, c.min_success);
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{}", v.human);
    if c.json {
        let _ = writeln!(out, "{}", v.json);
    }
    let _ = out.flush();
    if v.ok {
        0
    } else {
        EXIT_FAIL
    }
}

/// Runs this process's share in its own reactor threads.
fn run_here(cli: &Cli, s: &Setup) -> Result<Outcome, String> {
    let c = &cli.common;
    let (procs_n, index) = match c.child_index {
        Some(i) if i < c.procs => (c.procs, i),
        Some(i) => return Err(format!("--child-index {i} is not below --procs")),
        None => (1, 0),
    };
    let (first, count) = procs::share(c.connections, procs_n, index);
    let threads = c
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let threads = threads.clamp(1, count.max(1));
    let server = client_endpoint(&c.url)?;
    let sources = match &c.source_ip {
        Some(spec) => target::parse_sources(spec)?,
        None => Vec::new(),
    };
    let plan = Plan {
        kind: s.kind,
        transport: c.transport,
        server,
        sources,
        channels: s.channels,
        prefix: c.channel_prefix.clone(),
        connect_timeout: stats::secs(c.connect_timeout),
        rate: s.plan_rate.max(0.0) / (procs_n * threads) as f64,
        max_pending: (c.max_pending / (procs_n * threads)).max(1),
        messages: s.messages,
        churn_until: Instant::now() + s.churn,
        away: s.away,
        subscribe: s.subscribe,
        deflate: c.deflate,
        tokens: s.tokens.clone(),
    };
    let publish_span = match &s.publish {
        Some(p) if p.rate > 0.0 => stats::secs(p.messages as f64 / p.rate),
        _ => Duration::ZERO,
    };
    let share = Share {
        first,
        count,
        threads,
        hold: s.hold,
        timeout: stats::secs(c.timeout),
        drop_after: s.drop_after,
        publish_span,
    };
    let live = Arc::new(Live::new());
    let emit = if c.child_index.is_some() {
        Some(Emit::ChildJson)
    } else {
        (!c.quiet).then_some(Emit::Stderr {
            scenario: cli.scenario.name(),
            target: count as u64,
        })
    };
    let progress = emit.map(|e| {
        let l = live.clone();
        Progress::start(move || Snapshot::of(&l), e)
    });
    let gate = if c.child_index.is_some() {
        Gate {
            wait: Box::new(|| {
                // Tell the parent we are ready, then wait for its go (or its end).
                print_line(r#"{"type":"ready"}"#);
                let _ = std::io::stdout().flush();
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
            }),
            publish: None,
        }
    } else {
        Gate {
            wait: Box::new(|| {}),
            publish: s.publish.clone(),
        }
    };
    let outcome = engine::run(plan, &share, live, gate);
    if let Some(p) = progress {
        p.stop();
    }
    Ok(outcome)
}

/// One line to the parent process or the user. A reader that went away (a parent
/// stopped by its script, `| head`) is no reason to panic: the line is dropped.
pub(crate) fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
}

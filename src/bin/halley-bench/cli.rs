//! Command line: common options (global, so they may come before or after the
//! scenario) and one subcommand per scenario.

use crate::client::Transport;
use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "halley-bench",
    version,
    about = "Load generator for the Halley pub/sub push server (WebSocket, SSE, long-polling)",
    long_about = "Load generator for the Halley pub/sub push server.\n\n\
        Opens many connections (mio, one reactor thread per core) over WebSocket, \
        Server-Sent Events or long-polling (--transport), subscribes them to channels, \
        publishes through the HTTP API and reports a verdict. \
        With --token-secret-file every connection carries a connection \
        token (?token=JWT), so servers started with --require-token can be loaded. \
        Progress goes to stderr once per second; the report goes to stdout, and with \
        --json the last stdout line is one JSON object.\n\n\
        Exit status: 0 on success; 1 when the success rate is below --min-success or a \
        message was lost, duplicated or out of order; 2 when the run could not start.",
    after_long_help = "The JSON verdict has at least: scenario, ok, target, connected, failed \
        {refused, timeout, http_503, handshake, other, dropped, total}, errors, success_pct, \
        connections_per_s, time_to_target_s, handshake_ms and latency_ms {p50, p95, p99, p999, \
        max}, cycles, published, publish_errors, expected_deliveries, deliveries, \
        deliveries_per_s, lost, duplicated, out_of_order, polls_not_recovered (poll \
        answers after a connection's first that said recovered:false), transport; \
        reconnect adds dropped_subscribers, resumed, not_recovered (resumes answered \
        recovered:false), caught_up and resync_ms {p50, p95, p99, p999, max}.\n\n\
        latency_ms is publish-to-delivery for fanout and reconnect, connect-to-\"subscribed\" \
        for churn and the handshake (TCP connect to 101, or to the SSE or first poll \
        answer's 200) for hold and burst. \
        Success rate: connections opened and not dropped by the server over --connections \
        (hold, fanout, burst); completed cycles over cycles plus failures (churn); \
        subscribers resumed after the drop over --connections (reconnect)."
)]
pub struct Cli {
    #[command(flatten)]
    pub common: Common,
    #[command(subcommand)]
    pub scenario: Scenario,
}

#[derive(Args, Debug, Clone)]
#[command(next_help_heading = "Common options")]
pub struct Common {
    /// Client listener of the server (ws://HOST:PORT or http://HOST:PORT, for every
    /// transport; a path is ignored)
    #[arg(long, global = true, default_value = "ws://127.0.0.1:8080")]
    pub url: String,

    /// How subscribers connect (hold, fanout, reconnect): WebSocket /ws, Server-Sent
    /// Events GET /sse, or keep-alive long-polling GET /poll
    #[arg(long, global = true, value_enum, default_value_t = Transport::Ws)]
    pub transport: Transport,

    /// HTTP publish API of the server
    #[arg(long, global = true, default_value = "http://127.0.0.1:8081")]
    pub api: String,

    /// RESP listener of the server (its --resp-listen), for `own-channels --via resp`
    #[arg(long, global = true, value_name = "HOST:PORT")]
    pub resp: Option<String>,

    /// File with the server's API key (its --api-key-file): sent as
    /// `Authorization: Bearer KEY` on every publish
    #[arg(long, global = true, value_name = "FILE")]
    pub api_key_file: Option<std::path::PathBuf>,

    /// File with the server's HS256 token secret (its --token-secret-file): every
    /// client connection sends `?token=JWT` signed with it (on each poll too), with
    /// `sub` = `bench-<n>` (or ID for a `user:ID` channel), `exp` = now + --token-ttl
    /// and, for a `private:` channel, `channels` granting it. Made at each connect
    /// (a resume gets a new one). Needed with the server's --require-token, and on
    /// `private:` and `user:` channels
    #[arg(long, global = true, value_name = "FILE")]
    pub token_secret_file: Option<std::path::PathBuf>,

    /// Lifetime of each token, seconds from its connect (--token-secret-file)
    #[arg(long, global = true, value_name = "SECS", default_value_t = 3600)]
    pub token_ttl: u64,

    /// Connections (hold, fanout, burst) or concurrent connect/close loops (churn)
    #[arg(long, global = true, default_value_t = 1000)]
    pub connections: usize,

    /// Published data of about this many bytes of JSON (`{"t":..,"i":..,"items":[..]}`);
    /// 0 = the bare `{"t":..,"i":..}`
    #[arg(long, global = true, default_value_t = 0)]
    pub payload_size: usize,

    /// WebSocket subscribers offer permessage-deflate (as browsers do) and inflate
    /// the compressed pushes
    #[arg(long, global = true)]
    pub deflate: bool,

    /// Number of channels; connection i subscribes to channel i % K
    #[arg(long, global = true, default_value_t = 1)]
    pub channels: usize,

    /// Channel name prefix: channels are PREFIX-0 .. PREFIX-(K-1)
    #[arg(long, global = true, default_value = "bench")]
    pub channel_prefix: String,

    /// Reactor threads per process [default: number of cores]
    #[arg(long, global = true)]
    pub threads: Option<usize>,

    /// Child processes to spread the connections over (each has its own open-file limit)
    #[arg(long, global = true, default_value_t = 1)]
    pub procs: usize,

    /// Local source addresses to bind before connecting, e.g. 127.0.0.1-127.0.0.20 or
    /// 127.0.0.2,127.0.0.3 (lifts the ~28k source-port cap per address) [default: kernel's choice]
    #[arg(long, global = true)]
    pub source_ip: Option<String>,

    /// Bound on TCP connect plus WebSocket handshake, seconds
    #[arg(long, global = true, default_value_t = 10.0)]
    pub connect_timeout: f64,

    /// Fanout, reconnect: how long to wait for deliveries after the last publish, seconds
    #[arg(long, global = true, default_value_t = 30.0)]
    pub timeout: f64,

    /// Handshakes in progress at once over all processes and threads (not for burst;
    /// reconnect's resumes too), so that "as fast as possible" does not overflow the
    /// server's accept backlog
    #[arg(long, global = true, default_value_t = 1000)]
    pub max_pending: usize,

    /// Minimum success rate in percent; below it the exit status is 1
    #[arg(long, global = true, default_value_t = 100.0)]
    pub min_success: f64,

    /// Print the verdict as one JSON object on the last stdout line
    #[arg(long, global = true)]
    pub json: bool,

    /// Do not print progress lines on stderr
    #[arg(long, global = true)]
    pub quiet: bool,

    /// Internal: run as child I of --procs (set by the parent when it re-executes itself)
    #[arg(long, global = true, hide = true)]
    pub child_index: Option<usize>,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Scenario {
    /// Open N connections at --rate, hold them for --duration seconds, then close
    Hold(HoldArgs),
    /// N subscribers over K channels; then publish --messages and check every delivery
    Fanout(FanoutArgs),
    /// Loops of connect, {"op":"subscribe"}, await the "subscribed" reply, close
    Churn(ChurnArgs),
    /// Open N connections at once; report successes and the handshake latency
    Burst(BurstArgs),
    /// N subscribers; while --messages are published, all drop at once and resume with
    /// since/epoch; checks every message arrives exactly once and times the resync
    Reconnect(ReconnectArgs),
    /// Per-user channels: N subscribers, each on a channel of its own (--channels is
    /// ignored); --messages spread in a scrambled order over the channels
    OwnChannels(OwnChannelsArgs),
}

#[derive(Args, Debug, Clone)]
pub struct HoldArgs {
    /// New connections per second over all processes; 0 = as fast as possible
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Seconds to hold the connections once all were opened
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// WebSocket only: open plain `/ws` connections subscribed to nothing
    #[arg(long)]
    pub no_subscribe: bool,
}

#[derive(Args, Debug, Clone)]
pub struct FanoutArgs {
    /// New connections per second while subscribing; 0 = as fast as possible
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Messages to publish; message i goes to channel i % K
    #[arg(long, default_value_t = 100)]
    pub messages: u64,
    /// Messages per second over all publishers; 0 = as fast as the API accepts
    #[arg(long, default_value_t = 100.0)]
    pub publish_rate: f64,
    /// Keep-alive HTTP connections publishing in parallel
    #[arg(long, default_value_t = 2)]
    pub publishers: usize,
    /// Requests in flight per publisher connection (HTTP pipelining)
    #[arg(long, default_value_t = 32)]
    pub pipeline: usize,
}

#[derive(Args, Debug, Clone)]
pub struct ChurnArgs {
    /// Seconds to run the loops (cycles in progress then finish, bounded by the timeouts)
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
}

#[derive(Args, Debug, Clone)]
pub struct BurstArgs {}

#[derive(Args, Debug, Clone)]
pub struct ReconnectArgs {
    /// New connections per second while subscribing; 0 = as fast as possible
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Messages to publish; message i goes to channel i % K. Each channel's history
    /// (server --history-size, 100 by default) must hold what is published to it while
    /// its subscribers are away; with 100 messages per channel or fewer it always does
    #[arg(long, default_value_t = 100)]
    pub messages: u64,
    /// Messages per second over all publishers (0 = as fast as the API accepts)
    #[arg(long, default_value_t = 20.0)]
    pub publish_rate: f64,
    /// Keep-alive HTTP connections publishing in parallel
    #[arg(long, default_value_t = 1)]
    pub publishers: usize,
    /// Requests in flight per publisher connection (HTTP pipelining)
    #[arg(long, default_value_t = 8)]
    pub pipeline: usize,
    /// Seconds after publishing starts when every subscriber drops its connection
    #[arg(long, default_value_t = 2.0)]
    pub drop_after: f64,
    /// Seconds the dropped subscribers stay away before reconnecting (0 = at once;
    /// at most --max-pending reconnects are in progress at a time)
    #[arg(long, default_value_t = 0.0)]
    pub away: f64,
}

#[derive(Args, Debug, Clone)]
pub struct OwnChannelsArgs {
    /// Messages to publish, rounded up to a multiple of --connections (each channel
    /// gets as many); message i goes to channel i % N, published in a scrambled order
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Messages per second over all publishers; 0 = as fast as the API accepts
    #[arg(long, default_value_t = 0.0)]
    pub publish_rate: f64,
    /// Keep-alive connections publishing in parallel
    #[arg(long, default_value_t = 20)]
    pub publishers: usize,
    /// Requests in flight per publisher connection (pipelining)
    #[arg(long, default_value_t = 8)]
    pub pipeline: usize,
    /// How to publish: HTTP `POST /api/publish`, or RESP `PUBLISH` on --resp
    #[arg(long, value_enum, default_value_t = PublishVia::Http)]
    pub via: PublishVia,
    /// Messages per HTTP request: more than 1 sends JSON-array batches
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishVia {
    Http,
    Resp,
}

impl Scenario {
    pub fn name(&self) -> &'static str {
        match self {
            Scenario::Hold(_) => "hold",
            Scenario::Fanout(_) => "fanout",
            Scenario::Churn(_) => "churn",
            Scenario::Burst(_) => "burst",
            Scenario::Reconnect(_) => "reconnect",
            Scenario::OwnChannels(_) => "own-channels",
        }
    }
}

//! Command line, environment (`HALLEY_<OPTION>`) and TOML file: every option can come
//! from any of them; the command line wins, then the environment, then the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

use crate::auth::Verifier;
use crate::proto::http::Transports;
use crate::pubsub::hub::HistoryLimits;

#[derive(Debug, Parser)]
#[command(
    name = "halley",
    version,
    about = "A pub/sub push server: WebSocket subscribers, HTTP publishers"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default when no command is given).
    Serve(ServeArgs),
}

/// Every field is optional so that a value can come from the file when the command
/// line leaves it out; defaults are applied last, in `Config::resolve`.
#[derive(Debug, Default, Clone, Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeArgs {
    /// TOML file with any of these options (keys with `_` for `-`)
    #[arg(long, env = "HALLEY_CONFIG", value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Client listener (WebSocket, /health) [default: 0.0.0.0:8080]
    #[arg(long, env = "HALLEY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Publish and stats API listener [default: 127.0.0.1:8081]
    #[arg(long, env = "HALLEY_API_LISTEN", value_name = "ADDR")]
    pub api_listen: Option<SocketAddr>,
    /// Worker reactors, one per core, at most 47 [default: number of cores, up to 47]
    #[arg(long, env = "HALLEY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// Pin each worker to its own core [default: true when workers <= cores]
    #[arg(long, env = "HALLEY_PIN", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub pin: Option<bool>,
    /// Listen backlog [default: 4096]
    #[arg(long, env = "HALLEY_BACKLOG", value_name = "N")]
    pub backlog: Option<u32>,
    /// Client connections held at once; past it new ones get 503 [default: open-file hard limit - 64]
    #[arg(long, env = "HALLEY_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,
    /// Client connections from one source address (IPv6: one /64); past it 503.
    /// 0 = no limit: behind a proxy or load balancer every client shares its address
    /// [default: 0]
    #[arg(long, env = "HALLEY_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<u32>,
    /// Largest client message (close 1009) and publish body (413) [default: 65536]
    #[arg(long, env = "HALLEY_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    pub max_message_size: Option<usize>,
    /// Channels one connection may subscribe to [default: 64]
    #[arg(long, env = "HALLEY_MAX_SUBSCRIPTIONS", value_name = "N")]
    pub max_subscriptions: Option<usize>,
    /// Channels in total; past it a new channel is refused ("too many channels":
    /// close 1013, 503) [default: 1000000]
    #[arg(long, env = "HALLEY_MAX_CHANNELS", value_name = "N")]
    pub max_channels: Option<usize>,
    /// Commands one WebSocket may send per second, with a burst of twice that;
    /// past it close 1008. 0 = no limit (never applies to /echo) [default: 100]
    #[arg(long, env = "HALLEY_MAX_COMMANDS_PER_SECOND", value_name = "N")]
    pub max_commands_per_second: Option<u32>,
    /// Bytes queued for one slow client before it is closed (1008 "slow consumer");
    /// it also bounds the publications waiting for a worker (at most 16 MiB), past
    /// which publishers wait [default: 4194304]
    #[arg(long, env = "HALLEY_MAX_QUEUED_BYTES", value_name = "BYTES")]
    pub max_queued_bytes: Option<usize>,
    /// Ping a client silent for this long; 0 = never [default: 30]
    #[arg(long, env = "HALLEY_PING_INTERVAL", value_name = "SECS")]
    pub ping_interval: Option<u32>,
    /// Close a client silent for this long (1001); 0 = never [default: 90]
    #[arg(long, env = "HALLEY_IDLE_TIMEOUT", value_name = "SECS")]
    pub idle_timeout: Option<u32>,
    /// Close a request whose handshake is not complete after this long (408) [default: 10]
    #[arg(long, env = "HALLEY_HANDSHAKE_TIMEOUT", value_name = "SECS")]
    pub handshake_timeout: Option<u32>,
    /// Bound on the close handshake with every client at shutdown [default: 5]
    #[arg(long, env = "HALLEY_SHUTDOWN_TIMEOUT", value_name = "SECS")]
    pub shutdown_timeout: Option<u32>,
    /// Serve /echo, which echoes every message (conformance testing) [default: false]
    #[arg(long, env = "HALLEY_ECHO", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub echo: Option<bool>,
    /// Accept {"op":"publish"} from WebSocket clients [default: false]
    #[arg(long, env = "HALLEY_CLIENT_PUBLISH", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub client_publish: Option<bool>,
    /// Messages each channel keeps for resumes; 0 = none [default: 100]
    #[arg(long, env = "HALLEY_HISTORY_SIZE", value_name = "N")]
    pub history_size: Option<usize>,
    /// Seconds a message stays in history [default: 300]
    #[arg(long, env = "HALLEY_HISTORY_TTL", value_name = "SECS")]
    pub history_ttl: Option<u32>,
    /// Seconds a long-poll is held before an empty answer [default: 25]
    #[arg(long, env = "HALLEY_POLL_TIMEOUT", value_name = "SECS")]
    pub poll_timeout: Option<u32>,
    /// Access-Control-Allow-Origin for /sse, /poll and /halley.js [default: none, no CORS header]
    #[arg(long, env = "HALLEY_ALLOW_ORIGIN", value_name = "ORIGIN")]
    pub allow_origin: Option<String>,
    /// Transports offered on the client listener [default: ws,sse,poll]
    #[arg(long, env = "HALLEY_TRANSPORTS", value_name = "LIST")]
    pub transports: Option<String>,
    /// Serve the demo page at /demo and its publish endpoint [default: false]
    #[arg(long, env = "HALLEY_DEMO", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub demo: Option<bool>,
    /// File holding the API key: every API request but /health then needs
    /// `Authorization: Bearer KEY` (401 otherwise). Required when --api-listen is not loopback
    #[arg(long, env = "HALLEY_API_KEY_FILE", value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Seconds an API request may take from its first byte to its last (408) [default: 10]
    #[arg(long, env = "HALLEY_API_REQUEST_TIMEOUT", value_name = "SECS")]
    pub api_request_timeout: Option<u32>,
    /// Close an API keep-alive connection idle this long; 0 = never [default: 60]
    #[arg(long, env = "HALLEY_API_IDLE_TIMEOUT", value_name = "SECS")]
    pub api_idle_timeout: Option<u32>,
    /// Also accept publishes over the Redis protocol (RESP) here; with
    /// --api-key-file clients must AUTH with the key [default: off]
    #[arg(long, env = "HALLEY_RESP_LISTEN", value_name = "ADDR")]
    pub resp_listen: Option<SocketAddr>,
    /// Print one stats line per second [default: true when stdout is a terminal]
    #[arg(long, env = "HALLEY_STATS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub stats: Option<bool>,
    /// File holding the HS256 secret that signs connection tokens [default: none]
    #[arg(long, env = "HALLEY_TOKEN_SECRET_FILE", value_name = "FILE")]
    pub token_secret_file: Option<PathBuf>,
    /// PEM public key (RSA for RS256, P-256 for ES256) that verifies tokens [default: none]
    #[arg(long, env = "HALLEY_TOKEN_PUBLIC_KEY_FILE", value_name = "FILE")]
    pub token_public_key_file: Option<PathBuf>,
    /// Every channel needs a token, not only private: and user: ones [default: false]
    #[arg(long, env = "HALLEY_REQUIRE_TOKEN", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub require_token: Option<bool>,
    /// Channel name prefixes that keep presence, comma list; * = all, "" = none [default: private:]
    #[arg(long, env = "HALLEY_PRESENCE_CHANNELS", value_name = "PREFIXES")]
    pub presence_channels: Option<String>,
    /// Send join and leave events to the subscribers of presence channels [default: false]
    #[arg(long, env = "HALLEY_PRESENCE_EVENTS", value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub presence_events: Option<bool>,
    /// Share channels with other nodes through Redis: redis://HOST:PORT, or
    /// redis-cluster://HOST:PORT,HOST:PORT,... (sharded pub/sub, Redis 7+) [default: none, standalone]
    #[arg(long, env = "HALLEY_BROKER", value_name = "URL")]
    pub broker: Option<String>,
    /// Offer permessage-deflate to WebSocket clients and gzip to SSE and long-poll
    /// requests that accept it: on or off [default: on]
    #[arg(long, env = "HALLEY_COMPRESSION", value_name = "on|off")]
    pub compression: Option<String>,
    /// Messages (and SSE writes, poll bodies) smaller than this go uncompressed [default: 256]
    #[arg(long, env = "HALLEY_COMPRESSION_MIN_SIZE", value_name = "BYTES")]
    pub compression_min_size: Option<usize>,
}

/// `on`/`off` (or `true`/`false`) for --compression.
fn on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(format!("--compression: {other:?} is not on or off")),
    }
}

/// `private:,room:` → its prefixes; `*` stands for every channel.
fn presence_prefixes(list: &str) -> Box<[Box<str>]> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| Box::from(p.strip_suffix('*').unwrap_or(p)))
        .collect()
}

impl Config {
    /// True when channel `name` keeps presence.
    pub fn keeps_presence(&self, name: &str) -> bool {
        self.presence_channels
            .iter()
            .any(|p| name.starts_with(&**p))
    }
}

/// The resolved configuration the server runs with.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub listen: SocketAddr,
    pub api_listen: SocketAddr,
    pub workers: usize,
    pub pin: bool,
    pub backlog: u32,
    pub max_connections: usize,
    pub max_connections_per_ip: u32,
    pub max_message_size: usize,
    pub max_subscriptions: usize,
    pub max_queued_bytes: usize,
    pub max_channels: usize,
    pub max_commands_per_second: u32,
    pub ping_interval_s: u32,
    pub idle_timeout_s: u32,
    pub handshake_timeout_s: u32,
    pub shutdown_timeout_s: u32,
    pub echo: bool,
    pub client_publish: bool,
    pub stats: bool,
    pub history: HistoryLimits,
    pub poll_timeout_s: u32,
    /// Leaked once at start-up: the configuration lives as long as the process,
    /// and a `&'static str` keeps `Config` a plain `Copy` value for every worker.
    pub allow_origin: Option<&'static str>,
    pub transports: Transports,
    pub demo: bool,
    /// How tokens are verified (leaked once, like `allow_origin`); none = no tokens.
    pub tokens: Option<&'static Verifier>,
    pub require_token: bool,
    /// Channel name prefixes that keep presence (`""` matches every channel).
    pub presence_channels: &'static [Box<str>],
    pub presence_events: bool,
    /// The trimmed contents of --api-key-file, leaked like `allow_origin`.
    pub api_key: Option<&'static str>,
    pub api_request_timeout_s: u32,
    pub api_idle_timeout_s: u32,
    /// `--broker`, checked and leaked like `allow_origin`; none = standalone.
    pub broker: Option<&'static crate::broker::target::Target>,
    pub resp_listen: Option<SocketAddr>,
    /// permessage-deflate is offered (docs/protocol.md, "Compression").
    pub compression: bool,
    pub compression_min_size: usize,
}

/// Facts about the machine that the defaults depend on.
#[derive(Debug, Clone, Copy)]
pub struct Machine {
    pub cores: usize,
    pub open_files_hard: u64,
    pub stdout_is_terminal: bool,
}

/// File descriptors kept for listeners, epoll, wakers and API connections.
pub const FD_MARGIN: u64 = 64;
/// Workers are named in a mask per channel (`pubsub::channel::Holders`).
pub const MAX_WORKERS: usize = crate::pubsub::channel::MAX_HOLDERS;

impl Config {
    pub fn resolve(cli: ServeArgs, machine: Machine) -> Result<Config, String> {
        let file = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                toml::from_str::<ServeArgs>(&text)
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => ServeArgs::default(),
        };
        macro_rules! pick {
            ($field:ident, $default:expr) => {
                cli.$field.or(file.$field).unwrap_or_else(|| $default)
            };
        }
        // A larger machine runs 47 by default rather than refusing to start; more
        // than that take a second process (docs/cluster.md).
        let workers = pick!(workers, machine.cores.clamp(1, MAX_WORKERS));
        let config = Config {
            listen: pick!(listen, SocketAddr::from(([0, 0, 0, 0], 8080))),
            api_listen: pick!(api_listen, SocketAddr::from(([127, 0, 0, 1], 8081))),
            workers,
            pin: pick!(pin, workers <= machine.cores),
            backlog: pick!(backlog, 4096),
            max_connections: pick!(
                max_connections,
                machine
                    .open_files_hard
                    .saturating_sub(FD_MARGIN)
                    .min(usize::MAX as u64) as usize
            ),
            max_connections_per_ip: pick!(max_connections_per_ip, 0),
            max_message_size: pick!(max_message_size, 64 * 1024),
            max_subscriptions: pick!(max_subscriptions, 64),
            max_queued_bytes: pick!(max_queued_bytes, 4 << 20),
            max_channels: pick!(max_channels, 1_000_000),
            max_commands_per_second: pick!(max_commands_per_second, 100),
            ping_interval_s: pick!(ping_interval, 30),
            idle_timeout_s: pick!(idle_timeout, 90),
            handshake_timeout_s: pick!(handshake_timeout, 10),
            shutdown_timeout_s: pick!(shutdown_timeout, 5),
            echo: pick!(echo, false),
            client_publish: pick!(client_publish, false),
            stats: pick!(stats, machine.stdout_is_terminal),
            history: HistoryLimits {
                size: pick!(history_size, 100),
                ttl_s: pick!(history_ttl, 300),
                // A long-poller's next poll comes within a poll period: until then
                // its channel, and its epoch, stay.
                keep_idle_s: pick!(poll_timeout, 25),
            },
            poll_timeout_s: pick!(poll_timeout, 25),
            allow_origin: cli
                .allow_origin
                .clone()
                .or(file.allow_origin.clone())
                .map(|origin| &*Box::leak(origin.into_boxed_str())),
            transports: match cli.transports.as_ref().or(file.transports.as_ref()) {
                Some(list) => Transports::parse(list).map_err(|e| format!("--transports: {e}"))?,
                None => Transports::ALL,
            },
            demo: pick!(demo, false),
            tokens: Verifier::from_files(
                cli.token_secret_file
                    .as_deref()
                    .or(file.token_secret_file.as_deref()),
                cli.token_public_key_file
                    .as_deref()
                    .or(file.token_public_key_file.as_deref()),
            )?
            .map(|v| &*Box::leak(Box::new(v))),
            require_token: pick!(require_token, false),
            presence_channels: Box::leak(presence_prefixes(
                cli.presence_channels
                    .as_deref()
                    .or(file.presence_channels.as_deref())
                    .unwrap_or("private:"),
            )),
            presence_events: pick!(presence_events, false),
            broker: match cli.broker.as_deref().or(file.broker.as_deref()) {
                Some(url) => Some(&*Box::leak(Box::new(crate::broker::target::Target::parse(
                    url,
                )?))),
                None => None,
            },
            api_key: match cli.api_key_file.as_ref().or(file.api_key_file.as_ref()) {
                Some(path) => Some(&*Box::leak(read_api_key(path)?.into_boxed_str())),
                None => None,
            },
            api_request_timeout_s: pick!(api_request_timeout, 10),
            api_idle_timeout_s: pick!(api_idle_timeout, 60),
            resp_listen: cli.resp_listen.or(file.resp_listen),
            compression: on_off(
                cli.compression
                    .as_deref()
                    .or(file.compression.as_deref())
                    .unwrap_or("on"),
            )?,
            compression_min_size: pick!(compression_min_size, 256),
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), String> {
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(format!("--workers must be between 1 and {MAX_WORKERS}"));
        }
        if self.max_message_size < 125 {
            return Err("--max-message-size must be at least 125 bytes".into());
        }
        if self.max_queued_bytes < 64 * 1024 {
            return Err("--max-queued-bytes must be at least 65536".into());
        }
        if self.max_channels == 0 {
            return Err("--max-channels must be at least 1".into());
        }
        if self.max_subscriptions == 0 {
            return Err("--max-subscriptions must be at least 1".into());
        }
        if self.poll_timeout_s == 0 {
            return Err("--poll-timeout must be at least 1 second".into());
        }
        if let Some(origin) = self.allow_origin {
            if origin.is_empty() || origin.bytes().any(|b| b.is_ascii_control()) {
                return Err(
                    "--allow-origin must be an origin such as https://example.com or *".into(),
                );
            }
        }
        if self.require_token && self.tokens.is_none() {
            return Err(
                "--require-token needs --token-secret-file or --token-public-key-file".into(),
            );
        }
        if self.handshake_timeout_s == 0 {
            return Err("--handshake-timeout must be at least 1 second".into());
        }
        if self.api_request_timeout_s == 0 {
            return Err("--api-request-timeout must be at least 1 second".into());
        }
        if self.api_key.is_none() && !self.api_listen.ip().is_loopback() {
            return Err(format!(
                "--api-listen {} is not a loopback address: anyone who reaches it could publish \
                 and drop connections; set --api-key-file FILE, or listen on 127.0.0.1",
                self.api_listen
            ));
        }
        if let Some(resp) = self.resp_listen.filter(|a| !a.ip().is_loopback()) {
            if self.api_key.is_none() {
                return Err(format!(
                    "--resp-listen {resp} is not a loopback address: anyone who reaches it could \
                     publish; set --api-key-file FILE (clients then AUTH with it), or listen on 127.0.0.1"
                ));
            }
        }
        Ok(())
    }
}

/// The key from `--api-key-file`, trimmed; it must be visible ASCII, as it travels
/// in a header.
fn read_api_key(path: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("--api-key-file {}: {e}", path.display()))?;
    let key = text.trim();
    if key.is_empty() {
        return Err(format!(
            "--api-key-file {}: the file is empty",
            path.display()
        ));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "--api-key-file {}: the key must be printable ASCII without spaces",
            path.display()
        ));
    }
    Ok(key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: Machine = Machine {
        cores: 2,
        open_files_hard: 20_000,
        stdout_is_terminal: false,
    };

    fn args(line: &[&str]) -> ServeArgs {
        let mut argv = vec!["halley", "serve"];
        argv.extend_from_slice(line);
        match Cli::parse_from(argv).command {
            Some(Command::Serve(args)) => args,
            None => panic!("no serve command"),
        }
    }

    #[test]
    fn defaults_follow_the_machine() {
        let config = Config::resolve(args(&[]), MACHINE).unwrap();
        assert_eq!(config.workers, 2);
        assert!(config.pin);
        assert_eq!(config.max_connections, 19_936);
        assert_eq!(config.listen.to_string(), "0.0.0.0:8080");
        assert!(!config.stats && !config.echo);
        let many = Config::resolve(args(&["--workers", "4"]), MACHINE).unwrap();
        assert!(!many.pin, "more workers than cores are not pinned");
        let big = Machine {
            cores: 96,
            ..MACHINE
        };
        let config = Config::resolve(args(&[]), big).unwrap();
        assert_eq!(config.workers, 47, "as many as a channel can name");
        assert!(config.pin);
    }

    #[test]
    fn abuse_limits_have_safe_defaults_and_are_checked() {
        let config = Config::resolve(args(&[]), MACHINE).unwrap();
        assert_eq!(config.max_queued_bytes, 4 << 20);
        assert_eq!(
            config.max_connections_per_ip, 0,
            "off: proxies share an address"
        );
        assert_eq!(config.max_channels, 1_000_000);
        assert_eq!(config.max_commands_per_second, 100);
        assert!(Config::resolve(args(&["--max-queued-bytes", "1000"]), MACHINE).is_err());
        assert!(Config::resolve(args(&["--max-channels", "0"]), MACHINE).is_err());
    }

    #[test]
    fn the_command_line_wins_over_the_file() {
        let path = std::env::temp_dir().join(format!("halley-config-{}.toml", std::process::id()));
        std::fs::write(&path, "max_connections = 50\nbacklog = 10\necho = true\n").unwrap();
        let line = args(&[
            "--config",
            path.to_str().unwrap(),
            "--backlog",
            "20",
            "--stats",
        ]);
        let config = Config::resolve(line, MACHINE).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(config.max_connections, 50);
        assert_eq!(config.backlog, 20);
        assert!(config.echo && config.stats);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_errors() {
        let path = std::env::temp_dir().join(format!("halley-bad-{}.toml", std::process::id()));
        std::fs::write(&path, "max_conections = 50\n").unwrap();
        let result = Config::resolve(args(&["--config", path.to_str().unwrap()]), MACHINE);
        std::fs::remove_file(&path).unwrap();
        assert!(result.unwrap_err().contains("max_conections"));
        assert!(Config::resolve(args(&["--workers", "0"]), MACHINE).is_err());
        // A channel's holders are a 47-bit mask beside its idle bit.
        assert_eq!(
            Config::resolve(args(&["--workers", "47"]), MACHINE)
                .unwrap()
                .workers,
            47
        );
        let refused = Config::resolve(args(&["--workers", "48"]), MACHINE).unwrap_err();
        assert!(refused.contains("between 1 and 47"), "{refused}");
    }

    #[test]
    fn token_and_presence_flags() {
        let plain = Config::resolve(args(&[]), MACHINE).unwrap();
        assert!(
            plain.tokens.is_none()
                && plain.keeps_presence("private:x")
                && !plain.keeps_presence("x")
        );
        let err = Config::resolve(args(&["--require-token"]), MACHINE).unwrap_err();
        assert!(err.contains("--require-token"), "{err}");
        let missing = Config::resolve(args(&["--token-secret-file", "/nonexistent/s"]), MACHINE);
        assert!(missing.unwrap_err().contains("--token-secret-file"));
        let all = Config::resolve(args(&["--presence-channels", "*"]), MACHINE).unwrap();
        assert!(all.keeps_presence("anything"));
        let none = Config::resolve(args(&["--presence-channels", ""]), MACHINE).unwrap();
        assert!(!none.keeps_presence("private:x"));
        let two =
            Config::resolve(args(&["--presence-channels", "room:, private:"]), MACHINE).unwrap();
        assert!(two.keeps_presence("room:1") && two.keeps_presence("private:1"));
    }

    #[test]
    fn compression_is_on_by_default_and_takes_on_or_off() {
        let plain = Config::resolve(args(&[]), MACHINE).unwrap();
        assert!(plain.compression);
        assert_eq!(plain.compression_min_size, 256);
        let off = Config::resolve(args(&["--compression", "off"]), MACHINE).unwrap();
        assert!(!off.compression);
        let err = Config::resolve(args(&["--compression", "maybe"]), MACHINE).unwrap_err();
        assert!(err.contains("--compression"), "{err}");
    }

    #[test]
    fn the_api_key_is_read_trimmed_and_required_off_loopback() {
        let path = std::env::temp_dir().join(format!("halley-key-{}", std::process::id()));
        let open = Config::resolve(args(&["--api-listen", "0.0.0.0:9"]), MACHINE);
        assert!(open.unwrap_err().contains("not a loopback address"));
        std::fs::write(&path, "  k3y-Value\n").unwrap();
        let file = path.to_str().unwrap();
        let keyed = Config::resolve(
            args(&["--api-listen", "0.0.0.0:9", "--api-key-file", file]),
            MACHINE,
        );
        assert_eq!(keyed.unwrap().api_key, Some("k3y-Value"));
        std::fs::write(&path, " \n").unwrap();
        let empty = Config::resolve(args(&["--api-key-file", file]), MACHINE);
        std::fs::remove_file(&path).unwrap();
        assert!(empty.unwrap_err().contains("empty"));
        let missing = Config::resolve(args(&["--api-key-file", file]), MACHINE);
        assert!(missing.unwrap_err().contains("--api-key-file"));
    }

    #[test]
    fn resp_is_off_by_default_and_needs_the_key_off_loopback() {
        assert_eq!(
            Config::resolve(args(&[]), MACHINE).unwrap().resp_listen,
            None
        );
        let local = Config::resolve(args(&["--resp-listen", "127.0.0.1:6390"]), MACHINE).unwrap();
        assert_eq!(local.resp_listen, Some("127.0.0.1:6390".parse().unwrap()));
        let open = Config::resolve(args(&["--resp-listen", "0.0.0.0:6390"]), MACHINE);
        let err = open.unwrap_err();
        assert!(
            err.contains("--resp-listen") && err.contains("--api-key-file"),
            "{err}"
        );
    }

    #[test]
    fn every_serve_option_has_its_halley_variable() {
        use clap::CommandFactory;
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").expect("serve");
        let mut options = 0;
        for arg in serve.get_arguments().filter(|a| a.get_long().is_some()) {
            let long = arg.get_long().unwrap();
            if long == "help" {
                continue;
            }
            let expected = format!("HALLEY_{}", long.replace('-', "_").to_uppercase());
            let env = arg.get_env().map(|e| e.to_string_lossy().into_owned());
            assert_eq!(env.as_deref(), Some(&*expected), "--{long}");
            options += 1;
        }
        assert_eq!(options, 38);
    }
}

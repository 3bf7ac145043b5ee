//! Start-up and shutdown: binds the listeners, starts the workers, the accept
//! thread, the API thread and the ticker, then waits for SIGINT or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use mio::{Poll, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::accept::{self, Acceptor};
use crate::api::{Api, ApiTimeouts};
use crate::broker::Broker;
use crate::config::{Config, FD_MARGIN};
use crate::limits;
use crate::pubsub::hub::Hub;
use crate::pubsub::publication::{Outlet, Upstream};

use crate::stats::{console, Shared};
use crate::worker::inbox::{self, Inbox, Mail};
use crate::worker::{Worker, WAKER};

/// A started server: its listeners are bound and its threads running.
#[derive(Debug)]
pub struct Running {
    pub shared: Arc<Shared>,
    pub client_addr: SocketAddr,
    pub api_addr: SocketAddr,
    /// `--resp-listen`'s bound address, when set.
    pub resp_addr: Option<SocketAddr>,
    inboxes: Vec<Arc<Inbox>>,
    stop_accepting: Waker,
    acceptor: JoinHandle<std::io::Result<()>>,
    workers: Vec<JoinHandle<std::io::Result<()>>>,
}

/// Runs the server until SIGINT or SIGTERM, then shuts it down.
pub fn run(config: Config) -> Result<(), String> {
    // Registered first, so that a signal arriving during start-up is not lost.
    let mut signals = Signals::new([SIGINT, SIGTERM]).map_err(|e| format!("signals: {e}"))?;
    let running = start(&config)?;
    {
        let mut out = std::io::stdout().lock();
        let _ = write!(
            out,
            "halley listening: clients={} api={} workers={}",
            running.client_addr, running.api_addr, config.workers
        );
        if let Some(resp) = running.resp_addr {
            let _ = write!(out, " resp={resp}");
        }
        let _ = writeln!(out);
        let _ = out.flush();
    }
    if let Some(signal) = signals.forever().next() {
        eprintln!(
            "halley: signal {signal}: closing every connection (at most {}s)",
            config.shutdown_timeout_s
        );
    }
    running.shutdown();
    eprintln!("halley: stopped");
    Ok(())
}

/// Binds the listeners and starts every thread (also used in-process by benches).
pub fn start(config: &Config) -> Result<Running, String> {
    crate::stats::memory::purge_in_background();
    let (soft, hard) = limits::raise_open_files();
    if config.max_connections as u64 + FD_MARGIN > soft {
        eprintln!(
            "halley: warning: open-file limit {soft} (hard {hard}) is below --max-connections {} + {FD_MARGIN}; \
             connections past the limit will be refused",
            config.max_connections
        );
    }
    let clients = accept::bind(config.listen, config.backlog)
        .map_err(|e| format!("--listen {}: {e}", config.listen))?;
    let api = accept::bind(config.api_listen, 1024)
        .map_err(|e| format!("--api-listen {}: {e}", config.api_listen))?;
    let resp = match config.resp_listen {
        Some(addr) => {
            Some(accept::bind(addr, 1024).map_err(|e| format!("--resp-listen {addr}: {e}"))?)
        }
        None => None,
    };
    let client_addr = clients.local_addr().map_err(|e| e.to_string())?;
    let api_addr = api.local_addr().map_err(|e| e.to_string())?;

    let mut polls = Vec::with_capacity(config.workers);
    let mut inboxes = Vec::with_capacity(config.workers);
    for _ in 0..config.workers {
        let poll = Poll::new().map_err(|e| format!("poll: {e}"))?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(|e| format!("waker: {e}"))?;
        inboxes.push(Arc::new(Inbox::new(
            waker,
            inbox::behind_bytes(config.max_queued_bytes),
        )));
        polls.push(poll);
    }
    let outlets: Vec<Arc<dyn Outlet>> = inboxes
        .iter()
        .map(|inbox| Arc::clone(inbox) as Arc<dyn Outlet>)
        .collect();
    let hub = Arc::new(
        Hub::new(outlets, config.history)
            .with_max_channels(config.max_channels)
            .with_presence(config.presence_channels, config.presence_events),
    );
    let shared = Arc::new(Shared::new(Arc::clone(&hub), config.workers));
    if let Some(target) = config.broker {
        let outlets = inboxes
            .iter()
            .map(|inbox| Arc::clone(inbox) as Arc<dyn Outlet>)
            .collect();
        let broker = Arc::new(Broker::new(target.clone(), hub, outlets, config.history));
        shared
            .hub
            .set_upstream(Arc::clone(&broker) as Arc<dyn Upstream>);
        let _ = shared.broker.set(Arc::clone(&broker));
        spawn("halley-broker", move || {
            broker.run();
            Ok(())
        })?;
    }

    let workers = start_workers(*config, polls, &inboxes, &shared)?;
    let (acceptor, stop_accepting) = Acceptor::new(
        clients,
        inboxes.clone(),
        Arc::clone(&shared),
        config.max_connections,
        config.max_connections_per_ip,
    )
    .map_err(|e| e.to_string())?;
    let acceptor = spawn("halley-accept", move || acceptor.run())?;
    let api = Api::listen(
        api,
        Arc::clone(&shared),
        inboxes.clone(),
        config.max_message_size,
        config.api_key,
        ApiTimeouts {
            request: Duration::from_secs(config.api_request_timeout_s.into()),
            idle: (config.api_idle_timeout_s > 0)
                .then(|| Duration::from_secs(config.api_idle_timeout_s.into())),
        },
    )
    .map_err(|e| e.to_string())?;
    spawn("halley-api", move || api.run())?;
    let resp_addr = match resp {
        Some(listener) => Some(start_resp(listener, config, &shared)?),
        None => None,
    };
    let ticker_shared = Arc::clone(&shared);
    let print_stats = config.stats;
    spawn("halley-stats", move || {
        console::run_ticker(ticker_shared, print_stats);
        Ok(())
    })?;
    Ok(Running {
        shared,
        client_addr,
        api_addr,
        resp_addr,
        inboxes,
        stop_accepting,
        acceptor,
        workers,
    })
}

impl Running {
    /// Stops accepting, has every worker close its clients with 1001 (bounded by
    /// --shutdown-timeout), and waits for the workers.
    pub fn shutdown(self) {
        let _ = self.stop_accepting.wake();
        let _ = self.acceptor.join();
        for inbox in &self.inboxes {
            inbox.push(Mail::Shutdown);
        }
        for worker in self.workers {
            let _ = worker.join();
        }
    }
}

/// Starts the `--resp-listen` thread on its bound listener; returns its address.
fn start_resp(
    listener: std::net::TcpListener,
    config: &Config,
    shared: &Arc<Shared>,
) -> Result<SocketAddr, String> {
    let bound = listener.local_addr().map_err(|e| e.to_string())?;
    let resp = crate::resp::RespServer::listen(
        listener,
        Arc::clone(shared),
        config.api_key,
        config.max_message_size,
        Duration::from_secs(config.api_request_timeout_s.into()),
    )
    .map_err(|e| e.to_string())?;
    spawn("halley-resp", move || resp.run())?;
    Ok(bound)
}

fn start_workers(
    config: Config,
    polls: Vec<Poll>,
    inboxes: &[Arc<Inbox>],
    shared: &Arc<Shared>,
) -> Result<Vec<JoinHandle<std::io::Result<()>>>, String> {
    let cores = if config.pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut handles = Vec::with_capacity(polls.len());
    for (id, poll) in polls.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let inbox = Arc::clone(&inboxes[id]);
        let shared = Arc::clone(shared);
        handles.push(spawn(&format!("halley-w{id}"), move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            Worker::new(id, poll, inbox, shared, config).run()
        })?);
    }
    Ok(handles)
}

fn spawn<F>(name: &str, body: F) -> Result<JoinHandle<std::io::Result<()>>, String>
where
    F: FnOnce() -> std::io::Result<()> + Send + 'static,
{
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let result = body();
            if let Err(e) = &result {
                eprintln!(
                    "halley: thread {}: {e}",
                    thread::current().name().unwrap_or("?")
                );
            }
            result
        })
        .map_err(|e| format!("spawning {name}: {e}"))
}

//! One shard's pub/sub connection: the broker thread writes (S)SUBSCRIBE and
//! (S)UNSUBSCRIBE on it, and a reader thread of its own blocks on it and hands
//! every relayed message to the broker. A reader that never times out never
//! loses its place in a reply; the connection is shut down to stop it.

use std::io::{BufReader, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::publisher::{self, CONNECT_TIMEOUT, IO_TIMEOUT};
use super::wire::{self, Push};
use super::Broker;

/// How many channels one (S)SUBSCRIBE names at most.
const CHANNELS_PER_COMMAND: usize = 512;

#[derive(Debug, Default)]
struct Confirmations {
    count: Mutex<u64>,
    arrived: Condvar,
}

pub struct Link {
    pub url: String,
    /// The shard's command connection (scripts, PING), used by the broker thread.
    pub commands: redis::Connection,
    writer: TcpStream,
    sharded: bool,
    confirmations: Arc<Confirmations>,
    /// Confirmations asked for so far.
    expected: u64,
    dead: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("url", &self.url)
            .field("expected", &self.expected)
            .field("dead", &self.is_dead())
            .finish_non_exhaustive()
    }
}

impl Link {
    pub fn open(url: &str, sharded: bool, broker: &Arc<Broker>) -> Result<Link, String> {
        let commands = publisher::connect(url)?;
        let info = redis::Client::open(url)
            .map_err(|e| e.to_string())?
            .get_connection_info()
            .clone();
        let (host, port) = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => (host.clone(), *port),
            other => return Err(format!("{other}: only TCP is supported")),
        };
        let addr = (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| e.to_string())?
            .next()
            .ok_or_else(|| format!("{host}: no address"))?;
        let writer =
            TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| e.to_string())?;
        writer
            .set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let _ = writer.set_nodelay(true);
        // The pub/sub connection authenticates like the command one (its reply
        // reaches the reader, which ignores it; a refusal shows as no confirmation).
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = settings.username() {
                auth.arg(user);
            }
            auth.arg(password);
            (&writer)
                .write_all(&auth.get_packed_command())
                .map_err(|e| e.to_string())?;
        }
        let reading = writer.try_clone().map_err(|e| e.to_string())?;
        let confirmations = Arc::new(Confirmations::default());
        let dead = Arc::new(AtomicBool::new(false));
        let reader = {
            let (broker, confirmations, dead) = (
                Arc::clone(broker),
                Arc::clone(&confirmations),
                Arc::clone(&dead),
            );
            std::thread::Builder::new()
                .name("halley-broker-rx".into())
                .spawn(move || read_pushes(reading, &broker, &confirmations, &dead))
                .map_err(|e| e.to_string())?
        };
        Ok(Link {
            url: url.to_string(),
            commands,
            writer,
            sharded,
            confirmations,
            expected: 0,
            dead,
            reader: Some(reader),
        })
    }

    pub fn is_dead(&self) -> bool {
        self.dead.load(Ordering::Relaxed)
    }

    /// Subscribes to `channels` and waits until Redis has confirmed each, so that
    /// a state read afterwards misses nothing published from then on.
    pub fn subscribe(&mut self, channels: &[&str]) -> Result<(), String> {
        let verb = if self.sharded {
            "SSUBSCRIBE"
        } else {
            "SUBSCRIBE"
        };
        self.send(verb, channels)?;
        self.await_confirmations()
    }

    pub fn unsubscribe(&mut self, channels: &[&str]) -> Result<(), String> {
        let verb = if self.sharded {
            "SUNSUBSCRIBE"
        } else {
            "UNSUBSCRIBE"
        };
        self.send(verb, channels)
    }

    fn send(&mut self, verb: &str, channels: &[&str]) -> Result<(), String> {
        // Sharded pub/sub takes channels of one slot per command only.
        let per_command = if self.sharded {
            1
        } else {
            CHANNELS_PER_COMMAND
        };
        for chunk in channels.chunks(per_command) {
            let mut command = redis::cmd(verb);
            for channel in chunk {
                command.arg(wire::pubsub_channel(channel));
            }
            self.writer
                .write_all(&command.get_packed_command())
                .map_err(|e| e.to_string())?;
            self.expected += chunk.len() as u64;
        }
        Ok(())
    }

    fn await_confirmations(&self) -> Result<(), String> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut count = self.confirmations.count.lock().expect("confirmations");
        while *count < self.expected {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || self.is_dead() {
                return Err("no subscribe confirmation from Redis".into());
            }
            count = self
                .confirmations
                .arrived
                .wait_timeout(count, left.min(Duration::from_millis(100)))
                .expect("confirmations")
                .0;
        }
        Ok(())
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = self.writer.shutdown(Shutdown::Both);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

fn read_pushes(
    stream: TcpStream,
    broker: &Broker,
    confirmations: &Confirmations,
    dead: &AtomicBool,
) {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut parser = redis::Parser::new();
    loop {
        let value = match parser.parse_value(&mut reader) {
            Ok(value) => value,
            Err(_) => break,
        };
        match wire::decode_push(&value) {
            Push::Message { channel, payload } => broker.on_relayed(channel, payload),
            Push::Confirmed => {
                *confirmations.count.lock().expect("confirmations") += 1;
                confirmations.arrived.notify_all();
            }
            Push::Other => {}
        }
    }
    dead.store(true, Ordering::Relaxed);
    confirmations.arrived.notify_all();
    broker.wake();
}

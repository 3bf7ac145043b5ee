//! The once-a-second progress line on stderr (rewritten in place on a terminal), or,
//! in a child process, the same counters as a JSON line on stdout for the parent.

use crate::stats::{p99_us, Live};
use serde::{Deserialize, Serialize};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Running totals; rates are derived by whoever prints.
#[derive(Debug, Default, Clone, Copy, Serialize, Deserialize)]
pub struct Snapshot {
    pub open: u64,
    pub connected: u64,
    pub failed: u64,
    pub messages: u64,
    pub cycles: u64,
    /// p99 of the latencies recorded in the last second, µs.
    pub p99_us: u64,
}

impl Snapshot {
    pub fn of(live: &Live) -> Snapshot {
        let p99 = match live.recent.lock() {
            Ok(mut h) => {
                let p = p99_us(&h);
                h.reset();
                p
            }
            Err(_) => 0,
        };
        Snapshot {
            open: Live::get(&live.open),
            connected: Live::get(&live.connected),
            failed: Live::get(&live.failed),
            messages: Live::get(&live.messages),
            cycles: Live::get(&live.cycles),
            p99_us: p99,
        }
    }

    pub fn add(&mut self, o: &Snapshot) {
        self.open += o.open;
        self.connected += o.connected;
        self.failed += o.failed;
        self.messages += o.messages;
        self.cycles += o.cycles;
        self.p99_us = self.p99_us.max(o.p99_us);
    }
}

pub enum Emit {
    Stderr {
        scenario: &'static str,
        target: u64,
    },
    /// Child mode: `{"type":"progress",...}` on stdout.
    ChildJson,
}

pub struct Progress {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts the ticker; `get` is asked for the totals once per second.
    pub fn start(mut get: impl FnMut() -> Snapshot + Send + 'static, emit: Emit) -> Progress {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = thread::spawn(move || {
            let tty = std::io::stderr().is_terminal();
            let start = Instant::now();
            let mut prev = Snapshot::default();
            let mut next = start + Duration::from_secs(1);
            let mut printed = false;
            while !flag.load(Relaxed) {
                thread::sleep(Duration::from_millis(50));
                if Instant::now() < next {
                    continue;
                }
                next += Duration::from_secs(1);
                let s = get();
                match &emit {
                    Emit::ChildJson => {
                        if let Ok(j) = serde_json::to_string(&s) {
                            crate::print_line(&format!(r#"{{"type":"progress","snapshot":{j}}}"#));
                        }
                    }
                    Emit::Stderr { scenario, target } => {
                        let line = format!(
                            "{scenario} {:>4}s  open {}/{target}  connected {}  failed {}  \
                             {} msg/s  {} cycles/s  p99 {:.2} ms",
                            start.elapsed().as_secs(),
                            s.open,
                            s.connected,
                            s.failed,
                            s.messages - prev.messages.min(s.messages),
                            s.cycles - prev.cycles.min(s.cycles),
                            s.p99_us as f64 / 1000.0,
                        );
                        let mut err = std::io::stderr().lock();
                        let _ = if tty {
                            write!(err, "\r\x1b[2K{line}")
                        } else {
                            writeln!(err, "{line}")
                        };
                        let _ = err.flush();
                        printed = tty;
                    }
                }
                prev = s;
            }
            if printed {
                eprintln!();
            }
        });
        Progress {
            stop,
            handle: Some(handle),
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

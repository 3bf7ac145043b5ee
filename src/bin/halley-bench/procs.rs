//! `--procs P`: the parent re-executes itself P times (each child takes a slice of the
//! connections and has its own open-file limit), relays the children's progress,
//! releases them together once all are connected (publishing first for fanout, right
//! after the release for reconnect) and merges their results.
//!
//! Child protocol, one JSON object per stdout line: `{"type":"progress",...}` each
//! second, `{"type":"ready"}` when its connections are open (hold, fanout; it then
//! waits for a `go` line on stdin, or EOF), and `{"type":"result","outcome":...}`.

use crate::progress::{Emit, Progress, Snapshot};
use crate::publisher::{self, PubCfg};
use crate::stats::{add_errors, Outcome};
use serde_json::Value;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;

/// The slice of `total` that process `i` of `n` takes: (first index, count).
pub fn share(total: usize, n: usize, i: usize) -> (usize, usize) {
    let base = total / n;
    let extra = total % n;
    let first = i * base + i.min(extra);
    (first, base + usize::from(i < extra))
}

enum Msg {
    Ready(usize),
    Result(usize, Box<Outcome>),
    Exit(usize),
}

pub struct ParentCfg {
    pub procs: usize,
    pub total: usize,
    /// Hold and fanout release the children together.
    pub gated: bool,
    pub publish: Option<PubCfg>,
    /// Publish after the go (reconnect: the children drop while it runs) rather than
    /// before it (fanout: the children's delivery timeout starts at the go).
    pub publish_after_go: bool,
    pub progress: Option<Emit>,
}

pub fn run(cfg: ParentCfg) -> Result<Outcome, String> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    let snaps = Arc::new(Mutex::new(vec![Snapshot::default(); cfg.procs]));
    let (tx, rx) = mpsc::channel();
    let mut children: Vec<(Child, Option<ChildStdin>)> = Vec::new();
    for i in 0..cfg.procs {
        let spawned = Command::new(&exe)
            .args(&args)
            .arg("--child-index")
            .arg(i.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        let mut child = match spawned {
            Ok(c) => c,
            Err(e) => {
                for (mut c, _) in children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(format!("spawning child {i}: {e}"));
            }
        };
        let stdout = child.stdout.take().expect("piped stdout");
        let stdin = child.stdin.take();
        let (tx, snaps) = (tx.clone(), snaps.clone());
        thread::spawn(move || relay(i, stdout, tx, snaps));
        children.push((child, stdin));
    }
    drop(tx);

    let progress = cfg.progress.map(|emit| {
        let snaps = snaps.clone();
        Progress::start(
            move || {
                let mut sum = Snapshot::default();
                if let Ok(v) = snaps.lock() {
                    v.iter().for_each(|s| sum.add(s));
                }
                sum
            },
            emit,
        )
    });

    let mut waiting = vec![cfg.gated; cfg.procs];
    let mut results: Vec<Option<Outcome>> = vec![None; cfg.procs];
    let mut released = !cfg.gated;
    let mut extra = Outcome::default();
    // Every child ends (each is bounded), and then its relay ends, so this ends.
    for msg in rx.iter() {
        match msg {
            Msg::Ready(i) | Msg::Exit(i) if !released => waiting[i] = false,
            Msg::Result(i, o) => results[i] = Some(*o),
            _ => {}
        }
        if !released && waiting.iter().all(|w| !w) {
            released = true;
            if !cfg.publish_after_go {
                if let Some(p) = &cfg.publish {
                    extra = publisher::publish(p);
                }
            }
            for (_, stdin) in children.iter_mut() {
                if let Some(s) = stdin.as_mut() {
                    let _ = s.write_all(b"go\n").and_then(|_| s.flush());
                }
            }
            if cfg.publish_after_go {
                if let Some(p) = &cfg.publish {
                    extra = publisher::publish(p);
                }
            }
        }
    }
    if let Some(p) = progress {
        p.stop();
    }
    let mut out = Outcome::default();
    for (i, (mut child, stdin)) in children.into_iter().enumerate() {
        drop(stdin);
        let status = child.wait();
        match results[i].take() {
            Some(o) => out.merge(&o),
            None => {
                let (_, n) = share(cfg.total, cfg.procs, i);
                out.target += n as u64;
                out.failed.other += n as u64;
                add_errors(
                    &mut out.errors,
                    [format!("child {i} ended without a result ({status:?})")],
                );
            }
        }
    }
    out.merge(&extra);
    Ok(out)
}

/// Reads one child's stdout until it closes.
fn relay(
    i: usize,
    stdout: std::process::ChildStdout,
    tx: mpsc::Sender<Msg>,
    snaps: Arc<Mutex<Vec<Snapshot>>>,
) {
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        match v["type"].as_str() {
            Some("progress") => {
                if let Ok(s) = serde_json::from_value::<Snapshot>(v["snapshot"].clone()) {
                    if let Ok(mut all) = snaps.lock() {
                        all[i] = s;
                    }
                }
            }
            Some("ready") => {
                let _ = tx.send(Msg::Ready(i));
            }
            Some("result") => {
                if let Ok(o) = serde_json::from_value::<Outcome>(v["outcome"].clone()) {
                    let _ = tx.send(Msg::Result(i, Box::new(o)));
                }
            }
            _ => {}
        }
    }
    let _ = tx.send(Msg::Exit(i));
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_cover_everything() {
        let parts: Vec<_> = (0..3).map(|i| share(10, 3, i)).collect();
        assert_eq!(parts, [(0, 4), (4, 3), (7, 3)]);
    }
}

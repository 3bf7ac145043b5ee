//! Replays every input the fuzzers found worth keeping (tests/fuzz-regressions/TARGET/)
//! and the seed corpus (fuzz/corpus/TARGET/seed-*) through the same harness as the
//! cargo-fuzz targets (fuzz/harness.rs), under plain `cargo test` on stable.

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::{Path, PathBuf};

/// Every kept input of `target`, and its seeds.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    let dirs = [
        (root.join("tests/fuzz-regressions").join(target), ""),
        (root.join("fuzz/corpus").join(target), "seed-"),
    ];
    for (dir, prefix) in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_file() && name.starts_with(prefix) {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Feeds every file to `run`; a panic names the file that caused it.
fn replay(target: &str, run: fn(&[u8])) {
    let files = inputs(target);
    assert!(!files.is_empty(), "no inputs for {target}");
    for path in files {
        let data = std::fs::read(&path).unwrap();
        if std::panic::catch_unwind(|| run(&data)).is_err() {
            panic!("{target}: {} fails again", path.display());
        }
    }
}

#[test]
fn client_request_inputs_stay_fixed() {
    replay("client_request", harness::client_request);
}

#[test]
fn api_request_inputs_stay_fixed() {
    replay("api_request", harness::api_request);
}

#[test]
fn ws_frames_inputs_stay_fixed() {
    replay("ws_frames", harness::ws_frames);
}

#[test]
fn command_inputs_stay_fixed() {
    replay("command", harness::command);
}

#[test]
fn resp_inputs_stay_fixed() {
    replay("resp", harness::resp);
}

#[test]
fn token_inputs_stay_fixed() {
    replay("token", harness::token);
}

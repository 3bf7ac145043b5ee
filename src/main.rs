use std::io::IsTerminal;

use clap::Parser;
use halley::config::{Cli, Command, Config, Machine, ServeArgs};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Read by jemalloc at start (`_RJEM_MALLOC_CONF` still overrides it): its own thread
/// returns freed pages after 1 s instead of 10 s, and skips the muzzy stage, so the
/// buffers a burst of arrivals grew out of do not stay resident while the server
/// idles; and the threads' caches keep only blocks up to 4 KiB, so the per-turn
/// lists a burst grew are given back rather than cached (docs/benchmarks.md,
/// "Memory as an outside client sees it").
// The one symbol jemalloc reads its built-in settings from; nothing else exports it.
#[allow(unsafe_code)]
#[export_name = "_rjem_malloc_conf"]
pub static MALLOC_CONF: &[u8; 76] =
    b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0,tcache_max:4096\0";

fn main() {
    stop_on_panic();
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Serve(args)) => args,
        None => ServeArgs::default(),
    };
    let machine = Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        open_files_hard: halley::limits::open_files_hard(),
        stdout_is_terminal: std::io::stdout().is_terminal(),
    };
    let result = Config::resolve(args, machine).and_then(halley::server::run);
    if let Err(message) = result {
        eprintln!("halley: {message}");
        std::process::exit(2);
    }
}

/// A panic ends one thread, and the rest would run on without it: the accept thread
/// would still hand new connections to a dead worker, whose loop no longer serves
/// them, or no publish would be answered. So a panic anywhere stops the whole server, after the default report
/// (the message and where), for a supervisor to restart it; clients reconnect and
/// resume (recovered from Redis with --broker, told what was lost without).
fn stop_on_panic() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        report(info);
        eprintln!("halley: a thread panicked, so the server stops (a bug: please report it)");
        std::process::abort();
    }));
}

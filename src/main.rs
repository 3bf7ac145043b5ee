use std::io::IsTerminal;

use clap::Parser;
use halley::config::{Cli, Command, Config, Machine, ServeArgs};

#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() {
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

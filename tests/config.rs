//! `--config FILE`: options from a TOML file take effect, and the command line wins
//! over the file.

mod common;

use common::*;

fn write_config(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("halley-test-{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn options_from_the_file_take_effect_and_flags_override_them() {
    let path = write_config(
        "options",
        "max_connections = 1\necho = true\nmax_message_size = 200\n",
    );
    // The file says one connection; the command line raises it to two.
    let server = Server::start(&["--config", path.to_str().unwrap(), "--max-connections", "2"]);
    std::fs::remove_file(&path).unwrap();

    let mut echo = server.raw("/echo");
    echo.send_text("from the file");
    assert_eq!(
        echo.recv_frame().payload,
        b"from the file",
        "echo = true came from the file"
    );
    let _second = server.raw("/ws");
    let (status, headers, _) = raw_http(server.client_addr, upgrade_request("/ws").as_bytes());
    assert_eq!(
        status, 503,
        "--max-connections 2 from the command line: the third is refused"
    );
    assert!(header(&headers, "retry-after").is_some());

    echo.send_frame(true, OP_TEXT, &[b'x'; 201], true);
    assert_eq!(
        echo.expect_close(),
        1009,
        "max_message_size = 200 came from the file"
    );
}

#[test]
fn an_unknown_key_in_the_file_stops_the_server_with_a_message() {
    let path = write_config("unknown", "max_conections = 5\n");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_halley"))
        .args([
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--api-listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("max_conections"),
        "the message names the bad key: {stderr}"
    );
}

/// A `HALLEY_*` variable sets its option, a flag overrides it, and it overrides the
/// file: the file says echo off and 200-byte messages, the environment turns echo on
/// and allows one connection, the command line raises that to two.
#[test]
fn the_environment_sits_between_the_flags_and_the_file() {
    let path = write_config(
        "env",
        "echo = false\nmax_message_size = 200\nmax_connections = 9\n",
    );
    let server = Server::start_with_env(
        &["--config", path.to_str().unwrap(), "--max-connections", "2"],
        &[
            ("HALLEY_ECHO", "true"),
            ("HALLEY_MAX_CONNECTIONS", "1"),
            ("HALLEY_MAX_MESSAGE_SIZE", "300"),
        ],
    );
    std::fs::remove_file(&path).unwrap();

    let mut echo = server.raw("/echo");
    echo.send_text("from the environment");
    assert_eq!(
        echo.recv_frame().payload,
        b"from the environment",
        "HALLEY_ECHO=true won over echo = false in the file"
    );
    let _second = server.raw("/ws");
    let (status, _, _) = raw_http(server.client_addr, upgrade_request("/ws").as_bytes());
    assert_eq!(
        status, 503,
        "--max-connections 2 won over HALLEY_MAX_CONNECTIONS=1: the third is refused"
    );
    echo.send_frame(true, OP_TEXT, &[b'x'; 250], true);
    assert_eq!(
        echo.recv_frame().payload.len(),
        250,
        "HALLEY_MAX_MESSAGE_SIZE=300 won over max_message_size = 200"
    );
    echo.send_frame(true, OP_TEXT, &[b'x'; 301], true);
    assert_eq!(
        echo.expect_close(),
        1009,
        "past the environment's 300 bytes"
    );
}

#[test]
fn a_bad_environment_value_stops_the_server_naming_the_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_halley"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--api-listen",
            "127.0.0.1:0",
        ])
        .env("HALLEY_ECHO", "maybe")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("maybe") && stderr.contains("--echo"),
        "{stderr}"
    );
}

#[test]
fn serve_help_names_each_variable() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_halley"))
        .args(["serve", "--help"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for variable in [
        "HALLEY_MAX_CONNECTIONS",
        "HALLEY_API_KEY_FILE",
        "HALLEY_ECHO",
        "HALLEY_CONFIG",
    ] {
        assert!(
            help.contains(&format!("[env: {variable}=")),
            "{variable}: {help}"
        );
    }
}

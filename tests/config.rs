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

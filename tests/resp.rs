//! Publishing over RESP (`--resp-listen`) against the real binary: `redis-cli`
//! (Debian redis-tools), redis-py (Debian python3-redis), the Rust `redis` crate,
//! node-redis and ioredis (npm, tests/clients) publish to WebSocket subscribers; a
//! hand-made client checks exact replies, pipelining, AUTH, HELLO 3 and the protocol
//! errors that close.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};

use common::*;

fn resp_server(extra: &[&str]) -> (Server, SocketAddr) {
    let mut args = vec!["--resp-listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let server = Server::start(&args);
    let resp = server.resp_addr.expect("resp= on the start-up line");
    (server, resp)
}

fn key_file(name: &str, contents: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("halley-resp-{name}-{}", std::process::id()));
    std::fs::write(&path, contents).unwrap();
    path
}

/// `redis-cli -h H -p P args..` with `stdin`, bounded by `timeout(1)`.
fn redis_cli(addr: SocketAddr, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new("timeout")
        .args(["20", "redis-cli", "-h", &addr.ip().to_string()])
        .args(["-p", &addr.port().to_string()])
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn redis-cli: run tsung/install.sh (apt-get install redis-tools)");
    child.stdin.take().unwrap().write_all(stdin).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.code() != Some(127),
        "redis-cli missing: run tsung/install.sh (apt-get install redis-tools)"
    );
    output
}

fn stdout_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The first Python with redis-py (Debian's python3-redis is for the system python3,
/// which a pyenv shim on PATH may hide).
fn python() -> &'static str {
    ["python3", "/usr/bin/python3"]
        .into_iter()
        .find(|python| {
            Command::new(python)
                .args(["-c", "import redis"])
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("no python3 with redis-py: run tsung/install.sh (apt-get install python3-redis)")
}

fn redis_py(script: &str, addr: SocketAddr, extra: &[&str]) -> Output {
    Command::new("timeout")
        .args(["30", python(), "-c", script])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args(extra)
        .output()
        .expect("spawn python3")
}

/// A RESP client by hand: commands as arrays of bulk strings, replies read whole.
struct Resp {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Resp {
    fn connect(addr: SocketAddr) -> Resp {
        Resp {
            stream: tcp(addr),
            buf: Vec::new(),
        }
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn send(&mut self, args: &[&[u8]]) {
        let frame = encode(args);
        self.send_raw(&frame);
    }

    /// One complete reply, as its exact bytes.
    fn reply(&mut self) -> String {
        for _ in 0..10_000 {
            if let Some(len) = reply_len(&self.buf) {
                let reply: Vec<u8> = self.buf.drain(..len).collect();
                return String::from_utf8_lossy(&reply).into_owned();
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).expect("read a reply");
            assert!(n > 0, "EOF before a complete reply; have {:?}", self.buf);
            self.buf.extend_from_slice(&chunk[..n]);
        }
        panic!("no complete reply");
    }

    fn command(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&args);
        self.reply()
    }

    /// The server closed: EOF (or a reset) with nothing left unread.
    fn at_eof(&mut self) -> bool {
        let mut byte = [0u8; 1];
        self.buf.is_empty()
            && match self.stream.read(&mut byte) {
                Ok(0) => true,
                Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
                Ok(_) => false,
            }
    }
}

fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut frame = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        frame.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        frame.extend_from_slice(arg);
        frame.extend_from_slice(b"\r\n");
    }
    frame
}

/// The length of the complete reply at the start of `buf`, if it is there.
fn reply_len(buf: &[u8]) -> Option<usize> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let head = std::str::from_utf8(&buf[1..end]).ok()?;
    let mut pos = end + 2;
    match buf.first()? {
        b'+' | b'-' | b':' | b'_' => Some(pos),
        b'$' => {
            let len: i64 = head.parse().ok()?;
            if len < 0 {
                return Some(pos);
            }
            let total = pos + len as usize + 2;
            (buf.len() >= total).then_some(total)
        }
        b'*' | b'%' => {
            let n: usize = head.parse().ok()?;
            let items = if buf[0] == b'%' { 2 * n } else { n };
            for _ in 0..items {
                pos += reply_len(&buf[pos..])?;
            }
            Some(pos)
        }
        other => panic!("unexpected reply type {:?} in {buf:?}", *other as char),
    }
}

#[test]
fn redis_cli_publishes_to_a_websocket_subscriber() {
    let (server, resp) = resp_server(&[]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "news");
    let out = redis_cli(resp, &["PUBLISH", "news", "hello"], b"");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(stdout_of(&out).trim(), "1", "the reply is the seq");
    expect_push(&mut ws, "news", 1, "\"hello\"");
    // JSON text goes out as JSON, as the API's raw body does.
    let out = redis_cli(resp, &["PUBLISH", "news", r#"{"n": [1, 2]}"#], b"");
    assert_eq!(stdout_of(&out).trim(), "2");
    expect_push(&mut ws, "news", 2, r#"{"n": [1, 2]}"#);
    // redis-cli's start-up (COMMAND DOCS) and PING.
    assert_eq!(stdout_of(&redis_cli(resp, &["PING"], b"")).trim(), "PONG");
}

#[test]
fn redis_cli_pipe_publishes_every_message_in_order() {
    const N: u64 = 2000;
    let (server, resp) = resp_server(&[]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "piped");
    let mut input = Vec::new();
    for i in 1..=N {
        input.extend(encode(&[b"PUBLISH", b"piped", i.to_string().as_bytes()]));
    }
    let out = redis_cli(resp, &["--pipe"], &input);
    let text = stdout_of(&out);
    assert!(out.status.success(), "{text} {out:?}");
    assert!(text.contains(&format!("errors: 0, replies: {N}")), "{text}");
    for i in 1..=N {
        expect_push(&mut ws, "piped", i, &i.to_string());
    }
}

#[test]
fn redis_cli_inline_commands_from_a_pipe_are_answered_in_order() {
    let (server, resp) = resp_server(&[]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "lines");
    let out = redis_cli(
        resp,
        &[],
        b"PUBLISH lines one\nPUBLISH lines \"two words\"\nGET x\n",
    );
    let text = stdout_of(&out);
    assert_eq!(
        text.trim_end(),
        "1\n2\nERR unknown command 'GET'",
        "{out:?}"
    );
    expect_push(&mut ws, "lines", 1, "\"one\"");
    expect_push(&mut ws, "lines", 2, "\"two words\"");
}

const REDIS_PY_PUBLISH: &str = r#"
import sys, redis
host, port = sys.argv[1], int(sys.argv[2])
password = sys.argv[3] if len(sys.argv) > 3 else None
r = redis.Redis(host=host, port=port, password=password, client_name="py-test", socket_timeout=10)
assert r.ping() is True
print(r.publish("py", "one"))
print(r.publish("py", '{"two": 2}'))
pipe = r.pipeline(transaction=False)
for i in range(3, 103):
    pipe.publish("py", str(i))
print(pipe.execute()[-1])
print(r.client_getname())
"#;

#[test]
fn redis_py_publishes_singly_and_pipelined_to_a_websocket_subscriber() {
    let (server, resp) = resp_server(&[]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "py");
    let out = redis_py(REDIS_PY_PUBLISH, resp, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_of(&out), "1\n2\n102\npy-test\n");
    expect_push(&mut ws, "py", 1, "\"one\"");
    expect_push(&mut ws, "py", 2, r#"{"two": 2}"#);
    for i in 3..=102 {
        expect_push(&mut ws, "py", i, &i.to_string());
    }
}

#[test]
fn with_a_key_publishing_needs_auth() {
    let path = key_file("auth", "open-sesame\n");
    let (server, resp) = resp_server(&["--api-key-file", path.to_str().unwrap()]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "py");
    let mut client = Resp::connect(resp);
    assert_eq!(
        client.command(&["PUBLISH", "py", "x"]),
        "-NOAUTH Authentication required.\r\n"
    );
    assert_eq!(
        client.command(&["AUTH", "open-sesam"]),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n"
    );
    assert_eq!(client.command(&["AUTH", "open-sesame"]), "+OK\r\n");
    assert_eq!(client.command(&["PUBLISH", "py", "x"]), ":1\r\n");
    expect_push(&mut ws, "py", 1, "\"x\"");
    // redis-cli without and with -a; redis-py with the password.
    let out = redis_cli(resp, &["PUBLISH", "py", "y"], b"");
    assert!(stdout_of(&out).contains("NOAUTH"), "{out:?}");
    let out = redis_cli(
        resp,
        &[
            "-a",
            "open-sesame",
            "--no-auth-warning",
            "PUBLISH",
            "py",
            "y",
        ],
        b"",
    );
    assert_eq!(stdout_of(&out).trim(), "2", "{out:?}");
    expect_push(&mut ws, "py", 2, "\"y\"");
    let out = redis_py(REDIS_PY_PUBLISH, resp, &["open-sesame"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout_of(&out), "3\n4\n104\npy-test\n");
    let wrong = redis_py(REDIS_PY_PUBLISH, resp, &["wrong"]);
    assert!(!wrong.status.success());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    // What Redis 6+ answers; redis-py 4 raises it as a ResponseError, later ones as
    // an AuthenticationError.
    assert!(stderr.contains("WRONGPASS"), "{stderr}");
}

/// The Rust `redis` crate (the one `--broker` links) as a backend would use it.
// `::redis`: `common::redis` (a Redis server for the broker tests) shadows the crate.
fn rust_redis(url: &str) -> ::redis::RedisResult<::redis::Connection> {
    let client = ::redis::Client::open(url)?;
    let con = client.get_connection_with_timeout(std::time::Duration::from_secs(10))?;
    con.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    Ok(con)
}

#[test]
fn the_rust_redis_crate_publishes_over_resp2_and_resp3_singly_and_pipelined() {
    let path = key_file("rust", "open-sesame\n");
    let (server, resp) = resp_server(&["--api-key-file", path.to_str().unwrap()]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "rs");
    let mut seq = 0;
    for query in ["", "?protocol=resp3"] {
        let url = format!("redis://:open-sesame@{resp}/0{query}");
        let mut con = rust_redis(&url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let first: u64 = ::redis::cmd("PUBLISH")
            .arg("rs")
            .arg("single")
            .query(&mut con)
            .unwrap();
        seq += 1;
        assert_eq!(first, seq, "the reply is the seq ({url})");
        expect_push(&mut ws, "rs", seq, "\"single\"");
        let mut pipe = ::redis::pipe();
        for i in 0..50 {
            pipe.cmd("PUBLISH").arg("rs").arg(i);
        }
        let seqs: Vec<u64> = pipe.query(&mut con).unwrap();
        assert_eq!(seqs, (seq + 1..=seq + 50).collect::<Vec<_>>(), "{url}");
        for i in 0..50 {
            seq += 1;
            expect_push(&mut ws, "rs", seq, &i.to_string());
        }
        let pong: String = ::redis::cmd("PING").query(&mut con).unwrap();
        assert_eq!(pong, "PONG");
    }
    // A wrong key is refused at connect, as Redis 7 refuses it: the crate reads a
    // failed `AUTH` (RESP2) as `AuthenticationFailed` and hands a failed
    // `HELLO 3 AUTH` on as the server's `WRONGPASS`. No key at all: `NOAUTH` on the
    // first command.
    let wrong = |query: &str| {
        rust_redis(&format!("redis://:wrong@{resp}/{query}"))
            .err()
            .unwrap_or_else(|| panic!("a wrong key connected ({query})"))
    };
    let err = wrong("");
    assert_eq!(
        err.kind(),
        ::redis::ErrorKind::AuthenticationFailed,
        "{err}"
    );
    let err = wrong("?protocol=resp3");
    assert_eq!(err.code(), Some("WRONGPASS"), "{err}");
    let mut bare = rust_redis(&format!("redis://{resp}/")).unwrap();
    let err = ::redis::cmd("PUBLISH")
        .arg("rs")
        .arg("x")
        .query::<u64>(&mut bare)
        .unwrap_err();
    assert_eq!(err.code(), Some("NOAUTH"), "{err}");
}

/// `node tests/clients/publish.mjs LIB HOST PORT CHANNEL PASSWORD|- PROTO`: a Node
/// Redis client publishing as a backend would (node-redis, ioredis).
fn node_client(lib: &str, addr: SocketAddr, channel: &str, password: &str, proto: &str) -> Output {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients");
    assert!(
        std::path::Path::new(dir)
            .join("node_modules/redis")
            .is_dir()
            && std::path::Path::new(dir)
                .join("node_modules/ioredis")
                .is_dir(),
        "tests/clients/node_modules is missing: run scripts/clients-install.sh (npm ci)"
    );
    let output = Command::new("timeout")
        .args(["30", "node", &format!("{dir}/publish.mjs"), lib])
        .arg(addr.ip().to_string())
        .arg(addr.port().to_string())
        .args([channel, password, proto])
        .output()
        .expect("spawn node");
    assert!(
        output.status.code() != Some(127),
        "node missing: run scripts/clients-install.sh (apt-get install nodejs npm)"
    );
    output
}

#[test]
fn node_redis_and_ioredis_publish_singly_and_pipelined_and_a_wrong_key_publishes_nothing() {
    let path = key_file("node", "open-sesame\n");
    let (server, resp) = resp_server(&["--api-key-file", path.to_str().unwrap()]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "node");
    // node-redis sends `HELLO 3 AUTH .. SETNAME ..` for RESP3, else `AUTH` and
    // `CLIENT SETNAME`, and `CLIENT SETINFO` either way; ioredis `AUTH`, `CLIENT
    // SETNAME` and its ready check, `INFO`.
    let mut seq = 0;
    for (lib, proto) in [("node-redis", "2"), ("node-redis", "3"), ("ioredis", "2")] {
        let out = node_client(lib, resp, "node", "open-sesame", proto);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{lib} RESP{proto}: {stderr}");
        assert_eq!(
            stdout_of(&out),
            format!("PONG\n{}\n{}\n", seq + 1, seq + 101),
            "{lib} RESP{proto}: the replies are the seqs"
        );
        seq += 1;
        expect_push(&mut ws, "node", seq, "\"one\"");
        for i in 2..=101 {
            seq += 1;
            expect_push(&mut ws, "node", seq, &i.to_string());
        }
    }
    for (lib, proto) in [("node-redis", "2"), ("node-redis", "3"), ("ioredis", "2")] {
        for password in ["wrong", "-"] {
            let out = node_client(lib, resp, "node", password, proto);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !out.status.success(),
                "{lib} RESP{proto} {password}: connected"
            );
            // ioredis says only "Connection is closed.", as it does against Redis 7.
            if lib == "node-redis" {
                let expected = if password == "-" {
                    "NOAUTH"
                } else {
                    "WRONGPASS"
                };
                assert!(stderr.contains(expected), "{lib} RESP{proto}: {stderr}");
            }
        }
    }
    // None of the refused clients published: the next seq follows the last.
    let out = node_client("ioredis", resp, "node", "open-sesame", "2");
    assert_eq!(
        stdout_of(&out),
        format!("PONG\n{}\n{}\n", seq + 1, seq + 101)
    );
}

#[test]
fn without_a_key_auth_answers_as_redis_without_a_password() {
    let (_server, resp) = resp_server(&[]);
    let mut client = Resp::connect(resp);
    let reply = client.command(&["AUTH", "whatever"]);
    assert!(
        reply.starts_with("-ERR AUTH <password> called without any password configured"),
        "{reply}"
    );
    assert_eq!(client.command(&["AUTH", "default", "whatever"]), "+OK\r\n");
    assert_eq!(client.command(&["PUBLISH", "c", "1"]), ":1\r\n");
}

#[test]
fn hello_3_switches_to_resp3_and_redis_cli_dash_3_publishes() {
    let (server, resp) = resp_server(&[]);
    let mut client = Resp::connect(resp);
    let hello = client.command(&["HELLO", "3", "SETNAME", "h3"]);
    assert!(
        hello.starts_with("%7\r\n$6\r\nserver\r\n$6\r\nhalley\r\n"),
        "{hello}"
    );
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(client.command(&["CLIENT", "GETNAME"]), "$2\r\nh3\r\n");
    assert_eq!(
        client.command(&["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    let mut fresh = Resp::connect(resp);
    fresh.command(&["HELLO", "3"]);
    assert_eq!(
        fresh.command(&["CLIENT", "GETNAME"]),
        "_\r\n",
        "a RESP3 null"
    );
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "three");
    let out = redis_cli(resp, &["-3", "PUBLISH", "three", "x"], b"");
    assert_eq!(stdout_of(&out).trim(), "1", "{out:?}");
    expect_push(&mut ws, "three", 1, "\"x\"");
}

#[test]
fn bad_commands_get_clear_errors_and_the_connection_stays() {
    let (server, resp) = resp_server(&["--max-message-size", "1024"]);
    let mut client = Resp::connect(resp);
    assert_eq!(
        client.command(&["GET", "k"]),
        "-ERR unknown command 'GET'\r\n"
    );
    assert_eq!(
        client.command(&["PUBLISH", "bad name", "x"]),
        "-ERR invalid channel name\r\n"
    );
    assert_eq!(
        client.command(&["PUBLISH", "c"]),
        "-ERR wrong number of arguments for 'publish' command\r\n"
    );
    assert_eq!(
        client.command(&["SELECT", "1"]),
        "-ERR DB index is out of range\r\n"
    );
    let big = "x".repeat(1025);
    assert_eq!(
        client.command(&["PUBLISH", "c", &big]),
        "-ERR body larger than --max-message-size\r\n"
    );
    client.send(&[b"PUBLISH", b"c", &[0xff, 0xfe]]);
    assert_eq!(client.reply(), "-ERR a raw body must be UTF-8\r\n");
    assert_eq!(client.command(&["SELECT", "0"]), "+OK\r\n");
    assert_eq!(
        client.command(&["PING", "still here"]),
        "$10\r\nstill here\r\n"
    );
    let stats = server.stats_when(|s| s["resp_errors_total"] == 6);
    assert_eq!(stats["resp_errors_total"], 6, "{stats}");
    assert_eq!(stats["resp_commands_total"], 8, "{stats}");
    assert_eq!(stats["resp_connections"], 1, "{stats}");
}

#[test]
fn a_huge_bulk_length_is_a_protocol_error_and_a_close() {
    let (server, resp) = resp_server(&["--max-message-size", "1024"]);
    let refusals: [(&[u8], &str); 4] = [
        (
            b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$4294967296\r\n",
            "invalid bulk length",
        ),
        // Past the message cap and its slack: refused from the header, before the body.
        (
            b"*3\r\n$7\r\nPUBLISH\r\n$1\r\nc\r\n$6000\r\n",
            "invalid bulk length",
        ),
        // A frame that is not RESP at all.
        (b"*1\r\n:1\r\n", "expected '$', got ':'"),
        // An inline line that never ends.
        (&[b'a'; 8 * 1024], "too big inline request"),
    ];
    for (frame, reason) in refusals {
        let mut client = Resp::connect(resp);
        client.send_raw(frame);
        assert_eq!(client.reply(), format!("-ERR Protocol error: {reason}\r\n"));
        assert!(
            client.at_eof(),
            "the server kept the connection after {reason}"
        );
    }
    let stats = server.stats_when(|s| s["resp_connections"] == 0);
    assert_eq!(stats["resp_connections"], 0, "{stats}");
    assert_eq!(stats["resp_errors_total"], 4, "{stats}");
}

#[test]
fn pipelined_publishes_in_one_write_get_every_reply_in_order() {
    const N: u64 = 5000;
    let (server, resp) = resp_server(&[]);
    let mut ws = server.connect("/ws");
    subscribe(&mut ws, "burst");
    let mut burst = Vec::new();
    for i in 1..=N {
        burst.extend(encode(&[b"PUBLISH", b"burst", i.to_string().as_bytes()]));
    }
    let mut client = Resp::connect(resp);
    client.send_raw(&burst);
    for i in 1..=N {
        assert_eq!(client.reply(), format!(":{i}\r\n"));
    }
    for i in 1..=N {
        expect_push(&mut ws, "burst", i, &i.to_string());
    }
}

#[test]
fn a_client_that_does_not_read_its_replies_still_gets_them_all() {
    // About 10 MiB of replies, far past the 256 KiB the server queues before it
    // stops reading: the writer blocks until the reader catches up.
    const N: usize = 10_000;
    let (server, resp) = resp_server(&[]);
    let mut client = Resp::connect(resp);
    assert_eq!(client.command(&["PING"]), "+PONG\r\n");
    let rss_before = rss_kib(server.pid);
    let mut writer = client.stream.try_clone().unwrap();
    let payload = "p".repeat(1000);
    let mut burst = Vec::new();
    for _ in 0..N {
        burst.extend(encode(&[b"PING", payload.as_bytes()]));
    }
    let sender = std::thread::spawn(move || writer.write_all(&burst));
    std::thread::sleep(std::time::Duration::from_millis(300));
    // 10 MiB of commands and 10 MiB of replies are in flight, but the server holds
    // at most its output bound and a read's worth: the rest waits in the kernel.
    let grown = rss_kib(server.pid).saturating_sub(rss_before);
    assert!(
        grown < 4 * 1024,
        "the server grew by {grown} KiB while not read"
    );
    let expected = format!("$1000\r\n{payload}\r\n");
    for i in 0..N {
        assert_eq!(client.reply(), expected, "reply {i}");
    }
    sender.join().unwrap().expect("every command was taken");
}

#[test]
fn info_quit_and_client_setinfo_answer_what_libraries_expect() {
    let (_server, resp) = resp_server(&[]);
    let mut client = Resp::connect(resp);
    assert_eq!(
        client.command(&["CLIENT", "SETINFO", "LIB-NAME", "x"]),
        "+OK\r\n"
    );
    assert_eq!(client.command(&["COMMAND", "DOCS"]), "*0\r\n");
    let info = client.command(&["INFO"]);
    assert!(
        info.contains("# Server\r\n") && info.contains("connected_clients:1\r\n"),
        "{info}"
    );
    assert_eq!(client.command(&["QUIT"]), "+OK\r\n");
    assert!(client.at_eof(), "QUIT closes");
}

#[test]
fn a_public_resp_listener_needs_the_key_and_a_taken_port_is_named() {
    let output = Command::new("timeout")
        .args([
            "10",
            env!("CARGO_BIN_EXE_halley"),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(["--api-listen", "127.0.0.1:0", "--resp-listen", "0.0.0.0:0"])
        .output()
        .expect("spawn halley");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("--resp-listen") && stderr.contains("--api-key-file"),
        "{stderr}"
    );
    // A port already bound by another server is refused at start, with its flag.
    let (_server, taken) = resp_server(&[]);
    let output = Command::new("timeout")
        .args([
            "10",
            env!("CARGO_BIN_EXE_halley"),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ])
        .args([
            "--api-listen",
            "127.0.0.1:0",
            "--resp-listen",
            &taken.to_string(),
        ])
        .output()
        .expect("spawn halley");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("--resp-listen {taken}")),
        "{stderr}"
    );
}

#[test]
fn a_command_left_incomplete_is_refused_after_the_request_timeout_but_an_idle_one_stays() {
    let (_server, resp) = resp_server(&["--api-request-timeout", "1"]);
    let mut idle = Resp::connect(resp);
    let mut slow = Resp::connect(resp);
    slow.send_raw(b"*2\r\n$4\r\nPING\r\n$5\r\nhel");
    assert_eq!(
        slow.reply(),
        "-ERR Protocol error: command not complete within --api-request-timeout\r\n"
    );
    assert!(slow.at_eof());
    // The pooled connection with nothing in flight is still served.
    assert_eq!(idle.command(&["PING"]), "+PONG\r\n");
}

#[test]
fn a_connection_past_the_cap_is_told_as_redis_tells_it_and_counted() {
    // The test holds as many connections as the server's cap: one descriptor each.
    halley::limits::raise_open_files();
    let (server, resp) = resp_server(&[]);
    let held: Vec<_> = (0..halley::resp::MAX_CONNECTIONS)
        .map(|_| Resp::connect(resp))
        .collect();
    let stats = server.stats_when(|s| s["resp_connections"] == halley::resp::MAX_CONNECTIONS);
    assert_eq!(
        stats["resp_connections"],
        halley::resp::MAX_CONNECTIONS,
        "{stats}"
    );
    // The next one is told without sending a byte, and closed.
    let mut refused = Resp::connect(resp);
    let told = String::from_utf8_lossy(halley::resp::TOO_MANY_CLIENTS).into_owned();
    assert_eq!(refused.reply(), told);
    assert!(refused.at_eof(), "the refused connection stayed open");
    drop(held);
    let stats = server.stats_when(|s| s["resp_connections"] == 0);
    assert_eq!(stats["resp_errors_total"], 1, "{stats}");
}

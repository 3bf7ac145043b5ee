use super::*;

const OPEN: Rules<'static> = Rules {
    api_key: None,
    max_message: 16,
    uptime_s: 7,
    connected: 2,
};

const KEYED: Rules<'static> = Rules {
    api_key: Some(b"s3cret"),
    ..OPEN
};

fn run(session: &mut Session, rules: Rules<'_>, words: &[&str]) -> (Action, String) {
    let args: Vec<Cow<'_, [u8]>> = words.iter().map(|w| Cow::Borrowed(w.as_bytes())).collect();
    let mut out = Vec::new();
    let action = execute(session, &args, rules, &mut out);
    (action, String::from_utf8(out).unwrap())
}

fn reply(rules: Rules<'_>, words: &[&str]) -> String {
    run(&mut Session::new(5), rules, words).1
}

#[test]
fn publish_hands_the_message_back_as_json() {
    let (action, out) = run(
        &mut Session::new(1),
        OPEN,
        &["publish", "news", "{\"a\":1}"],
    );
    assert_eq!(
        action,
        Action::Publish {
            channel: "news".into(),
            data: "{\"a\":1}".into()
        }
    );
    assert_eq!(out, "", "the caller replies with the seq");
    let (action, _) = run(&mut Session::new(1), OPEN, &["PUBLISH", "news", "hi"]);
    assert_eq!(
        action,
        Action::Publish {
            channel: "news".into(),
            data: "\"hi\"".into()
        }
    );
}

#[test]
fn publish_refusals_use_the_apis_texts() {
    assert_eq!(
        reply(OPEN, &["PUBLISH", "bad name", "x"]),
        "-ERR invalid channel name\r\n"
    );
    assert_eq!(
        reply(OPEN, &["PUBLISH", "c", "01234567890123456"]),
        "-ERR body larger than --max-message-size\r\n"
    );
    assert_eq!(
        reply(OPEN, &["PUBLISH", "c"]),
        "-ERR wrong number of arguments for 'publish' command\r\n"
    );
    let args = [
        Cow::Borrowed(b"PUBLISH".as_slice()),
        Cow::Borrowed(b"c"),
        Cow::Borrowed(&[0xff][..]),
    ];
    let mut out = Vec::new();
    assert_eq!(
        execute(&mut Session::new(1), &args, OPEN, &mut out),
        Action::Replied
    );
    assert_eq!(out, b"-ERR a raw body must be UTF-8\r\n");
}

#[test]
fn ping_select_command_and_info_answer_as_redis_does() {
    assert_eq!(reply(OPEN, &["PING"]), "+PONG\r\n");
    assert_eq!(reply(OPEN, &["ping", "hey"]), "$3\r\nhey\r\n");
    assert_eq!(reply(OPEN, &["ECHO", "tag"]), "$3\r\ntag\r\n");
    assert_eq!(reply(OPEN, &["SELECT", "0"]), "+OK\r\n");
    assert_eq!(
        reply(OPEN, &["SELECT", "3"]),
        "-ERR DB index is out of range\r\n"
    );
    assert_eq!(
        reply(OPEN, &["SELECT", "x"]),
        "-ERR value is not an integer or out of range\r\n"
    );
    assert_eq!(reply(OPEN, &["COMMAND", "DOCS"]), "*0\r\n");
    assert_eq!(reply(OPEN, &["COMMAND"]), "*0\r\n");
    let info = reply(OPEN, &["INFO"]);
    assert!(info.starts_with('$'), "{info}");
    assert!(info.contains("# Server\r\n"), "{info}");
    assert!(info.contains("uptime_in_seconds:7\r\n"), "{info}");
    assert!(info.contains("connected_clients:2\r\n"), "{info}");
    assert_eq!(
        run(&mut Session::new(1), OPEN, &["quit"]),
        (Action::Quit, "+OK\r\n".into())
    );
}

#[test]
fn unknown_commands_are_named_in_the_error() {
    assert_eq!(
        reply(OPEN, &["FLUSHALL"]),
        "-ERR unknown command 'FLUSHALL'\r\n"
    );
    assert_eq!(reply(OPEN, &["get", "k"]), "-ERR unknown command 'get'\r\n");
    let long = "PUBLISHPUBLISHPUBLISH";
    assert_eq!(
        reply(OPEN, &[long, "c", "m"]),
        format!("-ERR unknown command '{long}'\r\n")
    );
    assert_eq!(reply(OPEN, &[""]), "-ERR unknown command ''\r\n");
    assert_eq!(reply(OPEN, &["a\r\nb"]), "-ERR unknown command 'a  b'\r\n");
}

#[test]
fn client_subcommands_that_libraries_send_on_connect_are_accepted() {
    let mut session = Session::new(9);
    assert_eq!(run(&mut session, OPEN, &["CLIENT", "GETNAME"]).1, "$-1\r\n");
    assert_eq!(
        run(
            &mut session,
            OPEN,
            &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]
        )
        .1,
        "+OK\r\n"
    );
    assert_eq!(
        run(&mut session, OPEN, &["client", "setname", "backend"]).1,
        "+OK\r\n"
    );
    assert_eq!(
        run(&mut session, OPEN, &["CLIENT", "GETNAME"]).1,
        "$7\r\nbackend\r\n"
    );
    assert_eq!(run(&mut session, OPEN, &["CLIENT", "ID"]).1, ":9\r\n");
    assert_eq!(
        run(&mut session, OPEN, &["CLIENT", "KILL", "x"]).1,
        "-ERR unknown subcommand 'KILL'. Try CLIENT HELP.\r\n"
    );
    assert_eq!(
        run(&mut session, OPEN, &["CLIENT", "SETNAME", "two words"]).1,
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n"
    );
    let long = "n".repeat(MAX_NAME + 1);
    assert_eq!(
        run(&mut session, OPEN, &["CLIENT", "SETNAME", &long]).1,
        "-ERR Client names are at most 256 bytes here.\r\n"
    );
    assert_eq!(
        run(&mut session, OPEN, &["HELLO", "3", "SETNAME", &long])
            .1
            .as_bytes()[0],
        b'-'
    );
    assert_eq!(
        run(&mut session, OPEN, &["CLIENT", "GETNAME"]).1,
        "$7\r\nbackend\r\n"
    );
    assert_eq!(
        run(&mut session, OPEN, &["CLIENT", "SETNAME"]).1,
        "-ERR wrong number of arguments for 'client|setname' command\r\n"
    );
}

#[test]
fn without_a_key_auth_answers_as_redis_without_a_password() {
    assert!(
        reply(OPEN, &["AUTH", "x"]).starts_with("-ERR AUTH <password> called without any password")
    );
    assert_eq!(reply(OPEN, &["AUTH", "default", "x"]), "+OK\r\n");
    assert_eq!(
        reply(OPEN, &["AUTH"]),
        "-ERR wrong number of arguments for 'auth' command\r\n"
    );
}

#[test]
fn with_a_key_only_auth_hello_and_quit_work_before_auth() {
    let mut session = Session::new(1);
    assert_eq!(
        run(&mut session, KEYED, &["PUBLISH", "c", "m"]).1,
        format!("-{NOAUTH}\r\n")
    );
    assert_eq!(
        run(&mut session, KEYED, &["PING"]).1,
        format!("-{NOAUTH}\r\n")
    );
    assert_eq!(
        run(&mut session, KEYED, &["AUTH", "wrong"]).1,
        format!("-{WRONGPASS}\r\n")
    );
    assert_eq!(
        run(&mut session, KEYED, &["AUTH", "s3cre"]).1,
        format!("-{WRONGPASS}\r\n")
    );
    assert!(!session.authed);
    assert_eq!(run(&mut session, KEYED, &["AUTH", "s3cret"]).1, "+OK\r\n");
    assert!(matches!(
        run(&mut session, KEYED, &["PUBLISH", "c", "m"]).0,
        Action::Publish { .. }
    ));
    // The user form checks the key alone.
    let mut other = Session::new(2);
    assert_eq!(
        run(&mut other, KEYED, &["AUTH", "anyone", "s3cret"]).1,
        "+OK\r\n"
    );
    assert!(other.authed);
}

#[test]
fn hello_answers_a_map_in_the_protocol_asked_for() {
    let mut session = Session::new(4);
    let resp2 = run(&mut session, OPEN, &["HELLO"]).1;
    assert!(
        resp2.starts_with("*14\r\n$6\r\nserver\r\n$6\r\nhalley\r\n"),
        "{resp2}"
    );
    assert!(
        resp2.contains("$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:4\r\n"),
        "{resp2}"
    );
    assert!(resp2.ends_with("$7\r\nmodules\r\n*0\r\n"), "{resp2}");
    let resp3 = run(&mut session, OPEN, &["HELLO", "3", "SETNAME", "w1"]).1;
    assert!(resp3.starts_with("%7\r\n"), "{resp3}");
    assert!(resp3.contains("$5\r\nproto\r\n:3\r\n"), "{resp3}");
    assert_eq!(session.proto, Proto::Resp3);
    assert_eq!(session.name.as_deref(), Some(b"w1".as_slice()));
    // RESP3 nulls from now on.
    assert_eq!(
        run(&mut session, OPEN, &["CLIENT", "SETNAME", "x"]).1,
        "+OK\r\n"
    );
    let mut fresh = Session::new(1);
    fresh.proto = Proto::Resp3;
    assert_eq!(run(&mut fresh, OPEN, &["CLIENT", "GETNAME"]).1, "_\r\n");
    assert_eq!(
        run(&mut session, OPEN, &["HELLO", "2"]).1.chars().next(),
        Some('*')
    );
    assert_eq!(session.proto, Proto::Resp2);
}

#[test]
fn hello_refuses_bad_versions_and_options() {
    assert_eq!(
        reply(OPEN, &["HELLO", "4"]),
        "-NOPROTO unsupported protocol version\r\n"
    );
    assert_eq!(
        reply(OPEN, &["HELLO", "x"]),
        "-ERR Protocol version is not an integer or out of range\r\n"
    );
    assert_eq!(
        reply(OPEN, &["HELLO", "3", "FOO"]),
        "-ERR Syntax error in HELLO option 'FOO'\r\n"
    );
    assert_eq!(
        reply(OPEN, &["HELLO", "3", "AUTH", "u"]),
        "-ERR Syntax error in HELLO option 'AUTH'\r\n"
    );
}

#[test]
fn hello_authenticates_with_the_key_or_refuses() {
    let mut session = Session::new(1);
    assert!(run(&mut session, KEYED, &["HELLO", "3"])
        .1
        .starts_with("-NOAUTH HELLO must be called"));
    assert_eq!(
        session.proto,
        Proto::Resp2,
        "a refused HELLO changes nothing"
    );
    assert_eq!(
        run(
            &mut session,
            KEYED,
            &["HELLO", "3", "AUTH", "default", "no"]
        )
        .1,
        format!("-{WRONGPASS}\r\n")
    );
    assert!(!session.authed);
    assert!(run(
        &mut session,
        KEYED,
        &["HELLO", "3", "AUTH", "default", "s3cret"]
    )
    .1
    .starts_with("%7\r\n"));
    assert!(session.authed);
    assert_eq!(run(&mut session, KEYED, &["PING"]).1, "+PONG\r\n");
}

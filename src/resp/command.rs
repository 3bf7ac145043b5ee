//! What each RESP command answers, sans I/O: enough of Redis for `redis-cli` and
//! the common client libraries to connect, authenticate and publish. A publish is
//! handed back to the caller, which owns the hub.

use std::borrow::Cow;

use subtle::ConstantTimeEq;

use super::encode::{self, Proto};
use crate::api::publish::{check_channel, data_from_raw, INVALID_CHANNEL, TOO_LARGE};

/// The longest client name kept (`CLIENT SETNAME`, `HELLO .. SETNAME`).
pub const MAX_NAME: usize = 256;

/// A name as Redis accepts it: visible ASCII, no spaces; and at most [`MAX_NAME`].
fn check_name(name: &[u8]) -> Result<(), &'static str> {
    if !name.iter().all(u8::is_ascii_graphic) {
        return Err("ERR Client names cannot contain spaces, newlines or special characters.");
    }
    if name.len() > MAX_NAME {
        return Err("ERR Client names are at most 256 bytes here.");
    }
    Ok(())
}

/// One connection's state.
#[derive(Debug)]
pub struct Session {
    pub id: u64,
    pub proto: Proto,
    pub authed: bool,
    /// `CLIENT SETNAME` / `HELLO .. SETNAME`, at most [`MAX_NAME`] bytes.
    pub name: Option<Vec<u8>>,
}

impl Session {
    pub fn new(id: u64) -> Session {
        Session {
            id,
            proto: Proto::Resp2,
            authed: false,
            name: None,
        }
    }
}

/// What the commands check, and the figures INFO shows.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// `--api-key-file`'s key: when set, every command but AUTH, HELLO and QUIT
    /// needs AUTH first.
    pub api_key: Option<&'a [u8]>,
    pub max_message: usize,
    pub uptime_s: u64,
    pub connected: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// The reply is in the output.
    Replied,
    /// Publish `data` (JSON text) on `channel`, then reply with its seq.
    Publish { channel: String, data: String },
    /// The reply is in the output; close once it is written.
    Quit,
}

pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the \
                           default user. Are you sure your configuration is correct?";
const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already authenticated, \
                            otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
                            authenticate the client and select the RESP protocol version at the \
                            same time";

/// Runs one command (`args` is not empty), appending its reply to `out`.
pub fn execute(
    session: &mut Session,
    args: &[Cow<'_, [u8]>],
    rules: Rules<'_>,
    out: &mut Vec<u8>,
) -> Action {
    // Upper-cased on the stack: no command name is longer than 7 bytes.
    let mut upper = [0u8; 16];
    let name = match args[0].len() {
        n @ 1..=16 => {
            upper[..n].copy_from_slice(&args[0]);
            upper[..n].make_ascii_uppercase();
            &upper[..n]
        }
        _ => b"".as_slice(),
    };
    let rest = &args[1..];
    let needs_auth = rules.api_key.is_some() && !session.authed;
    match name {
        b"AUTH" => auth(session, rest, rules, out),
        b"HELLO" => hello(session, rest, rules, out),
        b"QUIT" => {
            encode::simple(out, "OK");
            return Action::Quit;
        }
        _ if needs_auth => encode::error(out, NOAUTH),
        b"PUBLISH" => return publish(rest, rules, out),
        b"PING" => match rest {
            [] => encode::simple(out, "PONG"),
            [message] => encode::bulk(out, message),
            _ => arity(out, "ping"),
        },
        // `redis-cli --pipe` ends its input with an ECHO and waits for it.
        b"ECHO" => match rest {
            [message] => encode::bulk(out, message),
            _ => arity(out, "echo"),
        },
        b"SELECT" => match rest {
            [db] if &db[..] == b"0" => encode::simple(out, "OK"),
            [db] if std::str::from_utf8(db).is_ok_and(|d| d.parse::<i64>().is_ok()) => {
                encode::error(out, "ERR DB index is out of range")
            }
            [_] => encode::error(out, "ERR value is not an integer or out of range"),
            _ => arity(out, "select"),
        },
        b"CLIENT" => client(session, rest, out),
        // What redis-cli asks on start for its hints: it takes an empty answer.
        b"COMMAND" => encode::array(out, 0),
        b"INFO" => info(rules, out),
        _ => {
            let shown = String::from_utf8_lossy(&args[0][..args[0].len().min(128)]).into_owned();
            encode::error(out, &format!("ERR unknown command '{shown}'"));
        }
    }
    Action::Replied
}

fn arity(out: &mut Vec<u8>, command: &str) {
    encode::error(
        out,
        &format!("ERR wrong number of arguments for '{command}' command"),
    );
}

fn publish(rest: &[Cow<'_, [u8]>], rules: Rules<'_>, out: &mut Vec<u8>) -> Action {
    let [channel, message] = rest else {
        arity(out, "publish");
        return Action::Replied;
    };
    let Some(channel) = std::str::from_utf8(channel)
        .ok()
        .filter(|c| check_channel(c).is_ok())
    else {
        encode::error(out, &format!("ERR {INVALID_CHANNEL}"));
        return Action::Replied;
    };
    if message.len() > rules.max_message {
        encode::error(out, &format!("ERR {TOO_LARGE}"));
        return Action::Replied;
    }
    match data_from_raw(message) {
        Ok(data) => Action::Publish {
            channel: channel.to_owned(),
            data,
        },
        Err(reason) => {
            encode::error(out, &format!("ERR {reason}"));
            Action::Replied
        }
    }
}

/// Whether `given` is the key, in constant time in the key's bytes.
fn key_matches(rules: Rules<'_>, given: &[u8]) -> bool {
    rules
        .api_key
        .is_some_and(|key| bool::from(given.ct_eq(key)))
}

/// `AUTH key` or `AUTH user key`: the user name is not checked, only the key.
fn auth(session: &mut Session, rest: &[Cow<'_, [u8]>], rules: Rules<'_>, out: &mut Vec<u8>) {
    let key = match rest {
        [key] | [_, key] => key,
        [] => return arity(out, "auth"),
        _ => return encode::error(out, "ERR syntax error"),
    };
    match rules.api_key {
        // As Redis without a password: the one-argument form is a configuration
        // mistake worth saying; the user form is accepted.
        None if rest.len() == 1 => encode::error(out, NO_PASSWORD),
        None => encode::simple(out, "OK"),
        Some(_) if key_matches(rules, key) => {
            session.authed = true;
            encode::simple(out, "OK");
        }
        Some(_) => encode::error(out, WRONGPASS),
    }
}

/// `HELLO [2|3 [AUTH user key] [SETNAME name]]`: a map describing the server, in
/// the protocol just chosen.
fn hello(session: &mut Session, rest: &[Cow<'_, [u8]>], rules: Rules<'_>, out: &mut Vec<u8>) {
    let mut proto = session.proto;
    let mut options = rest;
    if let [version, more @ ..] = rest {
        proto = match std::str::from_utf8(version)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
        {
            Some(2) => Proto::Resp2,
            Some(3) => Proto::Resp3,
            Some(_) => return encode::error(out, "NOPROTO unsupported protocol version"),
            None => {
                return encode::error(
                    out,
                    "ERR Protocol version is not an integer or out of range",
                )
            }
        };
        options = more;
    }
    let mut authed = session.authed || rules.api_key.is_none();
    let mut name = None;
    while let [option, more @ ..] = options {
        match (option.to_ascii_uppercase().as_slice(), more) {
            (b"AUTH", [_user, key, after @ ..]) => {
                if rules.api_key.is_some() && !key_matches(rules, key) {
                    return encode::error(out, WRONGPASS);
                }
                authed = true;
                options = after;
            }
            (b"SETNAME", [new_name, after @ ..]) => {
                if let Err(reason) = check_name(new_name) {
                    return encode::error(out, reason);
                }
                name = Some(new_name.to_vec());
                options = after;
            }
            _ => {
                let shown = String::from_utf8_lossy(option).into_owned();
                return encode::error(out, &format!("ERR Syntax error in HELLO option '{shown}'"));
            }
        }
    }
    if !authed {
        return encode::error(out, HELLO_NOAUTH);
    }
    session.authed = session.authed || rules.api_key.is_some();
    session.proto = proto;
    if name.is_some() {
        session.name = name;
    }
    encode::map(out, 7, proto);
    encode::bulk(out, b"server");
    encode::bulk(out, b"halley");
    encode::bulk(out, b"version");
    encode::bulk(out, env!("CARGO_PKG_VERSION").as_bytes());
    encode::bulk(out, b"proto");
    encode::integer(out, if proto == Proto::Resp3 { 3 } else { 2 });
    encode::bulk(out, b"id");
    encode::integer(out, session.id as i64);
    encode::bulk(out, b"mode");
    encode::bulk(out, b"standalone");
    encode::bulk(out, b"role");
    encode::bulk(out, b"master");
    encode::bulk(out, b"modules");
    encode::array(out, 0);
}

fn client(session: &mut Session, rest: &[Cow<'_, [u8]>], out: &mut Vec<u8>) {
    let Some(sub) = rest.first() else {
        return arity(out, "client");
    };
    match (sub.to_ascii_uppercase().as_slice(), &rest[1..]) {
        (b"SETINFO", [_attribute, _value]) => encode::simple(out, "OK"),
        (b"SETNAME", [name]) => match check_name(name) {
            Ok(()) => {
                session.name = Some(name.to_vec());
                encode::simple(out, "OK");
            }
            Err(reason) => encode::error(out, reason),
        },
        (b"GETNAME", []) => match &session.name {
            Some(name) => encode::bulk(out, name),
            None => encode::null(out, session.proto),
        },
        (b"ID", []) => encode::integer(out, session.id as i64),
        (b"SETINFO" | b"SETNAME" | b"GETNAME" | b"ID", _) => {
            let shown = String::from_utf8_lossy(sub).to_ascii_lowercase();
            arity(out, &format!("client|{shown}"));
        }
        _ => {
            let shown = String::from_utf8_lossy(sub).into_owned();
            encode::error(
                out,
                &format!("ERR unknown subcommand '{shown}'. Try CLIENT HELP."),
            );
        }
    }
}

/// A small `# Server` section: what monitoring scripts and client checks read.
fn info(rules: Rules<'_>, out: &mut Vec<u8>) {
    let text = format!(
        "# Server\r\nhalley_version:{}\r\nredis_mode:standalone\r\nuptime_in_seconds:{}\r\n\
         \r\n# Clients\r\nconnected_clients:{}\r\n",
        env!("CARGO_PKG_VERSION"),
        rules.uptime_s,
        rules.connected
    );
    encode::bulk(out, text.as_bytes());
}

#[cfg(test)]
#[path = "command_tests.rs"]
mod tests;

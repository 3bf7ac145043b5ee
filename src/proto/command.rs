//! The JSON commands clients send and the JSON messages the server sends back.
//! Channel names are restricted to characters that never need escaping, so
//! messages are built by concatenation, without re-serialising the data.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

pub const MAX_CHANNEL_LEN: usize = 128;

/// 1 to 128 bytes of `[A-Za-z0-9_.:-]`.
pub fn valid_channel(name: &str) -> bool {
    (1..=MAX_CHANNEL_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'))
}

#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    /// With `since`, a resume: the messages after `since` come first.
    Subscribe {
        channel: Cow<'a, str>,
        since: Option<u64>,
        epoch: Option<Cow<'a, str>>,
    },
    Unsubscribe(Cow<'a, str>),
    /// `data` is the raw JSON text of the value, exactly as sent.
    Publish {
        channel: Cow<'a, str>,
        data: &'a str,
    },
    Noop,
    /// A token for a connection that opened without one.
    Auth(Cow<'a, str>),
    /// A fresh token of the same user, before the current one expires.
    Refresh(Cow<'a, str>),
}

#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow)]
    op: Option<Cow<'a, str>>,
    #[serde(borrow)]
    channel: Option<Cow<'a, str>>,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    since: Option<u64>,
    #[serde(borrow)]
    epoch: Option<Cow<'a, str>>,
    #[serde(borrow)]
    token: Option<Cow<'a, str>>,
}

/// Why a command was refused; the text goes into the error reply.
pub type Refused = Cow<'static, str>;

pub fn parse(bytes: &[u8]) -> Result<Command<'_>, Refused> {
    let wire: Wire<'_> =
        serde_json::from_slice(bytes).map_err(|_| Cow::Borrowed("invalid JSON"))?;
    let op = wire.op.ok_or(Cow::Borrowed("missing op"))?;
    let channel = || -> Result<Cow<'_, str>, Refused> {
        let name = wire
            .channel
            .clone()
            .ok_or(Cow::Borrowed("missing channel"))?;
        if valid_channel(&name) {
            Ok(name)
        } else {
            Err(Cow::Borrowed("invalid channel name"))
        }
    };
    match &*op {
        "subscribe" => {
            let epoch = wire.epoch.clone();
            if epoch
                .as_deref()
                .is_some_and(|e| e.len() > 16 || !e.bytes().all(|b| b.is_ascii_alphanumeric()))
            {
                return Err(Cow::Borrowed("invalid epoch"));
            }
            Ok(Command::Subscribe {
                channel: channel()?,
                since: wire.since,
                epoch,
            })
        }
        "unsubscribe" => Ok(Command::Unsubscribe(channel()?)),
        "publish" => {
            let channel = channel()?;
            let data = wire.data.ok_or(Cow::Borrowed("missing data"))?;
            Ok(Command::Publish {
                channel,
                data: data.get(),
            })
        }
        "noop" => Ok(Command::Noop),
        "auth" => Ok(Command::Auth(
            wire.token.ok_or(Cow::Borrowed("missing token"))?,
        )),
        "refresh" => Ok(Command::Refresh(
            wire.token.ok_or(Cow::Borrowed("missing token"))?,
        )),
        other => Err(Cow::Owned(format!("unknown op {}", json_string(other)))),
    }
}

/// `{"channel":"C","seq":N,"data":DATA}`, with `data` copied byte for byte.
pub fn push(channel: &str, seq: u64, data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(channel.len() + data.len() + 40);
    out.extend_from_slice(b"{\"channel\":\"");
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"data\":");
    out.extend_from_slice(data.as_bytes());
    out.push(b'}');
    out
}

/// `seq` is where the client stands once the catch-up that follows is delivered.
pub fn subscribed(channel: &str, seq: u64, epoch: &str, recovered: bool) -> String {
    format!(
        "{{\"op\":\"subscribed\",\"channel\":\"{channel}\",\"seq\":{seq},\
         \"epoch\":\"{epoch}\",\"recovered\":{recovered}}}"
    )
}

pub fn unsubscribed(channel: &str) -> String {
    format!("{{\"op\":\"unsubscribed\",\"channel\":\"{channel}\"}}")
}

pub fn published(channel: &str, seq: u64) -> String {
    format!("{{\"op\":\"published\",\"channel\":\"{channel}\",\"seq\":{seq}}}")
}

/// `user` is any string (a token's `sub`), so it is escaped.
pub fn authenticated(user: &str, exp: u64) -> String {
    format!(
        "{{\"op\":\"authenticated\",\"user\":{},\"exp\":{exp}}}",
        json_string(user)
    )
}

pub fn refreshed(exp: u64) -> String {
    format!("{{\"op\":\"refreshed\",\"exp\":{exp}}}")
}

pub fn error(reason: &str) -> String {
    format!("{{\"op\":\"error\",\"reason\":{}}}", json_string(reason))
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(raw: &str) -> String {
        parse(raw.as_bytes()).expect_err(raw).into_owned()
    }

    #[test]
    fn commands_parse() {
        assert_eq!(
            parse(br#"{"op":"subscribe","channel":"news"}"#),
            Ok(Command::Subscribe {
                channel: "news".into(),
                since: None,
                epoch: None
            })
        );
        assert_eq!(
            parse(br#"{"op":"subscribe","channel":"n","since":7,"epoch":"k3"}"#),
            Ok(Command::Subscribe {
                channel: "n".into(),
                since: Some(7),
                epoch: Some("k3".into())
            })
        );
        assert_eq!(
            parse(br#"{"channel":"a.b","op":"unsubscribe"}"#),
            Ok(Command::Unsubscribe("a.b".into()))
        );
        assert_eq!(parse(br#"{"op":"noop"}"#), Ok(Command::Noop));
        assert_eq!(
            parse(br#"{"op":"auth","token":"h.p.s"}"#),
            Ok(Command::Auth("h.p.s".into()))
        );
        assert_eq!(
            parse(br#"{"op":"refresh","token":"h.p.s"}"#),
            Ok(Command::Refresh("h.p.s".into()))
        );
        match parse(br#"{"op":"publish","channel":"c","data":{"x":[1, 2]}}"#) {
            Ok(Command::Publish { channel, data }) => {
                assert_eq!(channel, "c");
                assert_eq!(data, r#"{"x":[1, 2]}"#, "data is kept byte for byte");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_commands_are_refused_with_a_reason() {
        assert_eq!(refusal("nope"), "invalid JSON");
        assert_eq!(refusal("[1]"), "invalid JSON");
        assert_eq!(refusal(r#"{"channel":"x"}"#), "missing op");
        assert_eq!(refusal(r#"{"op":"dance"}"#), r#"unknown op "dance""#);
        assert_eq!(refusal(r#"{"op":"subscribe"}"#), "missing channel");
        assert_eq!(
            refusal(r#"{"op":"subscribe","channel":"a b"}"#),
            "invalid channel name"
        );
        assert_eq!(refusal(r#"{"op":"publish","channel":"a"}"#), "missing data");
        assert_eq!(refusal(r#"{"op":"auth"}"#), "missing token");
        assert_eq!(refusal(r#"{"op":"refresh","token":7}"#), "invalid JSON");
        assert_eq!(
            refusal(r#"{"op":"subscribe","channel":"a","epoch":"x y"}"#),
            "invalid epoch"
        );
        assert_eq!(
            refusal(r#"{"op":"subscribe","channel":"a","since":-1}"#),
            "invalid JSON"
        );
    }

    #[test]
    fn channel_names_follow_the_rule() {
        assert!(valid_channel("A-z_0.9:x"));
        assert!(valid_channel(&"x".repeat(128)));
        assert!(!valid_channel(""));
        assert!(!valid_channel(&"x".repeat(129)));
        for bad in ["a b", "a/b", "é", "a\"b", "a\\b"] {
            assert!(!valid_channel(bad), "{bad}");
        }
    }

    #[test]
    fn server_messages_are_valid_json() {
        let pushed: serde_json::Value =
            serde_json::from_slice(&push("c", 7, r#"{"t":1}"#)).unwrap();
        assert_eq!(
            pushed,
            serde_json::json!({"channel":"c","seq":7,"data":{"t":1}})
        );
        let err: serde_json::Value = serde_json::from_str(&error("unknown op \"x\"")).unwrap();
        assert_eq!(err["reason"], "unknown op \"x\"");
        let auth: serde_json::Value = serde_json::from_str(&authenticated("u\"1", 9)).unwrap();
        assert_eq!(
            auth,
            serde_json::json!({"op":"authenticated","user":"u\"1","exp":9})
        );
        let fresh: serde_json::Value = serde_json::from_str(&refreshed(12)).unwrap();
        assert_eq!(fresh, serde_json::json!({"op":"refreshed","exp":12}));
        let sub: serde_json::Value =
            serde_json::from_str(&subscribed("c", 3, "k3", false)).unwrap();
        assert_eq!(
            sub,
            serde_json::json!({"op":"subscribed","channel":"c","seq":3,"epoch":"k3","recovered":false})
        );
    }
}

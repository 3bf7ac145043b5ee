//! Query strings of the client listener: the channel list and, in the same order,
//! the resume positions (`channel=a,b&since=12,7&epoch=k3,q1`). One parser for the
//! WebSocket, SSE and long-poll endpoints, so they cannot drift apart.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use super::command::valid_channel;
use super::http::Refusal;

/// One channel a request names, with where the client wants to resume from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted {
    pub name: String,
    pub since: Option<u64>,
    pub epoch: Option<String>,
}

impl Wanted {
    pub fn new(name: &str) -> Wanted {
        Wanted {
            name: name.to_owned(),
            since: None,
            epoch: None,
        }
    }
}

const fn bad(reason: &'static str) -> Refusal {
    Refusal {
        status: 400,
        reason,
    }
}

/// The decoded value of the first `key=` in `query`.
pub fn param<'q>(query: &'q str, key: &str) -> Option<Cow<'q, str>> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix(key)?.strip_prefix('=')?;
        Some(percent_decode_str(value).decode_utf8_lossy())
    })
}

/// The connection token in `?token=`, if any (an empty one counts as none).
pub fn token(query: &str) -> Option<String> {
    param(query, "token")
        .filter(|t| !t.is_empty())
        .map(Cow::into_owned)
}

/// The channels listed under `list_key`, each with its `since` and `epoch` entry.
/// `since_override` (an SSE `Last-Event-ID`) replaces the `since` list.
pub fn wanted(
    query: &str,
    list_key: &str,
    since_override: Option<&str>,
    max: usize,
) -> Result<Vec<Wanted>, Refusal> {
    let mut channels: Vec<Wanted> = Vec::new();
    let names = param(query, list_key).unwrap_or_default();
    let since = since_override
        .map(Cow::Borrowed)
        .or_else(|| param(query, "since"))
        .or_else(|| param(query, "last_event_id"))
        .unwrap_or_default();
    let epochs = param(query, "epoch").unwrap_or_default();
    let mut since = since.split(',');
    let mut epochs = epochs.split(',');
    for name in names.split(',') {
        let (seq, epoch) = (since.next().unwrap_or(""), epochs.next().unwrap_or(""));
        if name.is_empty() {
            continue;
        }
        if !valid_channel(name) {
            return Err(bad("invalid channel name"));
        }
        let since = match seq.trim() {
            "" => None,
            digits => Some(digits.parse().map_err(|_| bad("invalid since"))?),
        };
        if !epoch.bytes().all(|b| b.is_ascii_alphanumeric()) || epoch.len() > 16 {
            return Err(bad("invalid epoch"));
        }
        let epoch = (!epoch.is_empty()).then(|| epoch.to_owned());
        if !channels.iter().any(|c| c.name == name) {
            channels.push(Wanted {
                name: name.to_owned(),
                since,
                epoch,
            });
        }
    }
    if channels.len() > max {
        return Err(bad("too many subscriptions"));
    }
    Ok(channels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_line_up_with_the_channels() {
        let got = wanted("channel=a,b%3Ax,c&since=12,,7&epoch=k3", "channel", None, 8).unwrap();
        let expect = vec![
            Wanted {
                name: "a".into(),
                since: Some(12),
                epoch: Some("k3".into()),
            },
            Wanted {
                name: "b:x".into(),
                since: None,
                epoch: None,
            },
            Wanted {
                name: "c".into(),
                since: Some(7),
                epoch: None,
            },
        ];
        assert_eq!(got, expect);
    }

    #[test]
    fn last_event_id_wins_over_since() {
        let got = wanted("channel=a,b&since=1,1", "channel", Some("5,6"), 8).unwrap();
        assert_eq!((got[0].since, got[1].since), (Some(5), Some(6)));
        let polyfill = wanted("channel=a&last_event_id=9", "channel", None, 8).unwrap();
        assert_eq!(polyfill[0].since, Some(9));
    }

    #[test]
    fn the_token_is_read_from_the_query() {
        assert_eq!(
            token("channel=a&token=ab.c_d-e.f").as_deref(),
            Some("ab.c_d-e.f")
        );
        assert_eq!(
            token("token=a%2Eb").as_deref(),
            Some("a.b"),
            "percent-decoded"
        );
        assert_eq!(token("channel=a&token="), None);
        assert_eq!(token("channel=a&mytoken=x"), None);
    }

    #[test]
    fn bad_lists_are_refused() {
        let reason = |q: &str| wanted(q, "channel", None, 2).unwrap_err().reason;
        assert_eq!(reason("channel=a%20b"), "invalid channel name");
        assert_eq!(reason("channel=a&since=x"), "invalid since");
        assert_eq!(reason("channel=a&since=-1"), "invalid since");
        assert_eq!(reason("channel=a&epoch=a-b"), "invalid epoch");
        assert_eq!(reason("channel=a,b,c"), "too many subscriptions");
        assert!(wanted("x=1", "channel", None, 2).unwrap().is_empty());
    }
}

//! The one publish path every publisher interface shares (the HTTP API, its batches
//! and RESP), with the rules they all apply and the texts of their refusals. A
//! change of broker changes [`publish_one`] only.

use std::sync::atomic::Ordering;

use crate::broker::publisher::{publish_through_many, Item, Publisher};
use crate::proto::command::valid_channel;
use crate::pubsub::hub::TOO_MANY_CHANNELS;
use crate::stats::Shared;

pub const INVALID_CHANNEL: &str = "invalid channel name";
pub const TOO_LARGE: &str = "body larger than --max-message-size";
pub const NOT_UTF8: &str = "a raw body must be UTF-8";

/// A published message's place in its channel.
#[derive(Debug, Clone)]
pub struct Published {
    pub seq: u64,
    epoch: Box<str>,
}

impl Published {
    pub fn epoch(&self) -> &str {
        &self.epoch
    }
}

/// Why a message that passed the rules was not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishError {
    /// `--max-channels` channels exist and this one would be new.
    TooManyChannels,
}

impl PublishError {
    pub fn reason(self) -> &'static str {
        match self {
            PublishError::TooManyChannels => TOO_MANY_CHANNELS,
        }
    }
}

/// Publishes `data` (JSON text) on `channel` (already checked by [`check_channel`]):
/// through Redis with `--broker` (numbered there, delivered by every node when Redis
/// relays it), else, or while Redis is unreachable, in this node's hub.
/// `publisher` is the calling thread's connections to Redis.
pub fn publish_one(
    shared: &Shared,
    publisher: &mut Publisher,
    channel: &str,
    data: &str,
) -> Result<Published, PublishError> {
    publish_many(shared, publisher, &[Item { channel, data }])
        .pop()
        .unwrap_or(Err(PublishError::TooManyChannels))
}

/// Publishes every message, in order; through the broker in one round trip per
/// Redis shard.
pub fn publish_many(
    shared: &Shared,
    publisher: &mut Publisher,
    items: &[Item<'_>],
) -> Vec<Result<Published, PublishError>> {
    for item in items {
        crate::fail_point::panic_if("publish", item.channel);
    }
    let through = shared
        .broker
        .get()
        .map(|broker| (broker, publish_through_many(broker, publisher, items)));
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            if let Some((broker, replies)) = &through {
                if let Some(Some((seq, epoch))) = replies.get(i) {
                    return Ok(Published {
                        seq: *seq,
                        epoch: epoch.as_str().into(),
                    });
                }
                broker
                    .counters
                    .published_locally
                    .fetch_add(1, Ordering::Relaxed);
            }
            let (channel, seq) = shared
                .hub
                .publish(item.channel, item.data)
                .map_err(|_| PublishError::TooManyChannels)?;
            Ok(Published {
                seq,
                epoch: channel.epoch.as_str().into(),
            })
        })
        .collect()
}

pub fn check_channel(channel: &str) -> Result<(), &'static str> {
    if valid_channel(channel) {
        Ok(())
    } else {
        Err(INVALID_CHANNEL)
    }
}

/// A raw message as the JSON the subscribers get: JSON text goes out as is,
/// anything else (UTF-8) becomes a JSON string.
pub fn data_from_raw(raw: &[u8]) -> Result<String, &'static str> {
    match serde_json::from_slice::<&serde_json::value::RawValue>(raw) {
        Ok(json) => Ok(json.get().to_owned()),
        Err(_) => match std::str::from_utf8(raw) {
            Ok(text) => Ok(serde_json::to_string(text).expect("strings serialise")),
            Err(_) => Err(NOT_UTF8),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_json_goes_out_as_is_and_text_as_a_string() {
        assert_eq!(data_from_raw(b"{\"a\": 1}").unwrap(), "{\"a\": 1}");
        assert_eq!(data_from_raw(b"42").unwrap(), "42");
        assert_eq!(data_from_raw(b"hi \"x\"").unwrap(), r#""hi \"x\"""#);
        assert_eq!(data_from_raw(b"").unwrap(), r#""""#);
        assert_eq!(data_from_raw(&[0xff, 0xfe]), Err(NOT_UTF8));
    }

    #[test]
    fn channel_names_follow_the_subscribers_rules() {
        assert_eq!(check_channel("user:42"), Ok(()));
        assert_eq!(check_channel(""), Err(INVALID_CHANNEL));
        assert_eq!(check_channel("a b"), Err(INVALID_CHANNEL));
    }

    #[test]
    fn a_publish_is_numbered_in_its_channel() {
        let limits = crate::pubsub::hub::HistoryLimits {
            size: 10,
            ttl_s: 60,
            keep_idle_s: 60,
        };
        let hub = std::sync::Arc::new(crate::pubsub::hub::Hub::new(Vec::new(), limits));
        let shared = Shared::new(hub, 1);
        let mut publisher = Publisher::default();
        assert_eq!(
            publish_one(&shared, &mut publisher, "c", "1").unwrap().seq,
            1
        );
        let both = publish_many(
            &shared,
            &mut publisher,
            &[
                Item {
                    channel: "c",
                    data: "2",
                },
                Item {
                    channel: "d",
                    data: "1",
                },
            ],
        );
        let second = both[0].as_ref().unwrap();
        assert_eq!(second.seq, 2);
        assert!(!second.epoch().is_empty());
        assert_eq!(both[1].as_ref().unwrap().seq, 1);
    }
}

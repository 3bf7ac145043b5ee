//! What Halley stores in Redis and sends through it: key names, the two Lua scripts,
//! the pub/sub message format and the decoding of the scripts' replies. No I/O, so
//! every rule is tested here byte by byte.
//!
//! A channel `C` owns three keys and one pub/sub channel, all with the hash tag
//! `{C}` so that a Redis Cluster keeps them in one slot (the script touches them
//! all, and sharded pub/sub needs the channel in that slot too):
//! `halley:{C}:seq` (its counter), `halley:{C}:epoch`, `halley:{C}:log` (a capped
//! stream: the history) and the pub/sub channel `halley:{C}`.

use redis::Value;

/// How long a channel's counter and epoch outlive its last publish. The log expires
/// after `--history-ttl`, long before, so an expired counter never leaves history
/// numbered in an epoch that is gone.
pub const KEEP_S: u32 = 7 * 24 * 3600;

pub fn seq_key(channel: &str) -> String {
    format!("halley:{{{channel}}}:seq")
}

pub fn epoch_key(channel: &str) -> String {
    format!("halley:{{{channel}}}:epoch")
}

pub fn log_key(channel: &str) -> String {
    format!("halley:{{{channel}}}:log")
}

pub fn pubsub_channel(channel: &str) -> String {
    format!("halley:{{{channel}}}")
}

/// The Halley channel a pub/sub channel name stands for.
pub fn channel_of(pubsub: &[u8]) -> Option<&str> {
    let name = pubsub.strip_prefix(b"halley:{")?.strip_suffix(b"}")?;
    std::str::from_utf8(name).ok()
}

/// Numbers, keeps and publishes one message, atomically: the counter, the log and
/// the publish cannot disagree, whichever node runs it. Replies `{seq, epoch}`.
/// KEYS: seq, epoch, log. ARGV: pub/sub channel, data, history size, history TTL,
/// an epoch to use if the channel has none, KEEP_S, PUBLISH or SPUBLISH.
pub const PUBLISH_SCRIPT: &str = r"
local seq = redis.call('INCR', KEYS[1])
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[5]
  redis.call('SET', KEYS[2], epoch)
end
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
local size = tonumber(ARGV[3])
if size > 0 then
  local now = redis.call('TIME')[1]
  redis.call('XADD', KEYS[3], 'MAXLEN', size, '*', 's', seq, 't', now, 'd', ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
end
redis.call(ARGV[7], ARGV[1], seq .. ' ' .. epoch .. ' ' .. ARGV[2])
return {seq, epoch}
";

/// Where a channel stands, for a node that starts holding it or comes back after
/// an outage: `{epoch, seq, now, log}`. A channel with no epoch takes the node's
/// (ARGV[1]), so an epoch survives a Redis restart while a node holds it; a
/// counter behind the node's last seq in that epoch (ARGV[2]) is raised to it, so
/// numbers never go back for the clients connected to it.
/// KEYS: seq, epoch, log. ARGV: the node's epoch, its last seq (0: none), KEEP_S.
pub const STATE_SCRIPT: &str = r"
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'EX', ARGV[3])
end
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[2])
if epoch == ARGV[1] and seq < floor then
  seq = floor
  redis.call('SET', KEYS[1], seq, 'EX', ARGV[3])
end
local now = redis.call('TIME')[1]
return {epoch, seq, now, redis.call('XRANGE', KEYS[3], '-', '+')}
";

/// A message as it crosses Redis pub/sub: `"<seq> <epoch> <data>"`.
#[derive(Debug, PartialEq, Eq)]
pub struct Relayed<'a> {
    pub seq: u64,
    pub epoch: &'a str,
    pub data: &'a str,
}

pub fn decode_relayed(payload: &[u8]) -> Option<Relayed<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let (seq, rest) = text.split_once(' ')?;
    let (epoch, data) = rest.split_once(' ')?;
    Some(Relayed {
        seq: seq.parse().ok()?,
        epoch,
        data,
    })
}

/// The publish script's reply.
pub fn decode_published(value: &Value) -> Option<(u64, String)> {
    let Value::Array(items) = value else {
        return None;
    };
    match items.as_slice() {
        [seq, epoch] => Some((integer(seq)?, text(epoch)?)),
        _ => None,
    }
}

/// One kept message of the log.
#[derive(Debug, PartialEq, Eq)]
pub struct Logged {
    pub seq: u64,
    /// Seconds before the state was read that it was published.
    pub age_s: u32,
    pub data: String,
}

/// The state script's reply.
#[derive(Debug, PartialEq, Eq)]
pub struct State {
    pub epoch: String,
    pub last_seq: u64,
    /// Oldest first.
    pub log: Vec<Logged>,
}

pub fn decode_state(value: &Value) -> Option<State> {
    let Value::Array(items) = value else {
        return None;
    };
    let [epoch, seq, now, Value::Array(entries)] = items.as_slice() else {
        return None;
    };
    let now = integer(now)?;
    let mut log = Vec::with_capacity(entries.len());
    for entry in entries {
        // [id, [field, value, ...]]
        let Value::Array(pair) = entry else {
            return None;
        };
        let [_, Value::Array(fields)] = pair.as_slice() else {
            return None;
        };
        let (mut seq, mut at, mut data) = (None, None, None);
        for kv in fields.chunks_exact(2) {
            match text(&kv[0])?.as_str() {
                "s" => seq = integer(&kv[1]),
                "t" => at = integer(&kv[1]),
                "d" => data = text(&kv[1]),
                _ => {}
            }
        }
        log.push(Logged {
            seq: seq?,
            age_s: now.saturating_sub(at?) as u32,
            data: data?,
        });
    }
    Some(State {
        epoch: text(epoch)?,
        last_seq: integer(seq)?,
        log,
    })
}

fn integer(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A pub/sub push on the subscriber connection, as RESP2 sends it.
#[derive(Debug, PartialEq, Eq)]
pub enum Push<'a> {
    /// `message` or `smessage`: a relayed message of a Halley channel.
    Message { channel: &'a str, payload: &'a [u8] },
    /// The server confirmed a (s)subscribe or (s)unsubscribe.
    Confirmed,
    /// Something else (an error reply, a PONG): logged by the caller.
    Other,
}

pub fn decode_push(value: &Value) -> Push<'_> {
    let Value::Array(items) = value else {
        return Push::Other;
    };
    let bulk = |i: usize| match items.get(i) {
        Some(Value::BulkString(b)) => Some(&b[..]),
        _ => None,
    };
    match bulk(0) {
        Some(b"message" | b"smessage") => match (bulk(1).and_then(channel_of), bulk(2)) {
            (Some(channel), Some(payload)) => Push::Message { channel, payload },
            _ => Push::Other,
        },
        Some(b"subscribe" | b"ssubscribe" | b"unsubscribe" | b"sunsubscribe") => Push::Confirmed,
        _ => Push::Other,
    }
}

/// The cluster slot of a channel's keys: CRC16 (XMODEM) of its hash tag, mod 16384.
pub fn slot(channel: &str) -> u16 {
    crc16::State::<crc16::XMODEM>::calculate(channel.as_bytes()) % 16384
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn keys_share_the_channel_hash_tag() {
        assert_eq!(seq_key("news"), "halley:{news}:seq");
        assert_eq!(log_key("a:b"), "halley:{a:b}:log");
        assert_eq!(
            channel_of(pubsub_channel("user:42").as_bytes()),
            Some("user:42")
        );
        assert_eq!(channel_of(b"other"), None);
    }

    #[test]
    fn relayed_messages_keep_spaces_in_their_data() {
        let r = decode_relayed(b"12 k3x9 {\"a\": \"b c\"}").unwrap();
        assert_eq!((r.seq, r.epoch, r.data), (12, "k3x9", "{\"a\": \"b c\"}"));
        assert_eq!(decode_relayed(b"x k 1"), None);
        assert_eq!(decode_relayed(b"12"), None);
        assert_eq!(decode_relayed(&[0xff, b' ', b'a', b' ', b'1']), None);
    }

    #[test]
    fn the_state_reply_decodes_with_ages() {
        let entry = |seq: &str, t: &str, d: &str| {
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![
                    bulk("s"),
                    bulk(seq),
                    bulk("t"),
                    bulk(t),
                    bulk("d"),
                    bulk(d),
                ]),
            ])
        };
        let reply = Value::Array(vec![
            bulk("e1"),
            Value::Int(7),
            bulk("1000"),
            Value::Array(vec![entry("6", "990", "1"), entry("7", "1000", "\"x\"")]),
        ]);
        let state = decode_state(&reply).unwrap();
        assert_eq!(state.epoch, "e1");
        assert_eq!(state.last_seq, 7);
        assert_eq!(
            state.log,
            vec![
                Logged {
                    seq: 6,
                    age_s: 10,
                    data: "1".into()
                },
                Logged {
                    seq: 7,
                    age_s: 0,
                    data: "\"x\"".into()
                },
            ]
        );
        assert_eq!(decode_state(&Value::Int(1)), None);
        assert_eq!(
            decode_published(&Value::Array(vec![Value::Int(3), bulk("e1")])),
            Some((3, "e1".into()))
        );
    }

    #[test]
    fn pushes_are_told_apart() {
        let msg = Value::Array(vec![bulk("smessage"), bulk("halley:{c}"), bulk("1 e x")]);
        assert_eq!(
            decode_push(&msg),
            Push::Message {
                channel: "c",
                payload: b"1 e x"
            }
        );
        let ok = Value::Array(vec![bulk("subscribe"), bulk("halley:{c}"), Value::Int(1)]);
        assert_eq!(decode_push(&ok), Push::Confirmed);
        assert_eq!(decode_push(&Value::Okay), Push::Other);
    }

    #[test]
    fn slots_match_redis_cluster() {
        // Known values from CLUSTER KEYSLOT.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("bar"), 5061);
    }
}

//! Presence across nodes: each node writes who is connected to a channel on it into
//! the channel's hash `halley:{C}:presence`, one field per node, with a time after
//! which it no longer counts. A node refreshes its fields every few seconds, so
//! the entries of a node that died stop counting within `VALID_S`. Reading merges
//! the live fields. No I/O here but `read`/`write`, which take a connection.

use serde_json::{Map, Value};

/// A node's entry counts this long after it was written.
pub const VALID_S: u64 = 15;
/// How often a node rewrites all its entries.
pub const REFRESH_S: u64 = 5;

pub fn key(channel: &str) -> String {
    format!("halley:{{{channel}}}:presence")
}

/// The field value a node writes: its local presence JSON and when it expires.
pub fn entry(local_json: &str, now_s: u64) -> String {
    format!(
        "{{\"until\":{},\"presence\":{local_json}}}",
        now_s + VALID_S
    )
}

/// Merges the nodes' entries that are still valid at `now_s` into one answer in
/// the shape of a node's own (`{"channel","connections","users":[...]}`): the
/// connections add up, and a user on several nodes is listed once.
pub fn merge(channel: &str, entries: &[String], now_s: u64) -> String {
    let mut connections = 0u64;
    let mut users: Map<String, Value> = Map::new();
    for entry in entries {
        let Ok(entry) = serde_json::from_str::<Value>(entry) else {
            continue;
        };
        if entry["until"].as_u64().is_none_or(|until| until < now_s) {
            continue;
        }
        let presence = &entry["presence"];
        connections += presence["connections"].as_u64().unwrap_or(0);
        for user in presence["users"].as_array().into_iter().flatten() {
            let Some(id) = user["user"].as_str() else {
                continue;
            };
            let n = user["connections"].as_u64().unwrap_or(0);
            match users.get_mut(id) {
                Some(known) => {
                    let total = known["connections"].as_u64().unwrap_or(0) + n;
                    known["connections"] = total.into();
                }
                None => {
                    users.insert(id.to_string(), user.clone());
                }
            }
        }
    }
    // Map keeps keys sorted: the same order a single node answers in.
    let users: Vec<Value> = users.into_iter().map(|(_, v)| v).collect();
    serde_json::json!({ "channel": channel, "connections": connections, "users": users })
        .to_string()
}

/// Writes (or, with `None`, removes) this node's entries, in one round trip.
pub fn write(
    conn: &mut redis::Connection,
    node: &str,
    entries: &[(Box<str>, Option<String>)],
    now_s: u64,
) -> Result<(), String> {
    let mut pipe = redis::pipe();
    for (channel, local) in entries {
        match local {
            Some(json) => {
                pipe.cmd("HSET")
                    .arg(key(channel))
                    .arg(node)
                    .arg(entry(json, now_s))
                    .ignore();
                pipe.cmd("EXPIRE")
                    .arg(key(channel))
                    .arg(VALID_S * 4)
                    .ignore();
            }
            None => {
                pipe.cmd("HDEL").arg(key(channel)).arg(node).ignore();
            }
        }
    }
    pipe.query::<()>(conn).map_err(|e| e.to_string())
}

/// Every node's entry for `channel`.
pub fn read(conn: &mut redis::Connection, channel: &str) -> Result<Vec<String>, String> {
    redis::cmd("HVALS")
        .arg(key(channel))
        .query(conn)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_entries_merge_and_stale_ones_do_not_count() {
        let a = entry(
            r#"{"channel":"p","connections":2,"users":[{"user":"ann","connections":1,"info":null},{"user":"bob","connections":1,"info":{"n":2}}]}"#,
            100,
        );
        let b = entry(
            r#"{"channel":"p","connections":1,"users":[{"user":"ann","connections":1,"info":null}]}"#,
            100,
        );
        let dead = entry(
            r#"{"channel":"p","connections":5,"users":[{"user":"zed","connections":5,"info":null}]}"#,
            50,
        );
        let merged: Value =
            serde_json::from_str(&merge("p", &[a, b, dead, "junk".into()], 110)).unwrap();
        assert_eq!(merged["connections"], 3);
        let users = merged["users"].as_array().unwrap();
        assert_eq!(users.len(), 2, "{merged}");
        assert_eq!(users[0]["user"], "ann");
        assert_eq!(users[0]["connections"], 2);
        assert_eq!(users[1]["info"]["n"], 2);
    }
}

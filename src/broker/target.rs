//! `--broker`: which Redis, and for a Redis Cluster which shard serves which slot.

use std::fmt;

/// The parsed `--broker` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// `redis://HOST:PORT[/DB]`: one server, classic pub/sub.
    Single(String),
    /// `redis-cluster://H1:P1,H2:P2,...`: seed nodes; sharded pub/sub.
    Cluster(Vec<String>),
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        if let Some(seeds) = url.strip_prefix("redis-cluster://") {
            let seeds: Vec<String> = seeds
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| format!("redis://{s}"))
                .collect();
            if seeds.is_empty() {
                return Err(format!("--broker {url}: no cluster node given"));
            }
            for seed in &seeds {
                redis::Client::open(seed.as_str())
                    .map_err(|e| format!("--broker {url}: {seed}: {e}"))?;
            }
            return Ok(Target::Cluster(seeds));
        }
        if url.starts_with("redis://") {
            redis::Client::open(url).map_err(|e| format!("--broker {url}: {e}"))?;
            return Ok(Target::Single(url.to_string()));
        }
        Err(format!(
            "--broker {url}: expected redis://HOST:PORT or redis-cluster://HOST:PORT,HOST:PORT,..."
        ))
    }

    pub fn sharded(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }
}

/// Shown in logs and /api/stats: a password in the URL is replaced by `***`.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Single(url) => f.write_str(&redacted(url)),
            Target::Cluster(seeds) => {
                let hosts: Vec<String> = seeds
                    .iter()
                    .map(|s| redacted(s).trim_start_matches("redis://").to_string())
                    .collect();
                write!(f, "redis-cluster://{}", hosts.join(","))
            }
        }
    }
}

/// `redis://user:secret@host` -> `redis://user:***@host`.
fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((credentials, host)) => {
            let user = credentials.split_once(':').map_or("", |(u, _)| u);
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_string(),
    }
}

/// Slot ranges and the primary that serves each, from `CLUSTER SLOTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotMap {
    /// (first slot, last slot, index into `shards`), sorted.
    ranges: Vec<(u16, u16, usize)>,
    /// `redis://host:port` of each primary.
    pub shards: Vec<String>,
}

impl SlotMap {
    /// One shard that serves every slot.
    pub fn single(url: &str) -> SlotMap {
        SlotMap {
            ranges: vec![(0, 16383, 0)],
            shards: vec![url.to_string()],
        }
    }

    /// Decodes a `CLUSTER SLOTS` reply: `[[first, last, [host, port, id], ...], ...]`.
    pub fn from_cluster_slots(reply: &redis::Value) -> Option<SlotMap> {
        use redis::Value;
        let Value::Array(rows) = reply else {
            return None;
        };
        let mut map = SlotMap {
            ranges: Vec::new(),
            shards: Vec::new(),
        };
        for row in rows {
            let Value::Array(row) = row else {
                return None;
            };
            let (Some(Value::Int(first)), Some(Value::Int(last)), Some(Value::Array(primary))) =
                (row.first(), row.get(1), row.get(2))
            else {
                return None;
            };
            let host = match primary.first()? {
                Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let Value::Int(port) = primary.get(1)? else {
                return None;
            };
            let url = format!("redis://{host}:{port}");
            let index = match map.shards.iter().position(|s| *s == url) {
                Some(i) => i,
                None => {
                    map.shards.push(url);
                    map.shards.len() - 1
                }
            };
            map.ranges.push((*first as u16, *last as u16, index));
        }
        map.ranges.sort_unstable();
        (!map.ranges.is_empty()).then_some(map)
    }

    /// The shard that serves `slot` (the first one if the map has a hole).
    pub fn shard_of(&self, slot: u16) -> usize {
        let at = self.ranges.partition_point(|r| r.1 < slot);
        self.ranges
            .get(at)
            .filter(|r| r.0 <= slot)
            .map_or(0, |r| r.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redis::Value;

    #[test]
    fn urls_parse_or_say_why_not() {
        assert_eq!(
            Target::parse("redis://127.0.0.1:6379").unwrap(),
            Target::Single("redis://127.0.0.1:6379".into())
        );
        let cluster = Target::parse("redis-cluster://a:1, b:2").unwrap();
        assert_eq!(
            cluster,
            Target::Cluster(vec!["redis://a:1".into(), "redis://b:2".into()])
        );
        assert_eq!(cluster.to_string(), "redis-cluster://a:1,b:2");
        assert!(Target::parse("http://x").unwrap_err().contains("expected"));
        assert!(Target::parse("redis-cluster://").is_err());
        let secret = Target::parse("redis://:hunter2@127.0.0.1:6379").unwrap();
        assert_eq!(secret.to_string(), "redis://:***@127.0.0.1:6379");
    }

    #[test]
    fn cluster_slots_map_to_shards() {
        let node = |port: i64| {
            Value::Array(vec![
                Value::BulkString(b"127.0.0.1".to_vec()),
                Value::Int(port),
                Value::BulkString(b"id".to_vec()),
            ])
        };
        let row = |a: i64, b: i64, port: i64| {
            Value::Array(vec![Value::Int(a), Value::Int(b), node(port)])
        };
        let reply = Value::Array(vec![
            row(5461, 10922, 7001),
            row(0, 5460, 7000),
            row(10923, 16383, 7002),
        ]);
        let map = SlotMap::from_cluster_slots(&reply).unwrap();
        assert_eq!(map.shards.len(), 3);
        assert_eq!(map.shards[map.shard_of(0)], "redis://127.0.0.1:7000");
        assert_eq!(map.shards[map.shard_of(5461)], "redis://127.0.0.1:7001");
        assert_eq!(map.shards[map.shard_of(16383)], "redis://127.0.0.1:7002");
        assert_eq!(SlotMap::single("redis://x:1").shard_of(9000), 0);
    }
}

//! Who is connected to a channel that keeps presence: a count of connections and,
//! per user, its connections and `info`. Lives in the channel's state in the hub,
//! created on the first join, so channels without presence pay one `None`.
//!
//! A user who loses their last connection is not gone at once: they stay listed
//! as "leaving" for `GRACE_S` seconds, and a connection back within that time (a
//! long-poller's next poll, a reconnect after a network blip) is not a leave and
//! a join again. Without it every long-poll answer would be a leave and the next
//! poll a join.

use std::collections::HashMap;

/// Seconds a user with no connection left stays before their leave counts.
pub const GRACE_S: u32 = 5;

#[derive(Debug, Default)]
pub struct Presence {
    /// Every connection, with a token or not.
    connections: u32,
    users: HashMap<Box<str>, Member>,
    /// Users with no connection, waiting out their grace.
    leaving: u32,
}

#[derive(Debug)]
struct Member {
    connections: u32,
    /// Raw JSON text of the token's `info` claim, from the user's latest join.
    info: Option<Box<str>>,
    /// Hub clock when the last connection went.
    gone_since: u32,
}

/// What a join or a leave means for the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The user's first connection: announce a join.
    Joined,
    /// Nothing to announce.
    Quiet,
}

impl Presence {
    pub fn join(&mut self, user: Option<&str>, info: Option<&str>) -> Change {
        self.connections += 1;
        let Some(user) = user else {
            return Change::Quiet;
        };
        let info = info.map(Box::from);
        match self.users.get_mut(user) {
            Some(member) => {
                if member.connections == 0 {
                    self.leaving -= 1;
                }
                member.connections += 1;
                if info.is_some() {
                    member.info = info;
                }
                Change::Quiet
            }
            None => {
                let member = Member {
                    connections: 1,
                    info,
                    gone_since: 0,
                };
                self.users.insert(user.into(), member);
                Change::Joined
            }
        }
    }

    pub fn leave(&mut self, user: Option<&str>, now: u32) {
        self.connections = self.connections.saturating_sub(1);
        let Some(member) = user.and_then(|u| self.users.get_mut(u)) else {
            return;
        };
        if member.connections > 0 {
            member.connections -= 1;
            if member.connections == 0 {
                member.gone_since = now;
                self.leaving += 1;
            }
        }
    }

    /// True when some user's leave is still to be decided (the sweep must visit).
    pub fn has_leaving(&self) -> bool {
        self.leaving > 0
    }

    pub fn is_empty(&self) -> bool {
        self.connections == 0 && self.users.is_empty()
    }

    /// Removes the users whose grace has passed and returns them (to announce).
    pub fn expire(&mut self, now: u32) -> Vec<Box<str>> {
        if self.leaving == 0 {
            return Vec::new();
        }
        let mut gone = Vec::new();
        self.users.retain(|user, member| {
            let keep = member.connections > 0 || now.saturating_sub(member.gone_since) < GRACE_S;
            if !keep {
                gone.push(user.clone());
            }
            keep
        });
        self.leaving -= gone.len() as u32;
        if self.users.capacity() > 4 * self.users.len() + 16 {
            self.users.shrink_to_fit();
        }
        gone
    }

    pub fn info(&self, user: &str) -> Option<&str> {
        self.users.get(user).and_then(|m| m.info.as_deref())
    }

    /// `{"channel":C,"connections":N,"users":[{"user":U,"connections":n,"info":I}]}`,
    /// users sorted by id; users waiting out their grace are not listed.
    pub fn json(&self, channel: &str) -> String {
        let mut users: Vec<(&str, &Member)> = self
            .users
            .iter()
            .filter(|(_, m)| m.connections > 0)
            .map(|(u, m)| (&**u, m))
            .collect();
        users.sort_unstable_by_key(|(u, _)| *u);
        let list: Vec<String> = users
            .iter()
            .map(|(user, m)| {
                format!(
                    "{{\"user\":{},\"connections\":{},\"info\":{}}}",
                    json_string(user),
                    m.connections,
                    m.info.as_deref().unwrap_or("null")
                )
            })
            .collect();
        empty_json_with(channel, self.connections, &list.join(","))
    }
}

/// The answer for a presence channel nobody is connected to.
pub fn empty_json(channel: &str) -> String {
    empty_json_with(channel, 0, "")
}

fn empty_json_with(channel: &str, connections: u32, users: &str) -> String {
    format!("{{\"channel\":\"{channel}\",\"connections\":{connections},\"users\":[{users}]}}")
}

/// A presence event, a push of its own shape (no `data`, a `presence` field):
/// `{"channel":C,"seq":N,"presence":"join","user":U,"info":I}`.
pub fn event(channel: &str, seq: u64, kind: &str, user: &str, info: Option<&str>) -> Vec<u8> {
    let info = info.map(|i| format!(",\"info\":{i}")).unwrap_or_default();
    format!(
        "{{\"channel\":\"{channel}\",\"seq\":{seq},\"presence\":\"{kind}\",\"user\":{}{info}}}",
        json_string(user)
    )
    .into_bytes()
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).expect("a string always serialises")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn counts_connections_and_users() {
        let mut p = Presence::default();
        assert_eq!(p.join(Some("ann"), Some(r#"{"n":"Ann"}"#)), Change::Joined);
        assert_eq!(p.join(Some("ann"), None), Change::Quiet, "a second tab");
        assert_eq!(p.join(Some("bob"), None), Change::Joined);
        assert_eq!(
            p.join(None, None),
            Change::Quiet,
            "anonymous counts, unlisted"
        );
        let got: Value = serde_json::from_str(&p.json("private:r")).unwrap();
        assert_eq!(
            got,
            json!({"channel":"private:r","connections":4,"users":[
                {"user":"ann","connections":2,"info":{"n":"Ann"}},
                {"user":"bob","connections":1,"info":null}]})
        );
    }

    #[test]
    fn a_leave_counts_after_the_grace_and_a_return_within_it_is_quiet() {
        let mut p = Presence::default();
        p.join(Some("ann"), None);
        p.leave(Some("ann"), 100);
        assert!(p.has_leaving());
        let listed: Value = serde_json::from_str(&p.json("c")).unwrap();
        assert_eq!(listed["users"], json!([]), "not listed while leaving");
        assert!(p.expire(100 + GRACE_S - 1).is_empty());
        assert_eq!(
            p.join(Some("ann"), None),
            Change::Quiet,
            "back within the grace"
        );
        assert!(!p.has_leaving());
        p.leave(Some("ann"), 200);
        assert_eq!(p.expire(200 + GRACE_S), vec![Box::from("ann")]);
        assert!(p.is_empty() && !p.has_leaving());
        assert_eq!(p.join(Some("ann"), None), Change::Joined);
    }

    #[test]
    fn a_stray_leave_does_not_underflow() {
        let mut p = Presence::default();
        p.leave(Some("nobody"), 1);
        p.leave(None, 1);
        assert!(p.is_empty() && !p.has_leaving());
    }

    #[test]
    fn events_are_json_pushes_with_their_own_shape() {
        let join: Value =
            serde_json::from_slice(&event("c", 3, "join", "a\"b", Some(r#"{"x":1}"#))).unwrap();
        assert_eq!(
            join,
            json!({"channel":"c","seq":3,"presence":"join","user":"a\"b","info":{"x":1}})
        );
        let leave: Value = serde_json::from_slice(&event("c", 4, "leave", "u", None)).unwrap();
        assert_eq!(
            leave,
            json!({"channel":"c","seq":4,"presence":"leave","user":"u"})
        );
    }
}

//! What a worker keeps of a verified token for as long as the connection lives:
//! only what later checks need, in one allocation: the user id, then each grant
//! after a `\n`, then the presence `info` after a `\0`. Grants that could never
//! match a channel name are dropped (so neither byte can occur in one), and JSON
//! text never holds a raw NUL.

use super::verify::Verified;
use crate::proto::command::valid_channel;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    text: Box<str>,
    /// Unix seconds; a far-future `exp` is clamped (year 2106).
    exp: u32,
    /// Bytes of `text` that are the user id (a `sub` is at most 128 bytes).
    user_len: u8,
}

impl Session {
    /// Keeps `info` only when some channel shows presence (`keep_info`).
    pub fn new(token: Verified, keep_info: bool) -> Session {
        let user_len = u8::try_from(token.sub.len()).expect("sub is at most 128 bytes");
        let mut text = token.sub;
        for grant in &token.channels {
            if valid_channel(grant.strip_suffix('*').unwrap_or(grant)) {
                text.push('\n');
                text.push_str(grant);
            }
        }
        if let Some(info) = token.info.filter(|_| keep_info) {
            text.push('\0');
            text.push_str(info.get());
        }
        Session {
            text: text.into_boxed_str(),
            exp: u32::try_from(token.exp).unwrap_or(u32::MAX),
            user_len,
        }
    }

    pub fn user(&self) -> &str {
        &self.text[..usize::from(self.user_len)]
    }

    pub fn exp(&self) -> u64 {
        u64::from(self.exp)
    }

    pub fn expired(&self, now_unix: u64) -> bool {
        self.exp() <= now_unix
    }

    fn after_user(&self) -> (&str, Option<&str>) {
        let rest = &self.text[usize::from(self.user_len)..];
        match rest.split_once('\0') {
            Some((grants, info)) => (grants, Some(info)),
            None => (rest, None),
        }
    }

    /// The `private:` channels granted: exact names, or prefixes ending in `*`.
    pub fn grants(&self) -> impl Iterator<Item = &str> {
        self.after_user().0.split('\n').skip(1)
    }

    pub fn info(&self) -> Option<&str> {
        self.after_user().1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn verified(channels: &[&str], info: Option<&str>) -> Verified {
        Verified {
            sub: "u1".into(),
            exp: 1_800_000_000,
            channels: channels.iter().map(|c| c.to_string()).collect(),
            info: info.map(|i| serde_json::value::RawValue::from_string(i.into()).unwrap()),
        }
    }

    #[test]
    fn a_session_is_small_and_keeps_only_what_is_needed() {
        assert!(std::mem::size_of::<Session>() <= 24);
        assert_eq!(
            std::mem::size_of::<Option<Session>>(),
            std::mem::size_of::<Session>()
        );
        let plain = Session::new(verified(&[], Some(r#"{"n":1}"#)), false);
        assert_eq!(
            &*plain.text, "u1",
            "no grants, no presence: only the user id"
        );
        assert_eq!((plain.user(), plain.exp()), ("u1", 1_800_000_000));
        assert_eq!((plain.grants().count(), plain.info()), (0, None));
        let full = Session::new(
            verified(&["private:a", "private:t.*"], Some(r#"{"n":1}"#)),
            true,
        );
        assert_eq!(
            full.grants().collect::<Vec<_>>(),
            ["private:a", "private:t.*"]
        );
        assert_eq!(full.info(), Some(r#"{"n":1}"#));
        assert!(full.expired(1_800_000_000) && !full.expired(1_799_999_999));
    }

    #[test]
    fn any_sub_is_kept_whole_and_bad_grants_are_dropped() {
        let mut odd = verified(
            &["private:a\nprivate:b", "", "*", "private:ok"],
            Some("[0]"),
        );
        odd.sub = "a\n\u{0}é".into();
        let session = Session::new(odd, true);
        assert_eq!(session.user(), "a\n\u{0}é");
        assert_eq!(session.grants().collect::<Vec<_>>(), ["private:ok"]);
        assert_eq!(session.info(), Some("[0]"));
    }

    #[test]
    fn a_far_exp_is_clamped() {
        let mut far = verified(&[], None);
        far.exp = u64::MAX;
        assert_eq!(Session::new(far, false).exp(), u64::from(u32::MAX));
    }
}

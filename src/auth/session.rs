//! What a worker keeps of a verified token for as long as the connection lives:
//! only what later checks need. The user id and `exp` are inline; grants and
//! presence info, which most connections do not have, live behind one pointer.

use super::verify::Verified;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    user: Box<str>,
    /// Unix seconds; a far-future `exp` is clamped (year 2106).
    exp: u32,
    rest: Option<Box<Rest>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rest {
    grants: Box<[Box<str>]>,
    /// Raw JSON text of the `info` claim.
    info: Option<Box<str>>,
}

impl Session {
    /// Keeps `info` only when some channel shows presence (`keep_info`).
    pub fn new(token: Verified, keep_info: bool) -> Session {
        let grants: Box<[Box<str>]> = token.channels.into_iter().map(Box::from).collect();
        let info = token
            .info
            .filter(|_| keep_info)
            .map(|raw| Box::<str>::from(raw.get()));
        let rest = (!grants.is_empty() || info.is_some()).then(|| Box::new(Rest { grants, info }));
        Session {
            user: token.sub.into_boxed_str(),
            exp: u32::try_from(token.exp).unwrap_or(u32::MAX),
            rest,
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn exp(&self) -> u64 {
        u64::from(self.exp)
    }

    pub fn expired(&self, now_unix: u64) -> bool {
        self.exp() <= now_unix
    }

    pub fn grants(&self) -> &[Box<str>] {
        self.rest.as_ref().map_or(&[], |r| &r.grants)
    }

    pub fn info(&self) -> Option<&str> {
        self.rest.as_ref().and_then(|r| r.info.as_deref())
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
        assert!(std::mem::size_of::<Session>() <= 32);
        assert_eq!(
            std::mem::size_of::<Option<Session>>(),
            std::mem::size_of::<Session>()
        );
        let plain = Session::new(verified(&[], Some(r#"{"n":1}"#)), false);
        assert!(
            plain.rest.is_none(),
            "no grants, no presence: nothing behind the pointer"
        );
        assert_eq!((plain.user(), plain.exp()), ("u1", 1_800_000_000));
        let full = Session::new(verified(&["private:a"], Some(r#"{"n":1}"#)), true);
        assert_eq!(full.grants().len(), 1);
        assert_eq!(full.info(), Some(r#"{"n":1}"#));
        assert!(full.expired(1_800_000_000) && !full.expired(1_799_999_999));
    }

    #[test]
    fn a_far_exp_is_clamped() {
        let mut far = verified(&[], None);
        far.exp = u64::MAX;
        assert_eq!(Session::new(far, false).exp(), u64::from(u32::MAX));
    }
}

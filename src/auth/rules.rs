//! Who may join which channel. `private:*` needs a grant in the token;
//! `user:<id>` only the user `id`; any other channel is open, unless the server
//! requires a token for everything (`--require-token`).

use super::session::Session;

/// Channels that need a grant.
pub const PRIVATE_PREFIX: &str = "private:";
/// `user:<id>`: the channel of one user, joined only with a token of that sub.
pub const USER_PREFIX: &str = "user:";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No token: 401, close 3000.
    TokenRequired,
    /// A token that does not grant the channel: 403, close 3003.
    Forbidden,
}

pub fn may_join(
    channel: &str,
    session: Option<&Session>,
    require_token: bool,
) -> Result<(), Denied> {
    let needs_token =
        require_token || channel.starts_with(PRIVATE_PREFIX) || channel.starts_with(USER_PREFIX);
    if !needs_token {
        return Ok(());
    }
    let Some(session) = session else {
        return Err(Denied::TokenRequired);
    };
    let allowed = if let Some(id) = channel.strip_prefix(USER_PREFIX) {
        id == session.user()
    } else if channel.starts_with(PRIVATE_PREFIX) {
        session.grants().any(|grant| grants(grant, channel))
    } else {
        true
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::Forbidden)
    }
}

/// An exact name, or a prefix followed by `*`.
fn grants(grant: &str, channel: &str) -> bool {
    match grant.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => grant == channel,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::verify::Verified;

    fn session(user: &str, channels: &[&str]) -> Session {
        Session::new(
            Verified {
                sub: user.into(),
                exp: 1_800_000_000,
                channels: channels.iter().map(|c| c.to_string()).collect(),
                info: None,
            },
            false,
        )
    }

    #[test]
    fn public_channels_are_open_unless_a_token_is_required() {
        assert_eq!(may_join("news", None, false), Ok(()));
        assert_eq!(may_join("news", None, true), Err(Denied::TokenRequired));
        assert_eq!(may_join("news", Some(&session("u", &[])), true), Ok(()));
    }

    #[test]
    fn private_channels_need_a_grant() {
        let s = session("u", &["private:a", "private:team-7.*"]);
        assert_eq!(
            may_join("private:a", None, false),
            Err(Denied::TokenRequired)
        );
        assert_eq!(may_join("private:a", Some(&s), false), Ok(()));
        assert_eq!(
            may_join("private:ab", Some(&s), false),
            Err(Denied::Forbidden)
        );
        assert_eq!(may_join("private:team-7.chat", Some(&s), false), Ok(()));
        assert_eq!(
            may_join("private:team-7", Some(&s), false),
            Err(Denied::Forbidden)
        );
        assert_eq!(
            may_join("private:team-70.x", Some(&s), false),
            Err(Denied::Forbidden)
        );
        let all = session("u", &["private:*"]);
        assert_eq!(may_join("private:anything", Some(&all), false), Ok(()));
    }

    #[test]
    fn user_channels_belong_to_their_user() {
        let s = session("u1", &["user:u2", "*"]);
        assert_eq!(may_join("user:u1", Some(&s), false), Ok(()));
        assert_eq!(
            may_join("user:u2", Some(&s), false),
            Err(Denied::Forbidden),
            "grants do not apply"
        );
        assert_eq!(may_join("user:u1", None, false), Err(Denied::TokenRequired));
        assert_eq!(may_join("user:", Some(&s), false), Err(Denied::Forbidden));
    }
}

//! Connection tokens (`--token-secret-file`): each subscriber connection carries an
//! HS256 JWT in `?token=`, made when it connects (a resume makes a new one). The
//! claims follow the server's rules (`src/auth/rules.rs`): any valid token opens a
//! public channel under `--require-token`; a `private:` channel needs its name in
//! `channels`; `user:ID` only opens to `sub` ID. So `sub` is `bench-<slot>` unless the
//! channel is `user:ID`, and `channels` is sent only for a `private:` channel (a grant
//! for any other channel would be kept in the server's session for nothing).
//! No clock here: `now_unix` comes in.

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::path::Path;

const PRIVATE_PREFIX: &str = "private:";
const USER_PREFIX: &str = "user:";

/// Makes the tokens of a run: the key and the lifetime, shared by every thread.
pub struct Minter {
    key: EncodingKey,
    header: Header,
    ttl_s: u64,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Claims<'a> {
    pub sub: String,
    pub exp: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub channels: Vec<&'a str>,
}

/// The claims of connection `slot` subscribing to `channel` (none: `hold
/// --no-subscribe`).
pub fn claims(slot: usize, channel: Option<&str>, exp: u64) -> Claims<'_> {
    let sub = match channel.and_then(|c| c.strip_prefix(USER_PREFIX)) {
        Some(user) => user.to_string(),
        None => format!("bench-{slot}"),
    };
    let channels = channel
        .filter(|c| c.starts_with(PRIVATE_PREFIX))
        .into_iter()
        .collect();
    Claims { sub, exp, channels }
}

/// `?token=T` or `&token=T` after `path`, whichever its query needs. A JWT is
/// base64url and dots: nothing to escape.
pub fn append(path: &mut String, token: Option<&str>) {
    if let Some(token) = token {
        path.push(if path.contains('?') { '&' } else { '?' });
        path.push_str("token=");
        path.push_str(token);
    }
}

impl Minter {
    /// The secret as the server reads the same file: one trailing newline (LF or
    /// CRLF) is not part of it, and it may not be empty.
    pub fn from_file(path: &Path, ttl_s: u64) -> Result<Minter, String> {
        let text = std::fs::read(path)
            .map_err(|e| format!("--token-secret-file {}: {e}", path.display()))?;
        let secret = text.strip_suffix(b"\n").unwrap_or(&text);
        let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
        Minter::new(secret, ttl_s)
            .map_err(|e| format!("--token-secret-file {}: {e}", path.display()))
    }

    pub fn new(secret: &[u8], ttl_s: u64) -> Result<Minter, String> {
        if secret.is_empty() {
            return Err("the secret is empty".into());
        }
        if ttl_s == 0 {
            return Err("--token-ttl must be at least 1 second".into());
        }
        let key = EncodingKey::from_secret(secret).map_err(|e| e.to_string())?;
        Ok(Minter {
            key,
            header: Header::new(Algorithm::HS256),
            ttl_s,
        })
    }

    /// The token of connection `slot` on `channel`, valid `--token-ttl` from `now_unix`.
    pub fn mint(&self, slot: usize, channel: Option<&str>, now_unix: u64) -> String {
        let claims = claims(slot, channel, now_unix.saturating_add(self.ttl_s));
        // HS256 over serialisable claims with an HMAC key cannot fail.
        jsonwebtoken::encode(&self.header, &claims, &self.key).expect("HS256 signing")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use halley::auth::{may_join, Session, Verifier};

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn claims_follow_the_servers_channel_rules() {
        let public = claims(7, Some("bench-3"), NOW);
        assert_eq!((public.sub.as_str(), public.exp), ("bench-7", NOW));
        assert!(public.channels.is_empty(), "no grant for a public channel");
        assert_eq!(
            claims(7, Some("private:x-1"), NOW).channels,
            ["private:x-1"]
        );
        let user = claims(7, Some("user:ann-2"), NOW);
        assert_eq!((user.sub.as_str(), user.channels.len()), ("ann-2", 0));
        assert_eq!(claims(9, None, NOW).sub, "bench-9");
        let json = serde_json::to_string(&claims(1, Some("a"), NOW)).unwrap();
        assert_eq!(json, r#"{"sub":"bench-1","exp":1800000000}"#);
    }

    #[test]
    fn the_server_accepts_what_the_bench_mints_for_every_kind_of_channel() {
        let path = std::env::temp_dir().join(format!("halley-bench-secret-{}", std::process::id()));
        std::fs::write(&path, "s3cret\r\n").unwrap();
        let minter = Minter::from_file(&path, 60).unwrap();
        let verifier = Verifier::from_files(Some(&path), None).unwrap().unwrap();
        std::fs::remove_file(&path).unwrap();
        for channel in ["bench-0", "private:bench-0", "user:u-0"] {
            let token = minter.mint(3, Some(channel), NOW);
            let verified = verifier.verify(&token, NOW).expect("a valid token");
            assert_eq!(verified.exp, NOW + 60);
            let session = Session::new(verified, false);
            assert_eq!(may_join(channel, Some(&session), true), Ok(()), "{channel}");
            assert!(verifier.verify(&token, NOW + 60).is_err(), "expired at exp");
        }
        let other = Minter::new(b"other", 60).unwrap().mint(3, None, NOW);
        assert!(verifier.verify(&other, NOW).is_err(), "wrong secret");
    }

    #[test]
    fn bad_secrets_and_the_query() {
        assert!(Minter::new(b"", 60).is_err());
        assert!(Minter::new(b"k", 0).is_err());
        let missing = Minter::from_file(Path::new("/nonexistent/secret"), 60);
        assert!(missing.err().unwrap().contains("--token-secret-file"));
        let mut ws = "/ws".to_string();
        append(&mut ws, Some("a.b.c"));
        assert_eq!(ws, "/ws?token=a.b.c");
        let mut sse = "/sse?channel=c".to_string();
        append(&mut sse, Some("a.b.c"));
        append(&mut sse, None);
        assert_eq!(sse, "/sse?channel=c&token=a.b.c");
    }
}

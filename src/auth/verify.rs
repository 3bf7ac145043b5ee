//! Verifying a token: signature (HS256 with a shared secret, or RS256/ES256 with a
//! PEM public key), then the claims, against a clock passed in. Every failure has
//! a short reason, which goes into the close frame or the HTTP answer.

use std::path::Path;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;

/// A user id longer than this is refused, so that a session stays small.
pub const MAX_SUB_LEN: usize = 128;

/// The claims Halley reads; any other claim is ignored.
#[derive(Debug, Deserialize)]
pub struct Claims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub exp: Option<u64>,
    #[serde(default)]
    pub nbf: Option<u64>,
    /// Private channels the token grants: exact names, or a prefix ending in `*`.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Shown in presence, as its raw JSON text.
    #[serde(default)]
    pub info: Option<Box<RawValue>>,
}

/// A checked token: its user id is present, within bounds, and it has not expired.
#[derive(Debug)]
pub struct Verified {
    pub sub: String,
    pub exp: u64,
    pub channels: Vec<String>,
    pub info: Option<Box<RawValue>>,
}

/// The server's key and the rules tokens are checked under.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key.
        f.debug_struct("Verifier")
            .field("algorithms", &self.validation.algorithms)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// HS256 with this secret (at least one byte).
    pub fn hs256(secret: &[u8]) -> Result<Verifier, String> {
        if secret.is_empty() {
            return Err("the token secret is empty".into());
        }
        let key = DecodingKey::from_secret(secret).map_err(|e| format!("token secret: {e}"))?;
        Ok(Verifier::with(key, vec![Algorithm::HS256]))
    }

    /// RS256 or ES256, whichever the PEM public key is for.
    pub fn public_pem(pem: &[u8]) -> Result<Verifier, String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Verifier::with(key, vec![Algorithm::RS256]));
        }
        match DecodingKey::from_ec_pem(pem) {
            Ok(key) => Ok(Verifier::with(key, vec![Algorithm::ES256])),
            Err(e) => Err(format!("not an RSA or P-256 public key in PEM: {e}")),
        }
    }

    /// From `--token-secret-file` (a trailing newline is not part of the secret)
    /// or `--token-public-key-file`.
    pub fn from_files(
        secret: Option<&Path>,
        public_key: Option<&Path>,
    ) -> Result<Option<Verifier>, String> {
        match (secret, public_key) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => {
                Err("--token-secret-file and --token-public-key-file exclude each other".into())
            }
            (Some(path), None) => {
                let text = std::fs::read(path)
                    .map_err(|e| format!("--token-secret-file {}: {e}", path.display()))?;
                let secret = text.strip_suffix(b"\n").unwrap_or(&text);
                let secret = secret.strip_suffix(b"\r").unwrap_or(secret);
                Verifier::hs256(secret)
                    .map(Some)
                    .map_err(|e| format!("--token-secret-file {}: {e}", path.display()))
            }
            (None, Some(path)) => {
                let pem = std::fs::read(path)
                    .map_err(|e| format!("--token-public-key-file {}: {e}", path.display()))?;
                Verifier::public_pem(&pem)
                    .map(Some)
                    .map_err(|e| format!("--token-public-key-file {}: {e}", path.display()))
            }
        }
    }

    fn with(key: DecodingKey, algorithms: Vec<Algorithm>) -> Verifier {
        let mut validation = Validation::new(algorithms[0]);
        validation.algorithms = algorithms;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Time is checked below against the clock the caller passes in, with no leeway.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.leeway = 0;
        // No audience is configured: an `aud` claim is not checked.
        validation.validate_aud = false;
        Verifier { key, validation }
    }

    /// Checks `token` at `now_unix` (seconds since 1970).
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<Verified, &'static str> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| reason(e.kind()))?
            .claims;
        let exp = claims.exp.ok_or("token has no exp")?;
        if exp <= now_unix {
            return Err("token expired");
        }
        if claims.nbf.is_some_and(|nbf| nbf > now_unix) {
            return Err("token not valid yet");
        }
        let sub = claims
            .sub
            .filter(|s| !s.is_empty())
            .ok_or("token has no sub")?;
        if sub.len() > MAX_SUB_LEN {
            return Err("token sub too long");
        }
        Ok(Verified {
            sub,
            exp,
            channels: claims.channels,
            info: claims.info,
        })
    }
}

fn reason(kind: &ErrorKind) -> &'static str {
    match kind {
        ErrorKind::InvalidSignature => "invalid token signature",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "wrong algorithm",
        ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => "token has no sub",
        ErrorKind::MissingRequiredClaim(claim) if claim == "exp" => "token has no exp",
        ErrorKind::ExpiredSignature => "token expired",
        _ => "malformed token",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const NOW: u64 = 1_800_000_000;

    fn mint(claims: &serde_json::Value, secret: &[u8]) -> String {
        let key = EncodingKey::from_secret(secret).unwrap();
        encode(&Header::new(Algorithm::HS256), claims, &key).unwrap()
    }

    fn verifier() -> Verifier {
        Verifier::hs256(b"s3cret").unwrap()
    }

    #[test]
    fn a_good_token_gives_its_claims() {
        let token = mint(
            &json!({"sub":"u1","exp":NOW + 60,"channels":["private:a","private:t.*"],"info":{"name":"Ann"}}),
            b"s3cret",
        );
        let got = verifier().verify(&token, NOW).unwrap();
        assert_eq!(got.sub, "u1");
        assert_eq!(got.exp, NOW + 60);
        assert_eq!(got.channels, ["private:a", "private:t.*"]);
        assert_eq!(got.info.unwrap().get(), r#"{"name":"Ann"}"#);
    }

    #[test]
    fn each_failure_has_its_reason() {
        let v = verifier();
        let reason =
            |claims: serde_json::Value| v.verify(&mint(&claims, b"s3cret"), NOW).unwrap_err();
        assert_eq!(
            reason(json!({"sub":"u","exp":NOW})),
            "token expired",
            "no leeway"
        );
        assert_eq!(reason(json!({"sub":"u","exp":NOW - 1})), "token expired");
        assert_eq!(reason(json!({"exp":NOW + 9})), "token has no sub");
        assert_eq!(reason(json!({"sub":"","exp":NOW + 9})), "token has no sub");
        assert_eq!(reason(json!({"sub":"u"})), "token has no exp");
        assert_eq!(reason(json!({"sub":"u","exp":"soon"})), "malformed token");
        assert_eq!(reason(json!({"sub":7,"exp":NOW + 9})), "malformed token");
        assert_eq!(
            reason(json!({"sub":"u","exp":NOW + 9,"nbf":NOW + 5})),
            "token not valid yet"
        );
        let long = "x".repeat(MAX_SUB_LEN + 1);
        assert_eq!(
            reason(json!({"sub":long,"exp":NOW + 9})),
            "token sub too long"
        );
        let forged = mint(&json!({"sub":"u","exp":NOW + 9}), b"other");
        assert_eq!(
            v.verify(&forged, NOW).unwrap_err(),
            "invalid token signature"
        );
        for junk in ["", "abc", "a.b.c", "a.b", "...."] {
            assert_eq!(
                v.verify(junk, NOW).unwrap_err(),
                "malformed token",
                "{junk:?}"
            );
        }
    }

    #[test]
    fn another_algorithm_is_refused() {
        let key = EncodingKey::from_secret(b"s3cret").unwrap();
        let claims = json!({"sub":"u","exp":NOW + 9});
        let hs384 = encode(&Header::new(Algorithm::HS384), &claims, &key).unwrap();
        assert_eq!(
            verifier().verify(&hs384, NOW).unwrap_err(),
            "wrong algorithm"
        );
        // The classic "alg": "none" forgery.
        let header = base64url(br#"{"alg":"none","typ":"JWT"}"#);
        let body = base64url(br#"{"sub":"u","exp":1900000000}"#);
        let none = format!("{header}.{body}.");
        assert!(verifier().verify(&none, NOW).is_err());
    }

    #[test]
    fn secrets_and_keys_are_checked_at_start() {
        assert!(Verifier::hs256(b"").is_err());
        assert!(Verifier::public_pem(b"not a key").is_err());
        let dir = std::env::temp_dir().join(format!("halley-secret-{}", std::process::id()));
        std::fs::write(&dir, "s3cret\n").unwrap();
        let v = Verifier::from_files(Some(&dir), None).unwrap().unwrap();
        let token = mint(&json!({"sub":"u","exp":NOW + 9}), b"s3cret");
        assert!(
            v.verify(&token, NOW).is_ok(),
            "the trailing newline is not part of the secret"
        );
        std::fs::write(&dir, "\n").unwrap();
        assert!(Verifier::from_files(Some(&dir), None).is_err(), "empty");
        std::fs::remove_file(&dir).unwrap();
        assert!(
            Verifier::from_files(Some(&dir), None).is_err(),
            "unreadable"
        );
        assert!(Verifier::from_files(None, None).unwrap().is_none());
    }

    fn base64url(bytes: &[u8]) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n =
                chunk.iter().fold(0u32, |n, &b| n << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            }
        }
        out
    }
}

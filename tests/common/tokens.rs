//! Minting connection tokens for the tests, with the same crate the server
//! verifies them with. Included with `#[path]` by the token and presence tests.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

pub const SECRET: &str = "test-secret-not-for-production";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A secret file (with the trailing newline an editor leaves) unique to this call.
pub fn secret_file() -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("halley-test-secret-{}-{n}", std::process::id()));
    std::fs::write(&path, format!("{SECRET}\n")).expect("write the secret file");
    path
}

/// Claims for user `sub`, valid for `ttl_s` seconds (negative: already expired).
pub fn claims(sub: &str, ttl_s: i64, channels: &[&str]) -> Value {
    let exp = now() as i64 + ttl_s;
    json!({"sub": sub, "exp": exp, "channels": channels})
}

pub fn sign(claims: &Value, secret: &str) -> String {
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("HS256 key");
    encode(&Header::new(Algorithm::HS256), claims, &key).expect("encode")
}

/// An HS256 token signed with [`SECRET`].
pub fn mint(sub: &str, ttl_s: i64, channels: &[&str]) -> String {
    sign(&claims(sub, ttl_s, channels), SECRET)
}

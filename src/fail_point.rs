//! Fault injection for the tests, compiled into debug builds only: with
//! `HALLEY_FAIL_POINT=POINT:ARG` in its environment, the server panics where the
//! code names `POINT` with `ARG` (for example `worker-join:boom`, a subscribe to the
//! channel `boom`). It lets a test through the real binary see what a bug's panic
//! does to the process. Release builds compile every point to nothing.

/// Panics if the environment names this point with this argument.
#[cfg(debug_assertions)]
pub fn panic_if(point: &str, arg: &str) {
    static NAMED: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    let named = NAMED.get_or_init(|| std::env::var("HALLEY_FAIL_POINT").ok());
    if let Some((p, a)) = named.as_deref().and_then(|n| n.split_once(':')) {
        if p == point && a == arg {
            panic!("fail point {point} reached with {arg} (HALLEY_FAIL_POINT)");
        }
    }
}

#[cfg(not(debug_assertions))]
#[inline(always)]
pub fn panic_if(_point: &str, _arg: &str) {}

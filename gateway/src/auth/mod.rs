//! Authentication, roles, tenant isolation and abuse limits.
//!
//! - [`keys`]: customers and API keys (stored hashed) in `ledger.redb`.
//! - `policy`: the access check every top-level field passes through.
//! - `Gatekeeper` (here): turns an `Authorization` header into a [`Caller`], slows down
//!   failed attempts and applies the per-key rate limit.

pub mod keys;
pub(crate) mod policy;

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

pub use keys::{KeyStore, Principal, Role};
pub use policy::Caller;

/// How long a request with a bad key waits before it is answered (slows guessing).
pub const AUTH_FAILURE_DELAY_MS: u64 = 250;
/// Default requests per second per non-admin key (`--rate-limit-per-second`).
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 2_000;

/// Why a request is turned away before execution.
pub(crate) enum Refusal {
    /// Over the key's rate; retry after this long.
    RateLimited { retry_after_ms: u64 },
}

/// Authenticates callers and applies the per-key rate limit.
pub(crate) struct Gatekeeper {
    pub(crate) keys: Arc<KeyStore>,
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl Gatekeeper {
    /// `rate_per_second = 0` disables rate limiting.
    pub(crate) fn new(keys: Arc<KeyStore>, rate_per_second: u32) -> Gatekeeper {
        let limiter =
            NonZeroU32::new(rate_per_second).map(|r| RateLimiter::dashmap(Quota::per_second(r)));
        Gatekeeper { keys, limiter }
    }

    /// The caller behind an `Authorization` header value. Failed attempts are delayed.
    pub(crate) async fn caller(&self, authorization: Option<&str>) -> Caller {
        let Some(value) = authorization else {
            return Caller::Anonymous;
        };
        let token = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        match self.keys.authenticate(token) {
            Some(p) => Caller::Key(p),
            None => {
                actix_web::rt::time::sleep(Duration::from_millis(AUTH_FAILURE_DELAY_MS)).await;
                Caller::Invalid
            }
        }
    }

    /// Spends one request of the caller's rate (admins are not limited).
    pub(crate) fn admit(&self, caller: &Caller) -> Result<(), Refusal> {
        let (Some(limiter), Caller::Key(p)) = (&self.limiter, caller) else {
            return Ok(());
        };
        if p.role == Role::Admin {
            return Ok(());
        }
        limiter
            .check_key(&p.key_id)
            .map_err(|not_until| Refusal::RateLimited {
                retry_after_ms: not_until
                    .wait_time_from(DefaultClock::default().now())
                    .as_millis() as u64
                    + 1,
            })
    }
}

//! Per-key rate limiting that holds across every Lambda instance, at a small fraction of a
//! DynamoDB write per request.
//!
//! The limit is `limit` requests per key per 1-second window (UTC seconds), so bursts of up
//! to one second's quota are admitted at once. Each window has one counter item per key
//! (`RATELIMIT#<key_id>#<epoch second>`). An instance does not write per request: it leases
//! a block of tokens with one `UpdateItem ADD used :n` (condition: the window is not full),
//! learns from the returned count how many of them it really got, and admits from its
//! lease in memory. A lease dies with its window, so no instance can spend a token outside
//! the window it was counted in: all instances together admit at most `limit` per window,
//! hence at most 11 × limit over any 10 seconds. Once a window is full an instance refuses
//! locally until the next window, without touching DynamoDB again.
//!
//! Block sizes follow the instance's own recent rate for the key (what it admitted in the
//! previous window or so far in this one, up to a quarter of the limit), so a busy instance
//! leases rarely and an idle one does not hoard a window's quota. When DynamoDB cannot be reached the limiter
//! admits (fails open): a storage hiccup must not turn into 429s for everyone.

use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Requests per second per key when neither the key nor its org sets a limit.
pub const DEFAULT_RATE_LIMIT: u32 = 100;
/// Name of the policy in the `RateLimit-Policy` / `RateLimit` headers.
const POLICY_NAME: &str = "default";

/// What the limiter decided for one request, with what the headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub admitted: bool,
    /// Tokens granted: 1 for an admitted request, up to the number asked for by
    /// [`RateLimiter::acquire`] (a batch is charged one token per item).
    pub granted: u32,
    /// The 1-second window (UTC epoch second) the request was counted in.
    pub window: u64,
    pub limit: u32,
    /// Requests the key may still make in this window (an estimate across instances).
    pub remaining: u32,
    /// Seconds until the window resets (and, when refused, until a retry can succeed).
    pub reset_secs: u64,
}

impl Decision {
    /// `RateLimit-Policy` and `RateLimit` (IETF httpapi ratelimit-headers draft).
    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            (
                "ratelimit-policy",
                format!("\"{POLICY_NAME}\";q={};w=1", self.limit),
            ),
            (
                "ratelimit",
                format!(
                    "\"{POLICY_NAME}\";r={};t={}",
                    self.remaining, self.reset_secs
                ),
            ),
        ]
    }
}

#[derive(Debug, Default, Clone)]
struct Lease {
    window: u64,
    /// Tokens leased and not yet spent in `window`.
    tokens: u32,
    /// The window's counter reached the limit: refuse until the next window.
    exhausted: bool,
    /// The window's count across instances, as the last lease saw it.
    used_globally: u32,
    /// Requests this instance admitted for the key in `window` and in the one before.
    admitted: u32,
    admitted_last_window: u32,
}

impl Lease {
    fn roll_to(&mut self, window: u64) {
        if self.window == window {
            return;
        }
        let previous = if window == self.window + 1 {
            self.admitted
        } else {
            0
        };
        *self = Lease {
            window,
            admitted_last_window: previous,
            ..Lease::default()
        };
    }

    /// Tokens to ask for: this instance's recent rate for the key (what it admitted in the
    /// previous window, or so far in this one, so blocks double while demand grows), at
    /// least 1, at most a quarter of the limit (so that several instances can share it).
    fn block_size(&self, limit: u32) -> u32 {
        self.admitted_last_window
            .max(self.admitted)
            .clamp(1, (limit / 4).max(1))
    }

    /// Spends up to `wanted` leased tokens (at least one is there).
    fn admit(&mut self, limit: u32, wanted: u32) -> Decision {
        let granted = wanted.min(self.tokens);
        self.tokens -= granted;
        self.admitted += granted;
        let remaining = limit.saturating_sub(self.used_globally) + self.tokens;
        Decision {
            admitted: true,
            granted,
            window: self.window,
            limit,
            remaining,
            reset_secs: 1,
        }
    }

    fn refuse(&self, limit: u32) -> Decision {
        Decision {
            admitted: false,
            granted: 0,
            window: self.window,
            limit,
            remaining: 0,
            reset_secs: 1,
        }
    }
}

/// The limiter of one warm instance.
#[derive(Debug, Default)]
pub struct RateLimiter {
    leases: Mutex<HashMap<String, Lease>>,
    /// DynamoDB writes this instance made for rate limiting (for tests and benchmarks).
    writes: AtomicU64,
}

/// The instance's lease for a key; allocates the key only the first time it is seen.
fn lease_for<'a>(leases: &'a mut HashMap<String, Lease>, key_id: &str) -> &'a mut Lease {
    if !leases.contains_key(key_id) {
        leases.insert(key_id.to_owned(), Lease::default());
    }
    leases.get_mut(key_id).expect("inserted above")
}

fn current_window() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

impl RateLimiter {
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Admits or refuses one request of `key_id`, whose limit is `limit` per second.
    pub async fn check(&self, store: &Store, key_id: &str, limit: u32) -> Decision {
        self.acquire(store, key_id, limit, 1).await
    }

    /// Takes up to `wanted` tokens of `key_id`'s current window (a batch asks for one per
    /// item): admitted when at least one was granted, and `granted` says how many. What the
    /// lease holds is spent first; for the rest one lease asks for all that is missing (or
    /// the usual block, if larger), so a batch costs at most one DynamoDB write.
    pub async fn acquire(&self, store: &Store, key_id: &str, limit: u32, wanted: u32) -> Decision {
        let wanted = wanted.max(1);
        let window = current_window();
        let (from_lease, ask) = {
            let mut leases = self.leases.lock().expect("limiter lock");
            let lease = lease_for(&mut leases, key_id);
            lease.roll_to(window);
            if lease.tokens >= wanted || (lease.exhausted && lease.tokens > 0) {
                return lease.admit(limit, wanted);
            }
            if lease.exhausted {
                return lease.refuse(limit);
            }
            // Spent now, so that a concurrent request cannot take the same tokens.
            let from_lease = lease.tokens;
            lease.tokens = 0;
            lease.admitted += from_lease;
            let missing = wanted - from_lease;
            (from_lease, missing.max(lease.block_size(limit)))
        };

        self.writes.fetch_add(1, Ordering::Relaxed);
        let outcome = store.lease_tokens(key_id, window, ask, limit).await;

        let mut leases = self.leases.lock().expect("limiter lock");
        let lease = lease_for(&mut leases, key_id);
        lease.roll_to(window);
        match outcome {
            Ok(counted) => lease.receive(ask, counted, limit),
            Err(()) => {
                // Fail open for this one request; the next one tries to lease again.
                lease.tokens += wanted - from_lease;
            }
        }
        let missing = wanted - from_lease;
        if lease.tokens > 0 {
            let mut decision = lease.admit(limit, missing);
            decision.granted += from_lease;
            decision
        } else if from_lease > 0 {
            let mut decision = lease.refuse(limit);
            decision.admitted = true;
            decision.granted = from_lease;
            decision
        } else {
            lease.refuse(limit)
        }
    }
}

impl Lease {
    /// What a lease that asked for `wanted` tokens got: the window's count after it
    /// (`None`: full).
    fn receive(&mut self, wanted: u32, counted: Option<u32>, limit: u32) {
        let Some(used_after) = counted else {
            self.used_globally = limit;
            self.exhausted = true;
            return;
        };
        // The counter may overshoot the limit by our block: only the part that fit is ours.
        let overshoot = used_after.saturating_sub(limit);
        self.used_globally = used_after.min(limit);
        self.exhausted = used_after >= limit;
        self.tokens += wanted.saturating_sub(overshoot);
    }
}

/// One instance's limiter for one key without DynamoDB: the same lease decisions as
/// [`RateLimiter::check`], against counters the caller keeps. For the partition-heat
/// simulation of `make bench`, which counts the writes a key's counter receives.
#[derive(Debug, Default)]
pub struct SimulatedLeases(Lease);

impl SimulatedLeases {
    /// One request in `window`; `counter` is the window's `used`, which a lease adds to as
    /// DynamoDB's conditional ADD would. Whether the request was admitted, and whether it
    /// wrote the counter.
    pub fn request(&mut self, window: u64, limit: u32, counter: &mut u32) -> (bool, bool) {
        let lease = &mut self.0;
        lease.roll_to(window);
        if lease.tokens > 0 {
            return (lease.admit(limit, 1).admitted, false);
        }
        if lease.exhausted {
            return (false, false);
        }
        let wanted = lease.block_size(limit);
        let counted = (*counter < limit).then(|| {
            *counter += wanted;
            *counter
        });
        lease.receive(wanted, counted, limit);
        let admitted = lease.tokens > 0 && lease.admit(limit, 1).admitted;
        (admitted, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_follow_the_recent_rate_within_bounds() {
        let mut lease = Lease::default();
        assert_eq!(lease.block_size(100), 1, "a new instance starts small");
        lease.admitted_last_window = 60;
        assert_eq!(lease.block_size(100), 25, "at most a quarter of the limit");
        lease.admitted_last_window = 7;
        assert_eq!(lease.block_size(100), 7);
        lease.admitted = 12;
        assert_eq!(lease.block_size(100), 12, "grows with this window's demand");
        assert_eq!(lease.block_size(2), 1);
    }

    #[test]
    fn a_lease_dies_with_its_window() {
        let mut lease = Lease {
            window: 10,
            tokens: 5,
            exhausted: true,
            admitted: 9,
            ..Lease::default()
        };
        lease.roll_to(11);
        assert_eq!(
            (lease.tokens, lease.exhausted, lease.admitted_last_window),
            (0, false, 9)
        );
        lease.roll_to(20);
        assert_eq!(
            lease.admitted_last_window, 0,
            "an idle gap forgets the old rate"
        );
    }

    #[test]
    fn headers_follow_the_draft() {
        let decision = Decision {
            admitted: true,
            granted: 1,
            window: 0,
            limit: 100,
            remaining: 42,
            reset_secs: 1,
        };
        assert_eq!(
            decision.headers(),
            [
                ("ratelimit-policy", "\"default\";q=100;w=1".to_owned()),
                ("ratelimit", "\"default\";r=42;t=1".to_owned()),
            ]
        );
    }
}

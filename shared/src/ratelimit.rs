//! Rate limiting that holds across every Lambda instance, at a small fraction of a
//! DynamoDB write per request: per key, and per org (all its keys together), in tokens.
//!
//! A request spends tokens: most spend one, those that cause more work spend more (their
//! [`crate::cost`]). Each key gets `limit` tokens per 1-second window (UTC seconds), and
//! the keys of an org together get the org's limit, so an org cannot multiply its budget
//! by making keys. A request takes its tokens from its key's budget, then from its org's;
//! what the org refuses goes back to the key's lease, so a refused request spends nothing.
//! Bursts of up to one second's quota are admitted at once. Each window has one counter
//! item per key (`RATELIMIT#<key_id>#<epoch second>`) and per org
//! (`RATELIMIT#ORG#<org_id>#<epoch second>`). An instance does not write per request: it
//! leases a block of tokens with one `UpdateItem ADD used :n` (condition: the window is not
//! full), learns from the returned count how many of them it really got, and admits from
//! its lease in memory. A lease dies with its window, so no instance can spend a token
//! outside the window it was counted in: all instances together admit at most `limit` per
//! window, hence at most 11 × limit over any 10 seconds. Once a window is full an instance
//! refuses locally until the next window, without touching DynamoDB again: a flooding org
//! costs the table almost nothing past its limit.
//!
//! Block sizes follow the instance's own recent rate for the key or org (what it admitted
//! in the previous window or so far in this one, up to a quarter of the limit), so a busy
//! instance leases rarely and an idle one does not hoard a window's quota. When DynamoDB
//! cannot be reached the limiter admits (fails open): a storage hiccup must not turn into
//! 429s for everyone.

use crate::store::keys::RateCounter;
use crate::store::Store;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Tokens per second per key when neither the key nor its org sets a limit.
pub const DEFAULT_RATE_LIMIT: u32 = 100;
/// When an org sets no total, its keys together get this many times a key's limit.
pub const DEFAULT_ORG_FACTOR: u32 = 4;

// Defined with the error that names it (`error` sits below the store this module uses).
pub use crate::error::RateLimitScope as Scope;

/// The budgets a request spends from.
#[derive(Debug, Clone, Copy)]
pub struct Budgets<'a> {
    pub key_id: &'a str,
    pub key_limit: u32,
    pub org_id: &'a str,
    pub org_limit: u32,
}

/// One budget after a request: its limit and what is left of this window (an estimate
/// across instances).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Standing {
    pub limit: u32,
    pub remaining: u32,
}

/// What the limiter decided for one request, with what the headers and a 429 report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub admitted: bool,
    /// Tokens granted: the request's cost when admitted, or for a batch as many of the
    /// tokens asked for as there were (at least its first item's).
    pub granted: u32,
    /// Tokens the request asked for.
    pub cost: u32,
    /// The 1-second window (UTC epoch second) the request was counted in.
    pub window: u64,
    pub key: Standing,
    pub org: Standing,
    /// The limit that refused the request, or that a batch's grant fell short of.
    pub limited_by: Option<Scope>,
    /// Seconds until the window resets (and, when refused, until a retry can succeed).
    pub reset_secs: u64,
}

impl Decision {
    /// The 429 of a request (or batch item) of `cost` tokens that did not fit.
    pub fn refusal(&self, cost: u32) -> crate::error::ApiError {
        let scope = self.limited_by.unwrap_or_default();
        let limit = match scope {
            Scope::Key => self.key.limit,
            Scope::Org => self.org.limit,
        };
        crate::error::ApiError::RateLimited { scope, limit, cost }
    }

    /// `RateLimit-Policy` and `RateLimit` (IETF httpapi ratelimit-headers draft): one
    /// policy per limit, the key's first.
    pub fn headers(&self) -> [(&'static str, String); 2] {
        let scopes = [(Scope::Key, self.key), (Scope::Org, self.org)];
        let policies = scopes.map(|(scope, s)| format!("\"{}\";q={};w=1", scope.name(), s.limit));
        let left = scopes.map(|(scope, s)| {
            format!(
                "\"{}\";r={};t={}",
                scope.name(),
                s.remaining,
                self.reset_secs
            )
        });
        [
            ("ratelimit-policy", policies.join(", ")),
            ("ratelimit", left.join(", ")),
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
    /// Tokens this instance spent from the budget in `window` and in the one before.
    admitted: u32,
    admitted_last_window: u32,
}

impl Lease {
    /// Moves to `window` if it is a later one. (An earlier one is a request that leased
    /// across a window's end: what it got is counted in the lease it finds.)
    fn roll_to(&mut self, window: u64) {
        if window <= self.window {
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

    /// Tokens to ask for: this instance's recent rate for the budget (what it admitted in
    /// the previous window, or so far in this one, so blocks double while demand grows), at
    /// least 1, at most a quarter of the limit (so that several instances can share it).
    fn block_size(&self, limit: u32) -> u32 {
        self.admitted_last_window
            .max(self.admitted)
            .clamp(1, (limit / 4).max(1))
    }

    fn standing(&self, limit: u32) -> Standing {
        Standing {
            limit,
            remaining: limit.saturating_sub(self.used_globally) + self.tokens,
        }
    }

    /// Spends `granted` leased tokens (they are there).
    fn spend(&mut self, granted: u32) {
        self.tokens -= granted;
        self.admitted += granted;
    }

    /// Gives back tokens spent in `window` by a request that was refused after all.
    fn refund(&mut self, window: u64, tokens: u32) {
        if self.window == window {
            self.tokens += tokens;
            self.admitted = self.admitted.saturating_sub(tokens);
        }
    }
}

/// The leases of one kind of budget (keys, or orgs), by id.
#[derive(Debug, Default)]
struct Leases(Mutex<HashMap<String, Lease>>);

impl Leases {
    /// Runs `f` on the lease of `id` rolled to `window`; allocates the id only the first
    /// time it is seen.
    fn with<T>(&self, id: &str, window: u64, f: impl FnOnce(&mut Lease) -> T) -> T {
        let mut leases = self.0.lock().expect("limiter lock");
        if !leases.contains_key(id) {
            leases.insert(id.to_owned(), Lease::default());
        }
        let lease = leases.get_mut(id).expect("inserted above");
        lease.roll_to(window);
        f(lease)
    }
}

/// What one budget gave a request: tokens (0: refused) and its standing.
#[derive(Debug, Clone, Copy)]
struct Taken {
    granted: u32,
    standing: Standing,
}

/// The limiter of one warm instance.
#[derive(Debug, Default)]
pub struct RateLimiter {
    keys: Leases,
    orgs: Leases,
    /// DynamoDB writes this instance made for rate limiting (for tests and benchmarks).
    writes: AtomicU64,
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

    /// Admits or refuses one request that costs `cost` tokens: all of them, or none. A
    /// cost above a limit is charged as that whole limit, so every request can pass in an
    /// otherwise unused window.
    pub async fn check(&self, store: &Store, budgets: &Budgets<'_>, cost: u32) -> Decision {
        let cost = cost.clamp(1, budgets.key_limit.min(budgets.org_limit).max(1));
        self.acquire(store, budgets, cost, cost).await
    }

    /// Takes up to `wanted` tokens from the key's and the org's current windows, at least
    /// `at_least` (a batch asks for its items' costs, at least its first item's): admitted
    /// when they were granted, and `granted` says how many. Each budget spends what its
    /// lease holds first; for the rest one lease asks for all that is missing (or the
    /// usual block, if larger), so a request costs at most one DynamoDB write per budget,
    /// both made at once.
    pub async fn acquire(
        &self,
        store: &Store,
        budgets: &Budgets<'_>,
        wanted: u32,
        at_least: u32,
    ) -> Decision {
        let wanted = wanted.max(1);
        let most = budgets.key_limit.min(budgets.org_limit).max(1);
        let at_least = at_least.clamp(1, wanted.min(most));
        let window = current_window();
        let org_standing = |limiter: &Self| {
            let limit = budgets.org_limit;
            limiter
                .orgs
                .with(budgets.org_id, window, |lease| lease.standing(limit))
        };
        // A key refused for this window refuses locally, without touching its org's budget.
        let refused_key = self.keys.with(budgets.key_id, window, |lease| {
            (lease.exhausted && lease.tokens < at_least).then(|| lease.standing(budgets.key_limit))
        });
        if let Some(key) = refused_key {
            return Decision {
                admitted: false,
                granted: 0,
                cost: wanted,
                window,
                key,
                org: org_standing(self),
                limited_by: Some(Scope::Key),
                reset_secs: 1,
            };
        }
        // Both budgets at once: one round trip when both lease, and a storage black hole
        // costs one timeout, not two. What one granted and the other did not goes back.
        let key_counter = RateCounter::Key(budgets.key_id);
        let org_counter = RateCounter::Org(budgets.org_id);
        let (mut key, mut org) = futures::join!(
            self.take(
                store,
                key_counter,
                budgets.key_limit,
                window,
                wanted,
                at_least
            ),
            self.take(
                store,
                org_counter,
                budgets.org_limit,
                window,
                wanted,
                at_least
            ),
        );
        let granted = key.granted.min(org.granted);
        for (taken, leases, id) in [
            (&mut key, &self.keys, budgets.key_id),
            (&mut org, &self.orgs, budgets.org_id),
        ] {
            let unused = taken.granted - granted;
            if unused > 0 {
                leases.with(id, window, |lease| lease.refund(window, unused));
                taken.standing.remaining += unused;
            }
        }
        let limited_by = if granted == wanted {
            None
        } else if org.granted < key.granted {
            Some(Scope::Org)
        } else {
            Some(Scope::Key)
        };
        Decision {
            admitted: granted > 0,
            granted,
            cost: wanted,
            window,
            key: key.standing,
            org: org.standing,
            limited_by,
            reset_secs: 1,
        }
    }

    /// Gives back tokens granted in `window` and not used (a batch whose items' costs did
    /// not add up to its grant), to both budgets' leases.
    pub fn give_back(&self, budgets: &Budgets<'_>, window: u64, tokens: u32) {
        if tokens > 0 {
            self.keys
                .with(budgets.key_id, window, |lease| lease.refund(window, tokens));
            self.orgs
                .with(budgets.org_id, window, |lease| lease.refund(window, tokens));
        }
    }

    fn leases(&self, counter: RateCounter<'_>) -> &Leases {
        match counter {
            RateCounter::Key(_) => &self.keys,
            RateCounter::Org(_) => &self.orgs,
        }
    }

    /// Up to `wanted` tokens of one budget, at least `at_least` (else none: what was
    /// taken goes back to the lease).
    async fn take(
        &self,
        store: &Store,
        counter: RateCounter<'_>,
        limit: u32,
        window: u64,
        wanted: u32,
        at_least: u32,
    ) -> Taken {
        let leases = self.leases(counter);
        let id = match counter {
            RateCounter::Key(id) | RateCounter::Org(id) => id,
        };
        let early = leases.with(id, window, |lease| {
            if lease.tokens >= wanted || (lease.exhausted && lease.tokens >= at_least) {
                let granted = wanted.min(lease.tokens);
                lease.spend(granted);
                return Err(Taken {
                    granted,
                    standing: lease.standing(limit),
                });
            }
            if lease.exhausted {
                return Err(Taken {
                    granted: 0,
                    standing: lease.standing(limit),
                });
            }
            // Spent now, so that a concurrent request cannot take the same tokens.
            let from_lease = lease.tokens;
            lease.spend(from_lease);
            Ok((
                from_lease,
                (wanted - from_lease).max(lease.block_size(limit)),
            ))
        });
        let (from_lease, ask) = match early {
            Ok(lease) => lease,
            Err(taken) => return taken,
        };

        self.writes.fetch_add(1, Ordering::Relaxed);
        let outcome = store.lease_tokens(counter, window, ask, limit).await;

        leases.with(id, window, |lease| {
            match outcome {
                Ok(counted) => lease.receive(ask, counted, limit),
                // Fail open for this one request; the next one tries to lease again.
                Err(()) => lease.tokens += wanted - from_lease,
            }
            let missing = wanted - from_lease;
            let granted = if lease.tokens + from_lease >= at_least {
                let more = missing.min(lease.tokens);
                lease.spend(more);
                from_lease + more
            } else {
                lease.refund(window, from_lease);
                0
            };
            Taken {
                granted,
                standing: lease.standing(limit),
            }
        })
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
            lease.spend(1);
            return (true, false);
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
        let admitted = lease.tokens > 0;
        if admitted {
            lease.spend(1);
        }
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
            cost: 1,
            window: 0,
            key: Standing {
                limit: 100,
                remaining: 42,
            },
            org: Standing {
                limit: 400,
                remaining: 7,
            },
            limited_by: None,
            reset_secs: 1,
        };
        assert_eq!(
            decision.headers(),
            [
                (
                    "ratelimit-policy",
                    "\"key\";q=100;w=1, \"org\";q=400;w=1".to_owned()
                ),
                ("ratelimit", "\"key\";r=42;t=1, \"org\";r=7;t=1".to_owned()),
            ]
        );
    }

    #[test]
    fn a_refund_returns_tokens_to_their_window_only() {
        let mut lease = Lease::default();
        lease.roll_to(5);
        lease.tokens = 3;
        lease.spend(3);
        lease.refund(5, 2);
        assert_eq!((lease.tokens, lease.admitted), (2, 1));
        lease.refund(4, 9);
        assert_eq!(lease.tokens, 2, "a past window's tokens are gone");
    }
}

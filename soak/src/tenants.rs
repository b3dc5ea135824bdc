//! `make soak-tenants`: one org floods the local API far past its rate limit while another
//! sends a moderate mix; the quiet org must not notice. Half the flooding threads page
//! `users/` (the most expensive read, 26 tokens a page), half call `me/` back to back (1
//! token, fast: what takes the org past its limit); the quiet org calls other functions,
//! because `cargo lambda watch` serves one invocation of a function at a time where Lambda
//! gives each its own instance: what the two orgs share is DynamoDB (Local), the machine and
//! the limiter's counters. Two phases of equal length: the
//! quiet org alone (the baseline), then the same with the flood. Passes when every quiet
//! request succeeded in both phases, its p50 and p99 with the flood stay within
//! `--latency-factor` of the baseline (plus `SLACK`, the resolution of a loaded machine),
//! the flooding org was refused (it was past its limit), its 429s named the org's limit,
//! and what it got through stayed within its total.

use crate::{percentile, Gate};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The flood's expensive page.
const PAGE: &str = "users/?limit=100";

/// Added to the allowed latencies: a few milliseconds of scheduling on a busy machine.
const SLACK: Duration = Duration::from_millis(20);

/// Where and how hard to send.
pub struct Tenants {
    pub agent: ureq::Agent,
    /// `http://<authority><path_prefix>/` is the API.
    pub base: String,
    pub quiet_key: String,
    pub flood_keys: Vec<String>,
    pub seconds: u64,
    /// Requests per second of the quiet org.
    pub quiet_rate: u32,
    pub flood_threads: usize,
    pub latency_factor: f64,
    /// The flooding org's total tokens per second (what its 429s must name).
    pub flood_total: u32,
    pub in_flight: Gate,
}

/// What one side saw in one phase.
#[derive(Debug, Default)]
struct Seen {
    statuses: BTreeMap<u16, u64>,
    latencies: Vec<Duration>,
    /// 429 `rate_limit` details.
    refusals: Vec<Value>,
}

impl Seen {
    fn merge(&mut self, other: Seen) {
        for (status, count) in other.statuses {
            *self.statuses.entry(status).or_default() += count;
        }
        self.latencies.extend(other.latencies);
        self.refusals.extend(other.refusals);
    }

    fn count(&self, status: u16) -> u64 {
        self.statuses.get(&status).copied().unwrap_or(0)
    }

    fn total(&self) -> u64 {
        self.statuses.values().sum()
    }
}

impl Tenants {
    fn send(&self, key: &str, method: &str, path: &str, body: Option<&Value>, seen: &mut Seen) {
        let url = format!("{}{path}", self.base);
        let started = Instant::now();
        let result = self.in_flight.pass(|| {
            let authorization = format!("Bearer {key}");
            match body {
                Some(body) => self
                    .agent
                    .post(&url)
                    .header("Authorization", &authorization)
                    .header("Content-Type", "application/json")
                    .send(body.to_string()),
                None if method == "GET" => self
                    .agent
                    .get(&url)
                    .header("Authorization", &authorization)
                    .call(),
                None => unreachable!("only GET goes without a body"),
            }
        });
        seen.latencies.push(started.elapsed());
        let status = match result {
            Ok(mut response) => {
                let status = response.status().as_u16();
                let text = response.body_mut().read_to_string().unwrap_or_default();
                if status == 429 {
                    let body: Value = serde_json::from_str(&text).unwrap_or_default();
                    seen.refusals.push(body["error"]["rate_limit"].clone());
                }
                status
            }
            // Counted as a failure: not an answer.
            Err(_) => 0,
        };
        *seen.statuses.entry(status).or_default() += 1;
    }

    /// The quiet org's mix at `quiet_rate`, for `seconds`: its own profile, an event, one
    /// of its users with context, each paced.
    fn quiet(&self, phase: &str) -> Seen {
        let mut seen = Seen::default();
        let every = Duration::from_secs_f64(1.0 / f64::from(self.quiet_rate.max(1)));
        let until = Instant::now() + Duration::from_secs(self.seconds);
        let mut n = 0u64;
        while Instant::now() < until {
            let started = Instant::now();
            match n % 3 {
                0 => self.send(&self.quiet_key, "GET", "me/", None, &mut seen),
                1 => {
                    let event = json!({
                        "event": "app_opened",
                        "user": {"external_user_id": format!("quiet-{phase}-{}", n % 50)},
                    });
                    self.send(&self.quiet_key, "POST", "events/", Some(&event), &mut seen);
                }
                _ => {
                    let user = format!("users/quiet-{phase}-{}/", n.saturating_sub(1) % 50);
                    self.send(&self.quiet_key, "GET", &user, None, &mut seen);
                }
            }
            n += 1;
            std::thread::sleep(every.saturating_sub(started.elapsed()));
        }
        seen
    }

    /// The flooding org: the thread sends `path` back to back, round the org's keys, until
    /// `stop`.
    fn flood(&self, thread: usize, path: &str, stop: &AtomicBool) -> Seen {
        let mut seen = Seen::default();
        let mut n = thread;
        while !stop.load(Ordering::Relaxed) {
            let key = &self.flood_keys[n % self.flood_keys.len()];
            self.send(key, "GET", path, None, &mut seen);
            n += 1;
        }
        seen
    }

    /// Runs both phases; prints what each side saw; `Err` says what failed.
    pub fn run(&self) -> Result<(), String> {
        println!(
            "soak tenants: {} s alone, then {} s with {} threads flooding from {} keys of an org of {} tokens/s",
            self.seconds,
            self.seconds,
            self.flood_threads,
            self.flood_keys.len(),
            self.flood_total
        );
        let mut alone = self.quiet("alone");
        let stop = AtomicBool::new(false);
        // Per path: what it costs, what it got.
        let flooded = Mutex::new([(PAGE, 26, Seen::default()), ("me/", 1, Seen::default())]);
        let flood_started = Instant::now();
        let mut with_flood = std::thread::scope(|scope| {
            for thread in 0..self.flood_threads {
                let (stop, flooded) = (&stop, &flooded);
                scope.spawn(move || {
                    let side = thread % 2;
                    let path = flooded.lock().expect("flood tally")[side].0;
                    let seen = self.flood(thread, path, stop);
                    flooded.lock().expect("flood tally")[side].2.merge(seen);
                });
            }
            let seen = self.quiet("flooded");
            stop.store(true, Ordering::Relaxed);
            seen
        });
        let flooded = flooded.into_inner().expect("flood tally");
        let tokens: u64 = flooded
            .iter()
            .map(|(_, cost, seen)| cost * seen.count(200))
            .sum();
        let mut flood = Seen::default();
        for (path, _, seen) in flooded {
            println!("  flooding org, {path}: statuses {:?}", seen.statuses);
            flood.merge(seen);
        }
        // The windows the flood touched, from its first request to its last answer.
        let windows = flood_started.elapsed().as_secs() + 2;

        alone.latencies.sort();
        with_flood.latencies.sort();
        let line = |name: &str, seen: &Seen| {
            println!(
                "  quiet org {name}: {} requests, statuses {:?}, p50 {} ms, p99 {} ms",
                seen.total(),
                seen.statuses,
                percentile(&seen.latencies, 0.5).as_millis(),
                percentile(&seen.latencies, 0.99).as_millis()
            );
        };
        line("alone", &alone);
        line("with the flood", &with_flood);
        let most = u64::from(self.flood_total) * windows;
        println!(
            "  flooding org: {} requests, {} admitted ({tokens} tokens, at most {most} in {windows} windows), {} refused",
            flood.total(),
            flood.count(200),
            flood.count(429)
        );

        let mut failures = Vec::new();
        for (name, seen) in [("alone", &alone), ("with the flood", &with_flood)] {
            let ok: u64 = seen
                .statuses
                .iter()
                .filter(|(status, _)| (200..300).contains(*status))
                .map(|(_, count)| count)
                .sum();
            if ok != seen.total() {
                failures.push(format!("quiet org {name}: {:?}", seen.statuses));
            }
        }
        for p in [0.5, 0.99] {
            let base = percentile(&alone.latencies, p);
            let bound = base.mul_f64(self.latency_factor) + SLACK;
            let got = percentile(&with_flood.latencies, p);
            if got > bound {
                failures.push(format!(
                    "quiet org p{}: {got:?} with the flood, over {bound:?} ({}x {base:?} + {SLACK:?})",
                    (p * 100.0) as u32,
                    self.latency_factor
                ));
            }
        }
        if flood.count(429) == 0 {
            failures.push("the flooding org was never refused: it was not past its limit".into());
        }
        let named_org = flood
            .refusals
            .iter()
            .any(|r| r["scope"] == "org" && r["limit"] == self.flood_total);
        if !named_org {
            failures.push(format!(
                "no 429 named the org's limit of {}",
                self.flood_total
            ));
        }
        if tokens > most {
            failures.push(format!(
                "the flooding org got {tokens} tokens through, at most {most}"
            ));
        }
        if failures.is_empty() {
            println!("soak tenants passed");
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }
}

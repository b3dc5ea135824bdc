//! `make soak`: many concurrent clients send events and upserts to the local API (loopback
//! only): bursts of one user's events in random order at a few distinct times (late,
//! same-millisecond), payments in several currencies or none, zero amounts and trials,
//! duplicate Idempotency-Keys (sequential, concurrent, storms of 8), keyless events, retries
//! of requests whose responses were dropped, interleaved profile upserts and nested mentions
//! with old values (event users, backfilled sales' buyers). Every 2xx is recorded; afterwards
//! the table (DynamoDB Local, read directly) must hold exactly what the acknowledged
//! requests imply, every client record what `model::record` computes from its acknowledged
//! events. Prints requests/s, statuses, the event mix and the checks made; exits 1 on any
//! non-2xx, any failed check, or when the requests were not all sent within
//! `--duration-limit`.

mod expect;
mod tenants;
mod verify;

use clap::Parser;
use expect::{Expected, Mention};
use record_model::{EventKind, Fact};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::net::{IpAddr, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Parser, Debug)]
#[command(about = "Soak test of the local API: load, then the stored state checked")]
struct Args {
    /// The local API's base URL; loopback addresses only.
    #[arg(long, default_value = "http://127.0.0.1:9000/api/developer")]
    base_url: String,
    /// File with the API key to use (its rate limit must be above the load).
    #[arg(long)]
    api_key_file: PathBuf,
    /// Requests to send in all (duplicates, retries and dropped ones included).
    #[arg(long, default_value_t = 10_000)]
    requests: u64,
    /// Concurrent clients.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Stop sending after this many seconds; the run fails if not all requests were sent.
    #[arg(long, default_value_t = 300)]
    duration_limit: u64,
    /// Requests in flight at most, across all clients. `cargo lambda watch` queues at most
    /// 100 invocations (all functions together) and stalls for good, health included, when
    /// more wait; bursts and storms of duplicates would otherwise get there.
    #[arg(long, default_value_t = 64)]
    max_in_flight: usize,
    /// Two orgs instead (`make soak-tenants`, see `tenants`): a file with the keys of an org
    /// that floods, one a line; `--api-key-file` is then the quiet org's key.
    #[arg(long)]
    flood_key_file: Option<PathBuf>,
    /// The flooding org's total tokens per second (`admin orgs set-total-rate-limit`).
    #[arg(long, default_value_t = 104)]
    flood_total: u32,
    /// Seconds of each phase (the quiet org alone, then with the flood).
    #[arg(long, default_value_t = 8)]
    tenant_seconds: u64,
    /// Requests per second of the quiet org.
    #[arg(long, default_value_t = 30)]
    quiet_rate: u32,
    /// Threads flooding, each sending back to back.
    #[arg(long, default_value_t = 8)]
    flood_threads: usize,
    /// How much slower the quiet org's p50 and p99 may be with the flood: locally the
    /// flood's requests, even refused, take CPU from the same machine (in Lambda they run
    /// on instances of their own).
    #[arg(long, default_value_t = 3.0)]
    latency_factor: f64,
}

/// A counting semaphore: at most `limit` holders at once.
struct Gate {
    limit: usize,
    held: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    fn new(limit: usize) -> Self {
        Gate {
            limit: limit.max(1),
            held: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Runs `f` once fewer than `limit` others are running.
    fn pass<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut held = self.held.lock().expect("the gate");
        while *held >= self.limit {
            held = self.freed.wait(held).expect("the gate");
        }
        *held += 1;
        drop(held);
        let result = f();
        *self.held.lock().expect("the gate") -= 1;
        self.freed.notify_one();
        result
    }
}

/// Records per client and shared by all (see `expect` for why they are split this way).
const OWNED_USERS: usize = 4;
const SALE_BUYERS: usize = 2;
const SHARED_USERS: usize = 8;
const PRODUCTS: usize = 8;

/// `http://<loopback>:<port><path>`, or why not.
fn loopback_url(url: &str) -> Result<(String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs on loopback are allowed"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        return Err(format!("{url}: the soak test only runs against loopback"));
    }
    Ok((authority.to_owned(), path.trim_end_matches('/').to_owned()))
}

/// What one client saw.
#[derive(Debug, Default)]
struct Tally {
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    dropped_on_purpose: u64,
    replays_checked: u64,
    latencies: Vec<Duration>,
    failures: Vec<String>,
}

struct Outcome {
    status: Option<u16>,
    replayed: bool,
}

impl Outcome {
    fn acked(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Shared by all clients: where to send, and how many requests are left to send.
struct Target {
    agent: ureq::Agent,
    authority: String,
    path_prefix: String,
    authorization: String,
    run: String,
    remaining: AtomicU64,
    deadline: Instant,
    base_time: time::OffsetDateTime,
    in_flight: Gate,
}

impl Target {
    /// Reserves `n` requests of the budget; false when it is spent or time is up.
    fn take(&self, n: u64) -> bool {
        Instant::now() < self.deadline
            && self
                .remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                    left.checked_sub(n)
                })
                .is_ok()
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}/{path}", self.authority, self.path_prefix)
    }

    fn post(&self, path: &str, body: &Value, key: Option<&str>) -> (Outcome, Duration) {
        self.in_flight.pass(|| self.post_now(path, body, key))
    }

    fn post_now(&self, path: &str, body: &Value, key: Option<&str>) -> (Outcome, Duration) {
        let started = Instant::now();
        let mut request = self
            .agent
            .post(self.url(path))
            .header("Authorization", &self.authorization)
            .header("Content-Type", "application/json");
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let outcome = match request.send(body.to_string()) {
            Ok(mut response) => {
                let _ = response.body_mut().read_to_string();
                Outcome {
                    status: Some(response.status().as_u16()),
                    replayed: response.headers().contains_key("idempotent-replayed"),
                }
            }
            Err(_) => Outcome {
                status: None,
                replayed: false,
            },
        };
        (outcome, started.elapsed())
    }

    /// Sends the request and closes the connection without reading the answer: the client
    /// never learns whether it was stored (the server may or may not finish it).
    fn send_and_drop(&self, path: &str, body: &Value, key: Option<&str>) {
        let body = body.to_string();
        let key_header = key.map_or(String::new(), |k| format!("Idempotency-Key: {k}\r\n"));
        let request = format!(
            "POST {}/{path} HTTP/1.1\r\nHost: {}\r\nAuthorization: {}\r\nContent-Type: application/json\r\n{key_header}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.path_prefix, self.authority, self.authorization, body.len()
        );
        self.in_flight.pass(|| {
            if let Ok(mut stream) = TcpStream::connect(&self.authority) {
                let _ = stream.write_all(request.as_bytes());
            }
        });
    }

    fn time(&self, offset_ms: u64) -> String {
        let at = self.base_time + Duration::from_millis(offset_ms);
        shared::fields::Timestamp::from_offset_date_time(at).to_stored()
    }
}

/// How an event request is sent.
#[derive(Debug, Clone, Copy)]
enum Delivery {
    Once,
    /// The same request again after the first answer (must replay).
    Twice,
    /// Two identical requests at the same time.
    Concurrently,
    /// Sent and its response dropped, then sent again.
    DroppedThenRetried,
    /// `STORM` identical requests at the same time (an SDK flushing its queue everywhere).
    Storm,
}

/// The copies of a storm.
const STORM: u64 = 8;

impl Delivery {
    fn requests(self) -> u64 {
        match self {
            Delivery::Once => 1,
            Delivery::Storm => STORM,
            _ => 2,
        }
    }
}

/// What the requests of one delivery got.
#[derive(Default)]
struct Delivered {
    answers: Vec<((Outcome, Duration), &'static str)>,
    dropped_on_purpose: u64,
    replays_checked: u64,
    failures: Vec<String>,
}

impl Target {
    /// Sends one event request as `delivery` says (keyless events are only sent once: a
    /// resent keyless request is a second event).
    fn deliver(&self, delivery: Delivery, body: &Value, key: Option<&str>) -> Delivered {
        let mut delivered = Delivered::default();
        let post = || self.post("events/", body, key);
        match delivery {
            Delivery::Once => delivered.answers.push((post(), "event")),
            Delivery::Twice => {
                delivered.answers.push((post(), "event"));
                let first_acked = delivered.answers[0].0 .0.acked();
                let again = post();
                delivered.replays_checked += 1;
                // Only an acknowledged first request was surely stored; one that got no answer
                // (a transport error, counted as such) may never have reached the handler.
                if first_acked && again.0.acked() && !again.0.replayed {
                    delivered.failures.push(format!(
                        "{}: a repeated key was not replayed",
                        key.unwrap_or("")
                    ));
                }
                delivered.answers.push((again, "replay"));
            }
            Delivery::Concurrently => {
                let (first, second) = std::thread::scope(|scope| {
                    let other = scope.spawn(post);
                    (post(), other.join().expect("the duplicate's thread"))
                });
                delivered.answers.push((first, "event"));
                delivered.answers.push((second, "concurrent duplicate"));
            }
            Delivery::DroppedThenRetried => {
                self.send_and_drop("events/", body, key);
                delivered.dropped_on_purpose += 1;
                delivered.answers.push((post(), "retry"));
            }
            Delivery::Storm => {
                let answers: Vec<_> = std::thread::scope(|scope| {
                    let copies: Vec<_> = (0..STORM).map(|_| scope.spawn(post)).collect();
                    copies
                        .into_iter()
                        .map(|copy| copy.join().expect("a storm's thread"))
                        .collect()
                });
                // One request stored the event; every other one is its replay.
                let first_answers = answers
                    .iter()
                    .filter(|(outcome, _)| outcome.acked() && !outcome.replayed)
                    .count();
                delivered.replays_checked += STORM - 1;
                if first_answers > 1 {
                    delivered.failures.push(format!(
                        "{}: {first_answers} of {STORM} concurrent requests answered as the first",
                        key.unwrap_or("")
                    ));
                }
                let labels = std::iter::once("event").chain(std::iter::repeat("storm duplicate"));
                delivered.answers.extend(answers.into_iter().zip(labels));
            }
        }
        delivered
    }
}

/// The distinct times of the owned users' events: few, so that bursts mix older and newer
/// events and same-millisecond ties are common.
const EVENT_TIMES_MS: [u64; 4] = [0, 3_600_000, 7_200_000, 7_200_500];
const AMOUNTS: [&str; 6] = ["0.00", "5.00", "10.00", "19.99", "7.5", "1000"];
const CURRENCIES: [&str; 3] = ["USD", "EUR", "JPY"];
const PLANS: [&str; 2] = ["basic", "pro"];
const VERSIONS: [&str; 2] = ["1.0", "2.0"];

/// One event of a burst: what it is, how it is identified and sent.
struct Send {
    identity: String,
    fact: Fact,
    body: Value,
    key: Option<String>,
    delivery: Delivery,
    mention: Option<Mention>,
}

struct Client<'a> {
    id: usize,
    target: &'a Target,
    rng: fastrand::Rng,
    seq: u64,
    tally: Tally,
    expected: Expected,
}

impl Client<'_> {
    fn name(&self, what: &str, n: usize) -> String {
        format!("soak-{}-c{}-{what}{n}", self.target.run, self.id)
    }

    fn owned_user(&mut self) -> String {
        let n = self.rng.usize(0..OWNED_USERS);
        self.name("u", n)
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// A value of `values`, or (one time in four) none.
    fn maybe<T: Copy>(&mut self, values: &[T]) -> Option<T> {
        (self.rng.u32(0..4) > 0).then(|| values[self.rng.usize(0..values.len())])
    }

    fn record(&mut self, (outcome, latency): (Outcome, Duration), what: &str) -> Outcome {
        match outcome.status {
            Some(status) => {
                *self.tally.statuses.entry(status).or_default() += 1;
                if !outcome.acked() && self.tally.failures.len() < 20 {
                    self.tally.failures.push(format!("{what}: HTTP {status}"));
                }
            }
            None => {
                self.tally.transport_errors += 1;
                if self.tally.failures.len() < 20 {
                    self.tally.failures.push(format!("{what}: no answer"));
                }
            }
        }
        self.tally.latencies.push(latency);
        outcome
    }

    /// Tallies a delivery; whether any of its requests was acknowledged.
    fn absorb(&mut self, delivered: Delivered) -> bool {
        self.tally.dropped_on_purpose += delivered.dropped_on_purpose;
        self.tally.replays_checked += delivered.replays_checked;
        self.tally.failures.extend(delivered.failures);
        let mut acked = false;
        for (answer, what) in delivered.answers {
            acked |= self.record(answer, what).acked();
        }
        acked
    }

    /// Runs until the request budget is spent or the time is up.
    fn run(mut self) -> (Tally, Expected) {
        loop {
            let sent = match self.rng.u32(0..100) {
                0..25 => self.upsert_owned_user(),
                25..60 => self.lifecycle_burst(),
                60..67 => self.keyless_event(),
                67..80 => self.shared_open_event(),
                80..90 => self.sale(),
                _ => self.backfilled_sale(),
            };
            if !sent {
                return (self.tally, self.expected);
            }
        }
    }

    /// Fields of a user only this client writes, in sequence: the last acknowledged value
    /// of each field is what must be stored. Each write sends its name and email and a
    /// random subset of other fields, `installed_at` among them.
    fn upsert_owned_user(&mut self) -> bool {
        if !self.target.take(1) {
            return false;
        }
        let seq = self.next();
        let user = self.owned_user();
        let mut fields = vec![
            ("name", format!("name-{seq}")),
            // Unique in the run: an email names one client.
            ("email", format!("{user}-{seq}@example.com")),
        ];
        for field in ["plan", "phone", "status"] {
            if self.rng.bool() {
                fields.push((field, format!("{field}-{seq}")));
            }
        }
        // A profile's install time at one of the events' times: the record shows the later
        // of the two, and installs still count.
        if self.rng.u32(0..100) < 30 {
            fields.push(("installed_at", self.event_time()));
        }
        let mut body = json!({ "external_user_id": user });
        for (field, value) in &fields {
            body[*field] = json!(value);
        }
        let sent = self.target.post("users/upsert/", &body, None);
        let acked = self.record(sent, "users/upsert").acked();
        for (field, value) in fields {
            self.expected.field_written(&user, field, value, acked);
        }
        true
    }

    fn event_time(&mut self) -> String {
        let offset = EVENT_TIMES_MS[self.rng.usize(0..EVENT_TIMES_MS.len())];
        self.target.time(offset)
    }

    fn lifecycle_kind(&mut self) -> EventKind {
        match self.rng.u32(0..11) {
            0..2 => EventKind::Install {
                platform: self.maybe(&["ios", "android"]),
                version: self.maybe(&VERSIONS),
            },
            2..4 => EventKind::Open {
                version: self.maybe(&VERSIONS),
            },
            4 => EventKind::Uninstall,
            5..8 => EventKind::Purchase {
                amount: self.maybe(&AMOUNTS),
                currency: self.maybe(&CURRENCIES),
            },
            8..10 => EventKind::Subscription {
                suffix: [
                    "started",
                    "renewed",
                    "trial_started",
                    "cancelled",
                    "expired",
                ][self.rng.usize(0..5)],
                amount: self.maybe(&AMOUNTS),
                currency: self.maybe(&CURRENCIES),
                plan: self.maybe(&PLANS),
                ends_at: None,
            },
            _ => EventKind::Custom,
        }
    }

    /// The nested user of an event: sometimes (`percent` of the time) with an old name and
    /// email, which may only fill gaps in the profile.
    fn nested_user(&mut self, user: &str, seq: u64, percent: u32) -> (Value, Option<Mention>) {
        if self.rng.u32(0..100) >= percent {
            return (json!({"external_user_id": user}), None);
        }
        let mention = Mention {
            name: format!("J. {seq}"),
            email: format!("{user}-old-{seq}@example.com"),
        };
        let nested =
            json!({"external_user_id": user, "name": mention.name, "email": mention.email});
        (nested, Some(mention))
    }

    /// 2 to 5 events of one owned user sent at once in a random order: lifecycle events,
    /// purchases and subscription events in several currencies (or none), zero amounts and
    /// trials, at a few distinct times. Most carry an Idempotency-Key and are sent once,
    /// twice, twice at once, or dropped and retried; the rest are keyless.
    fn lifecycle_burst(&mut self) -> bool {
        let user = self.owned_user();
        let mut sends = Vec::new();
        for _ in 0..self.rng.usize(2..=5) {
            let seq = self.next();
            let fact = Fact {
                at: self.event_time(),
                kind: self.lifecycle_kind(),
            };
            let (name, properties) = fact.name_and_properties();
            let (nested, mention) = self.nested_user(&user, seq, 20);
            let body = json!({
                "event": name,
                "user": nested,
                "event_timestamp": fact.at,
                "properties": properties,
            });
            let (identity, key, delivery) = if self.rng.u32(0..100) < 70 {
                let key = format!("soak-{}-c{}-e{seq}", self.target.run, self.id);
                let delivery = match self.rng.u32(0..100) {
                    0..53 => Delivery::Once,
                    53..68 => Delivery::Twice,
                    68..83 => Delivery::Concurrently,
                    83..97 => Delivery::DroppedThenRetried,
                    _ => Delivery::Storm,
                };
                (key.clone(), Some(key), delivery)
            } else {
                (format!("c{}-x{seq}", self.id), None, Delivery::Once)
            };
            sends.push(Send {
                identity,
                fact,
                body,
                key,
                delivery,
                mention,
            });
        }
        if !self
            .target
            .take(sends.iter().map(|send| send.delivery.requests()).sum())
        {
            return false;
        }
        self.rng.shuffle(&mut sends);
        let target = self.target;
        let delivered: Vec<Delivered> = std::thread::scope(|scope| {
            let threads: Vec<_> = sends
                .iter()
                .map(|send| {
                    scope.spawn(|| target.deliver(send.delivery, &send.body, send.key.as_deref()))
                })
                .collect();
            threads
                .into_iter()
                .map(|thread| thread.join().expect("a burst's thread"))
                .collect()
        });
        for (send, delivered) in sends.into_iter().zip(delivered) {
            self.absorb_event(&user, send, delivered);
        }
        true
    }

    fn absorb_event(&mut self, user: &str, send: Send, delivered: Delivered) {
        let acked = self.absorb(delivered);
        self.expected.mentioned(user, send.mention, acked);
        self.expected.event(user, send.identity, send.fact, acked);
    }

    /// Sends one event on its own.
    fn deliver_one(&mut self, user: &str, send: Send) -> bool {
        if !self.target.take(send.delivery.requests()) {
            return false;
        }
        let delivered = self
            .target
            .deliver(send.delivery, &send.body, send.key.as_deref());
        self.absorb_event(user, send, delivered);
        true
    }

    /// Events without a key: each acknowledged one is a new event.
    fn keyless_event(&mut self) -> bool {
        let seq = self.next();
        let user = self.owned_user();
        let fact = Fact {
            at: self.event_time(),
            kind: EventKind::Custom,
        };
        let (nested, mention) = self.nested_user(&user, seq, 10);
        let body = json!({
            "event": "level_up",
            "user": nested,
            "event_timestamp": fact.at,
            "properties": {"level": seq},
        });
        let send = Send {
            identity: format!("c{}-x{seq}", self.id),
            fact,
            body,
            key: None,
            delivery: Delivery::Once,
            mention,
        };
        self.deliver_one(&user, send)
    }

    /// `app_opened` of users every client writes at once, at random times, half of them
    /// with a key: the record must be the model of the acknowledged set, whatever order
    /// they landed in.
    fn shared_open_event(&mut self) -> bool {
        let seq = self.next();
        let user = format!(
            "soak-{}-shared{}",
            self.target.run,
            self.rng.usize(0..SHARED_USERS)
        );
        let fact = Fact {
            at: self.target.time(self.rng.u64(0..30 * 24 * 3600 * 1000)),
            kind: EventKind::Open { version: None },
        };
        let body = json!({"event": "app_opened", "user": {"external_user_id": user}, "event_timestamp": fact.at});
        let key = self
            .rng
            .bool()
            .then(|| format!("soak-{}-c{}-o{seq}", self.target.run, self.id));
        let send = Send {
            identity: key
                .clone()
                .unwrap_or_else(|| format!("c{}-o{seq}", self.id)),
            fact,
            body,
            key,
            delivery: Delivery::Once,
            mention: None,
        };
        self.deliver_one(&user, send)
    }

    /// A sale with a buyer of its own and a product nested; sometimes dropped and sent
    /// again. Buyers and products always carry the same fields, so a late duplicate changes
    /// nothing.
    fn sale(&mut self) -> bool {
        let buyer_n = self.rng.usize(0..SALE_BUYERS);
        let buyer = self.name("b", buyer_n);
        let name = format!("buyer-{buyer_n}");
        let nested = json!({"external_user_id": buyer, "name": name});
        self.send_sale(buyer, nested, Some(name), None, None)
    }

    /// A sale from 2024 backfilled now, its nested buyer an owned user with an old name
    /// and email: they may fill gaps, never replace what `users/upsert` set.
    fn backfilled_sale(&mut self) -> bool {
        let seq = self.next();
        let buyer = self.owned_user();
        let (nested, mention) = self.nested_user(&buyer, seq, 100);
        let date = format!(
            "2024-{:02}-{:02}T09:00:00Z",
            self.rng.u32(1..=12),
            self.rng.u32(1..=28)
        );
        self.send_sale(buyer, nested, None, mention, Some(date))
    }

    fn send_sale(
        &mut self,
        buyer: String,
        nested_buyer: Value,
        buyer_name: Option<String>,
        mention: Option<Mention>,
        date: Option<String>,
    ) -> bool {
        let dropped = self.rng.u32(0..100) < 15;
        if !self.target.take(if dropped { 2 } else { 1 }) {
            return false;
        }
        let seq = self.next();
        let sale = self.name("s", seq as usize);
        let product_n = self.rng.usize(0..PRODUCTS);
        let product = format!("soak-{}-p{product_n}", self.target.run);
        let cents = self.rng.i64(100..100_000);
        let total = format!("{}.{:02}", cents / 100, cents % 100);
        let mut body = json!({
            "sale_id": sale,
            "total": total,
            "buyer": nested_buyer,
            "product": {"external_product_id": product, "title": format!("product-{product_n}")},
        });
        if let Some(date) = date {
            body["date"] = json!(date);
        }
        if dropped {
            self.target.send_and_drop("sales/upsert/", &body, None);
            self.tally.dropped_on_purpose += 1;
        }
        let sent = self.target.post("sales/upsert/", &body, None);
        let acked = self.record(sent, "sale").acked();
        self.expected.mentioned(&buyer, mention, acked);
        self.expected.sale(
            expect::Sale {
                id: sale,
                total,
                buyer,
                buyer_name,
                product,
                product_title: format!("product-{product_n}"),
            },
            acked,
        );
        true
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    let args = Args::parse();
    if let Err(error) = run(args) {
        eprintln!("soak: {error}");
        std::process::exit(2);
    }
}

/// The two-org mode: `Err` when it failed.
fn run_tenants(args: &Args, flood_key_file: &std::path::Path) -> Result<(), String> {
    let (authority, path_prefix) = loopback_url(&args.base_url)?;
    let read = |path: &std::path::Path| {
        std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
    };
    let flood_keys: Vec<String> = read(flood_key_file)?
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect();
    if flood_keys.is_empty() {
        return Err(format!("{}: no keys", flood_key_file.display()));
    }
    let tenants = tenants::Tenants {
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into(),
        base: format!("http://{authority}{path_prefix}/"),
        quiet_key: read(&args.api_key_file)?.trim().to_owned(),
        flood_keys,
        seconds: args.tenant_seconds,
        quiet_rate: args.quiet_rate,
        flood_threads: args.flood_threads,
        latency_factor: args.latency_factor,
        flood_total: args.flood_total,
        in_flight: Gate::new(args.max_in_flight),
    };
    tenants.run()
}

fn run(args: Args) -> Result<(), String> {
    if let Some(flood_key_file) = &args.flood_key_file {
        if let Err(failure) = run_tenants(&args, flood_key_file) {
            println!("soak tenants FAILED: {failure}");
            std::process::exit(1);
        }
        return Ok(());
    }
    let (authority, path_prefix) = loopback_url(&args.base_url)?;
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .map_err(|_| "DYNAMODB_ENDPOINT must name the local API's DynamoDB Local".to_owned())?;
    loopback_url(&endpoint)?;
    let key = std::fs::read_to_string(&args.api_key_file)
        .map_err(|e| format!("{}: {e}", args.api_key_file.display()))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let target = Target {
        agent,
        authority,
        path_prefix,
        authorization: format!("Bearer {}", key.trim()),
        run: format!("{:08x}", fastrand::u32(..)),
        remaining: AtomicU64::new(args.requests),
        in_flight: Gate::new(args.max_in_flight),
        deadline: Instant::now() + Duration::from_secs(args.duration_limit),
        base_time: time::OffsetDateTime::now_utc() - Duration::from_secs(40 * 24 * 3600),
    };
    let org_id = {
        let mut me = target
            .agent
            .get(target.url("me/"))
            .header("Authorization", &target.authorization)
            .call()
            .map_err(|e| format!("GET me/: {e}"))?;
        let body: Value = serde_json::from_str(&me.body_mut().read_to_string().unwrap_or_default())
            .map_err(|e| format!("GET me/: {e}"))?;
        body["org"]["id"]
            .as_str()
            .ok_or_else(|| format!("GET me/ answered {body}"))?
            .to_owned()
    };

    println!(
        "soak: {} requests from {} clients to {}, run {} (org {org_id})",
        args.requests, args.clients, args.base_url, target.run
    );
    let started = Instant::now();
    let results: Vec<(Tally, Expected)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.clients)
            .map(|id| {
                let client = Client {
                    id,
                    target: &target,
                    rng: fastrand::Rng::new(),
                    seq: 0,
                    tally: Tally::default(),
                    expected: Expected::default(),
                };
                scope.spawn(move || client.run())
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("a client thread"))
            .collect()
    });
    let elapsed = started.elapsed();

    let mut tally = Tally::default();
    let mut expected = Expected::default();
    for (client_tally, client_expected) in results {
        for (status, count) in client_tally.statuses {
            *tally.statuses.entry(status).or_default() += count;
        }
        tally.transport_errors += client_tally.transport_errors;
        tally.dropped_on_purpose += client_tally.dropped_on_purpose;
        tally.replays_checked += client_tally.replays_checked;
        tally.latencies.extend(client_tally.latencies);
        tally.failures.extend(client_tally.failures);
        expected.merge(client_expected);
    }
    let sent = args.requests - target.remaining.load(Ordering::Relaxed);
    tally.latencies.sort();
    let statuses: Vec<String> = tally
        .statuses
        .iter()
        .map(|(status, count)| format!("{status}: {count}"))
        .collect();
    println!(
        "sent {sent} requests in {:.1} s: {:.0} requests/s; latency p50 {} ms, p99 {} ms",
        elapsed.as_secs_f64(),
        sent as f64 / elapsed.as_secs_f64(),
        percentile(&tally.latencies, 0.5).as_millis(),
        percentile(&tally.latencies, 0.99).as_millis(),
    );
    println!(
        "statuses {{{}}}; transport errors {}; responses dropped on purpose {} (each retried); replays checked {}",
        statuses.join(", "),
        tally.transport_errors,
        tally.dropped_on_purpose,
        tally.replays_checked
    );

    println!("{}", expected.mix());
    // A dropped request may still be in flight in the server; let it land before reading.
    std::thread::sleep(Duration::from_secs(1));
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    let report = runtime.block_on(verify::verify(&org_id, &expected));
    println!("{}", report.summary());
    for failure in tally.failures.iter().chain(&report.failures).take(30) {
        println!("  FAILED {failure}");
    }

    let non_2xx: u64 = tally
        .statuses
        .iter()
        .filter(|(status, _)| !(200..300).contains(*status))
        .map(|(_, count)| count)
        .sum();
    let complete = sent == args.requests;
    if !complete {
        println!(
            "FAILED: only {sent} of {} requests sent within the {} s limit",
            args.requests, args.duration_limit
        );
    }
    if non_2xx > 0 || tally.transport_errors > 0 || !tally.failures.is_empty() {
        println!(
            "FAILED: {non_2xx} non-2xx answers, {} transport errors",
            tally.transport_errors
        );
    }
    let passed = complete
        && non_2xx == 0
        && tally.transport_errors == 0
        && tally.failures.is_empty()
        && report.failures.is_empty();
    println!("soak {}", if passed { "passed" } else { "FAILED" });
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::loopback_url;

    #[test]
    fn only_loopback_urls_are_accepted() {
        for ok in [
            "http://127.0.0.1:9000/api/developer",
            "http://localhost:9000",
            "http://[::1]:8000/",
            "http://127.0.0.2:1",
        ] {
            assert!(loopback_url(ok).is_ok(), "{ok}");
        }
        for refused in [
            "https://127.0.0.1:9000",
            "http://10.0.0.1:9000",
            "http://example.com/api",
            "http://dynamodb.us-east-1.amazonaws.com",
            "http://127.0.0.1.example.com:80",
        ] {
            assert!(loopback_url(refused).is_err(), "{refused}");
        }
        assert_eq!(
            loopback_url("http://127.0.0.1:9000/api/developer/").unwrap(),
            ("127.0.0.1:9000".to_owned(), "/api/developer".to_owned())
        );
    }
}

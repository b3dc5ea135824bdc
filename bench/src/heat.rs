//! Partition heat of one org, computed rather than sent: the requests of one org at 10,000
//! events per second for 60 s go through the real parsers and item builders
//! (`shared::input`, `shared::store::items`), their writes are applied to an in-memory copy
//! of the items, and every write's capacity units are charged to the partition keys of the
//! table, GSI1 and GSI2 it lands on, as DynamoDB charges them. The rate-limit counter of the
//! org's key is charged by the real lease logic (`shared::ratelimit::SimulatedLeases`).
//!
//! How DynamoDB charges (on-demand, standard table class):
//! - a write costs ⌈size / 1 KB⌉ units, the size of an update being the larger of the item
//!   before and after it; a transactional write costs twice that;
//! - a write refused by its condition costs ⌈size of the item / 1 KB⌉ (at least 1);
//! - an index (projection ALL) is written whenever its item changes: an entry whose key
//!   did not change is one write of the new item, one whose key changed is a delete of the
//!   old entry and a put of the new one (two writes, both charged to their partition keys),
//!   an item gaining or losing the index keys is one put or one delete;
//! - a partition key takes at most 1,000 write units per second, and one whose sort key
//!   always moves to "now" cannot be split for heat.
//!
//! What the simulation leaves out: reads, API-key bookkeeping (one `last_used_at` write per
//! instance per hour), and recomputations of a thread when a message arrives out of order
//! (messages here arrive in order).

use shared::facts;
use shared::fields::Timestamp;
use shared::input;
use shared::ratelimit::SimulatedLeases;
use shared::store::testing::attributes::{
    event_attribute, stored_offer, EVENT_INSTALLS, EVENT_PAYMENTS, REVENUE_PREFIX,
};
use shared::store::testing::keys::ItemKey;
use shared::store::testing::{n, s, Item};
use shared::store::{items, Upsert};
use std::collections::HashMap;
use std::fmt::Write as _;
use time::OffsetDateTime;

/// DynamoDB's write throughput of one partition key.
pub const PARTITION_LIMIT_WCU: f64 = 1000.0;
/// The target: the hottest key at most half of it.
pub const TARGET_WCU: f64 = PARTITION_LIMIT_WCU / 2.0;

/// What one org sends.
#[derive(Debug, Clone)]
pub struct Workload {
    pub seconds: u64,
    /// Seconds of the same load before the measured ones, so that the instances' leases
    /// are in their steady state (the first second of a cold start is a burst of small
    /// leases, as every instance starts from one token).
    pub warm_up_seconds: u64,
    pub events_per_second: u64,
    pub users: usize,
    /// Zipf exponent of the users' activity (the `k`-th most active user sends in
    /// proportion to `1 / k^s`).
    pub skew: f64,
    /// Share of the users that also upsert their profile once during the run.
    pub profile_share: f64,
    pub messages_per_second: u64,
    /// Threads, each with its contact among the most active users.
    pub threads: usize,
    pub channels: usize,
    pub bookings_per_second: u64,
    pub services: usize,
    /// Time one request keeps a function instance busy: instances = rate × this.
    pub request_seconds: f64,
    /// The org's key's requests per second (above what it sends).
    pub rate_limit: u32,
}

impl Workload {
    /// The load: 10,000 events per second for 60 s over 100,000 users.
    pub fn full() -> Self {
        Workload {
            seconds: 60,
            warm_up_seconds: 3,
            events_per_second: 10_000,
            users: 100_000,
            skew: 0.6,
            profile_share: 0.1,
            messages_per_second: 1_000,
            threads: 20_000,
            channels: 10,
            bookings_per_second: 200,
            services: 50,
            request_seconds: 0.025,
            rate_limit: 15_000,
        }
    }

    /// A tenth of the rates for 1 s over 2,000 users: that the simulation runs (make test).
    pub fn smoke() -> Self {
        Workload {
            seconds: 1,
            warm_up_seconds: 1,
            events_per_second: 1_000,
            users: 2_000,
            messages_per_second: 100,
            threads: 400,
            bookings_per_second: 20,
            ..Workload::full()
        }
    }
}

/// Where a write lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Place {
    Table,
    Gsi1,
    Gsi2,
    /// The rate-limit counter items (in the table, reported apart).
    RateCounter,
}

impl Place {
    const ALL: [Place; 4] = [Place::Table, Place::Gsi1, Place::Gsi2, Place::RateCounter];

    fn name(self) -> &'static str {
        match self {
            Place::Table => "table (data items)",
            Place::Gsi1 => "GSI1",
            Place::Gsi2 => "GSI2",
            Place::RateCounter => "table: rate-limit counter (one key per second)",
        }
    }

    fn index_keys(self) -> Option<(&'static str, &'static str)> {
        match self {
            Place::Gsi1 => Some(("GSI1PK", "GSI1SK")),
            Place::Gsi2 => Some(("GSI2PK", "GSI2SK")),
            _ => None,
        }
    }
}

/// The rows of a place in the report: a name and what its partition keys contain. GSI2
/// holds three lists, each reported apart.
fn groups(place: Place) -> Vec<(&'static str, &'static str)> {
    match place {
        Place::Gsi2 => vec![
            ("GSI2: users", "#USERS"),
            ("GSI2: inbox", "#INBOX#"),
            ("GSI2: bookings", "#BOOKINGS"),
        ],
        _ => vec![(place.name(), "")],
    }
}

/// The hottest partition key of one place.
#[derive(Debug, Clone, Default)]
pub struct Hottest {
    pub key: String,
    /// Its highest write units in one second.
    pub peak_wcu: f64,
    /// Its write units per second over the run.
    pub mean_wcu: f64,
    /// Partition keys written.
    pub keys: usize,
    pub total_wcu: f64,
}

#[derive(Debug, Clone, Default)]
pub struct Heat {
    pub places: Vec<(Place, &'static str, Hottest)>,
    pub requests: u64,
    pub instances: usize,
    pub seconds: u64,
    /// Mean size of a user item at the end of the run, in bytes.
    pub user_item_bytes: usize,
}

impl Heat {
    pub fn within_target(&self) -> bool {
        self.places.iter().all(|(_, _, h)| h.peak_wcu <= TARGET_WCU)
    }

    /// The Markdown table of `make bench`'s report.
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| where | hottest partition key | peak WCU/s | mean WCU/s | of the 1,000 limit | partition keys written | WCU/s of all its keys |\n\
             |---|---|---|---|---|---|---|\n",
        );
        for (_, name, hottest) in &self.places {
            let _ = writeln!(
                out,
                "| {name} | `{}` | {:.0} | {:.0} | {:.0}% | {} | {:.0} |",
                hottest.key,
                hottest.peak_wcu,
                hottest.mean_wcu,
                hottest.peak_wcu / PARTITION_LIMIT_WCU * 100.0,
                hottest.keys,
                hottest.total_wcu / self.seconds as f64,
            );
        }
        out
    }
}

/// A small deterministic generator (splitmix64): the same run every time.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Draws ranks 0..n with probability in proportion to `1 / (rank + 1)^s`.
struct Zipf(Vec<f64>);

impl Zipf {
    fn new(n: usize, s: f64) -> Self {
        let mut total = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(s);
                total
            })
            .collect::<Vec<_>>();
        Zipf(cumulative.into_iter().map(|c| c / total).collect())
    }

    fn draw(&self, random: &mut Random) -> usize {
        let u = random.unit();
        self.0.partition_point(|c| *c < u).min(self.0.len() - 1)
    }
}

/// DynamoDB's size of an attribute value (names count where they are stored).
fn value_size(value: &aws_sdk_dynamodb::types::AttributeValue) -> usize {
    use aws_sdk_dynamodb::types::AttributeValue as V;
    match value {
        V::S(text) => text.len(),
        V::N(number) => number.trim_start_matches('-').len().div_ceil(2) + 1,
        V::Bool(_) | V::Null(_) => 1,
        V::L(list) => 3 + list.iter().map(|v| 1 + value_size(v)).sum::<usize>(),
        V::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| 1 + k.len() + value_size(v))
                .sum::<usize>()
        }
        _ => 0,
    }
}

fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn units(bytes: usize) -> f64 {
    bytes.div_ceil(1024).max(1) as f64
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn index_key(item: &Item, place: Place) -> Option<(String, String)> {
    let (pk, sk) = place.index_keys()?;
    Some((text(item, pk)?, text(item, sk)?))
}

fn add_number(item: &mut Item, name: &str, by: &aws_sdk_dynamodb::types::AttributeValue) {
    let number = |v: Option<&aws_sdk_dynamodb::types::AttributeValue>| {
        v.and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let sum = number(item.get(name)) + number(Some(by));
    item.insert(name.to_owned(), n(sum));
}

/// The in-memory table and the write units charged to each partition key this second.
#[derive(Default)]
struct Model {
    items: HashMap<ItemKey, Item>,
    second: HashMap<(Place, String), f64>,
    peak: HashMap<(Place, String), f64>,
    total: HashMap<(Place, String), f64>,
    now: String,
}

impl Model {
    fn charge(&mut self, place: Place, key: &str, wcu: f64) {
        *self.second.entry((place, key.to_owned())).or_default() += wcu;
    }

    /// Ends a second: its charges count towards each key's peak and total.
    fn end_second(&mut self) {
        for (key, wcu) in self.second.drain() {
            let peak = self.peak.entry(key.clone()).or_default();
            *peak = peak.max(wcu);
            *self.total.entry(key).or_default() += wcu;
        }
    }

    /// Replaces the item at `key` by `new` (`None`: unchanged) and charges the table
    /// (`factor` 2 in a transaction) and the indexes.
    fn store(&mut self, key: &ItemKey, new: Item, factor: f64) {
        let old = self.items.get(key).cloned().unwrap_or_default();
        let size = item_size(&old).max(item_size(&new));
        self.charge(Place::Table, &key.pk, factor * units(size));
        for place in [Place::Gsi1, Place::Gsi2] {
            let (before, after) = (index_key(&old, place), index_key(&new, place));
            match (before, after) {
                (Some(b), Some(a)) if a == b => {
                    self.charge(place, &a.0, units(item_size(&new)));
                }
                (b, a) => {
                    if let Some(b) = b {
                        self.charge(place, &b.0, units(item_size(&old)));
                    }
                    if let Some(a) = a {
                        self.charge(place, &a.0, units(item_size(&new)));
                    }
                }
            }
        }
        self.items.insert(key.clone(), new);
    }

    /// A refused conditional write: charged to the table only.
    fn refuse(&mut self, key: &ItemKey) {
        let size = self.items.get(key).map_or(0, item_size);
        self.charge(Place::Table, &key.pk, units(size));
    }

    /// The item after `upsert` (as `store::ops::write::upsert_expression` builds it), or `None`
    /// if its condition refuses it. With `advance`, only when the advance's guard holds.
    fn updated(&self, upsert: &Upsert, advance: bool) -> Option<Item> {
        let old = self.items.get(&upsert.key);
        let current = |name: &str| old.and_then(|item| text(item, name));
        if let Some(stamp) = &upsert.stamp {
            if upsert
                .newer_than
                .iter()
                .any(|name| current(name).is_some_and(|v| v >= *stamp))
            {
                return None;
            }
        }
        let advance = upsert
            .advance
            .as_ref()
            .filter(|a| advance && current(a.attribute).is_none_or(|v| v < a.value));
        let mut item = old
            .cloned()
            .unwrap_or_else(|| shared::store::testing::keys::key_attributes(&upsert.key));
        item.insert("entity".into(), s(upsert.entity));
        item.insert("org_id".into(), s(&upsert.org_id));
        item.entry("ingested_at".into())
            .or_insert_with(|| s(&self.now));
        item.insert("updated_at".into(), s(&self.now));
        add_number(&mut item, "version", &n(1));
        let advanced: Vec<&(String, _)> = advance.iter().flat_map(|a| &a.set).collect();
        for (name, value) in upsert.set.iter().chain(advanced.iter().copied()) {
            item.insert(name.clone(), value.clone());
        }
        for (name, value) in &upsert.set_if_absent {
            if !advanced.iter().any(|(a, _)| a == name) {
                item.entry(name.clone()).or_insert_with(|| value.clone());
            }
        }
        for (name, value) in &upsert.add {
            add_number(&mut item, name, value);
        }
        for name in &upsert.remove {
            item.remove(*name);
        }
        Some(item)
    }

    /// `Store::upsert`: one conditional UpdateItem; when only its advance part fails, a
    /// second one without it.
    fn upsert(&mut self, upsert: &Upsert) {
        if let Some(item) = self.updated(upsert, true) {
            let advance_holds = upsert.advance.as_ref().is_none_or(|a| {
                self.items
                    .get(&upsert.key)
                    .and_then(|i| text(i, a.attribute))
                    .is_none_or(|v| v < a.value)
            });
            if advance_holds {
                return self.store(&upsert.key, item, 1.0);
            }
            self.refuse(&upsert.key);
            return self.store(&upsert.key, item, 1.0);
        }
        self.refuse(&upsert.key);
    }

    /// `Store::record_event`: the event's create-only Put and its user's Update in one
    /// transaction (events here arrive in order per user, so it applies at once).
    fn event(&mut self, write: &shared::store::EventWrite) {
        let event = write.event.item().clone();
        let key = write.event.key().expect("an event has its key");
        self.store(&key, event, 2.0);
        // Never written again (create-only): not kept, which bounds the run's memory.
        self.items.remove(&key);
        let Some(mut user) = self.updated(&write.user, true) else {
            return self.refuse(&write.user.key);
        };
        let contribution = &write.contribution;
        if contribution.installs > 0 {
            add_number(&mut user, EVENT_INSTALLS, &n(contribution.installs));
        }
        if contribution.payments > 0 {
            add_number(&mut user, EVENT_PAYMENTS, &n(contribution.payments));
        }
        if let Some((currency, amount)) = &contribution.revenue {
            add_number(
                &mut user,
                &format!("{REVENUE_PREFIX}{currency}"),
                &n(amount),
            );
        }
        for offer in &contribution.offers {
            user.insert(event_attribute(offer.field), stored_offer(offer));
        }
        self.store(&write.user.key, user, 2.0);
    }

    /// The message's locator (`Store::locate_message`): a small table item.
    fn locator(&mut self, key: ItemKey, thread_id: &str) {
        let mut item = self
            .items
            .get(&key)
            .cloned()
            .unwrap_or_else(|| shared::store::testing::keys::key_attributes(&key));
        item.insert("entity".into(), s("message_locator"));
        item.insert("thread_id".into(), s(thread_id));
        self.store(&key, item, 1.0);
    }
}

fn body(value: serde_json::Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

fn user_id(rank: usize) -> String {
    format!("usr_{rank:08}")
}

fn profile(rank: usize, random: &mut Random) -> serde_json::Value {
    let plans = ["free", "pro", "team"];
    serde_json::json!({
        "external_user_id": user_id(rank),
        "email": format!("user{rank}@example.com"),
        "name": format!("User {rank}"),
        "plan": plans[random.below(plans.len())],
        "status": "active",
        "app_version": "4.2.0",
        "metadata": {"segment": "b", "score": random.below(100)},
    })
}

/// An event body of the kinds apps send most (opens and screens, then purchases,
/// subscriptions and installs).
fn event_body(rank: usize, random: &mut Random) -> serde_json::Value {
    let user = serde_json::json!({"external_user_id": user_id(rank)});
    let roll = random.below(100);
    let (name, properties) = match roll {
        0..=44 => ("app_opened", serde_json::json!({"app_version": "4.2.0"})),
        45..=89 => ("screen_viewed", serde_json::json!({"screen": "home"})),
        90..=94 => (
            "user_purchased",
            serde_json::json!({"amount": "9.99", "currency": "USD"}),
        ),
        95..=97 => ("subscription_renewed", serde_json::json!({"plan": "pro"})),
        _ => (
            "app_installed",
            serde_json::json!({"install_platform": "ios"}),
        ),
    };
    serde_json::json!({"event": name, "user": user, "properties": properties})
}

fn at(second: u64, fraction: f64, start: OffsetDateTime) -> Timestamp {
    let offset = time::Duration::seconds_f64(second as f64 + fraction);
    Timestamp::from_offset_date_time(start + offset)
}

/// One request of the run: which function serves it, and its writes.
enum Request {
    Event(Vec<u8>),
    Profile(Vec<u8>),
    Message(Vec<u8>),
    Booking(Vec<u8>),
}

impl Request {
    fn function(&self) -> usize {
        match self {
            Request::Event(_) => 0,
            Request::Profile(_) => 1,
            Request::Message(_) => 2,
            Request::Booking(_) => 3,
        }
    }
}

const ORG: &str = "bigapp";

/// The writes `handlers` sends for `request` (the same builders, in the same order).
fn apply(model: &mut Model, request: &Request, received_at: Timestamp) {
    match request {
        Request::Event(body) => {
            let event = input::parse_event(body, received_at).expect("a valid event");
            let contribution = facts::contribution(&event).expect("a valid event");
            let write = shared::store::EventWrite {
                event: items::event(
                    ORG,
                    &event,
                    &shared::idempotency::new_event_id(),
                    received_at,
                    None,
                ),
                user: items::user_for_event(ORG, &event.user, event.occurred_at),
                contribution,
            };
            model.event(&write);
        }
        Request::Profile(body) => {
            let user = input::parse_user(body).expect("a valid user");
            model.upsert(&items::user(ORG, &user));
        }
        Request::Message(body) => {
            let message = input::parse_message(body).expect("a valid message");
            let locator = shared::store::testing::keys::message_locator(ORG, &message.message_id);
            model.locator(locator, message.thread_id.as_str());
            if let Some(contact) = &message.contact {
                model.upsert(&items::user_mention(ORG, contact));
            }
            if let Some(channel) = &message.channel {
                model.upsert(&items::channel(ORG, channel));
            }
            model.upsert(&items::message(ORG, &message));
            model.upsert(&items::thread_for_message(ORG, &message));
        }
        Request::Booking(body) => {
            let booking = input::parse_booking(body).expect("a valid booking");
            if let Some(client) = &booking.client {
                model.upsert(&items::user_mention(ORG, client));
            }
            for service in &booking.services {
                model.upsert(&items::product_mention(ORG, service));
            }
            model.upsert(&items::booking(ORG, &booking));
        }
    }
}

/// Runs `workload` and reports each place's hottest partition key.
pub fn simulate(workload: &Workload) -> Heat {
    let mut random = Random(18);
    let users = Zipf::new(workload.users, workload.skew);
    let channels = Zipf::new(workload.channels, 1.0);
    let services = Zipf::new(workload.services, 1.0);
    // The run (warm-up included) starts at midnight UTC (yesterday's: every time it
    // simulates is past), after the users were active over the three days before.
    let start =
        (OffsetDateTime::now_utc() - time::Duration::days(1)).replace_time(time::Time::MIDNIGHT);
    let mut model = Model {
        now: Timestamp::from_offset_date_time(start).to_stored(),
        ..Model::default()
    };
    for rank in 0..workload.users {
        let past = start - time::Duration::seconds_f64(random.unit() * 3.0 * 86_400.0);
        let past = Timestamp::from_offset_date_time(past);
        let event = Request::Event(body(event_body(rank, &mut random)));
        apply(
            &mut model,
            &Request::Profile(body(profile(rank, &mut random))),
            past,
        );
        let Request::Event(raw) = &event else {
            unreachable!()
        };
        let mut value: serde_json::Value = serde_json::from_slice(raw).unwrap();
        value["event_timestamp"] = serde_json::json!(past.to_stored());
        apply(&mut model, &Request::Event(body(value)), past);
    }
    model.second.clear();

    let profile_upserts = (workload.users as f64 * workload.profile_share) as u64;
    let profiles_per_second = profile_upserts / workload.seconds.max(1);
    let rates = [
        workload.events_per_second,
        profiles_per_second,
        workload.messages_per_second,
        workload.bookings_per_second,
    ];
    let instances: Vec<usize> = rates
        .iter()
        .map(|rate| ((*rate as f64 * workload.request_seconds).ceil() as usize).max(1))
        .collect();
    let mut leases: Vec<Vec<SimulatedLeases>> = instances
        .iter()
        .map(|count| (0..*count).map(|_| SimulatedLeases::default()).collect())
        .collect();
    let window_zero = start.unix_timestamp() as u64;
    let mut message_number = 0u64;
    let mut booking_number = 0u64;
    let mut requests = 0u64;
    for second in 0..workload.warm_up_seconds + workload.seconds {
        let mut batch: Vec<(f64, Request)> = Vec::new();
        for _ in 0..workload.events_per_second {
            let rank = users.draw(&mut random);
            batch.push((
                random.unit(),
                Request::Event(body(event_body(rank, &mut random))),
            ));
        }
        for _ in 0..profiles_per_second {
            let rank = random.below(workload.users);
            let profile = body(profile(rank, &mut random));
            batch.push((random.unit(), Request::Profile(profile)));
        }
        for _ in 0..workload.messages_per_second {
            message_number += 1;
            let thread = random.below(workload.threads);
            let direction = if random.below(2) == 0 { "in" } else { "out" };
            let fraction = random.unit();
            batch.push((
                fraction,
                Request::Message(body(serde_json::json!({
                    "sent_at": at(second, fraction, start).to_stored(),
                    "message_id": format!("msg_{message_number:010}"),
                    "thread_id": format!("thr_{thread:08}"),
                    "direction": direction,
                    "text": "Hello, is the 3 pm slot still free tomorrow?",
                    "contact": {"external_user_id": user_id(thread)},
                    "channel": {"external_channel_id": format!("ch_{}", channels.draw(&mut random))},
                }))),
            ));
        }
        for _ in 0..workload.bookings_per_second {
            booking_number += 1;
            let days_ahead = random.below(30) as i64;
            let scheduled = start + time::Duration::days(days_ahead + 1);
            let service = format!("svc_{}", services.draw(&mut random));
            batch.push((
                random.unit(),
                Request::Booking(body(serde_json::json!({
                    "booking_id": format!("bkg_{booking_number:010}"),
                    "title": "Consultation",
                    "status": "confirmed",
                    "scheduled_at": Timestamp::from_offset_date_time(scheduled).to_stored(),
                    "duration_minutes": 30,
                    "client": {"external_user_id": user_id(users.draw(&mut random))},
                    "service_external_ids": [service],
                }))),
            ));
        }
        batch.sort_by(|a, b| a.0.total_cmp(&b.0));
        let window = window_zero + second;
        let mut counter = 0u32;
        for (fraction, request) in &batch {
            let received_at = at(second, *fraction, start);
            model.now = received_at.to_stored();
            let function = request.function();
            let instance = random.below(instances[function]);
            let (_, leased) =
                leases[function][instance].request(window, workload.rate_limit, &mut counter);
            if leased {
                let counter_key = shared::store::testing::keys::rate_limit_window("key", window).pk;
                model.charge(Place::RateCounter, &counter_key, 1.0);
            }
            apply(&mut model, request, received_at);
        }
        if second < workload.warm_up_seconds {
            model.second.clear();
            continue;
        }
        requests += batch.len() as u64;
        model.end_second();
    }

    let mut places = Vec::new();
    for place in Place::ALL {
        for group in groups(place) {
            let mut hottest = Hottest::default();
            for ((p, key), peak) in &model.peak {
                if *p != place || !key.contains(group.1) {
                    continue;
                }
                let total = model.total[&(place, key.clone())];
                hottest.keys += 1;
                hottest.total_wcu += total;
                if *peak > hottest.peak_wcu {
                    hottest.peak_wcu = *peak;
                    hottest.mean_wcu = total / workload.seconds as f64;
                    hottest.key = key.clone();
                }
            }
            places.push((place, group.0, hottest));
        }
    }
    let users: Vec<usize> = model
        .items
        .values()
        .filter(|item| text(item, "entity").as_deref() == Some("user"))
        .map(item_size)
        .collect();
    Heat {
        user_item_bytes: users.iter().sum::<usize>() / users.len().max(1),
        seconds: workload.seconds,
        places,
        requests,
        instances: instances.iter().sum(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_sizes_follow_dynamodb() {
        let item = Item::from([
            ("PK".to_owned(), s("abc")),
            ("n".to_owned(), n(12345)),
            (
                "b".to_owned(),
                aws_sdk_dynamodb::types::AttributeValue::Bool(true),
            ),
        ]);
        assert_eq!(item_size(&item), 2 + 3 + 1 + 4 + 1 + 1);
        assert_eq!(units(0), 1.0);
        assert_eq!(units(1025), 2.0);
    }

    #[test]
    fn zipf_favours_low_ranks() {
        let zipf = Zipf::new(1000, 1.0);
        let mut random = Random(1);
        let draws: Vec<usize> = (0..10_000).map(|_| zipf.draw(&mut random)).collect();
        let first = draws.iter().filter(|d| **d == 0).count();
        let last = draws.iter().filter(|d| **d == 999).count();
        assert!(first > 50 * last.max(1), "{first} vs {last}");
    }
}

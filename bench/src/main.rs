//! `make bench`: measures the release functions next to their floors, on this machine, in
//! one run, and writes the table to BENCHMARKS.md. See docs/testing.md, Benchmarks.

mod batch;
mod feed;
mod heat;
mod proxy;
mod runtime;
mod segments;

use clap::Parser;
use proxy::{CountingProxy, Stats};
use runtime::{RuntimeApi, Seen};
use serde_json::Value;
use shared::store::testing::{s, Item};
use shared::store::Store;
use shared::Endpoint;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(about = "Benchmark the Lambda functions against their floors.")]
struct Args {
    /// Where the function binaries are (target/release for the real run).
    #[arg(long, default_value = "target/release")]
    binaries: PathBuf,
    /// Cold starts per function (the median is reported).
    #[arg(long, default_value_t = 10)]
    cold_starts: usize,
    /// Sequential warm requests per function.
    #[arg(long, default_value_t = 2000)]
    warm_requests: usize,
    /// Write the report here (nothing is written without it).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Rounds of batch vs single (100 events each way per round; the median is reported).
    #[arg(long, default_value_t = 20)]
    batch_rounds: usize,
    /// A quick check that the benchmark still runs (make test): 1 cold start and 5 warm
    /// requests per function, 1 round of batch vs single of 10 events, no artifact sizes,
    /// nothing written.
    #[arg(long)]
    smoke: bool,
    /// Only the partition-heat simulation (computed, no DynamoDB needed), printed.
    #[arg(long)]
    heat_only: bool,
    /// Only batch vs single, printed.
    #[arg(long)]
    batch_only: bool,
    /// Only the segment pages, printed.
    #[arg(long)]
    segments_only: bool,
    /// Only the change feed (write to visible, the consumer's cost), printed.
    #[arg(long)]
    feed_only: bool,
    /// Upserts the change feed's write-to-visible latency is measured over.
    #[arg(long, default_value_t = 200)]
    feed_writes: usize,
    /// Users the segment pages are measured over.
    #[arg(long, default_value_t = 5000)]
    segment_users: usize,
    /// What every DynamoDB call is held back by in the second batch vs single run, standing
    /// in for DynamoDB in a region (which answers in single-digit milliseconds).
    #[arg(long, default_value_t = 4)]
    dynamodb_latency_ms: u64,
}

const FLOOR_BINARY: &str = "hello-floor";
/// Events per batch in the batch vs single comparison (the issue's target is set at 100).
const BATCH_SIZE: usize = 100;
/// The same in `--smoke` (which only checks that the benchmark runs).
const SMOKE_BATCH_SIZE: usize = 10;
/// Rounds of every endpoint's reference request sent to DynamoDB Local before measuring.
const WARM_UP_ROUNDS: usize = 300;
/// Identifier fields made unique per call, so a "first write" really creates.
const ID_FIELDS: [&str; 7] = [
    "external_user_id",
    "external_product_id",
    "sale_id",
    "thread_id",
    "message_id",
    "booking_id",
    "external_channel_id",
];

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The endpoint's happy-path event from events/ (its 2xx file).
fn reference_event(endpoint: Endpoint) -> Value {
    let dir = repo_root().join("events");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("events/")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("{}.2", endpoint.function_name()))
        })
        .collect();
    files.sort();
    let path = files
        .first()
        .unwrap_or_else(|| panic!("no 2xx event for {endpoint:?}"));
    let text = std::fs::read_to_string(path).unwrap();
    // Erasing the reference user would leave its events' keys as tombstones (a replay of
    // them is then 410 `client_erased`), and every later round needs them: the bench erases
    // a user of its own.
    let text = if endpoint == Endpoint::UsersDelete {
        text.replace("usr_123", ERASED_BY_BENCH)
    } else {
        text
    };
    serde_json::from_str(&text).unwrap()
}

/// The user `users-delete`'s reference request erases in the bench (seeded with an event).
const ERASED_BY_BENCH: &str = "usr_erased_by_bench";

fn with_unique_ids(value: &mut Value, suffix: &str) {
    match value {
        Value::Object(map) => {
            for (key, field) in map.iter_mut() {
                match field {
                    Value::String(id) if ID_FIELDS.contains(&key.as_str()) => id.push_str(suffix),
                    // An email names one client: unique too (before its `@`).
                    Value::String(email) if key == "email" => {
                        email.insert_str(email.find('@').unwrap_or(0), suffix)
                    }
                    other => with_unique_ids(other, suffix),
                }
            }
        }
        Value::Array(list) => list.iter_mut().for_each(|v| with_unique_ids(v, suffix)),
        _ => {}
    }
}

/// The event with its ids (and Idempotency-Key) made unique by `suffix`.
fn event_variant(event: &Value, suffix: &str) -> String {
    let mut event = event.clone();
    if let Some(body) = event["body"].as_str() {
        if let Ok(mut parsed) = serde_json::from_str::<Value>(body) {
            with_unique_ids(&mut parsed, suffix);
            event["body"] = Value::String(parsed.to_string());
        }
    }
    if let Some(key) = event["headers"]["idempotency-key"].as_str() {
        event["headers"]["idempotency-key"] = Value::String(format!("{key}{suffix}"));
    }
    event.to_string()
}

struct Function<'a> {
    binary: PathBuf,
    table: &'a str,
}

impl Function<'_> {
    fn name(&self) -> String {
        self.binary
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    fn spawn(&self, runtime: &RuntimeApi, dynamodb: &str) -> Child {
        let name = self.name();
        Command::new(&self.binary)
            .env_clear()
            .env("AWS_LAMBDA_RUNTIME_API", &runtime.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_REGION", "us-east-1")
            .env("TABLE_NAME", self.table)
            .env("DYNAMODB_ENDPOINT", dynamodb)
            .env("LOG_LEVEL", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", self.binary.display()))
    }
}

const WAIT: Duration = Duration::from_secs(30);

fn wait_first_next(runtime: &RuntimeApi) -> Instant {
    match runtime.next_seen(WAIT) {
        Seen::FirstNext(at) => at,
        Seen::Failed(why) => panic!("the function failed: {why}"),
        other => panic!("expected the first next, got {other:?}"),
    }
}

fn wait_answer(runtime: &RuntimeApi) -> (Duration, Instant, String) {
    match runtime.next_seen(WAIT) {
        Seen::Answered {
            handed_out,
            done,
            body,
        } => (done - handed_out, done, body),
        Seen::Failed(why) => panic!("the function failed: {why}"),
        other => panic!("expected an answer, got {other:?}"),
    }
}

fn status_of(body: &str) -> u64 {
    serde_json::from_str::<Value>(body).map_or(0, |v| v["statusCode"].as_u64().unwrap_or(0))
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Time from exec to the first `next` (init) and to the first response, of one cold start.
fn cold_start(
    function: &Function,
    event: &Value,
    run: usize,
    dynamodb: &str,
) -> (Duration, Duration) {
    let runtime = RuntimeApi::start();
    let started = Instant::now();
    let child = function.spawn(&runtime, dynamodb);
    let init = wait_first_next(&runtime) - started;
    runtime.invoke(event_variant(
        event,
        &format!("-cold{run}-{}", function.name()),
    ));
    let (_, done, body) = wait_answer(&runtime);
    assert!(status_of(&body) < 300, "cold start answered {body}");
    stop(child);
    (init, done - started)
}

/// Median init and first response of each function, and of the first GetItem on a new
/// connection. Round robin: each round starts every function once, so whatever drifts during
/// the run (DynamoDB Local's JIT, caches) weighs on all of them alike, not on whichever runs
/// first. The reference records are seeded again after each round, which users-delete erased.
async fn cold_starts(
    functions: &[(Function<'_>, Value)],
    runs: usize,
    dynamodb: &str,
    store: &Store,
) -> (Vec<(Duration, Duration)>, Duration) {
    let mut init = vec![Vec::with_capacity(runs); functions.len()];
    let mut first = init.clone();
    let mut connection = Vec::with_capacity(runs);
    for run in 0..runs {
        for (i, (function, event)) in functions.iter().enumerate() {
            let (took_init, took_first) = cold_start(function, event, run, dynamodb);
            init[i].push(took_init);
            first[i].push(took_first);
        }
        connection.push(first_get_item_on_new_connection(dynamodb, store.table()).await);
        seed_reference_records(store).await;
    }
    let medians = init
        .iter_mut()
        .zip(first.iter_mut())
        .map(|(init, first)| (median(init), median(first)))
        .collect();
    (medians, median(&mut connection))
}

fn median(values: &mut [Duration]) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn percentile(values: &mut [Duration], p: usize) -> Duration {
    values.sort();
    values[(values.len() * p / 100).min(values.len() - 1)]
}

/// Peak resident memory (VmHWM) of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system) a process has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesized command name; utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: u64 = fields
        .get(11..13)
        .map_or(0, |t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    // Linux reports in USER_HZ, 100 per second on every mainstream configuration.
    Duration::from_millis(ticks * 10)
}

/// How many warm requests `endpoint` gets: `stats/users/` reads its whole segment (every user
/// the bench's other functions wrote) each time, so it gets a twentieth of the others' count.
fn warm_requests_of(endpoint: Endpoint, requests: usize) -> usize {
    match endpoint {
        Endpoint::StatsUsers => (requests / 20).max(1),
        _ => requests,
    }
}

/// What a warm run measured.
struct Warm {
    p50: Duration,
    p99: Duration,
    rss_kib: u64,
    /// The function process's own CPU time per request: the rest of a request's latency is
    /// spent waiting (for DynamoDB, for the Runtime API).
    cpu_per_request: Duration,
    /// p50 and p99 of the raw PutItem floor, when asked for.
    floor: Option<(Duration, Duration)>,
}

/// p50, p99 over sequential requests to one warm process, its peak RSS and CPU per request.
/// With `floor`, each request is followed by a raw PutItem of the one item the function
/// stored (a single-entity upsert's floor): alternating, both see DynamoDB Local alike.
async fn warm_run(
    function: &Function<'_>,
    event: &Value,
    requests: usize,
    dynamodb: &str,
    floor: Option<&Store>,
) -> Warm {
    let runtime = RuntimeApi::start();
    let child = function.spawn(&runtime, dynamodb);
    wait_first_next(&runtime);
    // Events get a fresh Idempotency-Key per request: each one is a new event.
    let fresh_per_request = event["headers"]["idempotency-key"].is_string();
    let suffix = |i: usize| match fresh_per_request {
        true => format!("-warm{i}-{}", function.name()),
        false => format!("-warm-{}", function.name()),
    };
    let same = event_variant(event, &suffix(0));
    let call = |i: usize| match fresh_per_request {
        true => event_variant(event, &suffix(i)),
        false => same.clone(),
    };
    let answer = |call: String| {
        runtime.invoke(call);
        let (took, _, body) = wait_answer(&runtime);
        assert!(status_of(&body) < 300, "warm request answered {body}");
        took
    };
    // One untimed request first: it creates what the timed ones update, and the floor's item.
    answer(call(requests));
    let floor_item = match floor {
        Some(store) => match stored_items(store, &suffix(requests)).await.as_slice() {
            [item] => Some((store, item.clone())),
            items => panic!(
                "{}: a single-entity upsert stored {} items",
                function.name(),
                items.len()
            ),
        },
        None => None,
    };
    let cpu_before = cpu_time(child.id());
    let mut latencies = Vec::with_capacity(requests);
    let mut floor_latencies = Vec::with_capacity(requests);
    for i in 0..requests {
        latencies.push(answer(call(i)));
        if let Some((store, item)) = &floor_item {
            floor_latencies.push(raw_put_item(store, item).await);
        }
    }
    let rss_kib = peak_rss_kib(child.id());
    let cpu_per_request = (cpu_time(child.id()) - cpu_before) / requests.max(1) as u32;
    stop(child);
    Warm {
        p50: percentile(&mut latencies, 50),
        p99: percentile(&mut latencies, 99),
        rss_kib,
        cpu_per_request,
        floor: floor_item.map(|_| {
            (
                percentile(&mut floor_latencies, 50),
                percentile(&mut floor_latencies, 99),
            )
        }),
    }
}

/// DynamoDB requests of one call: on data items, and per-key bookkeeping.
#[derive(Default, Debug)]
struct Cost {
    /// Items written (a transaction's items each count).
    data_writes: u32,
    /// Of which in transactions (charged twice by DynamoDB).
    transactions: u32,
    data_write_units: f64,
    conditional_failures: u32,
    data_reads: u32,
    data_read_units: f64,
    bookkeeping: u32,
}

impl Cost {
    fn from(stats: &Stats) -> Cost {
        let mut cost = Cost::default();
        for (name, op) in stats {
            match name.split_once(':') {
                Some((
                    "data",
                    operation @ ("PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems"),
                )) => {
                    cost.data_writes += op.items;
                    if operation == "TransactWriteItems" {
                        cost.transactions += op.requests;
                    }
                    cost.data_write_units += op.capacity_units;
                    cost.conditional_failures += op.conditional_failures;
                }
                Some(("data", _)) => {
                    cost.data_reads += op.requests;
                    cost.data_read_units += op.capacity_units;
                }
                _ => cost.bookkeeping += op.requests,
            }
        }
        cost
    }

    fn cell(&self) -> String {
        let mut cell = format!("{} w ({:.1} WCU)", self.data_writes, self.data_write_units);
        if self.transactions > 0 {
            let _ = write!(cell, " in {} transaction", self.transactions);
        }
        if self.conditional_failures > 0 {
            let _ = write!(
                cell,
                " of which {} refused by its condition",
                self.conditional_failures
            );
        }
        if self.data_reads > 0 {
            let _ = write!(cell, ", {} r", self.data_reads);
        }
        if self.bookkeeping > 0 {
            let _ = write!(cell, " + {} key", self.bookkeeping);
        }
        cell
    }
}

/// The records the reference events of events/ describe (the write endpoints' events, ids
/// unchanged), so that the read endpoints' reference events find what they read.
async fn seed_reference_records(store: &Store) {
    let app = shared::http::App::new(store.clone());
    for endpoint in Endpoint::ALL
        .into_iter()
        .filter(|e| e.method_name() == "POST")
    {
        let event = reference_event(endpoint).to_string();
        let request = lambda_http::request::from_str(&event).expect("an API Gateway event");
        let response = shared::http::handle(&app, endpoint, request).await;
        assert!(response.status().is_success(), "seeding {endpoint:?}");
    }
    // The user the erasure's reference request erases: a client with an event.
    let mut event = reference_event(Endpoint::Events);
    // Without a key: seeded again after an erasure, it is a new event (a keyed one would be
    // the erased key's 410).
    event["headers"]
        .as_object_mut()
        .expect("headers")
        .remove("idempotency-key");
    let event = event
        .to_string()
        .replace("usr_123", ERASED_BY_BENCH)
        // Its own email: the reference user's belongs to the reference user.
        .replace("user@example.com", "erased-by-bench@example.com");
    let request = lambda_http::request::from_str(&event).expect("an API Gateway event");
    let response = shared::http::handle(&app, Endpoint::Events, request).await;
    assert!(response.status().is_success(), "seeding the erased user");
}

/// DynamoDB Local is a JVM: its first thousands of requests run slower while the JIT compiles,
/// and the compiling takes CPU from the processes being measured. So before anything is
/// measured, every endpoint's reference request goes through the handler in process, `rounds`
/// times (users-delete last, so each round finds what it reads).
async fn warm_up_dynamodb_local(store: &Store, rounds: usize) {
    let app = shared::http::App::new(store.clone());
    let events: Vec<(Endpoint, String)> = Endpoint::ALL
        .into_iter()
        .map(|endpoint| (endpoint, reference_event(endpoint).to_string()))
        .collect();
    for _ in 0..rounds {
        for (endpoint, event) in &events {
            let request = lambda_http::request::from_str(event).expect("an API Gateway event");
            let response = shared::http::handle(&app, *endpoint, request).await;
            assert!(
                response.status().is_success(),
                "warming up with {endpoint:?}"
            );
        }
    }
    seed_reference_records(store).await;
    // Let the JIT's queue drain.
    tokio::time::sleep(Duration::from_secs(2)).await;
}

/// Requests per call: first write, update (same ids again) and, for events, an idempotent replay.
fn storage_cost(
    function: &Function,
    endpoint: Endpoint,
    event: &Value,
    proxy: &CountingProxy,
) -> Vec<Cost> {
    let runtime = RuntimeApi::start();
    let child = function.spawn(&runtime, &proxy.endpoint);
    wait_first_next(&runtime);
    std::thread::sleep(Duration::from_millis(100));
    proxy.take(); // init's connection warm-up
                  // Ids of their own: other endpoints' runs must not have created these records already.
    let suffix = format!("-cost-{}", endpoint.function_name());
    let first = event_variant(event, &suffix);
    let mut calls = vec![first.clone()];
    if endpoint == Endpoint::Events {
        calls.push(event_variant(event, &format!("{suffix}-second"))); // a second event
        calls.push(first); // replay of the first
    } else if endpoint.method_name() == "POST" {
        calls.push(first); // update
    }
    let mut costs = Vec::new();
    for call in calls {
        runtime.invoke(call);
        let (_, _, body) = wait_answer(&runtime);
        assert!(status_of(&body) < 300, "{body}");
        std::thread::sleep(Duration::from_millis(100)); // the async last_used_at write, if any
        costs.push(Cost::from(&proxy.take()));
    }
    stop(child);
    costs
}

/// The floor of warm latency: one raw PutItem of a user-sized item, from a plain client.
/// The first GetItem on a new client (new connection) against `endpoint`, the client built
/// the way the functions build theirs in Lambda: the round trip the issue asks init to pay,
/// so that the first request does not.
async fn first_get_item_on_new_connection(endpoint: &str, table: &str) -> Duration {
    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("bench", "bench", None, None, "bench"))
        .endpoint_url(endpoint)
        .http_client(shared::store::https_client_trusting_amazon_roots())
        .build();
    let store = Store::new(aws_sdk_dynamodb::Client::from_conf(config), table);
    let started = Instant::now();
    store.warm_up().await;
    started.elapsed()
}

/// The items whose key carries `suffix` (what one warm request wrote). A Scan: the bench
/// table is small, and this is the benchmark, not the request path.
async fn stored_items(store: &Store, suffix: &str) -> Vec<Item> {
    store
        .client()
        .scan()
        .table_name(store.table())
        .filter_expression("contains(PK, :suffix)")
        .expression_attribute_values(":suffix", s(suffix))
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .expect("Scan")
}

/// One raw, unconditional PutItem of `item` from a plain client: the floor of a
/// single-entity upsert, the very item the function stored (index keys included).
async fn raw_put_item(store: &Store, item: &Item) -> Duration {
    let started = Instant::now();
    store
        .client()
        .put_item()
        .table_name(store.table())
        .set_item(Some(item.clone()))
        .send()
        .await
        .expect("PutItem");
    started.elapsed()
}

fn zipped_size(path: &Path) -> (u64, u64) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&bytes).unwrap();
    let compressed = encoder.finish().unwrap();
    (bytes.len() as u64, compressed.len() as u64)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

fn mb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1_000_000.0)
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{} {cpu}, {cores} cores", std::env::consts::ARCH)
}

fn release_profile() -> String {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).unwrap_or_default();
    manifest
        .split("[profile.release]")
        .nth(1)
        .map(|rest| {
            rest.lines()
                .skip(1)
                .take_while(|l| !l.starts_with('['))
                .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The report's section on partition heat (see `heat`).
fn heat_section(workload: &heat::Workload, heat: &heat::Heat) -> String {
    let verdict = match heat.within_target() {
        true => "every hottest key is within the target",
        false => "**over the target**",
    };
    format!(
        "## Partition heat of one org (computed, not sent)\n\n\
         One org for {seconds} s: {events} events/s from {users} users (Zipf exponent {skew} of activity), \
         {profiles:.0}% of the users also upserting their profile, {messages} messages/s in {threads} threads \
         over {channels} channels, {bookings} bookings/s over {services} services; {requests} requests through \
         the real parsers and item builders, their writes applied to an in-memory table and charged to the \
         partition keys they land on (see bench/src/heat.rs for the rules). One key for everything \
         (limit {limit}/s), {instances} function instances ({ms:.0} ms per request), each leasing tokens \
         as the real limiter does. A user item ends the run at {user_bytes} bytes on average \
         (each write of it, and of its GSI2 entry, costs ⌈size / 1 KB⌉ units). Target: the hottest key at most {target:.0} WCU/s (half of DynamoDB's \
         1,000 per partition key): {verdict}.\n\n{table}",
        seconds = workload.seconds,
        events = workload.events_per_second,
        users = workload.users,
        skew = workload.skew,
        profiles = workload.profile_share * 100.0,
        messages = workload.messages_per_second,
        threads = workload.threads,
        channels = workload.channels,
        bookings = workload.bookings_per_second,
        services = workload.services,
        requests = heat.requests,
        limit = workload.rate_limit,
        instances = heat.instances,
        ms = workload.request_seconds * 1000.0,
        user_bytes = heat.user_item_bytes,
        target = heat::TARGET_WCU,
        table = heat.table(),
    )
}

// The measuring code blocks on purpose (it waits on the Runtime API) on the main thread;
// the Runtime API servers run as tasks on the runtime's worker threads.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = Args::parse();
    if args.smoke {
        args.cold_starts = 1;
        args.warm_requests = 5;
        args.batch_rounds = 1;
        args.out = None;
    }
    let heat_report = || {
        let workload = match args.smoke {
            true => heat::Workload::smoke(),
            false => heat::Workload::full(),
        };
        let phase = Instant::now();
        let heat = heat::simulate(&workload);
        eprintln!("partition heat simulation: {:?}", phase.elapsed());
        heat_section(&workload, &heat)
    };
    if args.heat_only {
        println!("{}", heat_report());
        return;
    }
    let dynamodb = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT (make bench starts DynamoDB Local)");
    let table = format!("bench-{}", time::OffsetDateTime::now_utc().unix_timestamp());
    std::env::set_var("TABLE_NAME", &table);
    let store = Store::from_env().await;
    shared::admin::create_table(&store, shared::store::table::TableStream::Off)
        .await
        .expect("create the bench table");

    // The fixtures' key, with a limit that never throttles the benchmark.
    let secret = reference_event(Endpoint::Me)["headers"]["authorization"]
        .as_str()
        .and_then(|h| h.strip_prefix("Bearer "))
        .expect("a Bearer key in events/")
        .to_owned();
    let key_id = shared::auth::key_id_of(&secret)
        .expect("a well-formed key")
        .to_owned();
    shared::admin::create_org(&store, "fixture-org", "Fixture Org")
        .await
        .expect("org");
    shared::admin::insert_key(&store, "fixture-org", "bench", &secret)
        .await
        .expect("key");
    shared::admin::set_key_rate_limit(&store, &key_id, Some(1_000_000))
        .await
        .expect("limit");
    let phase = Instant::now();
    warm_up_dynamodb_local(&store, if args.smoke { 1 } else { WARM_UP_ROUNDS }).await;
    eprintln!("DynamoDB Local warm-up: {:?}", phase.elapsed());
    let proxy = CountingProxy::start(dynamodb.clone());

    let segment_section = || async {
        eprintln!("segment pages");
        let phase = Instant::now();
        let (users, pages) = if args.smoke && !args.segments_only {
            (200, 2)
        } else {
            (args.segment_users, 10)
        };
        let section = segments::section(&store, &proxy, users, pages).await;
        eprintln!("  {:?}", phase.elapsed());
        section
    };
    if args.segments_only {
        println!("{}", segment_section().await);
        return;
    }
    let feed_section = || async {
        eprintln!("change feed");
        let phase = Instant::now();
        let writes = if args.smoke { 3 } else { args.feed_writes };
        let section = feed::section(&dynamodb, &store, &proxy, writes).await;
        eprintln!("  {:?}", phase.elapsed());
        section
    };
    if args.feed_only {
        println!("{}", feed_section().await);
        return;
    }
    let binaries = repo_root().join(&args.binaries);
    let function = |name: &str| Function {
        binary: binaries.join(name),
        table: &table,
    };
    let batch_section = || {
        eprintln!("batch vs single");
        let phase = Instant::now();
        let section = batch::batch_vs_single(
            &function(Endpoint::Events.function_name()),
            &function(Endpoint::Batch.function_name()),
            &dynamodb,
            &proxy,
            if args.smoke {
                SMOKE_BATCH_SIZE
            } else {
                BATCH_SIZE
            },
            args.batch_rounds,
            Duration::from_millis(args.dynamodb_latency_ms),
        );
        eprintln!("  {:?}", phase.elapsed());
        section
    };
    if args.batch_only {
        println!("{}", batch_section());
        return;
    }
    // The floor first, then every function with its reference event.
    let mut started: Vec<(Function, Value)> =
        vec![(function(FLOOR_BINARY), reference_event(Endpoint::Health))];
    started.extend(
        Endpoint::ALL
            .iter()
            .map(|e| (function(e.function_name()), reference_event(*e))),
    );
    let phase = Instant::now();
    let (cold_medians, connection) =
        cold_starts(&started, args.cold_starts, &dynamodb, &store).await;
    eprintln!(
        "cold starts, {} rounds of {} binaries: {:?}",
        args.cold_starts,
        started.len(),
        phase.elapsed()
    );
    let (floor_init, floor_first) = cold_medians[0];
    let connected_floor = floor_init + connection;

    eprintln!("floor: hello-world lambda_http");
    let phase = Instant::now();
    let (floor, floor_event) = &started[0];
    let floor_warm = warm_run(floor, floor_event, args.warm_requests, &dynamodb, None).await;
    let sizes = |binary: &Path| {
        if args.smoke {
            (0, 0)
        } else {
            zipped_size(binary)
        }
    };
    let (floor_size, floor_zipped) = sizes(&floor.binary);
    eprintln!("  floors: {:?}", phase.elapsed());

    let mut cold = String::new();
    let mut storage = String::new();
    let mut warm = String::new();
    let mut size = String::new();
    for (endpoint, ((function, event), (init, first))) in Endpoint::ALL
        .into_iter()
        .zip(started.iter().zip(cold_medians.iter().copied()).skip(1))
    {
        let name = endpoint.function_name();
        eprintln!("{name}");
        let _ = writeln!(
            cold,
            "| {name} | {} | {:.2}x | {:.2}x | {} |",
            ms(init),
            init.as_secs_f64() / floor_init.as_secs_f64(),
            init.as_secs_f64() / connected_floor.as_secs_f64(),
            ms(first)
        );
        let phase = Instant::now();
        let costs = storage_cost(function, endpoint, event, &proxy);
        eprintln!("  storage cost: {:?}", phase.elapsed());
        let cells: Vec<String> = costs.iter().map(Cost::cell).collect();
        let _ = writeln!(
            storage,
            "| {name} | {} | {} | {} |",
            cells.first().map_or("-", String::as_str),
            cells.get(1).map_or("-", String::as_str),
            cells.get(2).map_or("-", String::as_str)
        );
        let phase = Instant::now();
        // A single-entity upsert (one write) is compared with a raw PutItem of its item.
        let single_entity = endpoint.method_name() == "POST"
            && costs.first().is_some_and(|cost| cost.data_writes == 1);
        let Warm {
            p50,
            p99,
            rss_kib: rss,
            cpu_per_request,
            floor,
        } = warm_run(
            function,
            event,
            warm_requests_of(endpoint, args.warm_requests),
            &dynamodb,
            single_entity.then_some(&store),
        )
        .await;
        eprintln!("  warm run: {:?}", phase.elapsed());
        let (floor_cells, ratio) = match floor {
            Some((put_p50, put_p99)) => (
                format!("{} | {}", ms(put_p50), ms(put_p99)),
                format!("{:.2}x", p50.as_secs_f64() / put_p50.as_secs_f64()),
            ),
            None => (" | ".to_owned(), String::new()),
        };
        let _ = writeln!(
            warm,
            "| {name} | {} | {} | {floor_cells} | {ratio} | {} |",
            ms(p50),
            ms(p99),
            ms(cpu_per_request)
        );
        let (bytes, zipped) = sizes(&function.binary);
        let _ = writeln!(
            size,
            "| {name} | {} | {} | {:.1} |",
            mb(bytes),
            mb(zipped),
            rss as f64 / 1024.0
        );
    }

    let batch_section = batch_section();
    let segment_section = segment_section().await;
    let feed_section = feed_section().await;

    let today = time::OffsetDateTime::now_utc().date();
    let report = format!(
        "# Benchmarks\n\n\
         Measured {today} on {machine} by `make bench` ({cold_starts} cold starts, {warm_requests} warm requests per function ({stats_requests} for stats-users), \
         DynamoDB Local on loopback). Release profile: {profile}. Binaries: x86_64 (AWS runs arm64; this machine cannot build it).\n\n\
         ## Cold start (median, ms)\n\n\
         Init: exec to the first `invocation/next` (includes opening the DynamoDB connection with one small GetItem, which \
         `health` skips). First response: exec to the first answered request, including its DynamoDB writes. The second floor \
         adds to the hello-world init the one round trip init is asked to pay: the first GetItem of a new client on a new \
         connection to the same DynamoDB Local, measured alone ({connection}).\n\n\
         | function | init | init vs floor | init vs floor + connection | first response |\n|---|---|---|---|---|\n\
         | **floor: hello-world lambda_http** | {floor_init} | 1.00x | | {floor_first} |\n\
         | **floor + connection: hello-world init + first GetItem on a new connection** | {connected_floor} | | 1.00x | |\n{cold}\n\
         ## Storage cost per call\n\n\
         DynamoDB writes of data items (and the write capacity units DynamoDB Local reports) per call: the first call with new \
         ids, the same call again (an update; for events a second event), and for events an idempotent replay. The floor is one \
         conditional write per entity the request touches. \"+ n key\": per-key requests on top: the key read (once per 30 s \
         per instance), `last_used_at` (once per hour per instance) and rate-limit leases (one per block of tokens; an instance \
         as idle as this one leases one token at a time, a busy one about one per 14 requests).\n\n\
         | endpoint | first write | update / second event | replay |\n|---|---|---|---|\n{storage}\n\
         ## Warm latency (ms, through the Runtime API, sequential)\n\n\
         Floor of a single-entity upsert: a raw, unconditional PutItem of the very item the function stored \
         (index keys included, so DynamoDB maintains the same indexes), sent as many times from a plain \
         aws-sdk-dynamodb client. Requests that write several items, and reads, have no such floor. \
         CPU/request: the function process's own CPU time (user + system) over the run, per request; the rest of \
         the latency is waiting for DynamoDB Local and the Runtime API.\n\n\
         | function | p50 | p99 | raw PutItem of its item p50 | p99 | p50 vs raw PutItem | CPU/request |\n|---|---|---|---|---|---|---|\n\
         | **floor: hello-world lambda_http (no DynamoDB)** | {floor_p50} | {floor_p99} | | | | {floor_cpu} |\n{warm}\n\
         ## Artifact size and memory\n\n\
         Zipped: DEFLATE (level 6, as `zip` and SAM use) of the stripped `bootstrap`, about its zip size. Peak RSS: VmHWM after the warm run.\n\n\
         | function | bootstrap MB | zipped MB | peak RSS MiB |\n|---|---|---|---|\n\
         | **floor: hello-world lambda_http** | {floor_size} | {floor_zipped} | {floor_rss:.1} |\n{size}\n{batch_section}\n{segment_section}\n{feed_section}\n{heat_report}",
        heat_report = heat_report(),
        machine = machine(),
        cold_starts = args.cold_starts,
        warm_requests = args.warm_requests,
        stats_requests = warm_requests_of(Endpoint::StatsUsers, args.warm_requests),
        profile = release_profile(),
        floor_init = ms(floor_init),
        connection = ms(connection),
        connected_floor = ms(connected_floor),
        floor_first = ms(floor_first),
        floor_p50 = ms(floor_warm.p50),
        floor_p99 = ms(floor_warm.p99),
        floor_size = mb(floor_size),
        floor_zipped = mb(floor_zipped),
        floor_rss = floor_warm.rss_kib as f64 / 1024.0,
        floor_cpu = ms(floor_warm.cpu_per_request),
    );
    println!("{report}");
    if let Some(out) = args.out {
        std::fs::write(&out, &report).expect("write the report");
        eprintln!("wrote {}", out.display());
    }
    let _ = store
        .client()
        .delete_table()
        .table_name(&table)
        .send()
        .await;
}

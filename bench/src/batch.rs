//! Batch vs single: the same events sent as `size` single `events/` requests and as one
//! `batch/` of `size` items, each to one warm process. Items per second, Lambda milliseconds
//! per item (billed: each invocation rounded up to 1 ms), DynamoDB writes per item, and what
//! a million events cost at published prices.

use super::{
    cpu_time, reference_event, stop, wait_answer, wait_first_next, with_unique_ids, Cost, Function,
};
use crate::proxy::CountingProxy;
use crate::runtime::RuntimeApi;
use serde_json::{json, Value};
use shared::Endpoint;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Published prices, us-east-1, on-demand (checked 2026): Lambda on arm64, API Gateway HTTP
/// API (first 300 million requests a month, metered in 512 KB units), DynamoDB on-demand
/// write and read request units. Memory as template.yaml sets it: 128 MB, the batch function 1024 MB.
const LAMBDA_PER_GB_SECOND: f64 = 0.000_013_333_4;
const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
const SINGLE_MEMORY_GB: f64 = 128.0 / 1024.0;
const BATCH_MEMORY_GB: f64 = 1.0;
const HTTP_API_PER_MILLION_REQUESTS: f64 = 1.00;
const HTTP_API_METERING_BYTES: usize = 512 * 1024;
const DYNAMODB_PER_MILLION_WRITE_UNITS: f64 = 0.625;
const DYNAMODB_PER_MILLION_READ_UNITS: f64 = 0.125;
const MILLION: f64 = 1_000_000.0;

/// One way of sending `size` events, measured.
#[derive(Debug, Default)]
struct Sent {
    /// Wall time of the round, first invoke to last answer (median over rounds).
    wall: Duration,
    /// Sum over invocations of handed-out-to-answered (what Lambda bills), and the same
    /// with each invocation rounded up to whole milliseconds.
    lambda_ms: f64,
    billed_ms: f64,
    invocations: usize,
    body_bytes: usize,
    /// The function process's CPU time (user + system) over the round, and DynamoDB
    /// Local's (which shares this machine's cores, as DynamoDB in a region does not).
    cpu: Duration,
    dynamodb_cpu: Duration,
}

/// DynamoDB Local's process, when `make bench` names it (`DYNAMODB_LOCAL_PID`).
fn dynamodb_local_pid() -> Option<u32> {
    std::env::var("DYNAMODB_LOCAL_PID").ok()?.parse().ok()
}

/// `size` events, each with ids and an Idempotency-Key unique to `round`.
fn event_bodies(size: usize, round: &str) -> Vec<(Value, String)> {
    let reference = reference_event(Endpoint::Events);
    let body: Value = serde_json::from_str(reference["body"].as_str().unwrap()).unwrap();
    (0..size)
        .map(|i| {
            let mut body = body.clone();
            with_unique_ids(&mut body, &format!("-{round}-{i}"));
            (body, format!("bench-{round}-{i}"))
        })
        .collect()
}

fn single_invocations(events: &[(Value, String)]) -> Vec<String> {
    let reference = reference_event(Endpoint::Events);
    events
        .iter()
        .map(|(body, key)| {
            let mut event = reference.clone();
            event["body"] = Value::String(body.to_string());
            event["headers"]["idempotency-key"] = Value::String(key.clone());
            event.to_string()
        })
        .collect()
}

fn batch_invocation(events: &[(Value, String)]) -> (String, usize) {
    let items: Vec<Value> = events
        .iter()
        .map(|(body, key)| {
            let mut item = body.clone();
            item["type"] = json!("event");
            item["idempotency_key"] = json!(key);
            item
        })
        .collect();
    let body = json!({ "batch": items }).to_string();
    let mut event = reference_event(Endpoint::Batch);
    event["body"] = Value::String(body.clone());
    event["isBase64Encoded"] = json!(false);
    (event.to_string(), body.len())
}

/// Sends the invocations one after the other to one warm process (`pid`).
fn send_all(runtime: &RuntimeApi, pid: u32, invocations: &[String]) -> Sent {
    let started = Instant::now();
    let cpu_before = cpu_time(pid);
    let dynamodb_cpu_before = dynamodb_local_pid().map(cpu_time);
    let mut sent = Sent::default();
    for invocation in invocations {
        runtime.invoke(invocation.clone());
        let (took, _, body) = wait_answer(runtime);
        let status = super::status_of(&body);
        assert!(status < 300, "answered {body}");
        assert!(
            !body.contains("\\\"status\\\":503"),
            "an item was not stored: {body}"
        );
        let ms = took.as_secs_f64() * 1000.0;
        sent.lambda_ms += ms;
        sent.billed_ms += ms.ceil();
        sent.invocations += 1;
    }
    sent.wall = started.elapsed();
    sent.cpu = cpu_time(pid) - cpu_before;
    if let (Some(pid), Some(before)) = (dynamodb_local_pid(), dynamodb_cpu_before) {
        sent.dynamodb_cpu = cpu_time(pid).saturating_sub(before);
    }
    sent
}

/// `rounds` rounds of `size` events each way (after one untimed round each, for the
/// connections), against DynamoDB Local on loopback and through a proxy that adds `latency`
/// to every DynamoDB call; then one round through the counting proxy for the writes.
pub fn batch_vs_single(
    events_function: &Function,
    batch_function: &Function,
    dynamodb: &str,
    proxy: &CountingProxy,
    size: usize,
    rounds: usize,
    latency: Duration,
) -> String {
    let measure = |function: &Function, endpoint: &str, batched: bool| {
        let runtime = RuntimeApi::start();
        let child = function.spawn(&runtime, endpoint);
        wait_first_next(&runtime);
        let round_of = |round: String| {
            let events = event_bodies(size, &format!("{}-{round}", function.name()));
            if batched {
                let (invocation, bytes) = batch_invocation(&events);
                (vec![invocation], bytes)
            } else {
                let invocations = single_invocations(&events);
                let bytes = invocations.iter().map(String::len).sum::<usize>() / size.max(1);
                (invocations, bytes)
            }
        };
        let mut results = Vec::new();
        for round in 0..=rounds {
            let (invocations, bytes) = round_of(format!("{endpoint}-{round}"));
            let mut sent = send_all(&runtime, child.id(), &invocations);
            sent.body_bytes = bytes;
            // Round 0 opens the connections and fills the key cache: not counted.
            if round > 0 {
                results.push(sent);
            }
        }
        stop(child);
        results.sort_by_key(|sent| sent.wall);
        results.swap_remove(results.len() / 2)
    };
    let count = |function: &Function, batched: bool| {
        let runtime = RuntimeApi::start();
        let child = function.spawn(&runtime, &proxy.endpoint);
        wait_first_next(&runtime);
        let events = event_bodies(size, &format!("{}-cost", function.name()));
        let invocations = if batched {
            vec![batch_invocation(&events).0]
        } else {
            single_invocations(&events)
        };
        // One untimed event first: its key lookup is not a per-item cost.
        let warm_events = event_bodies(1, &format!("{}-costwarm", function.name()));
        let warm = if batched {
            batch_invocation(&warm_events).0
        } else {
            single_invocations(&warm_events).remove(0)
        };
        send_all(&runtime, child.id(), &[warm]);
        std::thread::sleep(Duration::from_millis(100));
        proxy.take();
        send_all(&runtime, child.id(), &invocations);
        std::thread::sleep(Duration::from_millis(100));
        stop(child);
        Cost::from(&proxy.take())
    };

    let loopback = Measured {
        single: measure(events_function, dynamodb, false),
        batch: measure(batch_function, dynamodb, true),
    };
    let delayed = CountingProxy::delaying(dynamodb.to_owned(), latency);
    let regional = Measured {
        single: measure(events_function, &delayed.endpoint, false),
        batch: measure(batch_function, &delayed.endpoint, true),
    };
    let costs = Measured {
        single: count(events_function, false),
        batch: count(batch_function, true),
    };
    report(size, rounds, latency, &loopback, &regional, &costs)
}

/// The same figure for single requests and for a batch.
struct Measured<T> {
    single: T,
    batch: T,
}

impl Measured<Sent> {
    fn billed_ratio(&self) -> f64 {
        self.single.billed_ms / self.batch.billed_ms.max(0.001)
    }
}

fn report(
    size: usize,
    rounds: usize,
    latency: Duration,
    loopback: &Measured<Sent>,
    regional: &Measured<Sent>,
    costs: &Measured<Cost>,
) -> String {
    let per_item = |value: f64| value / size as f64;
    let rate = |sent: &Sent| size as f64 / sent.wall.as_secs_f64();
    let added = format!("+{} ms", latency.as_millis());
    let row = |answers: &str, name: &str, sent: &Sent, cost: &Cost| {
        format!(
            "| {answers} | {name} | {:.0} | {:.3} | {:.3} | {:.2} | {:.2} | {:.2} ({:.2} WCU) | {:.3} |\n",
            rate(sent),
            per_item(sent.lambda_ms),
            per_item(sent.billed_ms),
            per_item(sent.cpu.as_secs_f64() * 1000.0),
            per_item(sent.dynamodb_cpu.as_secs_f64() * 1000.0),
            per_item(f64::from(cost.data_writes)),
            per_item(cost.data_write_units),
            per_item(f64::from(cost.bookkeeping)),
        )
    };
    let single_name = format!("{size} × events/");
    let batch_name = format!("1 × batch/ of {size}");
    let rows = [("loopback", loopback), (added.as_str(), regional)]
        .iter()
        .flat_map(|(answers, measured)| {
            [
                row(answers, &single_name, &measured.single, &costs.single),
                row(answers, &batch_name, &measured.batch, &costs.batch),
            ]
        })
        .collect::<String>();
    // Per million events.
    let dollars = |sent: &Sent, cost: &Cost, events_per_request: usize, memory_gb: f64| {
        let requests = MILLION / events_per_request as f64;
        let lambda_requests = requests * LAMBDA_PER_MILLION_REQUESTS / MILLION;
        let billed_seconds_per_request = sent.billed_ms / sent.invocations as f64 / 1000.0;
        let lambda_duration =
            requests * billed_seconds_per_request * memory_gb * LAMBDA_PER_GB_SECOND;
        let units = sent.body_bytes.div_ceil(HTTP_API_METERING_BYTES).max(1) as f64;
        let api = requests * units * HTTP_API_PER_MILLION_REQUESTS / MILLION;
        let write_units = (cost.data_write_units + f64::from(cost.bookkeeping)) / size as f64;
        let read_units = cost.data_read_units / size as f64;
        let dynamodb = write_units * DYNAMODB_PER_MILLION_WRITE_UNITS
            + read_units * DYNAMODB_PER_MILLION_READ_UNITS;
        [lambda_requests, lambda_duration, api, dynamodb]
    };
    let single_dollars = dollars(&regional.single, &costs.single, 1, SINGLE_MEMORY_GB);
    let batch_dollars = dollars(&regional.batch, &costs.batch, size, BATCH_MEMORY_GB);
    let dollar_row = |name: &str, parts: [f64; 4]| {
        let total: f64 = parts.iter().sum();
        format!(
            "| {name} | ${:.3} | ${:.3} | ${:.3} | ${:.3} | **${total:.2}** |\n",
            parts[0], parts[1], parts[2], parts[3]
        )
    };
    let mut text = String::new();
    let _ = write!(
        text,
        "## Batch vs single ({size} events)\n\n\
         The same {size} events (new ids and Idempotency-Keys each round) sent as {size} sequential `events/` \
         requests and as one `batch/` request of {size} items, each to one warm process through the Runtime API; \
         median of {rounds} rounds. Twice: with DynamoDB Local on loopback, where a call takes a fraction of a \
         millisecond and the machine's 2 cores are shared by DynamoDB Local and the function, and through a proxy \
         that holds every DynamoDB answer back by {added}, standing in for DynamoDB in a region (single-digit \
         milliseconds; {added} for every call, transactions included, which flatters the single requests: each of \
         them waits out its calls one after the other, while a batch overlaps the calls of {concurrent} items). \
         Lambda ms: handed out to answered, as Lambda bills it (billed: each invocation rounded up to 1 ms). CPU: \
         the function process's own. DynamoDB writes of data items per item from one round through the counting \
         proxy; \"key\": per-key bookkeeping (rate-limit leases) per item.\n\n\
         | DynamoDB answers | sent as | items/s | Lambda ms/item | billed ms/item | CPU ms/item | DynamoDB Local CPU ms/item | DynamoDB writes/item | key writes/item |\n\
         |---|---|---|---|---|---|---|---|---|\n\
         {rows}\n\
         Billed Lambda time per event in batches of {size}: **{regional_ratio:.1}x less** with DynamoDB at {added} \
         (target: at least 5x); {loopback_ratio:.1}x on loopback, where the batch waits for DynamoDB Local's CPU rather \
         than for answers. Writes per item: {single_writes:.2} single, {batch_writes:.2} batched (target: equal).\n\n\
         ### Cost per million events\n\n\
         From the {added} figures above at published us-east-1 prices: Lambda arm64 at the template's memory (128 MB, \
         `batch` 1024 MB; ${LAMBDA_PER_GB_SECOND} per GB-s, ${LAMBDA_PER_MILLION_REQUESTS:.2} per million requests), API Gateway HTTP API (${HTTP_API_PER_MILLION_REQUESTS:.2} \
         per million requests, each 512 KB counted as one), DynamoDB on-demand (${DYNAMODB_PER_MILLION_WRITE_UNITS} per million \
         write request units, the measured WCU plus the key writes, and ${DYNAMODB_PER_MILLION_READ_UNITS} per million read request units, \
         the measured RCU). Durations on this machine (a whole core per \
         process): in Lambda, CPU-bound time grows as memory shrinks (128 MB is about 1/14 of a vCPU, 1024 MB about \
         0.6), which costs the single requests more than the batch.\n\n\
         | sent as | Lambda requests | Lambda duration | API Gateway | DynamoDB | total |\n|---|---|---|---|---|---|\n\
         {single_dollars}{batch_dollars}",
        concurrent = shared::batch::MAX_CONCURRENT_ITEMS,
        regional_ratio = regional.billed_ratio(),
        loopback_ratio = loopback.billed_ratio(),
        single_writes = per_item(f64::from(costs.single.data_writes)),
        batch_writes = per_item(f64::from(costs.batch.data_writes)),
        single_dollars = dollar_row("single requests", single_dollars),
        batch_dollars = dollar_row(&format!("batches of {size}"), batch_dollars),
    );
    text
}

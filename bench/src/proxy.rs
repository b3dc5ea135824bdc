//! A counting proxy in front of DynamoDB Local: the functions under test talk to it as if
//! it were DynamoDB. It asks for `ReturnConsumedCapacity: TOTAL` on every request (DynamoDB
//! Local does not check signatures) and adds up requests and capacity units per operation.
//! A delaying proxy instead holds every answer back by a fixed latency, standing in for the
//! network and service time of DynamoDB in a region (DynamoDB Local on loopback answers in
//! fractions of a millisecond), and counts nothing, to take as little of the machine's CPU
//! as it can; each request has its own thread, so concurrent requests wait in parallel.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;
use tiny_http::{Header, Response, Server};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct OperationStats {
    pub requests: u32,
    /// Items written or read: 1 per request, or a transaction's items.
    pub items: u32,
    pub capacity_units: f64,
    /// Requests refused by their condition (DynamoDB still charges them as writes).
    pub conditional_failures: u32,
}

/// By `<class>:<operation>`, class being `data`, `apikey`, `ratelimit` or `warmup`.
pub type Stats = BTreeMap<String, OperationStats>;

pub struct CountingProxy {
    pub endpoint: String,
    stats: Arc<Mutex<Stats>>,
}

impl CountingProxy {
    pub fn start(upstream: String) -> CountingProxy {
        CountingProxy::serve(upstream, true, Duration::ZERO)
    }

    /// A proxy that answers each request `latency` after DynamoDB Local did, and counts
    /// nothing.
    pub fn delaying(upstream: String, latency: Duration) -> CountingProxy {
        CountingProxy::serve(upstream, false, latency)
    }

    fn serve(upstream: String, counting: bool, latency: Duration) -> CountingProxy {
        let server = Server::http("127.0.0.1:0").expect("bind the proxy");
        let endpoint = format!(
            "http://{}",
            server.server_addr().to_ip().expect("an IP address")
        );
        let stats = Arc::new(Mutex::new(Stats::new()));
        let counted = Arc::clone(&stats);
        // Enough pooled connections for every request in flight: a new connection per
        // request would cost DynamoDB Local (on the same cores) more than the request.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(256)
            .max_idle_connections_per_host(256)
            .build()
            .into();
        thread::spawn(move || {
            for request in server.incoming_requests() {
                let (agent, upstream) = (agent.clone(), upstream.clone());
                let counted = counting.then(|| Arc::clone(&counted));
                thread::spawn(move || {
                    forward(&agent, &upstream, request, counted.as_deref(), latency)
                });
            }
        });
        CountingProxy { endpoint, stats }
    }

    /// The counts since the last call (and starts counting afresh).
    pub fn take(&self) -> Stats {
        std::mem::take(&mut *self.stats.lock().expect("stats lock"))
    }
}

/// What an item is for, from its PK: tenant `data`, or per-key bookkeeping.
fn item_class(input: &serde_json::Map<String, serde_json::Value>) -> &'static str {
    // A transaction's class is its first item's.
    let first = input
        .get("TransactItems")
        .and_then(|items| items.get(0))
        .and_then(|item| item.as_object())
        .and_then(|item| item.values().next())
        .and_then(|operation| operation.as_object());
    let pk = first
        .unwrap_or(input)
        .get("Key")
        .or_else(|| first.unwrap_or(input).get("Item"))
        .and_then(|item| item["PK"]["S"].as_str())
        .unwrap_or("");
    match pk.split('#').next().unwrap_or("") {
        "RATELIMIT" => "ratelimit",
        "APIKEY" => "apikey",
        "WARMUP" => "warmup",
        _ => "data",
    }
}

fn forward(
    agent: &ureq::Agent,
    upstream: &str,
    mut request: tiny_http::Request,
    stats: Option<&Mutex<Stats>>,
    latency: Duration,
) {
    let mut body = Vec::new();
    let _ = request.as_reader().read_to_end(&mut body);
    let target = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("X-Amz-Target"))
        .map(|h| h.value.as_str().to_owned())
        .unwrap_or_default();
    let mut operation = target.rsplit('.').next().unwrap_or("?").to_owned();
    let mut items = 1;
    let parsed = stats.and_then(|_| serde_json::from_slice(&body).ok());
    if let Some(serde_json::Value::Object(mut input)) = parsed {
        operation = format!("{}:{operation}", item_class(&input));
        if let Some(transaction) = input.get("TransactItems").and_then(|t| t.as_array()) {
            items = u32::try_from(transaction.len()).unwrap_or(u32::MAX);
        }
        input.insert("ReturnConsumedCapacity".into(), "TOTAL".into());
        body = serde_json::to_vec(&input).expect("JSON");
    }
    let mut outgoing = agent.post(upstream);
    for header in request.headers() {
        let name = header.field.as_str().as_str();
        if !["host", "content-length", "connection"].contains(&name.to_ascii_lowercase().as_str()) {
            outgoing = outgoing.header(name, header.value.as_str());
        }
    }
    let Ok(mut response) = outgoing.send(&body[..]) else {
        let _ = request.respond(Response::empty(502));
        return;
    };
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/x-amz-json-1.0")
        .to_owned();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    if std::env::var_os("BENCH_TRACE").is_some() {
        eprintln!(
            "{operation} {status} {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        );
        eprintln!("  -> {}", text.chars().take(200).collect::<String>());
    }
    if let Some(stats) = stats {
        let parsed: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let mut stats = stats.lock().expect("stats lock");
        let entry = stats.entry(operation).or_default();
        entry.requests += 1;
        entry.items += items;
        // One object, or a list (one per table) for a transaction.
        let consumed = &parsed["ConsumedCapacity"];
        let tables = consumed
            .as_array()
            .cloned()
            .unwrap_or_else(|| vec![consumed.clone()]);
        entry.capacity_units += tables
            .iter()
            .filter_map(|table| table["CapacityUnits"].as_f64())
            .sum::<f64>();
        if status == 400 && text.contains("ConditionalCheckFailed") {
            entry.conditional_failures += 1;
        }
    }
    thread::sleep(latency);
    // DynamoDB's CRC32 header is not passed on: the SDK then skips that check.
    let reply = Response::from_string(text)
        .with_status_code(status)
        .with_header(Header::from_bytes("Content-Type", content_type).expect("header"));
    let _ = request.respond(reply);
}

//! Request metrics as CloudWatch Embedded Metric Format: one JSON line per request on
//! stdout, which CloudWatch Logs turns into metrics. No metrics client, no extra call.
//!
//! In namespace `METRICS_NAMESPACE` (the template sets `DeveloperIngest/<stage>`; unset,
//! as under `make run`, nothing is emitted):
//! - `Requests` (Count) by `function` and `outcome` (ok, rejected, failed);
//! - `Ingested` (Count) by `function`, write endpoints only: the records a request stored
//!   (0 when refused, or when an event was a replay of an `Idempotency-Key`).
//!
//! Never a dimension per org or key: every distinct value is a metric of its own, billed
//! monthly; the org is in the request's log line instead.

use crate::endpoint::Endpoint;
use lambda_http::http::{Method, StatusCode};
use serde_json::{json, Value};

/// The environment variable naming the namespace; metrics are off without it.
pub const NAMESPACE_VARIABLE: &str = "METRICS_NAMESPACE";

/// What a request's status says about it, in logs and metrics alike.
pub fn outcome(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "ok",
        400..=499 => "rejected",
        _ => "failed",
    }
}

/// Every write endpoint is a POST that stores what it is sent.
fn ingests(endpoint: Endpoint) -> bool {
    endpoint.method() == Method::POST
}

/// The EMF document of one request. `replayed`: the answer repeated an earlier one
/// (`Idempotent-Replayed`), so nothing new was stored.
pub fn emf_document(
    namespace: &str,
    endpoint: Endpoint,
    status: StatusCode,
    replayed: bool,
    timestamp_ms: u64,
) -> Value {
    let function = endpoint.function_name();
    let outcome = outcome(status);
    let mut directives = vec![json!({
        "Namespace": namespace,
        "Dimensions": [["function", "outcome"]],
        "Metrics": [{"Name": "Requests", "Unit": "Count"}],
    })];
    let mut document = json!({
        "function": function,
        "outcome": outcome,
        "Requests": 1,
    });
    if ingests(endpoint) {
        directives.push(json!({
            "Namespace": namespace,
            "Dimensions": [["function"]],
            "Metrics": [{"Name": "Ingested", "Unit": "Count"}],
        }));
        let stored = u32::from(status.is_success() && !replayed);
        document["Ingested"] = stored.into();
    }
    document["_aws"] = json!({
        "Timestamp": timestamp_ms,
        "CloudWatchMetrics": directives,
    });
    document
}

/// Where a function's metrics go: stdout, one line each, if a namespace is configured.
#[derive(Debug, Clone, Default)]
pub struct Metrics {
    namespace: Option<String>,
}

impl Metrics {
    pub fn from_env() -> Self {
        Metrics {
            namespace: std::env::var(NAMESPACE_VARIABLE)
                .ok()
                .filter(|namespace| !namespace.is_empty()),
        }
    }

    pub fn record(&self, endpoint: Endpoint, status: StatusCode, replayed: bool) {
        let Some(namespace) = &self.namespace else {
            return;
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        println!(
            "{}",
            emf_document(namespace, endpoint, status, replayed, now_ms)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The EMF rules CloudWatch applies: every dimension and metric a directive names is a
    /// top-level member (dimensions strings, metrics numbers), at most 30 dimensions.
    fn assert_valid_emf(document: &Value) {
        let aws = &document["_aws"];
        assert!(aws["Timestamp"].is_u64(), "{document}");
        for directive in aws["CloudWatchMetrics"].as_array().unwrap() {
            assert!(directive["Namespace"].is_string(), "{document}");
            for set in directive["Dimensions"].as_array().unwrap() {
                let set = set.as_array().unwrap();
                assert!(set.len() <= 30);
                for dimension in set {
                    assert!(
                        document[dimension.as_str().unwrap()].is_string(),
                        "{document}"
                    );
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                assert!(
                    document[metric["Name"].as_str().unwrap()].is_number(),
                    "{document}"
                );
            }
        }
    }

    fn dimensions(document: &Value) -> Vec<String> {
        document["_aws"]["CloudWatchMetrics"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|d| d["Dimensions"].as_array().unwrap())
            .flat_map(|set| set.as_array().unwrap())
            .map(|d| d.as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn every_endpoint_and_outcome_is_valid_emf_without_an_org_dimension() {
        for endpoint in Endpoint::ALL {
            for status in [200, 201, 400, 401, 429, 500, 503] {
                let status = StatusCode::from_u16(status).unwrap();
                let document = emf_document("DeveloperIngest/test", endpoint, status, false, 1);
                assert_valid_emf(&document);
                assert_eq!(document["function"], endpoint.function_name());
                assert_eq!(document["outcome"], outcome(status));
                assert_eq!(document["Requests"], 1);
                for dimension in dimensions(&document) {
                    assert!(["function", "outcome"].contains(&dimension.as_str()));
                }
            }
        }
    }

    #[test]
    fn ingested_counts_what_a_write_stored() {
        let ingested = |endpoint, status, replayed| {
            let status = StatusCode::from_u16(status).unwrap();
            emf_document("n", endpoint, status, replayed, 1)["Ingested"].clone()
        };
        assert_eq!(ingested(Endpoint::UsersUpsert, 201, false), 1);
        assert_eq!(ingested(Endpoint::UsersUpsert, 200, false), 1);
        assert_eq!(
            ingested(Endpoint::Events, 201, true),
            0,
            "a replay stores nothing"
        );
        assert_eq!(ingested(Endpoint::Events, 400, false), 0);
        assert_eq!(ingested(Endpoint::SalesUpsert, 503, false), 0);
        assert_eq!(
            ingested(Endpoint::UsersGet, 200, false),
            Value::Null,
            "reads ingest nothing"
        );
        assert_eq!(ingested(Endpoint::UsersDelete, 200, false), Value::Null);
    }

    #[test]
    fn outcomes_follow_the_status_class() {
        assert_eq!(outcome(StatusCode::CREATED), "ok");
        assert_eq!(outcome(StatusCode::TOO_MANY_REQUESTS), "rejected");
        assert_eq!(outcome(StatusCode::SERVICE_UNAVAILABLE), "failed");
        assert_eq!(outcome(StatusCode::INTERNAL_SERVER_ERROR), "failed");
    }
}

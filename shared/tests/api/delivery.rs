//! template.yaml and the watch router must describe the same functions, routes and table
//! as the code: these tests fail when they drift apart.

use serde_yaml_ng::Value;
use shared::store::table::{GSIS, TABLE_KEYS, TTL_ATTRIBUTE};
use shared::Endpoint;
use std::path::PathBuf;

pub(crate) fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn template() -> Value {
    serde_yaml_ng::from_str(&repo_file("template.yaml")).expect("template.yaml is YAML")
}

fn key_schema(value: &Value) -> Vec<(String, String)> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expected(keys: &[(&str, aws_sdk_dynamodb::types::KeyType)]) -> Vec<(String, String)> {
    keys.iter()
        .map(|(name, kind)| (name.to_string(), kind.as_str().to_owned()))
        .collect()
}

#[test]
fn the_template_table_matches_the_code() {
    let template = template();
    let table = &template["Resources"]["Table"]["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(key_schema(&table["KeySchema"]), expected(&TABLE_KEYS));
    let indexes = table["GlobalSecondaryIndexes"].as_sequence().unwrap();
    assert_eq!(indexes.len(), GSIS.len());
    for (index, (name, keys)) in indexes.iter().zip(GSIS) {
        assert_eq!(index["IndexName"], name);
        assert_eq!(key_schema(&index["KeySchema"]), expected(&keys));
        assert_eq!(index["Projection"]["ProjectionType"], "ALL");
    }
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"],
        TTL_ATTRIBUTE
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
}

/// `UsersGet` as `users-get`: what lambda/Makefile derives a function's binary from.
fn kebab_case(name: &str) -> String {
    let mut kebab = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            kebab.push('-');
        }
        kebab.push(c.to_ascii_lowercase());
    }
    kebab
}

/// endpoints.toml, which template.yaml, the watch router and events/ are generated from,
/// says what shared/src/endpoint.rs says: the same endpoints, in order, with their function,
/// method, paths and whether they take a key.
#[test]
fn the_endpoint_table_is_the_code() {
    let table: toml::Table = repo_file("endpoints.toml").parse().unwrap();
    let rows = table["endpoint"].as_array().unwrap();
    assert_eq!(rows.len(), Endpoint::ALL.len());
    for (row, endpoint) in rows.iter().zip(Endpoint::ALL) {
        let text = |key: &str| row.get(key).and_then(|v| v.as_str());
        assert_eq!(text("name"), Some(format!("{endpoint:?}").as_str()));
        assert_eq!(text("function"), Some(endpoint.function_name()));
        assert_eq!(text("method"), Some(endpoint.method_name()));
        assert_eq!(text("path"), Some(endpoint.relative_path()), "{endpoint:?}");
        let also: Vec<&str> = row
            .get("also")
            .and_then(|v| v.as_array())
            .map(|paths| paths.iter().filter_map(|p| p.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            also,
            Vec::from_iter(endpoint.alternate_relative_path()),
            "{endpoint:?}"
        );
        let auth = row.get("auth").and_then(|v| v.as_bool()).unwrap_or(true);
        assert_eq!(auth, endpoint.requires_api_key(), "{endpoint:?}");
    }
}

#[test]
fn the_template_has_one_function_per_endpoint_with_its_routes() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let functions: Vec<&Value> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::Serverless::Function")
        .collect();
    // Every endpoint's, the change feed's consumer and publisher and the timers' sweeper
    // (deploys.rs checks them).
    assert_eq!(functions.len(), Endpoint::ALL.len() + 3);
    for endpoint in Endpoint::ALL {
        let function = &template["Resources"][format!("{endpoint:?}Function").as_str()];
        // lambda/Makefile copies the binary named after the logical id (UsersGet: users-get).
        assert_eq!(
            function["Metadata"]["BuildMethod"], "makefile",
            "{endpoint:?}"
        );
        assert_eq!(
            kebab_case(&format!("{endpoint:?}")),
            endpoint.function_name()
        );
        let name = &function["Properties"]["FunctionName"];
        assert!(
            matches!(name, Value::Tagged(t) if t.tag == "Sub"
                && t.value == format!("developer-ingest-${{Stage}}-{}", endpoint.function_name())),
            "{endpoint:?}: {name:?}"
        );
        let path = endpoint.path();
        let routes: Vec<(String, String)> = function["Properties"]["Events"]
            .as_mapping()
            .unwrap()
            .values()
            .map(|event| {
                assert_eq!(event["Type"], "HttpApi");
                let properties = &event["Properties"];
                (
                    properties["Method"].as_str().unwrap().to_owned(),
                    properties["Path"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let method = endpoint.method_name().to_owned();
        assert!(
            routes.contains(&(method.clone(), path.trim_end_matches('/').to_owned())),
            "{routes:?}"
        );
        assert!(
            routes.contains(&(method, format!("{path}{{proxy+}}"))),
            "{routes:?}"
        );
    }
}

/// Every authenticated function reads its key (GetItem) and records its use at most hourly
/// (UpdateItem); the upserts write with UpdateItem (a transaction's items need the same
/// actions), events also with PutItem; those that take a user mention read both records of
/// a first email claim's merge check in one BatchGetItem; what else one needs is said below. The read
/// functions only read tenant items (GetItem, Query, BatchGetItem), the erasure deletes
/// them; both may UpdateItem only the key's own items (`APIKEY#`, `RATELIMIT#`: what each
/// write may touch is checked in deploys.rs).
#[test]
fn functions_get_only_the_table_actions_they_use() {
    const READ: [&str; 4] = [
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem",
        "dynamodb:Query",
        "dynamodb:UpdateItem",
    ];
    let template = template();
    for endpoint in Endpoint::ALL {
        let name = format!("{endpoint:?}Function");
        let resource = &template["Resources"][name.as_str()];
        let binary = endpoint.function_name();
        let statements: Vec<&Value> = resource["Properties"]["Policies"]
            .as_sequence()
            .map(|policies| {
                policies
                    .iter()
                    .flat_map(|p| p["Statement"].as_sequence().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        let mut actions: Vec<&str> = statements
            .iter()
            .flat_map(|s| s["Action"].as_sequence().unwrap())
            .map(|a| a.as_str().unwrap())
            .collect();
        actions.sort();
        actions.dedup();
        use Endpoint::*;
        let reader = matches!(
            endpoint,
            UsersGet | UsersList | ConversationsGet | Inbox | BookingsList
        );
        let expected: &[&str] = match binary {
            "health" => &[],
            "me" => &["dynamodb:GetItem", "dynamodb:UpdateItem"],
            // An event: its transaction (PutItem + UpdateItem), the alias read or claim, and
            // an erased key's retry giving its email claim back (DeleteItem).
            "events" => &[
                "dynamodb:BatchGetItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            // An email change releases the old alias.
            "users-upsert" => &[
                "dynamodb:BatchGetItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:UpdateItem",
            ],
            // A late message recomputes its thread (Query), a moved one leaves (DeleteItem).
            "messages-upsert" => &[
                "dynamodb:BatchGetItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            // Every item type: what they all use.
            "batch" => &[
                "dynamodb:BatchGetItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            "users-delete" => &[
                "dynamodb:BatchWriteItem",
                "dynamodb:DeleteItem",
                "dynamodb:GetItem",
                "dynamodb:Query",
                "dynamodb:UpdateItem",
            ],
            // The change feed: Queries of the org's day partitions, nothing to join.
            "changes-list" => &["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            _ if reader => &READ,
            // The segment's shards, read to their end (no BatchGetItem: no related records).
            "stats-users" => &["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
            "products-upsert" => &["dynamodb:GetItem", "dynamodb:UpdateItem"],
            _ => &[
                "dynamodb:BatchGetItem",
                "dynamodb:GetItem",
                "dynamodb:UpdateItem",
            ],
        };
        assert_eq!(actions, expected, "{name:?}");
    }
}

/// The function the watch router sends `method` on `path` to.
fn routed<'a>(route: &'a toml::Value, method: &str) -> Option<&'a str> {
    match route {
        toml::Value::String(function) => Some(function),
        toml::Value::Array(routes) => routes
            .iter()
            .find(|r| r["method"].as_str() == Some(method))
            .and_then(|r| r["function"].as_str()),
        _ => None,
    }
}

#[test]
fn the_watch_router_serves_every_endpoint_with_and_without_the_slash() {
    let manifest: toml::Table = repo_file("Cargo.toml").parse().unwrap();
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .unwrap();
    let mut paths = std::collections::HashSet::new();
    for endpoint in Endpoint::ALL {
        for path in endpoint.paths() {
            for variant in [path.as_str(), path.trim_end_matches('/')] {
                let route = router.get(variant).unwrap_or_else(|| panic!("{variant}"));
                assert_eq!(
                    routed(route, endpoint.method_name()),
                    Some(endpoint.function_name()),
                    "{variant}"
                );
                paths.insert(variant.to_owned());
            }
        }
    }
    assert_eq!(router.len(), paths.len(), "no route without an endpoint");
}

#[test]
fn every_function_crate_runs_its_endpoint() {
    for endpoint in Endpoint::ALL {
        let main = repo_file(&format!(
            "functions/{}/src/main.rs",
            endpoint.function_name()
        ));
        assert!(
            main.contains(&format!(
                "shared::http::run(shared::Endpoint::{endpoint:?})"
            )),
            "{endpoint:?}"
        );
    }
}

/// In Lambda the store's HTTPS client trusts only Amazon's root CAs (a cold-start saving):
/// the bundle must hold all five, and a client built on it must work.
#[tokio::test]
async fn the_lambda_https_client_carries_amazons_roots_and_works() {
    use shared::store::{https_client_trusting_amazon_roots, Store, AMAZON_ROOT_CAS_PEM};
    assert_eq!(
        AMAZON_ROOT_CAS_PEM
            .matches("-----BEGIN CERTIFICATE-----")
            .count(),
        5
    );
    // The harness's table (TABLE_NAME, or the default test table).
    let table = crate::common::store().await.table().to_owned();
    let endpoint = std::env::var("DYNAMODB_ENDPOINT").unwrap();
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "local", "local", None, None, "test",
        ))
        .endpoint_url(endpoint)
        .http_client(https_client_trusting_amazon_roots())
        .build();
    let store = Store::new(aws_sdk_dynamodb::Client::from_conf(config), table);
    let missing = shared::store::testing::keys::ItemKey {
        pk: "WARMUP".into(),
        sk: "WARMUP".into(),
    };
    assert_eq!(store.get(&missing).await, Ok(None));
}

#[test]
fn storage_limits_answer_well_within_the_lambda_timeout() {
    use shared::store::{ATTEMPT_TIMEOUT, OPERATION_TIMEOUT, REQUEST_DEADLINE};
    use std::time::Duration;
    let timeout = template()["Globals"]["Function"]["Timeout"]
        .as_u64()
        .expect("a global function timeout");
    // A timed-out attempt is retried once within an operation; one operation fits in a
    // request; the request deadline leaves headroom under the Lambda timeout.
    assert!(ATTEMPT_TIMEOUT * 2 <= OPERATION_TIMEOUT);
    assert!(OPERATION_TIMEOUT < REQUEST_DEADLINE);
    assert!(REQUEST_DEADLINE + Duration::from_secs(3) <= Duration::from_secs(timeout));
}
